"""The predictions table and what is ranked from it: confident mistakes, top losses, most
confused class pairs, per-class metrics and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` (NaN-safe maximum subtraction)."""
    z = logits - np.nanmax(logits, axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predictions_table(
    paths: Sequence[str],
    labels: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    *,
    topk: int = 5,
    split: str | None = None,
    sha256: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per image: path, true label, prediction, confidence, loss, top-k.

    `probs` is (N, C) in the order of `classes`. Rows of images that could not be decoded
    (NaN probabilities) are dropped by the caller beforehand.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape
    k = max(1, min(topk, c))
    pred = probs.argmax(1)
    conf = probs[np.arange(n), pred]
    p_true = probs[np.arange(n), labels]
    loss = -np.log(np.clip(p_true, 1e-12, 1.0))
    order = np.argsort(-probs, axis=1)[:, :k]
    names = np.asarray(classes, dtype=object)
    topk_labels = [list(names[o]) for o in order]
    topk_probs = [[float(probs[i, j]) for j in o] for i, o in enumerate(order)]
    df = pd.DataFrame(
        {
            "path": list(paths),
            "label": names[labels] if n else [],
            "label_idx": labels,
            "pred": names[pred] if n else [],
            "pred_idx": pred,
            "confidence": conf.astype(float),
            "p_label": p_true.astype(float),
            "loss": loss.astype(float),
            "correct": pred == labels,
            # confidence in the wrong answer above the confidence in the given label (0 if right)
            "mistake_score": np.where(pred != labels, conf - p_true, 0.0).astype(float),
            "topk_labels": topk_labels,
            "topk_probs": topk_probs,
        }
    )
    if split is not None:
        df.insert(1, "split", split)
    if sha256 is not None:
        df["sha256"] = list(sha256)
    return df


def topk_string(labels: list[str], probs: list[float]) -> str:
    """``label:prob|label:prob…`` for the CSV's top-k column."""
    return "|".join(f"{lab}:{p:.4f}" for lab, p in zip(labels, probs))


def confident_mistakes(table: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """Wrong predictions, most confident first (ties broken by the loss)."""
    m = table[~table["correct"]].sort_values(["confidence", "loss"], ascending=False, kind="stable")
    return m if n is None else m.head(n)


def top_losses(table: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """The table sorted by loss, highest first (the first ``n`` rows when given)."""
    t = table.sort_values("loss", ascending=False, kind="stable")
    return t if n is None else t.head(n)


def confusion(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``n_classes`` × ``n_classes`` confusion counts (rows: label, columns: prediction)."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def confused_pairs(cm: np.ndarray, classes: list[str], n: int | None = None) -> pd.DataFrame:
    """Off-diagonal cells, most frequent first: images of `label` predicted as `pred`."""
    rows = []
    support = cm.sum(1)
    for i, j in zip(*np.nonzero(cm)):
        if i != j:
            rows.append(
                {
                    "label": classes[i],
                    "pred": classes[j],
                    "count": int(cm[i, j]),
                    "fraction_of_label": float(cm[i, j] / support[i]) if support[i] else 0.0,
                    # both directions together: how often the two classes are mixed up
                    "pair_total": int(cm[i, j] + cm[j, i]),
                }
            )
    df = pd.DataFrame(rows, columns=["label", "pred", "count", "fraction_of_label", "pair_total"])
    df = df.sort_values(["count", "pair_total"], ascending=False, kind="stable").reset_index(drop=True)
    return df if n is None else df.head(n)


def per_class_metrics(cm: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Precision, recall (= the class's accuracy), F1, support and count predicted, per class."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    return pd.DataFrame(
        {
            "class": classes,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support.astype(np.int64),
            "predicted": predicted.astype(np.int64),
            "errors": (support - tp).astype(np.int64),
        }
    )


def plot_confusion_matrix(
    cm: np.ndarray, classes: list[str], path: str | Path, title: str = "", cells: str = "counts", unit: str = ""
) -> Path:
    """Row-normalised confusion matrix (``cm``: counts) as PNG (written atomically); each cell
    shows its count, or with ``cells="percent"`` its share of the row (pixel counts are too long
    to print); ``unit`` names what is counted in the title (e.g. "pixels")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from visiontune._atomic import atomic_path

    k = len(classes)
    size = min(max(4.0, 0.45 * k + 2.5), 40.0)
    fig = Figure(figsize=(size + 1.2, size), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    support = cm.sum(1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros(cm.shape, float), where=support > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if k <= 60:
        labels = [c if len(c) <= 24 else c[:23] + "…" for c in classes]
        long = max(len(c) for c in labels) > 8
        ax.set_xticks(
            range(k),
            labels,
            rotation=90 if k > 6 else (30 if long else 0),
            ha="right" if long and k <= 6 else "center",
            fontsize=8 if k > 20 else 10,
        )
        ax.set_yticks(range(k), labels, fontsize=8 if k > 20 else 10)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j] and (cells == "counts" or norm[i, j] >= 0.005):
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]) if cells == "counts" else f"{100 * norm[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=9 if k <= 12 else 6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(
        (title + "  " if title else "")
        + f"accuracy {acc:.3f} (n={int(cm.sum())}{' ' + unit if unit else ''})"
        + ("\ncells: % of the true class" if cells == "percent" else "")
    )
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path
