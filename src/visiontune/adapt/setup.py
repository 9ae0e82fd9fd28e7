"""What a classification run is built from — the model with a new head, the data splits, the
layer groups — shared by ``train``, ``lr_find`` and ``recommend``."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from rich.console import Console
from rich.table import Table
from torch import nn

from visiontune.adapt.config import TrainConfig
from visiontune.adapt.distill import input_adapter
from visiontune.adapt.groups import LayerGroups
from visiontune.adapt.strategies import param_counts
from visiontune.data import load_classification
from visiontune.data.multilabel import load_multilabel
from visiontune.errors import ConfigError
from visiontune.hub import Pretrained, load
from visiontune.hub.heads import find_head


def head_path(p: Pretrained) -> str:
    """Path of the whole classification head: the module the hub put in place (a dropout / MLP
    head included), else the hub's ``find_head`` answer."""
    path = (getattr(p.card, "head", None) or {}).get("path")
    if path:
        try:
            get_module(p.model, path)
            return path
        except (AttributeError, IndexError):
            pass
    return find_head(p.model)[0]


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path (``classifier.1``; integer parts index sequences)."""
    m = model
    for part in path.split("."):
        # an integer part indexes a Sequential / ModuleList (nn.Module itself has no __getitem__)
        m = cast(nn.Sequential, m)[int(part)] if part.lstrip("-").isdigit() else getattr(m, part)
    return m


def with_image_size(preprocess: Any, size: int, crop_pct: float | None = None) -> Any:
    """The same preprocessing at another input size (resize keeps the crop ratio)."""
    if isinstance(preprocess.resize, tuple):
        return dataclasses.replace(preprocess, resize=(size, size), crop=None)
    old_crop = preprocess.crop[0] if preprocess.crop else None
    ratio = crop_pct or (old_crop / preprocess.resize if old_crop and preprocess.resize else 0.875)
    return dataclasses.replace(preprocess, resize=int(round(size / ratio)), crop=(size, size))


def load_pretrained(cfg: TrainConfig, classes: list[str], trust_pickle: bool = False) -> Pretrained:
    """The model through the hub, with a new head for ``classes``."""
    head = {"dropout": cfg.head_dropout, "hidden": cfg.head_hidden} if (cfg.head_dropout or cfg.head_hidden) else None
    p = load(
        cfg.model,
        num_classes=len(classes),
        class_names=list(classes),
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        head=head,
        trust_pickle=trust_pickle,
    )
    if p.task != "classification":
        raise ConfigError(
            f"key 'model': {cfg.model} is a {p.task} model; train classifiers here (detectors: visiontune.detect)"
        )
    if cfg.image_size:
        p.preprocess = with_image_size(p.preprocess, cfg.image_size, p.card.crop_pct)
    return p


def load_splits(cfg: TrainConfig, progress: bool = False) -> Any:
    """The train / val (/ test) splits the config names, checked to be non-empty. With
    ``cfg.validate_images`` every image is decoded once now and the undecodable ones are dropped
    (listed by :func:`skipped_files`), so counts and metrics describe the images actually used."""
    load_fn = load_multilabel if getattr(cfg, "task", "multiclass") == "multilabel" else load_classification
    splits = load_fn(cfg.data, root=cfg.data_root, val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    if cfg.validate_images:
        splits = splits.validate(num_workers=max(1, cfg.num_workers) * 2, progress=progress)
    if splits.train is None or len(splits.train) == 0:
        raise ConfigError(f"key 'data': {cfg.data} has no training images")
    if splits.val is None or len(splits.val) == 0:
        raise ConfigError(
            f"key 'data': {cfg.data} has no validation images; add a val/ folder or a split column, or raise val_fraction"
        )
    return splits


def skipped_files(splits: Any) -> list[dict[str, str]]:
    """``[{"split", "path", "reason"}]`` of every file found undecodable in ``splits``."""
    out: list[dict[str, str]] = []
    for name, ds in splits.items():
        out += [{"split": name, "path": str(p), "reason": r} for p, r in ds.skipped]
    return out


def load_teacher(cfg: TrainConfig, student: Pretrained, classes: list[str], trust_pickle: bool = False) -> tuple:
    """(frozen teacher model, input adapter from the student's preprocessing to the teacher's)."""
    assert cfg.teacher is not None  # called only for a config that names a teacher
    t = load(cfg.teacher, weights=cfg.teacher_weights, trust_pickle=trust_pickle)
    n = t.card.num_classes
    if n is not None and n != len(classes):
        raise ConfigError(
            f"key 'teacher': {cfg.teacher} predicts {n} classes, the data has {len(classes)}; "
            "distil from a teacher fine-tuned on the same classes (e.g. a saved run's model/)"
        )
    if t.card.class_names and list(t.card.class_names) != list(classes):
        raise ConfigError(
            f"key 'teacher': its classes {t.card.class_names[:5]}... differ in order or names "
            f"from the data's {classes[:5]}..."
        )
    return t.model.eval(), input_adapter(student.preprocess, t.preprocess)


def describe_groups(model: nn.Module, groups: LayerGroups, console: Console | None = None) -> tuple[int, int]:
    """Print trainable vs total parameters (per group and overall); return (trainable, total)."""
    console = console or Console()
    table = Table(title=f"layer groups ({groups.source})", show_lines=False)
    for c in ("group", "trainable", "total"):
        table.add_column(c, justify="right" if c != "group" else "left")
    for name, tr, tot in groups.summary(model):
        table.add_row(name, f"{tr:,}", f"{tot:,}")
    tr, tot = param_counts(model)
    table.add_row("[bold]all", f"[bold]{tr:,}", f"[bold]{tot:,}")
    console.print(table)
    console.print(f"trainable parameters: {tr:,} of {tot:,} ({100.0 * tr / max(tot, 1):.2f}%)")
    return tr, tot
