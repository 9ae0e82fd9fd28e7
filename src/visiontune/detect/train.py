"""Fine-tuning torchvision and composed detectors on COCO / YOLO / VOC data, on the engine: one run
session (a `visiontune.track` record with data version and weights sha256, exact resume), the
engine's Trainer (precision, DDP, accumulation, early stopping, best + last checkpoints), and the
one saved-model format (``model.safetensors`` + ``visiontune.json``)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from rich.console import Console
from torch.utils.data import DataLoader

from visiontune._atomic import write_text
from visiontune.engine import Session, fit_best, global_rank, make_trainer, seeded_loader
from visiontune.errors import ConfigError

from .adapt import adapt_detector_from_cfg, auto_anchors
from .config import DetectTrainConfig, parse_config
from .datasets import DetectionDataset, TorchDetectionDataset, collate, load_detection
from .detector import Detector
from .models import TransferReport
from .module import DetectionModule

log = logging.getLogger("visiontune.detect")

HP_KEYS = ("optimizer", "lr", "weight_decay", "momentum", "warmup_steps", "seed", "eval_backend")


@dataclass
class DetectTrainResult:
    """What a detector training hands off: the run folder, the saved model, the metrics."""

    run_dir: Path
    model_dir: Path | None
    metrics: dict
    detector: Detector
    transfer: TransferReport | None

    @property
    def dir(self) -> Path:
        """The run folder."""
        return self.run_dir

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "dir": str(self.run_dir),
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "metrics": self.metrics,
            "transfer": self.transfer.to_dict() if self.transfer else None,
        }

    def summary(self) -> str:
        """One line: where it went and the headline metrics."""
        m = self.metrics
        parts = [f"{k} {m[k]:.4f}" for k in ("val/mAP", "val/mAP50") if isinstance(m.get(k), float)]
        return f"{self.run_dir}: " + (", ".join(parts) or "no validation set")


def _restrict(ds: DetectionDataset, classes: list[str]) -> DetectionDataset:
    """Keep only ``classes`` (re-indexed in that order); images without them stay as negatives."""
    unknown = [c for c in classes if c not in ds.classes]
    if unknown:
        raise ConfigError(f"classes: {unknown} are not in the dataset ({', '.join(ds.classes[:10])}…)")
    remap = np.full(len(ds.classes), -1)
    for i, c in enumerate(classes):
        remap[ds.classes.index(c)] = i
    recs = []
    for r in ds.images:
        keep = remap[r.labels] >= 0
        recs.append(copy.copy(r))
        recs[-1].boxes, recs[-1].labels, recs[-1].crowd = r.boxes[keep], remap[r.labels[keep]], r.crowd[keep]
        recs[-1].refs = [x for x, k in zip(r.refs, keep) if k] if r.refs else []
    return DetectionDataset(recs, list(classes), ds.root, ds.source, ds.issues)


def load_train_val(cfg: DetectTrainConfig) -> tuple[DetectionDataset, DetectionDataset | None]:
    """The training and validation datasets a config names (a val split carved out if none)."""
    train = load_detection(cfg.data, split=cfg.train_split)
    val = None
    if cfg.val_data:
        val = load_detection(cfg.val_data, split=cfg.val_split)
    else:
        try:
            if cfg.val_split and not str(cfg.data).endswith(".json"):
                val = load_detection(cfg.data, split=cfg.val_split)
        except Exception:  # noqa: BLE001 - no such split in this dataset: carve one out below
            val = None
        if val is None and cfg.val_fraction > 0:
            train, val = train.split(cfg.val_fraction, seed=cfg.seed)
    if cfg.classes:
        train = _restrict(train, cfg.classes)
        val = _restrict(val, cfg.classes) if val is not None else None
    elif val is not None and val.classes != train.classes:
        raise ConfigError(f"train and val datasets have different classes: {train.classes[:5]}… vs {val.classes[:5]}…")
    return train, val


def train_detector(
    cfg: DetectTrainConfig | dict | str,
    run_root: str | Path = "runs",
    run_name: str | None = None,
    progress: bool = True,
    resume: str | Path | bool | None = None,
    callbacks: tuple = (),
    *,
    trust_pickle: bool = False,
    console: Any = None,
) -> DetectTrainResult:
    """Fine-tune a detector; writes ``<run_root>/<name>/`` (run record, metrics, TensorBoard,
    ``checkpoints/best.ckpt`` and ``last.ckpt``, ``model/`` saved detector) and returns the
    trained `Detector`.

    ``resume``: a run directory, its ``last.ckpt``, or True (the run called ``run_name``). An
    interrupted run continues in a new run ``<old>-resumed`` from its last completed epoch; data
    order and augmentation are functions of (seed, epoch) and the heads' sampling of (seed, step),
    so on CPU the result equals an uninterrupted run's. ``devices`` / ``ddp_strategy`` /
    ``num_nodes`` in the config train data-parallel (one run folder for all processes)."""
    cfg = parse_config(cfg)
    run_name = run_name or cfg.name
    is_zero = global_rank() == 0
    console = console or Console(quiet=not is_zero)
    resume_from = Session.prepare(resume, run_root, run_name)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    train_ds, val_ds = load_train_val(cfg)
    if not len(train_ds) or not train_ds.num_boxes:
        raise ConfigError(f"no training boxes in {cfg.data} ({train_ds.summary()})")
    classes = list(train_ds.classes)
    anchor_sizes, ratios, anchor_note = cfg.anchor_sizes, cfg.aspect_ratios, None
    if anchor_sizes == "auto":
        anchor_sizes, ratios, anchor_note = auto_anchors(cfg, train_ds)
    det, report = adapt_detector_from_cfg(cfg, classes, anchor_sizes, ratios, trust_pickle)
    if report is not None:
        log.info("pretrained weights: %s", report.summary())
    loader = seeded_loader(
        TorchDetectionDataset(train_ds, train=True, hflip=cfg.hflip),
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        collate_fn=collate,
    )
    has_val = val_ds is not None and len(val_ds) > 0
    val_loader: DataLoader | None = None
    if val_ds is not None and has_val:  # every rank evaluates the whole val set: mAP needs all predictions
        val_loader = DataLoader(
            TorchDetectionDataset(val_ds), batch_size=cfg.batch_size, collate_fn=collate, num_workers=cfg.num_workers
        )
    n_batches = (
        len(loader)
        if cfg.max_train_batches is None
        else (
            min(len(loader), int(cfg.max_train_batches))
            if cfg.max_train_batches >= 1
            else max(1, int(len(loader) * cfg.max_train_batches))
        )
    )
    hp = {k: getattr(cfg, k) for k in HP_KEYS}
    module = DetectionModule(det, hp, val_ds if has_val else None, n_batches * cfg.epochs)
    tags = {
        "task": "detection",
        "classes": classes,
        "transfer": report.to_dict() if report else None,
        "anchors": anchor_note,
        "val_data_version": val_ds.version if val_ds is not None and has_val else None,
    }
    monitor = "val/mAP" if has_val else None
    session = Session.open(
        run_root=run_root,
        run_name=run_name,
        resume_from=resume_from,
        config=cfg,
        kind="detect-train",
        model_id=cfg.model,
        weights_sha256=det.card.weights_sha256,
        data_version=train_ds.version,
        monitor="val/mAP",
        mode="max",
        tags=tags,
        trust_pickle=trust_pickle,
    )
    with session:
        trainer, best_cb = make_trainer(
            cfg,
            epochs=cfg.epochs,
            run_dir=session.dir,
            ckpt_dir=session.ckpt_dir,
            monitor=monitor,
            mode="max",
            run=session.run,
            callbacks=callbacks,
            progress=progress and is_zero,
            console=console,
            table_columns=["train/loss", "val/mAP", "val/mAP50"] if progress else None,
            trust_pickle=trust_pickle,
        )
        metrics = fit_best(
            trainer, best_cb, module, loader, val_loader, session.ckpt_path, metric="val/mAP", trust_pickle=trust_pickle
        )
        if metrics is None:  # not rank 0
            return DetectTrainResult(session.dir, None, {}, det, report)
        det.pretrained.model.eval().cpu()
        model_dir = det.save(
            session.dir / "model",
            metrics=metrics,
            training={
                "run": str(session.dir),
                "config": cfg.to_dict(),
                "transfer": report.to_dict() if report else None,
            },
        )
        if val_ds is not None and has_val:
            assert session.run is not None  # rank 0 (the others returned above) owns the run
            first = val_ds.images[0]
            shown = det([first.path], score_threshold=0.3)[0]
            session.run.log_image("val/predictions", shown.draw(first.path), step=trainer.global_step)
            if module.best_table is not None:
                write_text(session.dir / "per_class_ap.txt", module.best_table + "\n")
        # the wall time is in run.json already; the summary holds what a reproduction must match
        session.finish({k: v for k, v in metrics.items() if k != "train_seconds"}, artifact=model_dir)
    return DetectTrainResult(session.dir, model_dir, metrics, det, report)


def reproduce_runner(config: dict, *, root: Path, name: str) -> Path:
    """``visiontune runs reproduce`` for runs of kind ``detect-train``: the same config, a new run."""
    return train_detector(dict(config), run_root=root, run_name=name, progress=False).run_dir


def data_version(config: dict) -> str:
    """The training data version a detect-train config resolves to now (``runs reproduce``)."""
    return load_train_val(parse_config(dict(config)))[0].version
