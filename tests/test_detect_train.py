"""Detector fine-tuning (Lightning + run record + saved model) and the detection CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

TINY = {
    "backbone": {"source": "timm", "name": "mobilenetv3_small_100"},
    "neck": {"channels": 64},
    "image": {"min_size": 64, "max_size": 64},
    "num_classes": 1,
    "head": {
        "kwargs": {
            "rpn_pre_nms_top_n_train": 100,
            "rpn_post_nms_top_n_train": 50,
            "rpn_pre_nms_top_n_test": 100,
            "rpn_post_nms_top_n_test": 50,
            "box_batch_size_per_image": 32,
        }
    },
}


def tiny_imagenet_coco(assets: Path, out: Path, n_classes=2, per_class=6) -> Path:
    """A COCO JSON over a few Tiny-ImageNet val images (one real box each)."""
    root = assets / "tiny-imagenet-200-val"
    rows = [line.split("\t") for line in (root / "val_annotations.txt").read_text().splitlines()]
    wnids = sorted({r[1] for r in rows})[:n_classes]
    images, anns = [], []
    for ci, w in enumerate(wnids):
        for r in [r for r in rows if r[1] == w][:per_class]:
            i = len(images) + 1
            images.append({"id": i, "file_name": str(root / "images" / r[0]), "width": 64, "height": 64})
            x0, y0, x1, y1 = map(int, r[2:6])
            anns.append({"id": i, "image_id": i, "category_id": ci + 1, "bbox": [x0, y0, x1 - x0, y1 - y0]})
    p = out / "ann.json"
    p.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": i + 1, "name": w} for i, w in enumerate(wnids)],
            }
        )
    )
    return p


@pytest.fixture(scope="module")
def trained(assets, tmp_path_factory):
    from visiontune.detect.train import train_detector

    tmp = tmp_path_factory.mktemp("dtrain")
    data = tiny_imagenet_coco(assets, tmp)
    res = train_detector(
        {
            "model": "tiny.yaml",
            "compose": TINY,
            "data": str(data),
            "val_fraction": 0.34,
            "epochs": 1,
            "batch_size": 4,
            "max_train_batches": 1,
            "warmup_steps": 1,
            "trackers": ["tensorboard"],
        },
        run_root=tmp / "runs",
        progress=False,
    )
    return res, data


def test_training_writes_run_and_saved_model(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from visiontune.detect import Detector

    res, data = trained
    run = json.loads((res.run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["kind"] == "detect-train"
    assert "val/mAP50" in res.metrics and 0.0 <= res.metrics["val/mAP50"] <= 1.0
    csv = (res.run_dir / "metrics.csv").read_text()
    assert "train/loss" in csv and "val/mAP" in csv
    ev = EventAccumulator(str(res.run_dir / "tb"))
    ev.Reload()
    assert any(t.startswith("train/loss") for t in ev.Tags()["scalars"])
    assert sorted(p.name for p in res.model_dir.iterdir()) == ["model.safetensors", "visiontune.json"]
    card = json.loads((res.model_dir / "visiontune.json").read_text())["card"]
    assert card["task"] == "detection" and card["class_names"][0] == "__background__"
    reloaded = Detector.load(str(res.model_dir))
    img = torch.rand(3, 64, 64)
    a = res.detector([img], score_threshold=0.0)[0]
    b = reloaded([img], score_threshold=0.0)[0]
    torch.testing.assert_close(a.boxes, b.boxes)
    assert a.names == b.names
    import visiontune as vt

    p = vt.load(res.model_dir)  # the one loader also restores saved detectors
    assert p.task == "detection" and p.class_names == reloaded.class_names
    torch.testing.assert_close(p.predict([img], score_threshold=0.0)[0].boxes, a.boxes)


def test_runs_reproduce_re_runs_a_detector_training_exactly(trained):
    from visiontune.track import reproduce

    res, _ = trained
    rep = reproduce(res.run_dir)
    assert "summary/val/mAP50" in rep.metrics and "summary/train_seconds" not in rep.metrics
    assert rep.matches, rep.mismatches
    assert rep.new.dir.name == f"{res.run_dir.name}-repro"


def test_finetune_from_saved_detector_keeps_fitting_tensors(trained):
    from visiontune.detect import adapt_detector

    res, _ = trained
    det, rep = adapt_detector(str(res.model_dir), ["only_one"])
    assert det.class_names == ["__background__", "only_one"]
    changed = {k for k, *_ in rep.reinitialised}
    assert changed == {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
    }
    sd_old = res.detector.model.state_dict()
    assert torch.equal(det.model.state_dict()["rpn.head.conv.0.0.weight"], sd_old["rpn.head.conv.0.0.weight"])


def test_cli_detect_val_anchors(trained, assets, tmp_path):
    from visiontune.cli.main import app

    res, data = trained
    runner = CliRunner()
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in sorted((assets / "tiny-imagenet-200-val" / "images").glob("val_1*.JPEG"))[:3]:
        (imgs / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["detect", str(res.model_dir), str(imgs), "--out", str(out), "--conf", "0.0", "--max-det", "5"]
    )
    assert r.exit_code == 0, r.output
    preds = json.loads((out / "predictions.json").read_text())
    meta = json.loads((out / "images.json").read_text())
    assert len(meta["images"]) == 3 and 0 < len(preds) <= 15
    assert {p["image_id"] for p in preds} <= {1, 2, 3} and len(preds[0]["bbox"]) == 4
    from PIL import Image

    drawn = sorted(out.glob("*.JPEG"))
    assert len(drawn) == 3 and Image.open(drawn[0]).size == (64, 64)

    r = runner.invoke(app, ["val", str(res.model_dir), "--data", str(data), "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert set(m["metrics"]) >= {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"}
    assert len(m["per_class"]) == 2

    r = runner.invoke(
        app, ["anchors", str(data), "--levels", "3", "--ratios", "2", "--min-size", "64", "--max-size", "64"]
    )
    assert r.exit_code == 0, r.output
    assert "sizes:" in r.output and "mean best IoU" in " ".join(r.output.split())


def test_detection_audit_ranks_mistakes(trained, tmp_path):
    from visiontune.detect.audit import audit_detections

    res, data = trained
    a = audit_detections(res.detector, data, out=tmp_path / "audit", score_threshold=0.0)
    t = a.table
    assert list(t["rank"]) == list(range(1, len(t) + 1))
    assert (t["errors"].diff().dropna() <= 0).all()  # worst first
    assert (t["tp"] + t["missed"] == t["gt"]).all() and (t["tp"] + t["fp"] == t["predictions"]).all()
    assert (tmp_path / "audit" / "detection_audit.csv").is_file()
    html = a.html_section()
    assert html.startswith('<section class="detection-audit">') and "<script" not in html
    report = (tmp_path / "audit" / "report.html").read_text()
    assert "Images ranked by false positives and missed objects" in report
    assert report.count("<tr") >= len(t)  # one row per image (+ header)
    assert "data:image/jpeg;base64," in report  # thumbnails embedded: the file stands alone


KILL_SCRIPT = """
import os, signal, sys, json
import lightning as L
import torch
torch.set_num_threads(1)
from visiontune.detect.train import train_detector

class Kill(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 2 and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGKILL)

train_detector(json.loads(sys.argv[1]), run_root=sys.argv[2], run_name="killed", progress=False,
               callbacks=(Kill(),))
"""


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(assets, tmp_path):
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from visiontune.detect.train import train_detector

    data = tiny_imagenet_coco(assets, tmp_path)
    cfg = {
        "model": "tiny.yaml",
        "compose": TINY,
        "data": str(data),
        "val_fraction": 0.34,
        "epochs": 4,
        "batch_size": 4,
        "warmup_steps": 2,
        "lr": 0.02,
        "seed": 3,
        "trackers": [],
    }
    torch.set_num_threads(1)
    ref = train_detector(cfg, run_root=tmp_path / "runs", run_name="ref", progress=False)

    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    killed = tmp_path / "runs" / "killed"
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1  # 0, 1 done
    assert not list((killed / "checkpoints").glob(".*tmp*"))
    from visiontune.track import load_run

    assert load_run(killed).status == "interrupted"

    res = train_detector(cfg, run_root=tmp_path / "runs", resume=killed, progress=False)
    assert res.run_dir.name == "killed-resumed"
    assert json.loads((res.run_dir / "run.json").read_text())["tags"]["resumed_from"] == str(killed)
    assert len(ref.metrics) > 2 and {k: v for k, v in res.metrics.items() if k != "train_seconds"} == {
        k: v for k, v in ref.metrics.items() if k != "train_seconds"
    }
    a, b = load_file(ref.model_dir / "model.safetensors"), load_file(res.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the best epoch's weights
    # the best epoch may predate the kill: the weights after the last epoch and the epochs trained
    # after the resume must match too
    last_a = torch.load(ref.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    last_b = torch.load(res.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last_a["epoch"] == last_b["epoch"] == 3
    assert all(torch.equal(v, last_b["state_dict"][k]) for k, v in last_a["state_dict"].items())

    def epochs_after_kill(run_dir):
        return [
            (r["epoch"], r["value"])
            for r in load_run(run_dir).metric_rows()
            if r["metric"] == "val/mAP50" and r["epoch"] >= 2
        ]

    assert len(epochs_after_kill(ref.run_dir)) == 2
    assert epochs_after_kill(res.run_dir) == epochs_after_kill(ref.run_dir)


DDP_SCRIPT = """
import hashlib, json, os, sys
import lightning as L
import torch
from visiontune.detect.train import train_detector

class Report(L.Callback):
    def on_train_end(self, trainer, pl_module):
        h = hashlib.sha256()
        for p in pl_module.model.parameters():
            h.update(p.detach().cpu().numpy().tobytes())
        out = {"rank": trainer.global_rank, "world": trainer.world_size, "pid": os.getpid(),
               "params": h.hexdigest(), "batches": trainer.num_training_batches,
               "dist": torch.distributed.is_initialized() and torch.distributed.get_backend()}
        with open(os.path.join(sys.argv[2], f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump(out, f)

r = train_detector(json.loads(sys.argv[1]), run_root=sys.argv[2], run_name="ddp", progress=False,
                   callbacks=(Report(),))
if r.model_dir is not None:
    with open(os.path.join(sys.argv[2], "result.json"), "w") as f:
        json.dump({"metrics": r.metrics, "model": str(r.model_dir), "dir": str(r.dir)}, f)
"""


@pytest.mark.slow
def test_detector_trains_with_two_gloo_ddp_processes_into_one_run(assets, tmp_path):
    """`devices: 2, ddp_strategy: ddp` on the CPU: two real processes, gradients all-reduced into
    one model, one run folder with the data version and the base weights' sha256."""
    import os
    import subprocess
    import sys

    from visiontune.track import load_run

    data = tiny_imagenet_coco(assets, tmp_path, per_class=4)
    cfg = {
        "model": "tiny.yaml",
        "compose": TINY,
        "data": str(data),
        "val_fraction": 0.25,
        "epochs": 1,
        "batch_size": 2,
        "warmup_steps": 1,
        "accelerator": "cpu",
        "devices": 2,
        "ddp_strategy": "ddp",
        "trackers": [],
    }
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    env.pop("VISIONTUNE_RUN_DIR", None)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "runs" / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "runs" / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2 and r0["dist"] == "gloo" and r0["pid"] != r1["pid"]
    assert r0["params"] == r1["params"]  # gradients were all-reduced: one model
    assert r0["batches"] == 2  # 6 training images / 2 ranks / batch 2: each rank saw half
    res = json.loads((tmp_path / "runs" / "result.json").read_text())
    assert Path(res["model"]).is_dir() and "val/mAP" in res["metrics"]
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert runs == ["ddp"]  # the worker wrote into rank 0's run and made none of its own
    rec = load_run(tmp_path / "runs" / "ddp")
    assert rec.status == "completed" and rec.data.get("kind") == "detect-train"
    assert rec.data_version and len(rec.data_version) == 12
    assert (tmp_path / "runs" / "ddp" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_detector_run_records_data_version_and_base_weights_sha256(assets, tmp_path, mobilenetv2_backbone_file):
    from visiontune.data.hashing import sha256_file
    from visiontune.detect.train import train_detector
    from visiontune.track import load_run

    data = tiny_imagenet_coco(assets, tmp_path, per_class=3)
    compose = {
        "backbone": {"source": "torchvision", "name": "mobilenet_v2", "weights": str(mobilenetv2_backbone_file)},
        "neck": {"channels": 32},
        "image": {"min_size": 64, "max_size": 64},
        "num_classes": 1,
    }
    cfg = {"model": "mb2.yaml", "compose": compose, "data": str(data), "val_fraction": 0.34, "epochs": 1}
    cfg.update(batch_size=2, max_train_batches=1, trackers=[], warmup_steps=1)
    res = train_detector(cfg, run_root=tmp_path / "runs", run_name="w", progress=False)
    rec = load_run(res.dir)
    assert rec.data["model"]["weights_sha256"] == sha256_file(mobilenetv2_backbone_file)
    from visiontune.detect import load_detection

    assert rec.data_version == load_detection(data).split(0.34, seed=0)[0].version
