"""Ultralytics YOLO training from a visiontune dataset, recorded in a visiontune run.

Ultralytics is AGPL-3.0 (optional extra ``visiontune[yolo]``); its notice is logged on use.
The dataset (COCO / YOLO / VOC) is written as an Ultralytics data.yaml (images linked, not
copied), Ultralytics trains with its own loop, and its per-epoch ``results.csv`` is replayed
into the visiontune `Run` (CSV + TensorBoard / MLflow ...) with the best weights as artifact.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from visiontune.errors import ConfigError
from visiontune.hub import load, parse_model_id
from visiontune.track import Run

from .datasets import load_detection


@dataclass
class YoloTrainResult:
    """An Ultralytics training run: its folder, best weights and final metrics."""

    run_dir: Path
    weights: Path | None
    metrics: dict


def write_ultralytics_yaml(train, val, directory) -> Path:
    """Write ``directory/data.yaml`` (+ label files, linked images) for Ultralytics."""
    train_ds, val_ds = load_detection(train, split="train"), load_detection(val, split="val")
    if train_ds.classes != val_ds.classes:
        raise ConfigError("train and val datasets have different classes")
    train_ds.to_yolo(directory, split="train", images="link")
    return val_ds.to_yolo(directory, split="val", images="link")


def train_yolo(
    model: str,
    data,
    val_data=None,
    epochs: int = 10,
    imgsz: int = 640,
    batch: int = 16,
    run_root="runs",
    run_name: str | None = None,
    trackers=("tensorboard",),
    device: str | None = None,
    *,
    trust_pickle: bool = False,
    **ultralytics_args,
) -> YoloTrainResult:
    """Fine-tune an Ultralytics model (``yolo:yolo11n.pt``, a local ``.pt`` — a pickle: needs
    ``trust_pickle`` — or a model YAML) on ``data``. The model is loaded through ``visiontune.load``."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    mid = parse_model_id(model if ":" in str(model) else f"yolo:{model}")
    if mid.source != "yolo":
        raise ConfigError(f"train_yolo trains Ultralytics models (yolo:...), got {model!r}")
    model_id = mid.name
    cfg = {
        "model": model_id,
        "data": str(data),
        "val_data": str(val_data) if val_data else None,
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        **ultralytics_args,
    }
    run = Run.start(
        root=run_root,
        name=run_name,
        config=cfg,
        model_id=f"yolo:{model_id}",
        trackers=tuple(trackers),
        command=list(sys.argv),
        kind="yolo-train",
        monitor="val/mAP50-95",
        mode="max",
        tags={"task": "detection", "license": "AGPL-3.0 (Ultralytics)"},
    )
    with run:  # finished as completed, interrupted (Ctrl-C, SIGTERM) or failed
        if val_data is None:
            ds = load_detection(data)
            tr, va = ds.split(0.2, seed=0)
            tr.to_yolo(run.dir / "data", split="train", images="link")
            data_yaml = va.to_yolo(run.dir / "data", split="val", images="link")
        else:
            data_yaml = write_ultralytics_yaml(data, val_data, run.dir / "data")
        yolo = load(str(mid), trust_pickle=trust_pickle).native  # an ultralytics.YOLO, past the trust gate
        yolo.add_callback("on_pretrain_routine_start", _drop_integrations)
        kw = dict(
            data=str(data_yaml),
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            project=str(run.dir),
            name="ultralytics",
            exist_ok=True,
            plots=False,
            verbose=False,
            **ultralytics_args,
        )
        if device is not None:
            kw["device"] = device
        yolo.train(**kw)
        udir = run.dir / "ultralytics"
        metrics = _replay_results(run, udir / "results.csv")
        best = udir / "weights" / "best.pt"
        if best.is_file():
            run.log_artifact(best)
        run.finish("completed", summary=metrics)
        return YoloTrainResult(run.dir, best if best.is_file() else None, metrics)


_INTEGRATIONS = ("mlflow", "wb", "comet", "clearml", "neptune", "dvc", "raytune", "tensorboard", "platform", "hub")


def _drop_integrations(trainer) -> None:
    """Ultralytics turns on MLflow / W&B / ... logging by itself when they are installed; the
    visiontune run records this training, so its own integrations are removed (in place: this
    runs as the first callback of the first event)."""
    for lst in trainer.callbacks.values():
        lst[:] = [
            cb
            for cb in lst
            if getattr(cb, "__module__", "").rsplit(".", 1)[-1] not in _INTEGRATIONS
            or not getattr(cb, "__module__", "").startswith("ultralytics.utils.callbacks.")
        ]


_NAMES = {
    "metrics/mAP50(B)": "val/mAP50",
    "metrics/mAP50-95(B)": "val/mAP50-95",
    "metrics/precision(B)": "val/precision",
    "metrics/recall(B)": "val/recall",
}


def _replay_results(run, results_csv: Path) -> dict:
    """Ultralytics' per-epoch results.csv -> run metrics; returns the last epoch's values."""
    last: dict = {}
    if not results_csv.is_file():
        return last
    with open(results_csv) as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v for k, v in row.items()}
            epoch = int(float(row.get("epoch", 0)))
            m = {}
            for k, v in row.items():
                if k == "epoch" or v in (None, ""):
                    continue
                name = _NAMES.get(k, k.replace("(B)", "").replace("metrics/", "val/"))
                try:
                    m[name] = float(v)
                except ValueError:
                    continue
            run.log_metrics(m, step=epoch, epoch=epoch)
            last = m
    return last
