"""Fine-tuning semantic segmenters on mask folders / COCO / YOLO-seg data, on the engine: one run
session (a `visiontune.track` record with data version and weights sha256, exact resume), the
engine's Trainer (precision, DDP, accumulation, early stopping, best + last checkpoints), and the
one saved-model format (``model.safetensors`` + ``visiontune.json``, reloaded by ``vt.load``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from rich.console import Console

from visiontune._atomic import write_text
from visiontune.adapt.strategies import default_milestones, param_counts
from visiontune.engine import Session, fit_best, global_rank, make_trainer, seeded_loader
from visiontune.errors import ConfigError
from visiontune.hub import Pretrained, load
from visiontune.segment.compose import composed_segmenter
from visiontune.segment.config import SegmentTrainConfig, parse_config
from visiontune.segment.data import SegmentationDataset
from visiontune.segment.formats import load_segmentation
from visiontune.segment.module import SegmentationModule, segmenter_groups
from visiontune.segment.transforms import SegTorchDataset, joint_transform

HP_KEYS = (
    "strategy", "n_stages", "lr", "encoder_lr_scale", "lr_decay", "weight_decay", "optimizer",
    "warmup_steps", "schedule", "loss", "dice_weight", "seed",
)  # fmt: skip


@dataclass
class SegmentTrainResult:
    """What a segmenter training hands off: the run folder, the saved model, the metrics."""

    run_dir: Path
    model_dir: Path | None
    metrics: dict
    pretrained: Pretrained

    @property
    def dir(self) -> Path:
        """The run folder."""
        return self.run_dir

    def to_dict(self) -> dict:
        """Folders and metrics as JSON-ready values."""
        return {
            "dir": str(self.run_dir),
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "metrics": self.metrics,
        }

    def summary(self) -> str:
        """One line: the run folder and its validation mIoU / pixel accuracy."""
        m = self.metrics
        parts = [f"{k} {m[k]:.4f}" for k in ("val/mIoU", "val/pixel_accuracy") if isinstance(m.get(k), float)]
        return f"{self.run_dir}: " + (", ".join(parts) or "no validation set")


def load_train_val(cfg: SegmentTrainConfig) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The training and validation datasets a config names (a val split carved out if none)."""
    kw: dict[str, Any] = {"classes": cfg.classes, "ignore_index": cfg.ignore_index}
    train = load_segmentation(cfg.data, cfg.train_split, **kw)
    val = None
    if cfg.val_data:
        val = load_segmentation(cfg.val_data, cfg.val_split, **kw)
    elif cfg.val_split:
        try:
            val = load_segmentation(cfg.data, cfg.val_split, **kw)
        except Exception:  # noqa: BLE001 - no such split: carve one out below
            val = None
    if val is None and cfg.val_fraction > 0:
        train, val = train.split(cfg.val_fraction, seed=cfg.seed)
    if val is not None and val.classes != train.classes:
        raise ConfigError(f"train and val data have different classes: {train.classes[:5]}… vs {val.classes[:5]}…")
    return train, val


def build_model(
    cfg: SegmentTrainConfig, classes: list[str], ignore_index: int | None, trust_pickle: bool
) -> Pretrained:
    """The segmenter to train: a composed config (its classes and ignore index set from the data)
    or a saved segmenter with the same classes."""
    if cfg.segmenter is not None or (cfg.model or "").endswith((".yaml", ".yml")):
        from visiontune.segment.compose import parse_config as parse_segmenter

        sc = parse_segmenter(cfg.segmenter if cfg.segmenter is not None else cfg.model)
        upd: dict[str, Any] = {"classes": classes, "num_classes": None, "ignore_index": ignore_index}
        if cfg.image_size is not None:
            upd["image"] = sc.image.model_copy(update={"size": tuple(cfg.image_size)})
        return composed_segmenter(sc.model_copy(update=upd), trust_pickle=trust_pickle)
    if not cfg.model:
        raise ConfigError("segment-train needs model= (a composed-segmenter YAML or saved segmenter) or segmenter:")
    p = load(cfg.model, trust_pickle=trust_pickle)
    if p.task != "segmentation" or p.card.recipe is None:
        raise ConfigError(
            f"{cfg.model}: segment-train fine-tunes composed segmenters (a YAML or a saved one); this is a {p.task} model"
        )
    if list(p.class_names) != list(classes):
        raise ConfigError(
            f"{cfg.model} predicts {len(p.class_names)} classes, the data has {len(classes)}: compose a new one"
        )
    return p


def class_weight_tensor(cfg: SegmentTrainConfig, counts: dict[str, int]) -> torch.Tensor | None:
    """Cross-entropy class weights: given, or ``inverse_sqrt`` of the pixel frequencies (mean 1)."""
    if cfg.class_weights == "none":
        return None
    if isinstance(cfg.class_weights, list):
        if len(cfg.class_weights) != len(counts):
            raise ConfigError(f"class_weights has {len(cfg.class_weights)} values for {len(counts)} classes")
        return torch.tensor(cfg.class_weights, dtype=torch.float32)
    c = torch.tensor(list(counts.values()), dtype=torch.float64).clamp(min=1)
    w = (c.sum() / c).sqrt()
    return (w / w.mean()).float()


def _collate(batch: list) -> tuple[torch.Tensor, Any]:
    xs, ys = zip(*batch)
    same = all(y.shape == ys[0].shape for y in ys)
    return torch.stack(xs), (torch.stack(ys) if same else list(ys))


def train_segmenter(
    cfg: SegmentTrainConfig | dict | str,
    run_root: str | os.PathLike = "runs",
    run_name: str | None = None,
    progress: bool = True,
    resume: str | Path | bool | None = None,
    callbacks: tuple = (),
    *,
    trust_pickle: bool = False,
    console: Any = None,
) -> SegmentTrainResult:
    """Fine-tune a semantic segmenter; writes ``<run_root>/<name>/`` (run record, metrics,
    ``checkpoints/best.ckpt`` + ``last.ckpt``, ``model/``, ``per_class_iou.json``). ``resume``: a
    run directory, its ``last.ckpt``, or True (the run called ``run_name``); an interrupted run
    continues as ``<old>-resumed`` from its last completed epoch (order and augmentation are
    functions of (seed, epoch, index), so the result equals an uninterrupted run's on CPU)."""
    cfg = parse_config(cfg)
    run_name = run_name or cfg.name
    is_zero = global_rank() == 0
    console = console or Console(quiet=not is_zero)
    resume_from = Session.prepare(resume, run_root, run_name)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    train_ds, val_ds = load_train_val(cfg)
    stats = train_ds.validate(progress=progress and is_zero)
    if val_ds is not None:
        val_ds.validate()
    classes, ignore = list(train_ds.classes), train_ds.ignore_index
    p = build_model(cfg, classes, ignore, trust_pickle)
    resize = cfg.image_size or p.preprocess.resize
    assert isinstance(resize, tuple), "composed segmenters resize to an (H, W) pair"
    size = tuple(resize)
    mean, std = p.preprocess.mean, p.preprocess.std
    fill = ignore if ignore is not None else 255
    train_tf = joint_transform(size, mean, std, train=True, augment=cfg.augment, ignore_index=fill)
    val_tf = joint_transform(size, mean, std, train=False, augment="none", ignore_index=fill)
    loader = seeded_loader(
        SegTorchDataset(train_ds, train_tf), cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers
    )
    has_val = val_ds is not None and len(val_ds) > 0
    val_loader = None
    if val_ds is not None and has_val:  # images at the training size, masks at their own: mIoU at label resolution
        val_loader = seeded_loader(
            SegTorchDataset(val_ds, _ImageOnly(val_tf)), cfg.batch_size, shuffle=False, seed=cfg.seed,
            num_workers=cfg.num_workers, train=False, seeded=False, collate_fn=_collate,
        )  # fmt: skip
    n_batches = len(loader)
    if cfg.max_train_batches is not None:
        mtb = cfg.max_train_batches
        n_batches = min(n_batches, int(mtb)) if mtb >= 1 else max(1, int(n_batches * mtb))
    groups = segmenter_groups(p.model)
    milestones = cfg.milestones or default_milestones(cfg.epochs, groups.n_backbone)
    hp = {k: getattr(cfg, k) for k in HP_KEYS}
    weights = class_weight_tensor(cfg, stats["per_class"])
    module = SegmentationModule(
        p.model, groups, hp, classes, ignore, n_batches * cfg.epochs // cfg.accumulate, weights, milestones
    )
    trainable, total = param_counts(p.model)
    tags = {
        "task": "segmentation",
        "classes": classes,
        "ignore_index": ignore,
        "val_data_version": val_ds.version if val_ds is not None and has_val else None,
        "strategy": cfg.strategy,
        "params": {"trainable_at_start": trainable, "total": total},
        "encoder": p.card.extra.get("encoder"),
    }
    session = Session.open(
        run_root=run_root,
        run_name=run_name,
        resume_from=resume_from,
        config=cfg,
        kind="segment-train",
        model_id=p.card.model_id,
        weights_sha256=p.card.weights_sha256,
        data_version=train_ds.version,
        monitor="val/mIoU",
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
            monitor="val/mIoU" if has_val else None,
            mode="max",
            run=session.run,
            callbacks=callbacks,
            progress=progress and is_zero,
            console=console,
            table_columns=["train/loss", "val/mIoU", "val/pixel_accuracy"] if progress else None,
            table_extra=lambda m: {"training": f"{len(m.training_groups)}/{len(m.groups.names)} groups"},
            trust_pickle=trust_pickle,
        )
        metrics = fit_best(
            trainer,
            best_cb,
            module,
            loader,
            val_loader,
            session.ckpt_path,
            metric="val/mIoU",
            trust_pickle=trust_pickle,
        )
        if metrics is None:  # not rank 0
            return SegmentTrainResult(session.dir, None, {}, p)
        p.model.eval().cpu()
        if module.best is not None:
            metrics["val/iou"] = module.best["iou"]
            write_text(
                session.dir / "per_class_iou.json",
                json.dumps({**module.best, "history": module.history}, indent=1) + "\n",
            )
        p.card.extra.pop("random_weights", None)
        model_dir = p.save(
            session.dir / "model", metrics=metrics, training={"run": str(session.dir), "config": cfg.to_dict()}
        )
        session.finish({k: v for k, v in metrics.items() if k != "train_seconds"}, artifact=model_dir)
    return SegmentTrainResult(session.dir, model_dir, metrics, p)


class _ImageOnly:
    """Applies a joint transform to the image and passes the mask through at its own size."""

    def __init__(self, tf: Any):
        self.tf = tf

    def __call__(self, img: Any, mask: Any) -> tuple[torch.Tensor, Any]:
        return self.tf(img), mask


def reproduce_runner(config: dict, *, root: Path, name: str) -> Path:
    """``visiontune runs reproduce`` for runs of kind ``segment-train``: the same config, a new run."""
    return train_segmenter(dict(config), run_root=root, run_name=name, progress=False).run_dir


def data_version(config: dict) -> str:
    """The training data version a segment-train config resolves to now (``runs reproduce``)."""
    return load_train_val(parse_config(dict(config)))[0].version
