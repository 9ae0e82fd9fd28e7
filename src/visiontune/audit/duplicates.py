"""Duplicates and leaks, within a split and across train / val / test, listed as pairs.

Three detectors, strongest first; a pair is reported once, by the strongest one that finds it:
- "exact": same sha256 of the file bytes (a hash join);
- "visual": perceptual (difference) hashes within `hash_distance` bits (re-encoded, resized
  copies), found by multi-index hashing (:mod:`visiontune.audit.hashindex`), exact;
- "near": cosine similarity of L2-normalised embeddings of at least `threshold` (crops, edits),
  found by a range search in a faiss index over PCA projections (:mod:`visiontune.audit.ann`)
  and verified on the full embeddings.

All splits are searched together (global row numbers), so the cost grows near-linearly with the
number of images instead of with its square. ``method="exhaustive"`` runs the all-pairs
reference search (:mod:`visiontune.audit.exhaustive`); on data up to ``ann.EXACT_ROWS`` images
both give the same table, row for row.

`threshold="auto"` (the default) adapts "near" to the data: a pair is near when its cosine
distance is under `AUTO_FACTOR` (0.13) times the median nearest-neighbour distance of the images,
i.e. far closer than two images of this dataset usually are, and never below `AUTO_FLOOR` (0.90).
A fixed cosine cut-off cannot do this: on 8x8 handwritten digits, distinct scans of the same
digit sit at 0.97-0.98 (a fixed 0.97 reported 107 false pairs), while on photos of insects the
nearest distinct neighbour is typically at 0.67.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from visiontune.audit import ann
from visiontune.audit.exhaustive import hash_pairs, similar_pairs
from visiontune.audit.hashindex import hash_pairs_indexed

__all__ = ["COLUMNS", "Item", "NearSearch", "auto_threshold", "find_duplicates", "hash_pairs", "similar_pairs"]

COLUMNS = [
    "kind",
    "similarity",
    "leak",
    "split_a",
    "path_a",
    "label_a",
    "split_b",
    "path_b",
    "label_b",
    "label_conflict",
]
KINDS = ("exact", "visual", "near")
AUTO_FACTOR = 0.13
AUTO_FLOOR = 0.90


@dataclass
class Item:
    """Everything the duplicate finder needs about the images of one split. ``embeddings`` is
    an (N, D) array or any :class:`visiontune.audit.ann.Vectors` (read in chunks)."""

    split: str
    paths: list[str]
    labels: list[str]
    sha256: list[str]
    dhash: np.ndarray  # uint64
    embeddings: Any  # (N, D)


def auto_threshold(
    embeddings: Sequence[Any],
    factor: float = AUTO_FACTOR,
    floor: float = AUTO_FLOOR,
    sample: int = 2000,
    seed: int = 0,
    block: int = 2048,
    search: NearSearch | None = None,
) -> float:
    """The data-adapted "near" cosine threshold: ``1 - factor * median NN distance`` over all the
    given embeddings pooled (the median estimated from up to ``sample`` random query images),
    clipped to ``[floor, 0.9999]``. With fewer than 3 images there is no neighbourhood: ``floor``.
    Up to ``ann.EXACT_ROWS`` images the nearest neighbours are exact; above, each query's 16
    nearest in the index (``search``) are re-scored on the full embeddings."""
    vec = ann.ConcatVectors([e for e in embeddings if len(e)])
    n = len(vec)
    if n < 3:
        return floor
    rng = np.random.default_rng(seed)
    queries = rng.choice(n, size=min(sample, n), replace=False)
    nn = np.empty(len(queries), dtype=np.float32)
    if n <= ann.EXACT_ROWS:
        X = ann.normalise(vec.take(np.arange(n)))
        for s in range(0, len(queries), block):
            q = queries[s : s + block]
            sim = X[q] @ X.T
            sim[np.arange(len(q)), q] = -np.inf  # not oneself
            nn[s : s + len(q)] = sim.max(1)
    else:
        search = search or NearSearch.build(vec)
        _, idx = search.index.search(search.Z[queries], 17)
        qq = np.repeat(queries, idx.shape[1])
        cc = idx.reshape(-1)
        ok = (cc >= 0) & (cc != qq)
        sim = np.full(len(cc), -1.0)
        sim[ok] = ann.cosine_of_pairs(vec, qq[ok], cc[ok])
        nn[:] = sim.reshape(len(queries), -1).max(1)
    median_distance = float(np.median(1.0 - nn))
    return float(min(max(1.0 - factor * median_distance, floor), 0.9999))


@dataclass
class NearSearch:
    """Vectors, their projections and the faiss index over them (built once per audit)."""

    vec: Any
    Z: np.ndarray
    index: ann.NearIndex
    projection: ann.Projection

    timings: dict | None = None

    @classmethod
    def build(cls, vec: Any, *, exact_rows: int = ann.EXACT_ROWS) -> NearSearch:
        """Project the vectors ``vec`` (PCA) and index them for near-duplicate range searches."""
        t = [time.perf_counter()]
        proj = ann.fit_projection(vec)
        t.append(time.perf_counter())
        Z = ann.project_all(vec, proj)
        t.append(time.perf_counter())
        index = ann.NearIndex.build(Z, exact_rows=exact_rows)
        t.append(time.perf_counter())
        phases = {"pca_fit_s": t[1] - t[0], "project_s": t[2] - t[1], "index_build_s": t[3] - t[2]}
        return cls(vec, Z, index, proj, phases)

    def pairs(self, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(i, j, cosine), i < j, of every pair with cosine >= threshold (verified exactly)."""
        t0 = time.perf_counter()
        i, j = self.index.range_pairs(self.Z, ann.radius2_for(threshold))
        t1 = time.perf_counter()
        sim = ann.cosine_of_pairs(self.vec, i, j)
        if self.timings is not None:
            self.timings.update(range_search_s=t1 - t0, verify_s=time.perf_counter() - t1, candidates=float(len(i)))
        keep = sim >= threshold
        return i[keep], j[keep], sim[keep]


def _ordered(split_id: np.ndarray, i: np.ndarray, j: np.ndarray, *extra: np.ndarray) -> list[np.ndarray]:
    """Pairs in the exhaustive search's order: by (split of a, split of b, a, b)."""
    order = np.lexsort((j, i, split_id[j], split_id[i]))
    return [a[order] for a in (i, j, *extra)]


def _exact_pairs(sha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, _ = pd.factorize(sha)  # codes in order of first appearance, as the exhaustive search
    counts = np.bincount(codes) if len(codes) else np.zeros(0, np.int64)
    multi = np.flatnonzero(counts > 1)
    if not len(multi):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sel = np.flatnonzero(np.isin(codes, multi))
    order = sel[np.argsort(codes[sel], kind="stable")]
    ii, jj = [], []
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group in np.split(order, bounds):
        for a, b in combinations(group.tolist(), 2):
            ii.append(a)
            jj.append(b)
    return np.asarray(ii, np.int64), np.asarray(jj, np.int64)


def find_duplicates(
    items: Sequence[Item],
    *,
    threshold: float | str = "auto",
    hash_distance: int = 4,
    near: bool = True,
    visual: bool = True,
    method: str = "index",
    search: NearSearch | None = None,
) -> pd.DataFrame:
    """Duplicate pairs within and across the given splits (a pair across splits is a leak).
    ``threshold``: the cosine similarity of a "near" pair, or "auto" (see the module doc).
    ``method``: "index" (near-linear, the default) or "exhaustive" (all pairs, the reference).
    ``search``: a :class:`NearSearch` already built over the items' embeddings, to reuse."""
    if method not in ("index", "exhaustive"):
        raise ValueError(f"method must be 'index' or 'exhaustive', not {method!r}")
    sizes = [len(it.paths) for it in items]
    split_id = np.repeat(np.arange(len(items)), sizes)
    vecs = [it.embeddings for it in items]
    n_vec = sum(len(v) for v in vecs)
    phases: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        phases[name] = clock[-1] - clock[-2]

    if near and n_vec and method == "index" and search is None:
        search = NearSearch.build(ann.ConcatVectors(vecs))
        lap("near_index_s")
    if near and threshold == "auto":
        threshold = auto_threshold(vecs, search=search)
        lap("auto_threshold_s")
    sha = np.array([s for it in items for s in it.sha256], dtype=object)
    found: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    i, j = _exact_pairs(sha)
    found.append(("exact", i, j, np.ones(len(i))))
    lap("exact_s")
    if visual:
        if method == "index":
            h = np.concatenate([np.asarray(it.dhash, dtype=np.uint64) for it in items]) if items else np.zeros(0)
            i, j, d = _ordered(split_id, *hash_pairs_indexed(h, hash_distance))
        else:
            i, j, d = _exhaustive(items, lambda a, b: hash_pairs(a.dhash, b, hash_distance), "dhash")
        found.append(("visual", i, j, 1.0 - d / 64.0))
        lap("visual_s")
    if near and n_vec:
        if method == "index":
            assert search is not None  # built above for method "index"
            i, j, s = _ordered(split_id, *search.pairs(float(threshold)))
        else:
            i, j, _ = _exhaustive(
                items, lambda a, b: similar_pairs(np.asarray(a.embeddings), b, float(threshold)), "embeddings"
            )
            s = ann.cosine_of_pairs(ann.ConcatVectors(vecs), i, j)  # the number the index reports
        found.append(("near", i, j, s))
        lap("near_s")
    df = _assemble(items, split_id, found)
    lap("assemble_s")
    if search is not None and search.timings:
        phases.update({f"near.{k}": v for k, v in search.timings.items()})
    df.attrs["timings"] = phases  # seconds per phase, for benchmarks and the curious
    return df


def _exhaustive(items: Sequence[Item], pairs, attr: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(it.paths) for it in items])
    ii, jj, vv = [], [], []
    for x in range(len(items)):
        for y in range(x, len(items)):
            a, b = items[x], items[y]
            if len(getattr(a, attr)) == 0 or len(getattr(b, attr)) == 0:
                continue
            other = None if x == y else np.asarray(getattr(b, attr))
            for i, j, v in pairs(a, other):
                ii.append(offsets[x] + i)
                jj.append(offsets[y] + j)
                vv.append(v)
    return np.asarray(ii, np.int64), np.asarray(jj, np.int64), np.asarray(vv, np.float64)


def _assemble(items: Sequence[Item], split_id: np.ndarray, found) -> pd.DataFrame:
    splits = np.array([it.split for it in items], dtype=object)[split_id] if len(split_id) else np.zeros(0, object)
    paths = np.array([p for it in items for p in it.paths], dtype=object)
    labels = np.array([str(lab) for it in items for lab in it.labels], dtype=object)
    canon, _ = pd.factorize(pd.Series(splits, dtype=object).astype(str) + "\0" + pd.Series(paths).astype(str))
    kind = np.concatenate([np.full(len(f[1]), k, dtype=np.int64) for k, f in enumerate(found)])
    gi = np.concatenate([f[1] for f in found]).astype(np.int64)
    gj = np.concatenate([f[2] for f in found]).astype(np.int64)
    sim = np.concatenate([np.asarray(f[3], dtype=np.float64) for f in found])
    names = np.array([f[0] for f in found], dtype=object)
    ca, cb = canon[gi], canon[gj]
    m = max(1, int(canon.max()) + 1) if len(canon) else 1
    code = np.minimum(ca, cb).astype(np.int64) * m + np.maximum(ca, cb)
    valid = np.flatnonzero(ca != cb)
    _, first = np.unique(code[valid], return_index=True)
    keep = np.sort(valid[first])  # the strongest detector's row (found in that order) wins
    gi, gj, kind, sim = gi[keep], gj[keep], kind[keep], sim[keep]
    df = pd.DataFrame(
        {
            "kind": names[kind] if len(kind) else np.zeros(0, object),
            "similarity": sim,
            "leak": splits[gi] != splits[gj] if len(gi) else np.zeros(0, bool),
            "split_a": splits[gi],
            "path_a": paths[gi],
            "label_a": labels[gi],
            "split_b": splits[gj],
            "path_b": paths[gj],
            "label_b": labels[gj],
            "label_conflict": labels[gi] != labels[gj] if len(gi) else np.zeros(0, bool),
        },
        columns=COLUMNS,
    )
    df["leak"] = df["leak"].astype(bool)
    df["label_conflict"] = df["label_conflict"].astype(bool)
    kind_order = {k: n for n, k in enumerate(KINDS)}
    df["_k"] = df["kind"].map(kind_order)
    df = df.sort_values(["leak", "_k", "similarity"], ascending=[False, True, False], kind="stable")
    return df.drop(columns="_k").reset_index(drop=True)
