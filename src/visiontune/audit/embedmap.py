"""A 2-D map of the embeddings and kNN outlier scores.

Outlier score of an image: the mean distance to its ``k`` nearest other images in the projected
embedding space (the same faiss index as the near-duplicate search), so an image far from every
other one scores high. The map places up to ``max_points`` images of the audited split (mistakes,
label issues, duplicates and outliers first, then a random sample) with UMAP when umap-learn is
installed (``pip install 'visiontune[audit-scale]'``) and with the first two principal components
otherwise; the report draws it as an interactive scatter (:mod:`visiontune.audit.page`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from visiontune.audit.duplicates import NearSearch
from visiontune.errors import ConfigError

MAP_POINTS = 2000
OUTLIER_K = 5


def outlier_scores(search: NearSearch, n: int, k: int = OUTLIER_K, chunk: int = 16384) -> np.ndarray:
    """Mean Euclidean distance (projected, unit-normalised embeddings) of each of the first ``n``
    indexed images to its ``k`` nearest others; NaN with fewer than two images."""
    out = np.full(n, np.nan, dtype=np.float64)
    if search.index.n < 2:
        return out
    kk = min(k + 1, search.index.n)
    for s in range(0, n, chunk):
        D, idx = search.index.search(search.Z[s : min(n, s + chunk)], kk)
        own = idx == np.arange(s, s + len(idx))[:, None]
        D = np.where(own | (idx < 0), np.nan, np.sqrt(np.maximum(D, 0)))
        D = np.sort(D, axis=1)[:, :k]  # NaN (self, none) sort last: the k nearest others
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row with no neighbour stays NaN
            out[s : s + len(idx)] = np.nanmean(D, axis=1)
    return out


@dataclass
class EmbeddingMap:
    """Map coordinates of the chosen images (``points``: row into the predictions table, x, y)."""

    points: pd.DataFrame
    method: str  # "umap" or "pca"


def _choose(n: int, priority: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    first = np.flatnonzero(priority)[:max_points]
    rest = np.setdiff1d(np.arange(n), first)
    extra = np.random.default_rng(seed).choice(rest, size=max_points - len(first), replace=False)
    return np.sort(np.concatenate([first, extra]))


def embedding_map(
    search: NearSearch,
    n: int,
    priority: np.ndarray,
    *,
    method: str = "auto",
    max_points: int = MAP_POINTS,
    seed: int = 0,
) -> EmbeddingMap:
    """2-D coordinates of up to ``max_points`` of the first ``n`` indexed images (the audited
    split). ``method``: "auto" (UMAP if installed, else PCA), "umap" or "pca"."""
    if method not in ("auto", "umap", "pca"):
        raise ConfigError(f"map method must be 'auto', 'umap' or 'pca', not {method!r}")
    chosen = _choose(n, np.asarray(priority, dtype=bool), max_points, seed)
    Z = search.Z[chosen]
    used = "pca"
    xy = np.zeros((len(chosen), 2), dtype=np.float64)
    if len(chosen) >= 2:
        xy[:, : min(2, Z.shape[1])] = Z[:, :2]
    if method in ("auto", "umap") and len(chosen) >= 10:
        try:
            import umap  # noqa: F401 - optional
        except ImportError:
            if method == "umap":
                from visiontune.errors import require

                require("umap", "audit-scale", "The UMAP embedding map")
        else:
            from umap import UMAP

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nn = int(min(15, len(chosen) - 1))
                xy = UMAP(n_neighbors=nn, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(Z)
            used = "umap"
    pts = pd.DataFrame({"row": chosen, "x": np.asarray(xy[:, 0], float), "y": np.asarray(xy[:, 1], float)})
    return EmbeddingMap(pts, used)
