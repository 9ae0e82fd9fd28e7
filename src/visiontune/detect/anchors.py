"""Anchor suggestions from a dataset's boxes (k-means), with a fit score against the defaults.

Boxes are first scaled as the detector's transform will scale the image (shorter side to
``min_size``, longer side at most ``max_size``). Sizes (sqrt of area) are clustered in log space
into one size per pyramid level; aspect ratios (h / w, torchvision's convention) are clustered in
log space into ``num_ratios`` values. The fit is the mean over boxes of the best shape IoU with
any anchor (boxes and anchors centred on each other), and the share of boxes whose best IoU
reaches 0.5 — the quantity the RPN's matcher cares about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visiontune.errors import DatasetError

from .datasets import DetectionDataset, load_detection


@dataclass
class AnchorSuggestion:
    """Suggested anchor sizes and aspect ratios with how well they fit the boxes."""

    sizes: list[int]  # one per level, small to large
    aspect_ratios: list[float]  # h / w
    fit: dict  # {"mean_best_iou", "recall@0.5"} of the suggestion
    default_fit: dict | None  # the same for the default anchors (when given)
    num_boxes: int

    def to_dict(self) -> dict:
        """The suggestion and its fit as JSON-ready values."""
        return {
            "sizes": self.sizes,
            "aspect_ratios": self.aspect_ratios,
            "fit": self.fit,
            "default_fit": self.default_fit,
            "num_boxes": self.num_boxes,
        }

    def yaml(self) -> str:
        """The suggestion as an ``anchors:`` YAML block for a composed-detector config."""
        return f"anchors:\n  sizes: {self.sizes}\n  aspect_ratios: {self.aspect_ratios}\n"


def box_shapes(ds: DetectionDataset, min_size: int = 800, max_size: int = 1333) -> np.ndarray:
    """(N, 2) widths and heights of every box, at the scale the detector sees them."""
    out = []
    for r in ds.images:
        if not len(r.boxes):
            continue
        s = min(min_size / min(r.width, r.height), max_size / max(r.width, r.height))
        wh = np.stack([r.boxes[:, 2] - r.boxes[:, 0], r.boxes[:, 3] - r.boxes[:, 1]], 1) * s
        out.append(wh)
    if not out:
        raise DatasetError("the dataset has no boxes to fit anchors to")
    return np.concatenate(out)


def _kmeans_1d(x: np.ndarray, k: int, iters: int = 100) -> np.ndarray:
    """Deterministic 1-D k-means (quantile initialisation); returns sorted centres."""
    k = min(k, len(np.unique(x)))
    c = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        assign = np.abs(x[:, None] - c[None]).argmin(1)
        new = np.array([x[assign == j].mean() if np.any(assign == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return np.sort(c)


def anchor_fit(wh: np.ndarray, sizes, ratios) -> dict:
    """Mean best shape-IoU of boxes with the anchors, and recall at IoU 0.5."""
    anchors = []
    for s in np.ravel(sizes):
        for r in np.ravel(ratios):
            w = s / np.sqrt(r)
            anchors.append((w, w * r))
    a = np.array(anchors)
    inter = np.minimum(wh[:, None, 0], a[None, :, 0]) * np.minimum(wh[:, None, 1], a[None, :, 1])
    union = wh[:, 0:1] * wh[:, 1:2] + (a[:, 0] * a[:, 1])[None] - inter
    best = (inter / union).max(1)
    return {"mean_best_iou": round(float(best.mean()), 4), "recall@0.5": round(float((best >= 0.5).mean()), 4)}


def suggest_anchors(
    data,
    num_levels: int = 5,
    num_ratios: int = 3,
    min_size: int = 800,
    max_size: int = 1333,
    default_sizes=None,
    default_ratios=None,
    split: str | None = None,
) -> AnchorSuggestion:
    """k-means anchor sizes (one per level) and aspect ratios for ``data``."""
    ds = load_detection(data, split=split)
    wh = box_shapes(ds, min_size, max_size)
    wh = wh[(wh > 0).all(1)]
    log_size = np.log(np.sqrt(wh[:, 0] * wh[:, 1]))
    sizes = [int(round(v)) for v in np.exp(_kmeans_1d(log_size, num_levels))]
    # one size per level: spread duplicates (few distinct sizes) by octaves
    while len(sizes) < num_levels:
        sizes.append(sizes[-1] * 2)
    for i in range(1, len(sizes)):
        sizes[i] = max(sizes[i], sizes[i - 1] + 1)
    ratios = [round(float(v), 3) for v in np.exp(_kmeans_1d(np.log(wh[:, 1] / wh[:, 0]), num_ratios))]
    fit = anchor_fit(wh, sizes, ratios)
    dfit = anchor_fit(wh, default_sizes, default_ratios) if default_sizes is not None else None
    return AnchorSuggestion(sizes, ratios, fit, dfit, len(wh))
