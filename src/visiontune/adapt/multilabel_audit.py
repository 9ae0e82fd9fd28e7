"""The label audit of multi-label data: missed labels and confident wrong labels.

Out-of-sample probabilities come from K-fold cross-validation: a logistic regression per label on
the model's frozen features (the head's input), each image scored by folds that never saw it.
Then cleanlab's multi-label ranking: ``get_label_quality_scores`` (one score per image, low =
likely mislabelled), ``find_label_issues(..., filter_by="prune_by_noise_rate")`` (the flagged
images), and ``get_label_quality_scores_per_class`` (one score per image and label): a label the
image does *not* carry with a low score is a likely **missed label**; a label it carries with a low
score is a likely **wrong label** (confidently contradicted by the probabilities).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from visiontune._atomic import write_text
from visiontune.adapt.features import extract
from visiontune.adapt.setup import head_path
from visiontune.data.multilabel import MultiLabelDataset, load_multilabel
from visiontune.engine import device_for
from visiontune.errors import DatasetError
from visiontune.hub import Pretrained, load


@dataclass
class MultiLabelAudit:
    """Per image: given labels, quality score, cleanlab's flag, missed / wrong label candidates."""

    table: pd.DataFrame  # one row per image, worst first
    pairs: pd.DataFrame  # one row per (image, label) candidate: kind missed | wrong, score
    classes: list[str]
    dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        """Counts: images, flagged images, missed / wrong label candidates."""
        return {
            "images": int(len(self.table)),
            "flagged": int(self.table["is_label_issue"].sum()),
            "missed_labels": int((self.pairs["kind"] == "missed").sum()),
            "wrong_labels": int((self.pairs["kind"] == "wrong").sum()),
        }

    def to_dict(self) -> dict:
        """JSON-ready summary and the top candidates."""
        return {"metrics": self.metrics, "top": self.pairs.head(50).to_dict("records"), "dir": str(self.dir or "")}

    def summary(self) -> str:
        """One line with the counts."""
        m = self.metrics
        return (
            f"{m['images']} images: {m['flagged']} flagged by cleanlab, {m['missed_labels']} likely missed "
            f"labels, {m['wrong_labels']} likely wrong labels"
        )


def out_of_sample_multilabel(
    features: np.ndarray, targets: np.ndarray, k_folds: int = 5, C: float = 0.1, seed: int = 0
):
    """(N, K) probabilities, each row from per-label logistic regressions trained without it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, k = targets.shape
    folds = max(2, min(k_folds, n))
    probs = np.zeros((n, k))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(features):
        for j in range(k):
            y = targets[tr, j]
            if y.min() == y.max():  # the fold has one value only for this label
                probs[te, j] = float(y[0]) * 0.98 + 0.01
                continue
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
            clf.fit(features[tr], y)
            probs[te, j] = clf.predict_proba(features[te])[:, 1]
    return probs


def rank_multilabel_issues(
    paths: list[str], targets: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """cleanlab's multi-label ranking of ``targets`` (N, K 0/1) against ``probs``."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores, get_label_quality_scores_per_class

    labels = [list(np.flatnonzero(row)) for row in targets]
    quality = get_label_quality_scores(labels, probs)
    # n_jobs=1: cleanlab forks a multiprocessing pool otherwise, and a fork after torch has started
    # its threads can deadlock (it did here, under load)
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    per_class = get_label_quality_scores_per_class(labels, probs)  # (N, K)
    per_class = np.asarray(per_class).T if np.asarray(per_class).shape == (len(classes), len(paths)) else per_class
    rows, pairs = [], []
    for i, p in enumerate(paths):
        given = [classes[j] for j in labels[i]]
        missed = [j for j in range(len(classes)) if targets[i, j] == 0 and probs[i, j] >= 1 - threshold]
        wrong = [int(j) for j in labels[i] if probs[i, j] < threshold]
        for j in missed:
            pairs.append(
                {"path": p, "label": classes[j], "kind": "missed", "prob": probs[i, j], "score": per_class[i, j]}
            )
        for j in wrong:
            pairs.append(
                {"path": p, "label": classes[j], "kind": "wrong", "prob": probs[i, j], "score": per_class[i, j]}
            )
        rows.append(
            {
                "path": p,
                "labels": ";".join(given),
                "quality": float(quality[i]),
                "is_label_issue": bool(flagged[i]),
                "likely_missed": ";".join(classes[j] for j in missed),
                "likely_wrong": ";".join(classes[j] for j in wrong),
            }
        )
    table = pd.DataFrame(rows).sort_values("quality", kind="stable").reset_index(drop=True)
    cols = ["path", "label", "kind", "prob", "score"]
    pairs_df = pd.DataFrame(pairs, columns=cols).sort_values("score", kind="stable").reset_index(drop=True)
    return table, pairs_df


def audit_multilabel(
    model: Any,
    data: str | os.PathLike,
    *,
    split: str = "train",
    out: str | os.PathLike | None = None,
    k_folds: int = 5,
    C: float = 0.1,
    seed: int = 0,
    batch_size: int = 32,
    data_root: str | None = None,
    trust_pickle: bool = False,
) -> MultiLabelAudit:
    """Audit the labels of ``split`` of a multi-label source with ``model``'s frozen features; with
    ``out``: ``multilabel_issues.csv`` (per image) and ``multilabel_label_candidates.csv``."""
    splits = load_multilabel(data, root=data_root)
    ds = splits[split]
    if ds is None or len(ds) < 4:
        raise DatasetError(f"{data}: the {split!r} split has {0 if ds is None else len(ds)} images; the audit needs 4+")
    p = model if isinstance(model, Pretrained) else load(str(model), trust_pickle=trust_pickle)
    device = device_for("auto")
    p.model.to(device)
    x, _ = extract(p.model, head_path(p), ds.with_transform(p.preprocess), batch_size=batch_size, device=device)
    feats = x.flatten(1).numpy() if x.ndim > 2 else x.numpy()
    assert isinstance(ds, MultiLabelDataset)  # load_multilabel's splits hold MultiLabelDatasets
    targets = ds.targets_matrix.astype(np.int64)
    with torch.no_grad():
        probs = out_of_sample_multilabel(feats, targets, k_folds=k_folds, C=C, seed=seed)
    table, pairs = rank_multilabel_issues(ds.paths, targets, probs, list(splits.classes))
    res = MultiLabelAudit(table, pairs, list(splits.classes))
    if out is not None:
        res.dir = Path(out)
        res.files["issues"] = write_text(res.dir / "multilabel_issues.csv", table.to_csv(index=False))
        res.files["candidates"] = write_text(res.dir / "multilabel_label_candidates.csv", pairs.to_csv(index=False))
    return res


def print_audit(res: MultiLabelAudit, rows: int = 20, console: Any = None) -> None:
    """The summary line and the worst (image, label) candidates."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(res.summary(), highlight=False)
    t = Table(title="likely missed / wrong labels (lowest cleanlab per-label quality first)")
    for c in ("image", "label", "kind", "p(label)", "quality"):
        t.add_column(c)
    for r in res.pairs.head(rows).itertuples():
        t.add_row(Path(r.path).name, r.label, r.kind, f"{r.prob:.3f}", f"{r.score:.3f}")
    console.print(t)
    for name, path in res.files.items():
        console.print(f"{name}: {path}", highlight=False)
