"""Seams between the audit and the packages it builds on (hub for models, data for datasets).

The audit works on plain arrays; this module turns what the user passes (a run directory, a
saved model directory, a `Pretrained`, a data folder / CSV / manifest, a `Splits` object) into
the few things the audit needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visiontune.errors import ConfigError, DatasetError, VisiontuneError
from visiontune.hub import load

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class SplitData:
    """One split as the audit sees it: file paths and integer labels into `classes`."""

    name: str
    paths: list[str]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class AuditData:
    """All splits of a dataset, the class names and the data version they came from."""

    splits: dict[str, SplitData]
    classes: list[str]
    version: str | None = None
    source: str | None = None

    def get(self, split: str) -> SplitData:
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DatasetError(f"the data has no '{split}' split (it has: {have}); pass --split with one of those")
        return self.splits[split]


@dataclass
class ModelSource:
    """The model to audit and where its outputs go."""

    pretrained: Any  # vt.Pretrained or any object with .model, .preprocess and .card
    run_dir: Path | None = None
    model_dir: Path | None = None
    run_info: dict = field(default_factory=dict)

    @property
    def class_names(self) -> list[str] | None:
        card = getattr(self.pretrained, "card", None)
        names = getattr(card, "class_names", None)
        return list(names) if names else None

    @property
    def model_id(self) -> str | None:
        card = getattr(self.pretrained, "card", None)
        return getattr(card, "model_id", None)

    @property
    def weights_sha256(self) -> str | None:
        card = getattr(self.pretrained, "card", None)
        return getattr(card, "weights_sha256", None)


def resolve_model(model_or_run: Any) -> ModelSource:
    """A run dir (has `model/`), a saved model dir, a model id, or a loaded `Pretrained`."""
    if not isinstance(model_or_run, (str, Path)):
        if not hasattr(model_or_run, "model") or not hasattr(model_or_run, "preprocess"):
            raise ConfigError(
                f"cannot audit a {type(model_or_run).__name__}: pass a run directory, a saved "
                "model directory, a model id or a visiontune.Pretrained"
            )
        return ModelSource(pretrained=model_or_run)

    text = str(model_or_run)
    path = Path(text)
    if path.is_dir():
        run_dir = None
        model_dir = path
        if (path / "model").is_dir() and not (path / "visiontune.json").exists():
            run_dir, model_dir = path, path / "model"
        elif not (path / "visiontune.json").exists():
            raise ConfigError(
                f"{path} is neither a run directory (with model/) nor a saved model directory "
                "(with visiontune.json); pass the run directory written by `visiontune train`"
            )
        run_info: dict = {}
        if run_dir is not None and (run_dir / "run.json").is_file():
            try:
                run_info = json.loads((run_dir / "run.json").read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise DatasetError(f"{run_dir / 'run.json'} is not valid JSON ({e})") from e
        return ModelSource(load(str(model_dir)), run_dir=run_dir, model_dir=model_dir, run_info=run_info)
    return ModelSource(pretrained=load(text))


def _split_from_dataset(name: str, ds: Any, classes: list[str]) -> SplitData:
    paths = [str(p) for p in ds.paths]
    labels = np.asarray(ds.labels, dtype=np.int64)
    if len(paths) != len(labels):
        raise DatasetError(f"split '{name}' has {len(paths)} paths but {len(labels)} labels")
    return SplitData(name=name, paths=paths, labels=labels, classes=classes)


def resolve_data(data: Any, *, val_fraction: float = 0.2, seed: int = 0, root: str | None = None) -> AuditData:
    """A data source understood by `visiontune.data.load_classification`, or its result."""
    if isinstance(data, AuditData):
        return data
    source = None
    if isinstance(data, (str, Path)):
        source = str(data)
        from visiontune.data import load_classification

        data = load_classification(source, root=root, val_fraction=val_fraction, seed=seed)
    classes = list(getattr(data, "classes", None) or [])
    if not classes:
        raise DatasetError(f"the data source {source or data!r} has no class names")
    splits = {}
    for name in SPLIT_NAMES:
        ds = getattr(data, name, None)
        if ds is not None and len(ds.paths):
            splits[name] = _split_from_dataset(name, ds, classes)
    try:
        version = getattr(data, "version", None)
    except VisiontuneError:  # no content manifest for this source (e.g. a torchvision dataset)
        version = None
    return AuditData(splits=splits, classes=classes, version=version, source=source or getattr(data, "source", None))


def class_index_map(model_classes: list[str] | None, n_outputs: int, data_classes: list[str]) -> np.ndarray:
    """Column order: `logits[:, perm]` puts the model's outputs in the data's class order."""
    if model_classes is None:
        if n_outputs != len(data_classes):
            raise ConfigError(
                f"the model has {n_outputs} outputs and no class names, the data has "
                f"{len(data_classes)} classes; audit a model trained on this data"
            )
        return np.arange(n_outputs)
    if len(model_classes) != n_outputs:
        raise ConfigError(f"the model card names {len(model_classes)} classes but the model has {n_outputs} outputs")
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5])
        raise ConfigError(
            f"the data has classes the model does not predict ({shown}"
            f"{', ...' if len(missing) > 5 else ''}); the model knows {len(model_classes)} classes. "
            "Audit a model trained on this data (visiontune train)"
        )
    if len(model_classes) != len(data_classes):
        raise ConfigError(
            f"the model predicts {len(model_classes)} classes, the data has {len(data_classes)}; "
            "audit a model trained on exactly these classes"
        )
    pos = {c: i for i, c in enumerate(model_classes)}
    return np.array([pos[c] for c in data_classes], dtype=np.int64)
