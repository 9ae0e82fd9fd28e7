"""Evaluation of a classifier: top-1 / top-5, per-class precision and recall, calibration error,
confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from visiontune._atomic import save_figure


@torch.no_grad()
def predict_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated (logits, labels) of ``forward`` over ``(x, y)`` batches."""
    outs, ys = [], []
    for x, y in batches:
        outs.append(forward(x.to(device)).float().cpu())
        ys.append(torch.as_tensor(y, dtype=torch.long))
    if not outs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(ys)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by count."""
    if not len(labels):
        return 0.0
    conf, pred = probs.max(-1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += float(sel.float().mean()) * abs(float(correct[sel].mean()) - float(conf[sel].mean()))
    return ece


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, class_names: list[str], prefix: str = "val"
) -> tuple[dict, np.ndarray]:
    """Top-1 (top-5 when there are more than 5 classes), balanced accuracy, per-class accuracy /
    precision / recall, expected calibration error, and the confusion matrix (rows: true class,
    columns: predicted)."""
    n = len(class_names)
    pred = logits.argmax(-1)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels.numpy(), pred.numpy()), 1)
    support, predicted = cm.sum(1), cm.sum(0)
    recall = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)}
    precision = {name: (float(cm[i, i] / predicted[i]) if predicted[i] else None) for i, name in enumerate(class_names)}
    present = [v for v in recall.values() if v is not None]
    metrics: dict = {f"{prefix}/acc": float((pred == labels).float().mean().item()) if len(labels) else 0.0}
    if logits.shape[-1] > 5:  # top-5 of 5 classes or fewer is always 1
        top5 = (logits.topk(5, -1).indices == labels[:, None]).any(-1).float().mean().item() if len(labels) else 0.0
        metrics[f"{prefix}/top5"] = float(top5)
    metrics.update(
        {
            f"{prefix}/balanced_acc": float(np.mean(present)) if present else 0.0,
            f"{prefix}/ece": expected_calibration_error(logits.float().softmax(-1), labels),
            f"{prefix}/n": int(len(labels)),
            f"{prefix}/per_class_acc": recall,
            f"{prefix}/per_class_precision": precision,
            f"{prefix}/per_class_recall": recall,
        }
    )
    return metrics, cm


def plot_confusion_matrix(
    cm: np.ndarray, class_names: list[str], path: str | os.PathLike, title: str = "Confusion matrix"
) -> Path:
    """Row-normalised confusion matrix PNG with counts (atomic write)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(class_names)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(2.0 + 0.45 * n, 24.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if n <= 40:
        ax.set_xticks(range(n), class_names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(range(n), class_names)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        color="white" if norm[i, j] > 0.5 else "black",
                        fontsize=9,
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} (accuracy {acc:.3f}, n={int(cm.sum())})")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
