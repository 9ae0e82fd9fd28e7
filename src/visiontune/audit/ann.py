"""Near neighbours of embeddings without comparing all pairs (faiss).

The embeddings are L2-normalised and projected onto their top principal components (PCA fitted
on a sample; ``PROJECTED_DIM`` = 128 of 1280 for EfficientNet-Lite0). An orthonormal projection
never lengthens a difference, so ``|P(a - b)| <= |a - b|``: every pair within a cosine threshold
``t`` (``|a - b|^2 = 2 (1 - t)``) is also within that radius after projection. A range search in
the projected space therefore loses no pair to the projection; the candidates it returns are
verified with the exact cosine of the full embeddings, which removes the extra ones.

The index is exact (``IndexFlatL2``) up to ``EXACT_ROWS`` images and an inverted file above
(``IndexIVFFlat``: k-means cells of ~``CELL_ROWS`` vectors, found through an HNSW graph over the
centroids, ``NPROBE`` cells visited per query): near duplicates sit in the same or a
neighbouring cell, so recall stays at ~1 (measured in benchmarks/bench_audit_scale.py) while a
query scans about a thousand vectors, not N, at any N.
Why faiss and not hnswlib / usearch: docs/audit.md ("Choosing the index").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from visiontune.errors import require

PROJECTED_DIM = 128
EXACT_ROWS = 5_000
NPROBE = 4
CELL_ROWS = 256
TRAIN_PER_CELL = 16
PCA_SAMPLE = 20_000
CHUNK = 16_384


class Vectors(Protocol):
    """Row-addressable embeddings that can be read a chunk at a time."""

    def __len__(self) -> int: ...

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` as a float32 array."""

    def chunks(self, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, block)`` pairs covering every row in blocks of ``chunk``."""


class ArrayVectors:
    """Vectors held in memory (or in a numpy memmap)."""

    def __init__(self, x: np.ndarray):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    @property
    def dim(self) -> int:
        """Width of a row (0 for an empty array)."""
        return int(self.x.shape[1]) if self.x.ndim == 2 else 0

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` as a float32 array."""
        return np.asarray(self.x[np.asarray(index, dtype=np.int64)], dtype=np.float32)

    def chunks(self, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, block)`` pairs covering every row in blocks of ``chunk``."""
        for s in range(0, len(self.x), chunk):
            yield s, np.asarray(self.x[s : s + chunk], dtype=np.float32)


class ConcatVectors:
    """Several Vectors one after the other, addressed by one global row index."""

    def __init__(self, parts: Sequence[Any]):
        self.parts = [as_vectors(p) for p in parts]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (global row numbers across the parts) as a float32 array."""
        index = np.asarray(index, dtype=np.int64)
        part = np.searchsorted(self.offsets, index, side="right") - 1
        out = None
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            got = self.parts[k].take(index[sel] - self.offsets[k])
            if out is None:
                out = np.empty((len(index), got.shape[1]), dtype=np.float32)
            out[sel] = got
        return out if out is not None else np.zeros((0, 0), np.float32)

    def chunks(self, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(global first row, block)`` pairs over every part in turn."""
        for k, p in enumerate(self.parts):
            for s, x in p.chunks(chunk):
                yield int(self.offsets[k]) + s, x


def as_vectors(x: Any) -> Any:
    """Wrap an array as :class:`ArrayVectors`; anything with ``take`` and ``chunks`` passes."""
    if hasattr(x, "take") and hasattr(x, "chunks") and not isinstance(x, np.ndarray):
        return x
    return ArrayVectors(np.asarray(x))


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32; zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Projection:
    """``z = (normalise(x) - mean) @ components.T`` with orthonormal ``components`` (d x D)."""

    mean: np.ndarray
    components: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((normalise(x) - self.mean) @ self.components.T, dtype=np.float32)

    def save(self, path: Path) -> None:
        """Write the mean and components to ``path`` (``.npz``, no pickle)."""
        with open(path, "wb") as f:
            np.savez(f, mean=self.mean, components=self.components)

    @classmethod
    def load(cls, path: Path) -> Projection:
        """The projection saved at ``path`` by `save`."""
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["components"])


def fit_projection(vec: Vectors, dim: int = PROJECTED_DIM, sample: int = PCA_SAMPLE, seed: int = 0) -> Projection:
    """PCA of the normalised vectors on a random sample of up to ``sample`` rows (eigenvectors
    of the float32 covariance: orthonormal to ~1e-6, well inside the search radius' margin)."""
    n = len(vec)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    X = normalise(vec.take(idx))
    D = X.shape[1]
    mean = X.mean(0, dtype=np.float64).astype(np.float32)
    if D <= dim:
        return Projection(mean, np.eye(D, dtype=np.float32))
    Xc = X - mean
    with threadpool_limits(1):  # LAPACK's eigh is many times slower on 2 busy cores than on 1
        w, v = np.linalg.eigh(Xc.T @ Xc)
    comps = v[:, np.argsort(w)[::-1][:dim]].T
    return Projection(mean, np.ascontiguousarray(comps, dtype=np.float32))


def project_all(vec: Vectors, proj: Projection, chunk: int = CHUNK) -> np.ndarray:
    """The projection of every row, read a chunk at a time: N x d float32 in memory."""
    d = proj.components.shape[0]
    Z = np.empty((len(vec), d), dtype=np.float32)
    for s, x in vec.chunks(chunk):
        Z[s : s + len(x)] = proj(x)
    return Z


def _faiss():
    faiss = require("faiss", "audit-scale", "Near-linear duplicate search (faiss index)")
    return faiss


class NearIndex:
    """A faiss index over projected vectors: exact below ``EXACT_ROWS`` rows, IVF above."""

    def __init__(self, index: Any, n: int, exact: bool):
        self.index, self.n, self.exact = index, n, exact

    @classmethod
    def build(cls, Z: np.ndarray, *, exact_rows: int = EXACT_ROWS, nprobe: int = NPROBE, seed: int = 0) -> NearIndex:
        """An exact index up to ``exact_rows`` rows, else an IVF index searched with ``nprobe`` lists."""
        faiss = _faiss()
        n, d = Z.shape
        if n <= exact_rows:
            index = faiss.IndexFlatL2(d)
            index.add(Z)
            return cls(index, n, True)
        # cells of ~CELL_ROWS vectors whatever N, found through an HNSW graph over the centroids:
        # a query costs ~log(cells) + nprobe * CELL_ROWS distances, so the search grows ~N log N
        nlist = int(min(1 << 18, max(16, n // CELL_ROWS)))
        quantizer = faiss.IndexHNSWFlat(d, 32)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
        index.cp.seed = seed
        index.cp.niter = 8
        index.cp.min_points_per_centroid = 4  # any partition works: recall comes from nprobe
        rng = np.random.default_rng(seed)
        train = Z[np.sort(rng.choice(n, size=min(n, TRAIN_PER_CELL * nlist), replace=False))]
        index.train(train)
        for s in range(0, n, CHUNK * 4):
            index.add(Z[s : s + CHUNK * 4])
        index.nprobe = min(nprobe, nlist)
        return cls(index, n, False)

    def range_pairs(self, Z: np.ndarray, radius2: float, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """All (i, j), i < j, with squared distance <= radius2 (approximate above EXACT_ROWS)."""
        if self.exact:
            return _range_pairs_exact(Z, radius2)
        ii, jj = [], []
        for s in range(0, len(Z), chunk):
            lims, _, labels = self.index.range_search(Z[s : s + chunk], float(radius2))
            lims = lims.astype(np.int64)
            q = np.repeat(np.arange(s, s + len(lims) - 1, dtype=np.int64), np.diff(lims))
            labels = labels.astype(np.int64)
            keep = labels > q
            ii.append(q[keep])
            jj.append(labels[keep])
        if not ii:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(ii), np.concatenate(jj)

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances, indices) of the k nearest rows of each query (-1: none)."""
        k = max(1, min(int(k), self.n))
        D, indices = self.index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        return D, indices.astype(np.int64)

    def save(self, path: Path) -> None:
        """Write the faiss index to ``path``."""
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> NearIndex:
        """The index saved at ``path`` by `save`."""
        faiss = _faiss()
        index = faiss.read_index(str(path))
        if hasattr(index, "nprobe"):
            index.nprobe = max(int(index.nprobe), 4 * NPROBE)  # a handful of queries: look wider
        return cls(index, int(index.ntotal), not hasattr(index, "nprobe"))


def _range_pairs_exact(Z: np.ndarray, radius2: float, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Every pair within radius2, by blocked matrix products (BLAS): for the exact index."""
    sq = np.einsum("ij,ij->i", Z, Z)
    ii, jj = [], []
    for s in range(0, len(Z), block):
        d2 = sq[s : s + block, None] + sq[None, s:] - 2.0 * (Z[s : s + block] @ Z[s:].T)
        i, j = np.nonzero(np.triu(d2 <= radius2, k=1))
        ii.append(i + s)
        jj.append(j + s)
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)


def cosine_of_pairs(vec: Vectors, i: np.ndarray, j: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Exact cosine similarity of the full vectors of each pair (i[k], j[k]), in float64: the
    one number both the indexed and the exhaustive search report for a pair."""
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk):
        a = vec.take(i[s : s + chunk]).astype(np.float64)
        b = vec.take(j[s : s + chunk]).astype(np.float64)
        a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        out[s : s + len(a)] = np.einsum("ij,ij->i", a, b)
    return out


def radius2_for(threshold: float) -> float:
    """Squared L2 radius between unit vectors of cosine ``threshold``, with a float margin."""
    return 2.0 * (1.0 - float(threshold)) * (1.0 + 1e-4) + 1e-5
