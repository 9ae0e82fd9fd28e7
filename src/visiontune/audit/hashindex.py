"""Pairs of 64-bit perceptual hashes within a Hamming distance, without comparing all pairs.

Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012): cut the 64 bits into ``m`` blocks.
If two hashes differ in at most ``r`` bits, some block differs in at most ``r // m`` bits
(pigeonhole), so every pair within ``r`` shares a block value up to ``r // m`` flipped bits.
Per block, the hashes are sorted by that block's value; each hash probes its own value and every
value ``r // m`` bits away, finds the matching run with a binary search, and each candidate is
verified with the exact Hamming distance (``np.bitwise_count``). With the default ``r = 4``,
three blocks of 22/21/21 bits and one flipped bit per probe (23 probes per block): a million
random hashes give ~0.5 hashes per bucket, so a few dozen candidates per hash instead of a
million. Duplicate-heavy data (many identical hashes) costs what its output costs.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

CHUNK = 1 << 18


def block_plan(max_distance: int, bits: int = 64, n: int = 1_000_000) -> tuple[list[tuple[int, int]], int]:
    """(list of (shift, width) blocks, per-block radius): the cheapest m for ``n`` hashes.

    Cost model per hash: probes (m * sum_{k<=r'} C(w, k)) plus expected candidates
    (probes * n / 2^w) for uniformly spread hashes."""
    from math import comb

    best = None
    for m in range(3, max(4, max_distance + 2)):  # >= 3 blocks: <= 22 bits, a direct-address table
        if m > bits:
            break
        radius = max_distance // m
        widths = [bits // m + (1 if k < bits % m else 0) for k in range(m)]
        probes = sum(sum(comb(w, k) for k in range(radius + 1)) for w in widths)
        cands = sum(sum(comb(w, k) for k in range(radius + 1)) * n / 2.0**w for w in widths)
        cost = probes + cands
        if best is None or cost < best[0]:
            best = (cost, widths, radius)
    assert best is not None
    _, widths, radius = best
    blocks, shift = [], 0
    for w in widths:
        blocks.append((shift, w))
        shift += w
    return blocks, radius


def _flips(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(width), r):
            v = 0
            for b in bits:
                v |= 1 << b
            masks.append(v)
    return np.array(masks, dtype=np.uint64)


def hash_pairs_indexed(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j), i < j, of ``hashes`` (uint64) within ``max_distance`` bits, with their
    distances; sorted by (i, j). Exact: the same pairs as comparing every pair.

    Per block, a direct-address table (bucket start and count for every block value: at most
    2^22 entries) makes each probe two array gathers instead of a binary search."""
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(h)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if n < 2 or max_distance < 0:
        return empty
    blocks, radius = block_plan(max_distance, n=n)
    found: list[np.ndarray] = []
    for shift, width in blocks:
        key = ((h >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
        counts = np.bincount(key, minlength=1 << width)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        order = np.argsort(key, kind="stable")
        for flip in _flips(width, radius).astype(np.int64):
            for s in range(0, n, CHUNK):
                q = key[s : s + CHUNK] ^ flip
                cnt = counts[q]
                total = int(cnt.sum())
                if not total:
                    continue
                qi = np.repeat(np.arange(s, s + len(q), dtype=np.int64), cnt)
                # bucket positions start..start+cnt-1 of every query, flattened
                offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                cj = order[np.repeat(starts[q], cnt) + offs]
                keep = cj > qi
                qi, cj = qi[keep], cj[keep]
                d = np.bitwise_count(h[qi] ^ h[cj])
                ok = d <= max_distance
                if ok.any():
                    found.append(qi[ok] * n + cj[ok])
    if not found:
        return empty
    code = np.unique(np.concatenate(found))
    i, j = code // n, code % n
    return i, j, np.bitwise_count(h[i] ^ h[j]).astype(np.int64)
