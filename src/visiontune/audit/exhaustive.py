"""The all-pairs reference search (quadratic): every hash and every embedding against every
other one, in blocks so memory stays at ``block x N``. `find_duplicates(method="exhaustive")`
uses it; the indexed search (:mod:`visiontune.audit.hashindex`, :mod:`visiontune.audit.ann`)
must find the same pairs, and benchmarks/bench_audit_scale.py measures both."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from visiontune.audit.ann import normalise


def similar_pairs(
    a: np.ndarray, b: np.ndarray | None, threshold: float, block: int = 2048
) -> Iterator[tuple[int, int, float]]:
    """(i, j, cosine) with cosine >= threshold, for rows of a vs rows of b (b=None: a vs a, i<j).

    Blocked matrix products keep memory at block x len(b) whatever the data size.
    """
    A = normalise(a)
    B = A if b is None else normalise(b)
    for s in range(0, len(A), block):
        sim = A[s : s + block] @ B.T
        if b is None:
            rows = np.arange(s, s + len(sim))[:, None]
            sim = np.where(np.arange(len(B))[None, :] > rows, sim, -np.inf)
        ii, jj = np.nonzero(sim >= threshold)
        for i, j in zip(ii, jj):
            yield s + int(i), int(j), float(sim[i, j])


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 in ``x``."""
    x = x.astype(np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def hash_pairs(
    a: np.ndarray, b: np.ndarray | None, max_distance: int, block: int = 1024
) -> Iterator[tuple[int, int, int]]:
    """(i, j, hamming distance) of 64-bit hashes within `max_distance` bits."""
    B = a if b is None else b
    for s in range(0, len(a), block):
        d = popcount64(a[s : s + block, None] ^ B[None, :])
        if b is None:
            rows = np.arange(s, s + len(d))[:, None]
            d = np.where(np.arange(len(B))[None, :] > rows, d, 65)
        ii, jj = np.nonzero(d <= max_distance)
        for i, j in zip(ii, jj):
            yield s + int(i), int(j), int(d[i, j])
