"""Duplicates and leaks, within a split and across train / val / test, listed as pairs.

Three detectors, strongest first; a pair is reported once, by the strongest one that finds it:
- "exact": same sha256 of the file bytes;
- "visual": perceptual (difference) hashes within `hash_distance` bits (re-encoded, resized copies);
- "near": cosine similarity of L2-normalised embeddings of at least `threshold` (crops, edits).

`threshold="auto"` (the default) adapts "near" to the data: a pair is near when its cosine
distance is under `AUTO_FACTOR` (0.13) times the median nearest-neighbour distance of the images,
i.e. far closer than two images of this dataset usually are, and never below `AUTO_FLOOR` (0.90).
A fixed cosine cut-off cannot do this: on 8x8 handwritten digits, distinct scans of the same
digit sit at 0.97-0.98 (a fixed 0.97 reported 107 false pairs), while on photos of insects the
nearest distinct neighbour is typically at 0.67.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

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


@dataclass
class Item:
    """Everything the duplicate finder needs about the images of one split."""

    split: str
    paths: list[str]
    labels: list[str]
    sha256: list[str]
    dhash: np.ndarray  # uint64
    embeddings: np.ndarray  # (N, D)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(nrm, 1e-12)


AUTO_FACTOR = 0.13
AUTO_FLOOR = 0.90


def auto_threshold(
    embeddings: Sequence[np.ndarray],
    factor: float = AUTO_FACTOR,
    floor: float = AUTO_FLOOR,
    sample: int = 2000,
    seed: int = 0,
    block: int = 2048,
) -> float:
    """The data-adapted "near" cosine threshold: ``1 - factor * median NN distance`` over all the
    given embeddings pooled (the median estimated from up to ``sample`` random query images),
    clipped to ``[floor, 0.9999]``. With fewer than 3 images there is no neighbourhood: ``floor``."""
    pools = [np.asarray(e) for e in embeddings if len(e)]
    if sum(len(e) for e in pools) < 3:
        return floor
    X = _normalise(np.concatenate(pools))
    rng = np.random.default_rng(seed)
    queries = rng.choice(len(X), size=min(sample, len(X)), replace=False)
    nn = np.empty(len(queries), dtype=np.float32)
    for s in range(0, len(queries), block):
        q = queries[s : s + block]
        sim = X[q] @ X.T
        sim[np.arange(len(q)), q] = -np.inf  # not oneself
        nn[s : s + len(q)] = sim.max(1)
    median_distance = float(np.median(1.0 - nn))
    return float(min(max(1.0 - factor * median_distance, floor), 0.9999))


def similar_pairs(
    a: np.ndarray, b: np.ndarray | None, threshold: float, block: int = 2048
) -> Iterator[tuple[int, int, float]]:
    """(i, j, cosine) with cosine >= threshold, for rows of a vs rows of b (b=None: a vs a, i<j).

    Blocked matrix products keep memory at block x len(b) whatever the data size.
    """
    A = _normalise(a)
    B = A if b is None else _normalise(b)
    for s in range(0, len(A), block):
        sim = A[s : s + block] @ B.T
        if b is None:
            # keep j > i only
            rows = np.arange(s, s + len(sim))[:, None]
            sim = np.where(np.arange(len(B))[None, :] > rows, sim, -np.inf)
        ii, jj = np.nonzero(sim >= threshold)
        for i, j in zip(ii, jj):
            yield s + int(i), int(j), float(sim[i, j])


def _popcount64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def hash_pairs(
    a: np.ndarray, b: np.ndarray | None, max_distance: int, block: int = 1024
) -> Iterator[tuple[int, int, int]]:
    """(i, j, hamming distance) of 64-bit hashes within `max_distance` bits."""
    B = a if b is None else b
    for s in range(0, len(a), block):
        d = _popcount64(a[s : s + block, None] ^ B[None, :])
        if b is None:
            rows = np.arange(s, s + len(d))[:, None]
            d = np.where(np.arange(len(B))[None, :] > rows, d, 65)
        ii, jj = np.nonzero(d <= max_distance)
        for i, j in zip(ii, jj):
            yield s + int(i), int(j), int(d[i, j])


def find_duplicates(
    items: Sequence[Item],
    *,
    threshold: float | str = "auto",
    hash_distance: int = 4,
    near: bool = True,
    visual: bool = True,
) -> pd.DataFrame:
    """Duplicate pairs within and across the given splits (a pair across splits is a leak).
    ``threshold``: the cosine similarity of a "near" pair, or "auto" (see the module doc)."""
    if near and threshold == "auto":
        threshold = auto_threshold([it.embeddings for it in items])
    rows = []
    seen: set[tuple[str, str]] = set()

    def add(kind, sim, ia: Item, i: int, ib: Item, j: int) -> None:
        key = tuple(sorted((f"{ia.split}\0{ia.paths[i]}", f"{ib.split}\0{ib.paths[j]}")))
        if key in seen or key[0] == key[1]:
            return
        seen.add(key)
        rows.append(
            {
                "kind": kind,
                "similarity": sim,
                "leak": ia.split != ib.split,
                "split_a": ia.split,
                "path_a": ia.paths[i],
                "label_a": ia.labels[i],
                "split_b": ib.split,
                "path_b": ib.paths[j],
                "label_b": ib.labels[j],
                "label_conflict": ia.labels[i] != ib.labels[j],
            }
        )

    # exact: group by content hash over all splits
    groups: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for k, it in enumerate(items):
        for i, s in enumerate(it.sha256):
            groups[s].append((k, i))
    for members in groups.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                (ka, i), (kb, j) = members[x], members[y]
                add("exact", 1.0, items[ka], i, items[kb], j)

    pairs_of_splits = [(x, y) for x in range(len(items)) for y in range(x, len(items))]
    if visual:
        for x, y in pairs_of_splits:
            ia, ib = items[x], items[y]
            for i, j, d in hash_pairs(ia.dhash, None if x == y else ib.dhash, hash_distance):
                add("visual", 1.0 - d / 64.0, ia, i, ib, j)
    if near:
        for x, y in pairs_of_splits:
            ia, ib = items[x], items[y]
            if len(ia.embeddings) == 0 or len(ib.embeddings) == 0:
                continue
            for i, j, s in similar_pairs(ia.embeddings, None if x == y else ib.embeddings, threshold):
                add("near", s, ia, i, ib, j)

    df = pd.DataFrame(rows, columns=COLUMNS)
    kind_order = {"exact": 0, "visual": 1, "near": 2}
    df["_k"] = df["kind"].map(kind_order)
    df = df.sort_values(["leak", "_k", "similarity"], ascending=[False, True, False], kind="stable")
    return df.drop(columns="_k").reset_index(drop=True)
