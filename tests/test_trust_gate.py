"""One trust gate that nothing walks around (issue #12).

A hostile pickle — a file that creates a marker file when unpickled — is handed to every entry point
that takes a model: the Python loaders and the CLI verbs. Without the explicit trust option none of
them may unpickle it (the marker must not exist afterwards); the refusal says what the file is and
how to allow it. With trust, the same file does run (the test can fail).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

import visiontune as vt
from visiontune.cli.main import app
from visiontune.errors import UnsafeCheckpointError

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


class Boom:
    """Unpickling calls ``open(marker, "w")``: the marker file appears."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def world(tmp_path, assets):
    """Hostile files in every shape an entry point takes, plus small real inputs."""
    marker = tmp_path / "PWNED"
    w = {"tmp": tmp_path, "marker": marker}
    evil = tmp_path / "evil.pt"  # a generic pickled checkpoint
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Boom(str(marker))}, evil)
    w["evil"] = evil
    evil_ul = tmp_path / "evil_ultralytics.pt"  # bytes that look like an Ultralytics checkpoint
    torch.save({"model": Boom(str(marker)), "ultralytics_version": "8.4", "train_args": {}}, evil_ul)
    w["evil_ul"] = evil_ul
    # a "saved model" whose card names a hostile base model
    saved = tmp_path / "saved_evil"
    saved.mkdir()
    good = vt.load("timm:test_resnet", pretrained=False, num_classes=2, class_names=["ants", "bees"])
    good.save(saved)
    doc = json.loads((saved / "visiontune.json").read_text())
    doc["base_id"] = f"yolo:{evil_ul}"
    (saved / "visiontune.json").write_text(json.dumps(doc))
    w["saved_evil"] = saved
    # a run folder someone else wrote: model/ with the hostile card, checkpoints/last.ckpt hostile
    run = tmp_path / "runs" / "theirs"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(evil, run / "checkpoints" / "last.ckpt")
    shutil.copytree(saved, run / "model")
    (run / "run.json").write_text(json.dumps({"name": "theirs", "status": "completed", "kind": "train"}))
    w["run"] = run
    # a Hugging Face folder whose weights are a hostile pytorch_model.bin
    tr = pytest.importorskip("transformers")
    hf = tmp_path / "hf_evil"
    cfg = tr.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2, layer_type="basic"
    )
    cfg.architectures = ["ResNetForImageClassification"]
    cfg.save_pretrained(hf)
    shutil.copy(evil, hf / "pytorch_model.bin")
    w["hf_evil"] = hf
    # a composed-detector YAML whose backbone weights are hostile
    w["compose_yaml"] = tmp_path / "det.yaml"
    w["compose_yaml"].write_text(
        yaml.safe_dump(
            {
                "detector": {
                    "backbone": {"source": "torchvision", "name": "mobilenet_v2", "weights": str(evil)},
                    "neck": {"channels": 16},
                    "image": {"min_size": 64, "max_size": 64},
                    "classes": ["person"],
                }
            }
        )
    )
    # an exported artifact: a pickle posing as TorchScript, with a sidecar
    art = tmp_path / "model.pt"
    shutil.copy(evil, art)
    (tmp_path / "model.pt.visiontune.json").write_text(
        json.dumps({"artifact_format": "torchscript", "task": "classification", "class_names": ["a", "b"]})
    )
    w["artifact"] = art
    # small real inputs
    data = tmp_path / "data"
    for split in ("train", "val"):
        for c in ("ants", "bees"):
            d = data / split / c
            d.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 40), (40 * i, 90, 160 if c == "bees" else 20)).save(d / f"{i}.png")
    w["data"] = data
    w["image"] = data / "val" / "ants" / "0.png"
    w["coco8"] = tmp_path / "coco8.yaml"  # COCO8 ships without a data.yaml
    w["coco8"].write_text(
        yaml.safe_dump(
            {
                "path": str(assets / "coco8"),
                "train": "images/train",
                "val": "images/val",
                "names": {i: f"class{i}" for i in range(80)},
            }
        )
    )
    w["run_yaml"] = tmp_path / "run.yaml"
    w["run_yaml"].write_text(
        yaml.safe_dump(
            {
                "name": "r",
                "root": str(tmp_path / "runs"),
                "train": {"model": "timm:test_resnet", "data": str(data), "weights": str(evil), "epochs": 1},
                "audit": {"enabled": False},
            }
        )
    )
    return w


def _python_entry_points():
    from visiontune.adapt import TrainConfig, train
    from visiontune.audit import audit
    from visiontune.bench import bench
    from visiontune.detect import Detector, composed_detector, evaluate
    from visiontune.detect.audit import audit_detections
    from visiontune.detect.train import train_detector
    from visiontune.detect.yolo import train_yolo
    from visiontune.export import export, load_artifact
    from visiontune.pipeline import run

    def tc(w, **kw):
        return TrainConfig(model="timm:test_resnet", data=str(w["data"]), epochs=1, image_size=32, trackers=[], **kw)

    det_cfg = {"model": "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", "epochs": 1, "trackers": []}
    return {
        "load(weights=) timm": lambda w: vt.load("timm:resnet18", weights=w["evil"]),
        "load(weights=) torchvision": lambda w: vt.load("torchvision:resnet18", weights=w["evil"]),
        "load(yolo:.pt)": lambda w: vt.load(f"yolo:{w['evil_ul']}"),
        "load(bare .pt path)": lambda w: vt.load(str(w["evil_ul"])),
        "load(saved dir naming a hostile base)": lambda w: vt.load(w["saved_evil"]),
        "load(hf folder with pytorch_model.bin)": lambda w: vt.load(f"hf:{w['hf_evil']}"),
        "describe(weights=)": lambda w: vt.describe("timm:resnet18", weights=w["evil"]),
        "Detector.load(yolo:.pt)": lambda w: Detector.load(f"yolo:{w['evil_ul']}"),
        "Detector.load(weights=)": lambda w: Detector.load(det_cfg["model"], weights=w["evil"]),
        "composed_detector(backbone.weights)": lambda w: composed_detector(w["compose_yaml"]),
        "detect.evaluate": lambda w: evaluate(f"yolo:{w['evil_ul']}", w["coco8"], split="val"),
        "audit_detections": lambda w: audit_detections(f"yolo:{w['evil_ul']}", w["coco8"]),
        "train(weights=)": lambda w: train(tc(w, weights=str(w["evil"]), pretrained=False), run_root=w["tmp"] / "r1"),
        "train(resume=checkpoint)": lambda w: train(
            tc(w, pretrained=False), run_root=w["tmp"] / "r2", resume=w["run"] / "checkpoints" / "last.ckpt"
        ),
        "train_detector(weights=)": lambda w: train_detector(
            {**det_cfg, "data": str(w["coco8"]), "weights": str(w["evil"])}, run_root=w["tmp"] / "r3"
        ),
        "train_detector(resume=run)": lambda w: train_detector(
            {**det_cfg, "data": str(w["coco8"]), "pretrained": False}, run_root=w["tmp"] / "r4", resume=w["run"]
        ),
        "train_yolo": lambda w: train_yolo(f"yolo:{w['evil_ul']}", w["coco8"], run_root=w["tmp"] / "r5"),
        "export": lambda w: export(str(w["saved_evil"]), "onnx", w["tmp"] / "x.onnx"),
        "load_artifact": lambda w: load_artifact(w["artifact"]),
        "audit": lambda w: audit(w["run"], data=str(w["data"])),
        "bench": lambda w: bench([str(w["saved_evil"])], keep_going=False, progress=False),
        "run": lambda w: run(w["run_yaml"]),
    }


PYTHON = _python_entry_points()


@pytest.mark.parametrize("name", list(PYTHON))
def test_python_entry_points_refuse_the_hostile_pickle(world, name):
    with pytest.raises(Exception) as e:  # noqa: B017 - each entry point has its own error; checked below
        PYTHON[name](world)
    assert not world["marker"].exists(), f"{name} unpickled the hostile file"
    text = str(e.value)
    if name != "load_artifact":  # a pickle posing as TorchScript is not a TorchScript file: no unpickling
        assert isinstance(e.value, UnsafeCheckpointError), f"{name}: {type(e.value).__name__}: {text}"
        assert "trust_pickle=True" in text and "--trust-pickle" in text, text


def _cli(w):
    d, img, coco = str(w["data"]), str(w["image"]), str(w["coco8"])
    evil, evil_ul, saved = str(w["evil"]), str(w["evil_ul"]), str(w["saved_evil"])
    fr = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
    train = ["train", "--model", "timm:test_resnet", "--data", d, "--epochs", "1", "--image-size", "32"]
    return {
        "predict --weights": ["predict", "timm:resnet18", img, "--weights", evil],
        "predict PATH.pt": ["predict", evil_ul, img],
        "detect": ["detect", f"yolo:{evil_ul}", img, "--out", str(w["tmp"] / "dets")],
        "detect --weights": ["detect", fr, img, "--weights", evil, "--out", str(w["tmp"] / "dets2")],
        "val": ["val", f"yolo:{evil_ul}", "--data", coco, "--split", "val"],
        "detect-train --weights": [
            "detect-train",
            fr,
            "--data",
            coco,
            "--weights",
            evil,
            "--runs",
            str(w["tmp"] / "c1"),
        ],
        "detect-train composed YAML": ["detect-train", str(w["compose_yaml"]), "--data", coco, "--runs", str(w["tmp"])],
        "detect-train --resume": ["detect-train", fr, "--data", coco, "--random-init", "--resume", str(w["run"])],
        "detect-audit": ["detect-audit", f"yolo:{evil_ul}", "--data", coco, "--out", str(w["tmp"] / "da")],
        "export": ["export", saved, "--output", str(w["tmp"] / "m.onnx")],
        "export --weights": ["export", "timm:resnet18", "--weights", evil, "--output", str(w["tmp"] / "n.onnx")],
        "export-predict": ["export-predict", str(w["artifact"]), img],
        "bench": ["bench", saved, "--out", str(w["tmp"] / "bench"), "--repeats", "1"],
        "train --weights": [*train, "--weights", evil, "--runs", str(w["tmp"] / "c2")],
        "train --resume": [*train, "--random-init", "--resume", str(w["run"] / "checkpoints" / "last.ckpt")],
        "lr-find --weights": ["lr-find", "--model", "timm:test_resnet", "--data", d, "--weights", evil],
        "recommend --weights": ["recommend", d, "--model", "timm:test_resnet", "--weights", evil],
        "audit": ["audit", str(w["run"]), "--data", d],
        "run": ["run", str(w["run_yaml"])],
        "compare": ["compare", saved, "timm:test_resnet", "--image", img],
        "models info --weights": ["models", "info", "timm:resnet18", "--weights", evil],
        "models info PATH": ["models", "info", saved],
        "license": ["license", saved],
    }


CLI = list(
    _cli(
        {
            k: Path("x")
            for k in (
                "tmp",
                "data",
                "image",
                "coco8",
                "evil",
                "evil_ul",
                "saved_evil",
                "run",
                "compose_yaml",
                "artifact",
                "run_yaml",
            )
        }
    )
)


@pytest.mark.parametrize("name", CLI)
def test_cli_verbs_refuse_the_hostile_pickle(world, name, monkeypatch):
    monkeypatch.chdir(world["tmp"])
    args = _cli(world)[name]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert not world["marker"].exists(), f"`visiontune {' '.join(args)}` unpickled the hostile file"
    assert res.exit_code != 0, res.output
    text = res.output + (f"{type(res.exception).__name__}: {res.exception}" if res.exception else "")
    if name != "export-predict":
        assert "UnsafeCheckpointError" in text or "--trust-pickle" in text, text


def test_the_count_of_entry_points_is_what_the_closing_note_says():
    assert len(PYTHON) == 22 and len(CLI) == 23


def test_with_trust_the_same_file_does_run(world):
    """The gate, not an accident of the file, is what stops the others."""
    with pytest.raises(Exception):  # noqa: B017 - the payload is no state dict; what matters is the marker
        vt.load("timm:resnet18", weights=world["evil"], trust_pickle=True)
    assert world["marker"].exists()


def test_the_refusal_says_what_the_file_is_and_how_to_allow_it(world):
    with pytest.raises(UnsafeCheckpointError) as e:
        vt.load(f"yolo:{world['evil_ul']}")
    assert "Ultralytics .pt checkpoint" in str(e.value) and "trust_pickle=True" in str(e.value)
    with pytest.raises(UnsafeCheckpointError) as e:
        vt.load("timm:resnet18", weights=world["evil"])
    assert "pickled checkpoint" in str(e.value) and "safetensors" in str(e.value)
