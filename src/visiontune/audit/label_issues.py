"""Likely label errors: out-of-sample probabilities by K-fold cross-validation on embeddings,
then confident learning (cleanlab) to rank images whose given label looks wrong."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from visiontune.errors import DatasetError


def _classifier(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    return make_pipeline(Normalizer(), StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


def out_of_sample_probs(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    k_folds: int = 5,
    C: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Probabilities for each image from a logistic regression that never saw it.

    Returns (probs (N, n_classes), folds used). The number of folds is lowered to the size of
    the smallest class (at least 2) so every fold can see every class.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n < 4:
        raise DatasetError(f"label issues need at least 4 images, got {n}")
    counts = np.bincount(labels, minlength=n_classes)
    present = counts[counts > 0]
    if len(present) < 2:
        raise DatasetError("label issues need at least two classes with images")
    folds = int(max(2, min(k_folds, present.min())))
    probs = np.zeros((n, n_classes), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only N members"
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for tr, te in skf.split(embeddings, labels):
            clf = _classifier(C, seed).fit(embeddings[tr], labels[tr])
            cols = clf[-1].classes_
            probs[np.ix_(te, cols)] = clf.predict_proba(embeddings[te])
    # classes missing from a training fold get a tiny floor so cleanlab sees valid rows
    probs = np.clip(probs, 1e-6, None)
    probs /= probs.sum(1, keepdims=True)
    return probs, folds


def rank_label_issues(
    labels: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    paths: Sequence[str],
    *,
    method: str = "self_confidence",
) -> pd.DataFrame:
    """Every image ranked by label quality (worst first), with cleanlab's issue flag.

    Columns: rank, path, label, suggested, label_quality, p_label, p_suggested, is_issue.
    `method` is cleanlab's ranking: "self_confidence", "normalized_margin" or "confidence_weighted_entropy".
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    quality = get_label_quality_scores(labels, probs, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    suggested = probs.argmax(1)
    names = np.asarray(classes, dtype=object)
    df = pd.DataFrame(
        {
            "path": list(paths),
            "label": names[labels],
            "suggested": names[suggested],
            "label_quality": quality.astype(float),
            "p_label": probs[np.arange(n), labels].astype(float),
            "p_suggested": probs[np.arange(n), suggested].astype(float),
            "is_issue": np.asarray(flagged, dtype=bool),
        }
    )
    df = df.sort_values("label_quality", kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, n + 1))
    return df
