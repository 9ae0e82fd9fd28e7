"""Likely label errors: out-of-sample probabilities by K-fold cross-validation on embeddings,
then confident learning (cleanlab) to rank images whose given label looks wrong."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch

from visiontune.audit import ann
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


# -- at scale: bounded memory --------------------------------------------------------------------
STREAM_ROWS = 100_000  # above this many images the audit switches to the streaming functions below


class ChunkedArray:
    """A float32 (rows, cols) array in a raw file, read and written one window at a time: each
    window is mapped, copied and unmapped, so resident memory stays at one window."""

    def __init__(self, path: str, shape: tuple[int, int], create: bool = False):
        self.path, self.shape = str(path), (int(shape[0]), int(shape[1]))
        if create:
            with open(self.path, "wb") as f:
                f.truncate(self.shape[0] * self.shape[1] * 4)

    def __len__(self) -> int:
        return self.shape[0]

    def _window(self, start: int, stop: int, mode: Literal["r", "r+"]) -> np.memmap:
        return np.memmap(
            self.path,
            dtype=np.float32,
            mode=mode,
            offset=start * self.shape[1] * 4,
            shape=(stop - start, self.shape[1]),
        )

    def __getitem__(self, sl: slice) -> np.ndarray:
        start, stop, _ = sl.indices(self.shape[0])
        if stop <= start:
            return np.zeros((0, self.shape[1]), np.float32)
        m = self._window(start, stop, "r")
        out = np.array(m)
        del m
        return out

    def write(self, start: int, values: np.ndarray) -> None:
        """Write ``values`` at rows ``start``.. and flush them to disk."""
        m = self._window(start, start + len(values), "r+")
        m[:] = values
        m.flush()
        del m

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[0 : self.shape[0]]
        return out if dtype is None else out.astype(dtype)


def out_of_sample_probs_streaming(
    vectors,
    labels: np.ndarray,
    n_classes: int,
    out: str,
    *,
    k_folds: int = 5,
    epochs: int = 3,
    dim: int = 128,
    chunk: int = 8192,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> tuple[ChunkedArray, int]:
    """Out-of-sample probabilities for millions of images, memory bounded by ``chunk`` rows.

    The K fold models (multinomial logistic regression on the standardised PCA projection of the
    L2-normalised embeddings, ``dim`` components) are trained together, a chunk at a time read
    from ``vectors`` (any :class:`visiontune.audit.ann.Vectors`, e.g. the feature store): model k
    learns from every row outside fold k. The probabilities go to the memory-mapped file ``out``
    (N x n_classes float32), written a chunk at a time; returns (a :class:`ChunkedArray` over it,
    folds used)."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n < 4:
        raise DatasetError(f"label issues need at least 4 images, got {n}")
    counts = np.bincount(labels, minlength=n_classes)
    present = counts[counts > 0]
    if len(present) < 2:
        raise DatasetError("label issues need at least two classes with images")
    folds = int(max(2, min(k_folds, present.min())))
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)  # stratified: each class spread evenly over the folds
    for c in np.flatnonzero(counts):
        idx = np.flatnonzero(labels == c)
        fold[idx] = rng.permutation(len(idx)) % folds
    proj = ann.fit_projection(vectors, dim=dim, seed=seed)
    d = proj.components.shape[0]
    sums, sq = np.zeros(d), np.zeros(d)
    for _, x in vectors.chunks(chunk):
        zx = proj(x).astype(np.float64)
        sums += zx.sum(0)
        sq += (zx * zx).sum(0)
    mu = sums / n
    sd = np.sqrt(np.maximum(sq / n - mu * mu, 1e-12))

    def feats(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((proj(x) - mu) / sd).astype(np.float32))

    torch.manual_seed(seed)
    W = torch.zeros(folds, d, n_classes, requires_grad=True)
    b = torch.zeros(folds, 1, n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=0.01, weight_decay=weight_decay)
    y_all = torch.from_numpy(labels)
    f_all = torch.from_numpy(fold)
    for _ in range(epochs):
        for s, x in vectors.chunks(chunk):
            z = feats(x)
            y, f = y_all[s : s + len(x)], f_all[s : s + len(x)]
            logits = torch.einsum("bd,kdc->kbc", z, W) + b
            loss_all = torch.nn.functional.cross_entropy(
                logits.reshape(-1, n_classes), y.repeat(folds), reduction="none"
            ).reshape(folds, -1)
            train = (f[None, :] != torch.arange(folds)[:, None]).float()
            loss = (loss_all * train).sum() / train.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    probs = ChunkedArray(out, (n, n_classes), create=True)
    with torch.no_grad():
        for s, x in vectors.chunks(chunk):
            z = feats(x)
            f = f_all[s : s + len(x)]
            every = torch.einsum("bd,kdc->kbc", z, W) + b  # (folds, rows, classes): small
            logits = every[f, torch.arange(len(f))]
            p = torch.softmax(logits, dim=1).numpy()
            p = np.clip(p, 1e-6, None)
            probs.write(s, p / p.sum(1, keepdims=True))
    return probs, folds


def rank_label_issues_streaming(
    labels: np.ndarray,
    probs: np.ndarray | ChunkedArray,
    classes: list[str],
    paths: Sequence[str],
    *,
    method: str = "self_confidence",
    chunk: int = 65536,
) -> pd.DataFrame:
    """:func:`rank_label_issues` for probabilities that do not fit in memory (a memmap): cleanlab's
    batched ``LabelInspector`` estimates the per-class thresholds in one pass and scores label
    quality and counts issues in a second, ``chunk`` rows at a time. The flagged images are the
    ``num_issues`` lowest-quality ones (cleanlab's batched rule, not ``prune_by_noise_rate``)."""
    from cleanlab.experimental.label_issues_batched import LabelInspector

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    lab = LabelInspector(
        num_class=len(classes), store_results=True, verbose=False, quality_score_kwargs={"method": method}, n_jobs=1
    )
    for s in range(0, n, chunk):
        lab.update_confident_thresholds(labels[s : s + chunk], np.asarray(probs[s : s + chunk]))
    suggested = np.empty(n, dtype=np.int64)
    p_label = np.empty(n, dtype=np.float64)
    p_sugg = np.empty(n, dtype=np.float64)
    for s in range(0, n, chunk):
        p = np.asarray(probs[s : s + chunk])
        y = labels[s : s + chunk]
        lab.score_label_quality(y, p)
        suggested[s : s + len(p)] = p.argmax(1)
        p_label[s : s + len(p)] = p[np.arange(len(p)), y]
        p_sugg[s : s + len(p)] = p.max(1)
    quality = lab.get_quality_scores()
    flagged = np.zeros(n, dtype=bool)
    flagged[lab.get_label_issues()] = True
    names = np.asarray(classes, dtype=object)
    df = pd.DataFrame(
        {
            "path": list(paths),
            "label": names[labels],
            "suggested": names[suggested],
            "label_quality": quality.astype(float),
            "p_label": p_label,
            "p_suggested": p_sugg,
            "is_issue": flagged,
        }
    )
    df = df.sort_values("label_quality", kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, n + 1))
    return df
