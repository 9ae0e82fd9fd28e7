"""Evaluating a classifier on a labelled split: top-1 / top-5, per-class precision and recall,
calibration error and the confusion matrix — the same numbers ``train`` records."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from visiontune._atomic import write_text
from visiontune.adapt.multilabel import multilabel_metrics
from visiontune.adapt.report import classification_metrics, plot_confusion_matrix, predict_logits
from visiontune.data import SPLIT_NAMES, load_classification
from visiontune.data.multilabel import load_multilabel
from visiontune.errors import ConfigError
from visiontune.hub import Pretrained, load
from visiontune.hub.classification import MULTILABEL_TASK, logits_of, thresholds_of
from visiontune.hub.tta import tta_logits
from visiontune.progress import progress as progress_bar
from visiontune.track import RunRecord


@dataclass
class ClassifierEvaluation:
    """A classifier's metrics on one split (keys prefixed by the split, as ``train`` records them)."""

    metrics: dict[str, Any]
    confusion: np.ndarray
    classes: list[str]
    split: str
    data_version: str | None = None
    dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: metrics, classes, confusion matrix, where the files went."""
        return {
            "task": "classification",
            "split": self.split,
            "data_version": self.data_version,
            "metrics": self.metrics,
            "classes": self.classes,
            "confusion_matrix": self.confusion.tolist(),
            "dir": str(self.dir) if self.dir else None,
        }

    def per_class_table(self) -> Any:
        """A rich table: precision and recall per class."""
        from rich.table import Table

        t = Table(title=f"{self.split} per class")
        t.add_column("class", justify="left")
        t.add_column("precision", justify="right")
        t.add_column("recall", justify="right")
        prec, rec = self.metrics[f"{self.split}/per_class_precision"], self.metrics[f"{self.split}/per_class_recall"]
        for c in self.classes:
            t.add_row(c, "-" if prec[c] is None else f"{prec[c]:.4f}", "-" if rec[c] is None else f"{rec[c]:.4f}")
        return t

    def summary(self) -> str:
        """One line with the headline numbers."""
        s, m = self.split, self.metrics
        top5 = f", top-5 {m[f'{s}/top5']:.4f}" if f"{s}/top5" in m else ""
        return (
            f"{s}: top-1 {m[f'{s}/acc']:.4f}{top5}, balanced {m[f'{s}/balanced_acc']:.4f}, "
            f"ECE {m[f'{s}/ece']:.4f} (n={m[f'{s}/n']})"
        )


@dataclass
class MultiLabelEvaluation:
    """A multi-label classifier's metrics on one split (mAP, per-label AP, F1 at its thresholds)."""

    metrics: dict[str, Any]
    classes: list[str]
    split: str
    data_version: str | None = None
    dir: Path | None = None

    def to_dict(self) -> dict:
        """JSON-ready: metrics and labels."""
        return {
            "task": MULTILABEL_TASK,
            "split": self.split,
            "data_version": self.data_version,
            "metrics": self.metrics,
            "classes": self.classes,
            "dir": str(self.dir) if self.dir else None,
        }

    def per_class_table(self) -> Any:
        """A rich table: AP, F1, precision and recall per label."""
        from rich.table import Table

        s, m = self.split, self.metrics
        t = Table(title=f"{s} per label")
        for c in ("label", "AP", "F1", "precision", "recall"):
            t.add_column(c, justify="left" if c == "label" else "right")
        cols = [m[f"{s}/per_label_{k}"] for k in ("ap", "f1", "precision", "recall")]
        for c in self.classes:
            t.add_row(c, *("-" if col[c] is None else f"{col[c]:.4f}" for col in cols))
        return t

    def summary(self) -> str:
        """One line with the headline numbers."""
        s, m = self.split, self.metrics
        return (
            f"{s}: mAP {m[f'{s}/map']:.4f}, F1 macro {m[f'{s}/f1_macro']:.4f}, "
            f"micro {m[f'{s}/f1_micro']:.4f} (n={m[f'{s}/n']})"
        )


def _run_data_options(model: Any) -> tuple[Any, dict]:
    """For a run folder: its saved model and the data options of its config."""
    path = Path(str(model))
    if path.is_dir() and (path / "run.json").is_file() and (path / "model").is_dir():
        cfg = RunRecord.load(path).config
        opts = {"data": cfg.get("data"), "root": cfg.get("data_root"), "val_fraction": cfg.get("val_fraction", 0.2)}
        opts["seed"] = cfg.get("split_seed", 0)
        return path / "model", opts
    return model, {}


def evaluate_classifier(
    model: Any,
    data: Any = None,
    *,
    split: str = "val",
    out: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    data_root: str | None = None,
    val_fraction: float | None = None,
    seed: int | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
    console: Any = None,
    tta: str = "none",
) -> ClassifierEvaluation | MultiLabelEvaluation:
    """``model`` (a `Pretrained`, a model id, a saved model or a run folder) on ``split`` of
    ``data`` (any classification source; a run folder's own data when omitted). The dataset's
    classes are matched to the model's by name. With ``out``: ``metrics.json``,
    ``confusion_matrix.png`` and ``predictions.csv`` there. ``tta``: none | flip | crops (the
    views' probabilities averaged). A multi-label model is scored with mAP, per-label AP and F1
    at its saved thresholds on a multi-label source."""
    console = console or Console(quiet=not progress)
    model, run_opts = _run_data_options(model)
    data = data if data is not None else run_opts.get("data")
    if data is None:
        raise ConfigError("evaluate needs data= (an image folder, CSV, manifest or torchvision:NAME)")
    p = model if isinstance(model, Pretrained) else load(model, trust_pickle=trust_pickle)
    multi = p.task == MULTILABEL_TASK
    if p.task != "classification" and not multi:
        raise ConfigError(f"{p.card.model_id} is a {p.task} model; this evaluates classifiers")
    if split not in SPLIT_NAMES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_NAMES)}, got {split!r}")
    splits = (load_multilabel if multi else load_classification)(
        data,
        root=data_root if data_root is not None else run_opts.get("root"),
        val_fraction=val_fraction if val_fraction is not None else run_opts.get("val_fraction", 0.2),
        seed=seed if seed is not None else run_opts.get("seed", 0),
    )
    ds = splits[split]
    if ds is None or not len(ds):
        raise ConfigError(f"{data} has no {split!r} images")
    names = p.class_names
    unknown = [c for c in splits.classes if c not in names]
    if unknown:
        raise ConfigError(f"the data has classes the model does not predict: {unknown[:10]} (model: {names[:10]})")
    to_model = torch.tensor([names.index(c) for c in splits.classes])
    loader = DataLoader(ds.with_transform(p.preprocess), batch_size=batch_size, num_workers=num_workers)
    device = next(p.model.parameters()).device
    with progress_bar(f"evaluating ({split})", len(ds), enabled=progress, console=console):
        logits, labels = predict_logits(
            lambda x: tta_logits(lambda v: logits_of(p.model.eval()(v)), x, tta, multilabel=multi), loader, device
        )
    if multi:
        targets = torch.zeros(len(labels), len(names))
        targets[:, to_model] = labels.float()
        metrics = multilabel_metrics(logits, targets, names, prefix=split, thresholds=thresholds_of(p))
        metrics[f"{split}/tta"] = tta
        res = MultiLabelEvaluation(metrics, names, split, splits.version)
        if out is not None:
            res.dir = Path(out)
            write_text(res.dir / "metrics.json", json.dumps(res.to_dict(), indent=1, default=str))
        return res
    metrics, cm = classification_metrics(logits, to_model[labels], names, prefix=split)
    metrics[f"{split}/tta"] = tta
    result = ClassifierEvaluation(metrics, cm, names, split, splits.version)
    if out is not None:
        result.dir = Path(out)
        result.files = _write(result, logits, ds, list(splits.classes))
    return result


def _write(result: ClassifierEvaluation, logits: torch.Tensor, ds: Any, data_classes: list[str]) -> dict[str, Path]:
    assert result.dir is not None  # only written when evaluate() was given out=
    out = Path(result.dir)
    files = {"metrics": write_text(out / "metrics.json", json.dumps(result.to_dict(), indent=1, default=str))}
    files["confusion_matrix"] = plot_confusion_matrix(
        result.confusion, result.classes, out / "confusion_matrix.png", title=f"{result.split} confusion matrix"
    )
    probs = logits.softmax(-1)
    conf, pred = probs.max(-1)
    frame = pd.DataFrame(
        {
            "path": [str(x) for x in ds.paths],
            "label": [data_classes[y] for y in ds.labels.tolist()],
            "predicted": [result.classes[k] for k in pred.tolist()],
            "confidence": conf.numpy().round(6),
        }
    )
    files["predictions"] = write_text(out / "predictions.csv", frame.to_csv(index=False))
    return files
