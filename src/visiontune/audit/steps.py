"""The audit's steps, each a function returning a typed partial result.

features -> predictions -> rankings -> label issues -> duplicates -> map -> report; `audit()`
(:mod:`visiontune.audit.core`) runs them in order under a :class:`~visiontune.audit.cost.CostMeter`.
Embeddings are never loaded whole: steps read them from the feature store a chunk at a time.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visiontune._atomic import atomic_path
from visiontune.audit import ann
from visiontune.audit import duplicates as dup
from visiontune.audit import label_issues as li
from visiontune.audit import rankings as rk
from visiontune.audit._inputs import AuditData, ModelSource, SplitData, class_index_map
from visiontune.audit.features import ImageOutputs, compute_outputs
from visiontune.data.hashing import hash_files
from visiontune.errors import DatasetError


def outputs_for(
    src: ModelSource,
    data: AuditData,
    names: list[str],
    cache_dir: str | os.PathLike | None,
    batch_size: int,
    num_workers: int,
    quiet: bool,
) -> dict[str, ImageOutputs]:
    """Embeddings (in the store), hashes and logits of every image of the named splits."""
    out = {}
    for n in names:
        s = data.get(n)
        out[n] = compute_outputs(
            src.pretrained,
            s.paths,
            cache_dir=cache_dir,
            sha256=[h for h, _ in hash_files(s.paths)],
            batch_size=batch_size,
            num_workers=num_workers,
            show=not quiet,
            description=f"audit: features ({n})",
        )
    return out


def probs_for(src: ModelSource, o: ImageOutputs, classes: list[str]) -> np.ndarray:
    """Softmax of the readable images' logits, columns in the data's class order."""
    perm = class_index_map(src.class_names, o.logits.shape[1], classes)
    return rk.softmax(o.logits[o.ok][:, perm].astype(np.float64))


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` as CSV to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def csv_view(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of the predictions table with the top-k columns joined into one CSV-friendly string."""
    t = table.copy()
    t["topk"] = [rk.topk_string(a, b) for a, b in zip(t["topk_labels"], t["topk_probs"])]
    return t.drop(columns=["topk_labels", "topk_probs"])


@dataclass
class Predictions:
    """The predictions table of the audited split and the readable images it covers."""

    table: pd.DataFrame
    keep: np.ndarray  # indices of the readable images of the split
    labels: np.ndarray
    paths: list[str]


def predictions_step(
    src: ModelSource, o: ImageOutputs, target: SplitData, classes: list[str], split: str, topk: int
) -> Predictions:
    """Predictions, top-k and per-image loss of the readable images of ``split``."""
    keep = np.flatnonzero(o.ok)
    paths = [o.paths[i] for i in keep]
    labels = target.labels[keep]
    probs = probs_for(src, o, classes)
    table = rk.predictions_table(
        paths, labels, probs, classes, topk=topk, split=split, sha256=[o.sha256[i] for i in keep]
    )
    return Predictions(table, keep, labels, paths)


@dataclass
class Rankings:
    """Confusion matrix, confident mistakes, top losses and confused pairs."""

    confusion: np.ndarray
    mistakes: pd.DataFrame
    losses: pd.DataFrame
    pairs: pd.DataFrame
    per_class: pd.DataFrame


def rankings_step(pred: Predictions, classes: list[str]) -> Rankings:
    """Confusion matrix and the rankings of mistakes, losses and confused class pairs."""
    cm = rk.confusion(pred.labels, pred.table["pred_idx"].to_numpy(), len(classes))
    return Rankings(
        cm,
        rk.confident_mistakes(pred.table),
        rk.top_losses(pred.table),
        rk.confused_pairs(cm, classes),
        rk.per_class_metrics(cm, classes),
    )


@dataclass
class LabelIssues:
    """Likely label errors (None when skipped), the folds used and whether probabilities were streamed."""

    table: pd.DataFrame | None
    folds: int | None
    streamed: bool = False


def label_issues_step(
    o: ImageOutputs,
    pred: Predictions,
    classes: list[str],
    *,
    k_folds: int,
    method: str,
    stream_rows: int = li.STREAM_ROWS,
    warnings: list[str],
) -> LabelIssues:
    """K-fold out-of-sample probabilities + cleanlab; streamed above ``stream_rows`` images."""
    try:
        if len(pred.keep) <= stream_rows:
            X = o.embeddings_of(pred.keep)
            oos, folds = li.out_of_sample_probs(X, pred.labels, len(classes), k_folds=k_folds)
            del X
            return LabelIssues(li.rank_label_issues(pred.labels, oos, classes, pred.paths, method=method), folds)
        with tempfile.TemporaryDirectory(prefix="visiontune-oos-") as tmp:
            probs, folds = li.out_of_sample_probs_streaming(
                o.vectors(pred.keep), pred.labels, len(classes), str(Path(tmp) / "probs.npy"), k_folds=k_folds
            )
            table = li.rank_label_issues_streaming(pred.labels, probs, classes, pred.paths, method=method)
            del probs
        return LabelIssues(table, folds, True)
    except DatasetError as e:
        warnings.append(f"label issues skipped: {e}")
        return LabelIssues(None, None)


@dataclass
class Duplicates:
    """Duplicate pairs, the near-duplicate threshold used, the index and the items searched."""

    table: pd.DataFrame
    threshold: float | None
    search: dup.NearSearch | None
    items: list[dup.Item]
    rows: list[np.ndarray]  # per item: the images' rows in the feature store


def duplicates_step(
    outs: dict[str, ImageOutputs],
    data: AuditData,
    names: list[str],
    *,
    near_threshold: float | str,
    hash_distance: int,
    method: str = "index",
) -> Duplicates:
    """Exact, visual and near duplicates over every named split (the audited split first)."""
    items, rows = [], []
    for n in names:
        on, sd = outs[n], data.get(n)
        k = np.flatnonzero(on.ok)
        items.append(
            dup.Item(
                split=n,
                paths=[on.paths[i] for i in k],
                labels=[data.classes[sd.labels[i]] for i in k],
                sha256=[on.sha256[i] for i in k],
                dhash=on.dhash[k],
                embeddings=on.vectors(k) if method == "index" else on.embeddings_of(k),
            )
        )
        rows.append(on.rows[k])
    vec = ann.ConcatVectors([it.embeddings for it in items])
    search = dup.NearSearch.build(vec) if len(vec) and method == "index" else None
    used = (
        dup.auto_threshold([it.embeddings for it in items], search=search)
        if near_threshold == "auto"
        else float(near_threshold)
    )
    table = dup.find_duplicates(items, threshold=used, hash_distance=hash_distance, method=method, search=search)
    return Duplicates(table, used, search, items, rows)
