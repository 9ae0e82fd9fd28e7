"""Which strategy to use: from the amount of data and a *measured* domain-similarity signal.

The signal: how separable the classes already are under the pretrained model's frozen features —
the cross-validated accuracy of a logistic regression on those features (a sample of at most
``per_class`` images per class), rescaled so that chance is 0 and perfect is 1. Similar domains
give separable features; a distant domain (X-rays, satellite tiles, spectrograms) does not.

Decision grid (images per class × separability):

==============  ==================  =================  ==================
                high (≥ 0.80)       medium             low (< 0.50)
==============  ==================  =================  ==================
small (< 100)   linear              partial (1 stage)  gradual
medium          partial (2 stages)  gradual            full
large (≥ 1000)  gradual             full               full
==============  ==================  =================  ==================

Imbalance: when the largest class has at least 3x the training images of the smallest, the
recommendation adds ``class_weights: auto`` and says to judge by balanced accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from visiontune.adapt.config import TrainConfig
from visiontune.adapt.features import extract
from visiontune.adapt.setup import head_path, load_pretrained, load_splits
from visiontune.engine import device_for
from visiontune.errors import DatasetError

SMALL, LARGE = 100, 1000
IMBALANCED = 3.0  # largest / smallest class count from which recommend suggests re-weighting
HIGH, LOW = 0.80, 0.50

GRID = {
    ("small", "high"): ("linear", {}),
    ("small", "medium"): ("partial", {"n_stages": 1}),
    ("small", "low"): ("gradual", {}),
    ("medium", "high"): ("partial", {"n_stages": 2}),
    ("medium", "medium"): ("gradual", {}),
    ("medium", "low"): ("full", {}),
    ("large", "high"): ("gradual", {}),
    ("large", "medium"): ("full", {}),
    ("large", "low"): ("full", {}),
}


@dataclass
class Recommendation:
    """A suggested strategy with its options and the reasons behind it."""

    strategy: str
    options: dict[str, Any]
    reasons: list[str]
    measurements: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The recommendation as JSON-ready values."""
        return {
            "strategy": self.strategy,
            "options": self.options,
            "reasons": self.reasons,
            "measurements": self.measurements,
        }


def size_band(per_class: float) -> str:
    """``small`` / ``medium`` / ``large`` for the number of images per class."""
    return "small" if per_class < SMALL else "large" if per_class >= LARGE else "medium"


def similarity_band(separability: float) -> str:
    """``low`` / ``medium`` / ``high`` for how separable the classes are in the pretrained features."""
    return "high" if separability >= HIGH else "low" if separability < LOW else "medium"


def separability(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[float, float, int]:
    """(cross-validated accuracy, rescaled separability in [0, 1], folds) of a logistic regression
    on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes, counts = np.unique(labels, return_counts=True)
    folds = int(min(5, counts.min()))
    if len(classes) < 2 or folds < 2:
        raise DatasetError("need at least 2 classes with 2 images each to measure separability")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    acc = float(np.mean(cross_val_score(clf, features, labels, cv=cv)))
    chance = float(counts.max() / counts.sum())
    return acc, float(np.clip((acc - chance) / max(1e-9, 1 - chance), 0.0, 1.0)), folds


def decide(per_class: float, sep: float) -> tuple[str, dict, str, str]:
    """(strategy, its options, size band, similarity band) for ``per_class`` images and separability ``sep``."""
    s, d = size_band(per_class), similarity_band(sep)
    strategy, opts = GRID[(s, d)]
    return strategy, dict(opts), s, d


def recommend(
    data: str,
    model: str,
    *,
    weights: str | None = None,
    pretrained: bool = True,
    data_root: str | None = None,
    per_class: int = 20,
    batch_size: int = 32,
    seed: int = 0,
    num_workers: int = 0,
    console=None,
    trust_pickle: bool = False,
) -> Recommendation:
    """Measure the data and the model's frozen features and suggest a strategy, with reasons.
    ``pretrained=False`` measures randomly initialised features (a baseline to compare with)."""
    cfg = TrainConfig(model=model, weights=weights, pretrained=pretrained, data=data, data_root=data_root, seed=seed)
    splits = load_splits(cfg)
    counts = np.bincount(splits.train.labels, minlength=len(splits.classes))
    n_classes = len(splits.classes)
    median = float(np.median(counts))
    # a stratified sample for the separability probe
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [rng.permutation(np.flatnonzero(splits.train.labels == c))[:per_class] for c in range(n_classes)]
    )
    p = load_pretrained(cfg, list(splits.classes), trust_pickle)
    device = device_for("auto")
    p.model.to(device)
    sample = splits.train.subset(np.sort(idx)).with_transform(p.preprocess)
    torch.manual_seed(seed)
    x, y = extract(p.model, head_path(p), sample, batch_size=batch_size, num_workers=num_workers, device=device)
    feats = x.flatten(1).numpy() if x.ndim > 2 else x.numpy()
    acc, sep, folds = separability(feats, y.numpy(), seed)
    strategy, opts, s_band, d_band = decide(median, sep)
    reasons = [
        f"data: {int(counts.sum())} training images in {n_classes} classes, median {median:.0f} per class "
        f"(min {int(counts.min())}, max {int(counts.max())}) -> {s_band} data set "
        f"(small < {SMALL} per class <= medium < {LARGE} <= large)",
        f"domain similarity: a logistic regression on {model}'s frozen features of {len(y)} images "
        f"reaches {acc:.3f} accuracy ({folds}-fold CV; chance {counts.max() / counts.sum():.3f}) -> "
        f"separability {sep:.2f} -> {d_band} similarity (high >= {HIGH}, low < {LOW})",
    ]
    why = {
        "linear": "few images and features that already separate the classes: train only the head "
        "(feature extraction); fine-tuning the backbone would mostly overfit",
        "partial": "the features are close: adapt only the last stage(s), where features are most "
        "task-specific, and keep the generic early layers",
        "gradual": "the head first, then unfreeze stage by stage so the pretrained features are not "
        "wrecked by large early gradients",
        "full": "enough data and/or a distant domain: fine-tune every layer (with discriminative "
        "learning rates, smaller toward the input)",
    }[strategy]
    reasons.append(f"{s_band} data + {d_band} similarity -> {strategy}: {why}")
    ratio = float(counts.max() / max(counts.min(), 1))
    if ratio >= IMBALANCED:
        opts["class_weights"] = "auto"
        reasons.append(
            f"imbalance: the largest class has {ratio:.1f}x the images of the smallest ({int(counts.max())} vs "
            f"{int(counts.min())}; imbalanced from {IMBALANCED:.0f}x) -> class_weights: auto (or sampler: balanced, "
            "or logit_adjustment: 1.0); judge runs by balanced accuracy and per-class recall, not top-1"
        )
    measurements = {
        "images": int(counts.sum()),
        "classes": n_classes,
        "median_per_class": median,
        "min_per_class": int(counts.min()),
        "probe_images": int(len(y)),
        "probe_accuracy": acc,
        "separability": sep,
        "size_band": s_band,
        "similarity_band": d_band,
        "imbalance_ratio": float(counts.max() / max(counts.min(), 1)),
    }
    return Recommendation(strategy, opts, reasons, measurements)
