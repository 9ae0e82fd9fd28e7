"""What the command line says when something is off: the missing extra by name, random weights,
typos (issue #19)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from visiontune.errors import MissingDependencyError, require


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "visiontune", *args], capture_output=True, text=True, timeout=300, **kw
    )


def test_the_missing_extra_message_names_the_extra_on_the_command_line(tmp_path):
    with pytest.raises(MissingDependencyError, match=r"pip install 'visiontune\[onnx\]'"):
        require("no_such_module_for_visiontune", "onnx", "Exporting to ONNX")
    # through the CLI's error printer: rich must not eat "[onnx]" as markup
    code = (
        "import sys\n"
        "from visiontune.cli import main as m\n"
        "from visiontune.errors import require\n"
        "def boom():\n    require('no_such_module_for_visiontune', 'onnx', 'Exporting to ONNX')\n"
        "m.app.command('boom')(boom)\n"
        "sys.argv = ['visiontune', 'boom']\n"
        "m.main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "pip install 'visiontune[onnx]'" in " ".join(res.stderr.split()), res.stderr


def test_detect_with_random_weights_says_so(tmp_path):
    img = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48), (120, 30, 200)).save(img)
    res = _run(
        "detect",
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
        str(img),
        "--random-init",
        "--out",
        str(tmp_path / "d"),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    said = " ".join(res.stderr.split())
    assert "warning: torchvision:fasterrcnn_mobilenet_v3_large_320_fpn has random weights" in said
    assert said.count("has random weights") == 1  # one line, not a Python warning as well


def test_typos_get_a_suggestion():
    res = _run("models", "info", "torchvison:resnet18")
    assert res.returncode == 2 and "Did you mean 'torchvision:resnet18'" in " ".join(res.stderr.split())
    res = _run("models", "info", "timm:resnet_18")
    assert res.returncode == 2 and "timm:resnet18" in " ".join(res.stderr.split())


def test_predict_names_the_bad_file_and_fails_only_if_nothing_is_readable(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (60 * i, 100, 30)).save(folder / f"ok{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    import visiontune as vt

    saved = tmp_path / "model"
    vt.load("timm:test_resnet", pretrained=False, num_classes=2, class_names=["x", "y"]).save(saved)
    res = _run("predict", str(saved), str(folder), "--topk", "1", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    got = json.loads(res.stdout)
    assert sorted(r["source"].rsplit("/", 1)[-1] for r in got) == ["ok0.png", "ok1.png", "ok2.png"]
    assert "skipped" in res.stderr and "broken.jpg" in res.stderr
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "b.png").write_bytes(b"nope")
    res = _run("predict", str(saved), str(only_bad))
    assert res.returncode == 2 and "none of the 1 images could be read" in " ".join(res.stderr.split())
