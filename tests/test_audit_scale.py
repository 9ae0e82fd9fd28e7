"""The audit at scale, on small inputs: multi-index hashing and the faiss index agree with the
all-pairs search, streamed label issues, the cost meter, and an extraction killed with SIGKILL
that resumes to the same feature store as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visiontune.audit import ann
from visiontune.audit import duplicates as dup
from visiontune.audit.exhaustive import hash_pairs
from visiontune.audit.hashindex import block_plan, hash_pairs_indexed


def test_multi_index_hashing_finds_exactly_the_all_pairs_result():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, size=2000, dtype=np.int64).astype(np.uint64)
    h[:300] = h[300:600] ^ np.uint64(0b1011)  # 3 bits apart
    h[600:700] = h[700:800] & np.uint64(0xFFFF)  # many hashes share their high blocks
    h[900:905] = h[905]  # a group of identical hashes
    for r in (0, 3, 4, 10):
        i, j, d = hash_pairs_indexed(h, r)
        fast = set(zip(i.tolist(), j.tolist(), d.tolist()))
        slow = set(hash_pairs(h, None, r))
        assert fast == slow, r
        assert (i < j).all() and np.all(np.diff(i * len(h) + j) > 0)  # sorted, each pair once
    assert len(hash_pairs_indexed(h, 4)[0]) >= 300 + 15
    blocks, radius = block_plan(4, n=1_000_000)
    assert [w for _, w in blocks] == [22, 21, 21] and radius == 1  # 23 probes a block at 1M


def _clusters(n, d, rng, spread=1.0):
    centers = rng.normal(size=(20, d)) * 2
    return (centers[rng.integers(0, 20, n)] + spread * rng.normal(size=(n, d))).astype(np.float32)


def test_ivf_range_search_recall_on_planted_near_duplicates():
    """Above EXACT_ROWS the index is approximate: recall of planted copies vs the exhaustive set."""
    rng = np.random.default_rng(1)
    x = _clusters(ann.EXACT_ROWS + 3000, 256, rng)
    src = rng.choice(len(x) // 2, 200, replace=False)
    dst = len(x) // 2 + rng.choice(len(x) // 2, 200, replace=False)
    x[dst] = x[src] + 0.1 * rng.normal(size=(200, 256)).astype(np.float32)
    search = dup.NearSearch.build(ann.ArrayVectors(x))
    assert not search.index.exact and search.Z.shape == (len(x), ann.PROJECTED_DIM)
    i, j, s = search.pairs(0.98)
    fast = set(zip(i.tolist(), j.tolist()))
    from visiontune.audit.exhaustive import similar_pairs

    slow = {(a, b) for a, b, _ in similar_pairs(x, None, 0.98)}
    assert fast <= slow  # verified on the full vectors: never a false pair
    assert len(slow) >= 200 and len(fast & slow) / len(slow) >= 0.99


def _items(rng, sizes=(300, 200)):
    items = []
    for k, n in enumerate(sizes):
        x = _clusters(n, 48, rng, spread=0.6)
        h = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
        items.append(
            dup.Item(
                ("train", "val", "test")[k],
                [f"s{k}/{i}.jpg" for i in range(n)],
                [f"c{i % 3}" for i in range(n)],
                [f"{k}-{i}" for i in range(n)],
                h,
                x,
            )
        )
    a, b = items
    b.embeddings[:20] = a.embeddings[:20] + 0.01 * rng.normal(size=(20, 48))  # near leaks
    b.dhash[20:40] = a.dhash[20:40] ^ np.uint64(0b11)  # visual leaks (and near)
    b.embeddings[20:40] = a.embeddings[20:40]
    b.sha256[40:50] = a.sha256[40:50]  # exact leaks
    a.sha256[60] = a.sha256[61]  # an exact pair within a split
    a.paths[70] = a.paths[71]  # the same file listed twice is no pair
    a.sha256[70] = a.sha256[71]
    return items


@pytest.mark.parametrize("threshold", ["auto", 0.9])
def test_indexed_find_duplicates_equals_exhaustive_row_for_row(threshold):
    items = _items(np.random.default_rng(2))
    fast = dup.find_duplicates(items, threshold=threshold)
    slow = dup.find_duplicates(items, threshold=threshold, method="exhaustive")
    pd.testing.assert_frame_equal(fast, slow)
    kinds = fast.groupby("kind").size().to_dict()
    assert kinds["exact"] >= 11 and kinds["visual"] >= 20 and kinds["near"] >= 20
    assert not ((fast["path_a"] == "s0/71.jpg") & (fast["path_b"] == "s0/71.jpg")).any()
    with pytest.raises(ValueError, match="method"):
        dup.find_duplicates(items, method="fast")


def test_streamed_label_issues_find_flipped_labels_with_probs_on_disk(tmp_path):
    from visiontune.audit.label_issues import out_of_sample_probs_streaming, rank_label_issues_streaming

    rng = np.random.default_rng(3)
    centers = rng.normal(size=(4, 64)) * 3
    y = rng.integers(0, 4, 4000)
    x = (centers[y] + rng.normal(size=(4000, 64))).astype(np.float32)
    noisy = y.copy()
    flip = rng.choice(4000, 80, replace=False)
    noisy[flip] = (noisy[flip] + 1) % 4
    probs, folds = out_of_sample_probs_streaming(
        ann.ArrayVectors(x), noisy, 4, str(tmp_path / "p.npy"), k_folds=5, dim=32, chunk=512
    )
    assert folds == 5 and probs.shape == (4000, 4) and os.path.getsize(tmp_path / "p.npy") == 4000 * 4 * 4
    np.testing.assert_allclose(np.asarray(probs).sum(1), 1, atol=1e-5)
    assert (np.asarray(probs).argmax(1) == y).mean() > 0.95  # out of sample and still right
    df = rank_label_issues_streaming(noisy, probs, list("abcd"), [str(i) for i in range(4000)], chunk=700)
    assert df["rank"].tolist() == list(range(1, 4001))
    top = set(df.head(100)["path"].astype(int))
    assert len(top & set(flip.tolist())) >= 72
    flagged = set(df[df["is_issue"]]["path"].astype(int))
    hits = len(flagged & set(flip.tolist()))  # the batched count is conservative: precise, not complete
    assert hits >= 40 and hits / len(flagged) >= 0.9


def test_cost_meter_measures_each_step():
    from visiontune.audit.cost import CostMeter

    m = CostMeter()
    with m.step("sleep"):
        time.sleep(0.1)
    with m.step("alloc"):
        big = np.ones(60 * 2**20 // 8)  # 60 MB, touched
        time.sleep(0.06)
        del big
    c = m.to_dict()
    assert list(c) == ["sleep", "alloc"]
    assert 0.09 < c["sleep"]["seconds"] < 1.0
    assert c["alloc"]["peak_rss_mb"] - c["alloc"]["start_rss_mb"] > 50


CHILD = textwrap.dedent(
    """
    import sys, time, torch
    import visiontune as vt
    from visiontune.audit.features import compute_outputs
    from visiontune.hub import Preprocess

    root, slow, paths = sys.argv[1], sys.argv[2] == "slow", sys.argv[3:]
    torch.manual_seed(0)
    p = vt.load("timm:mobilenetv3_small_050", pretrained=False, num_classes=2, class_names=["a", "b"])
    p.preprocess = Preprocess(resize=72, crop=(64, 64))
    if slow:  # this test's brake, so the kill lands mid-way
        p.model.register_forward_pre_hook(lambda m, a: time.sleep(0.25))
    o = compute_outputs(p, paths, cache_dir=root, batch_size=4, num_workers=1, chunk_rows=8, show=True)
    print("computed", o.n_computed)
    """
)


def _rows(meta: Path) -> int:
    import json

    try:
        return int(json.loads(meta.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return 0


def _store_files(root: Path) -> dict[str, object]:
    (d,) = [p for p in (root / "features").iterdir() if p.is_dir()]
    files: dict[str, object] = {f: (d / f).read_bytes() for f in ("emb.f32", "dhash.u64", "keys.bin")}
    files["rows"] = _rows(d / "store.json")
    return files


def test_killed_extraction_resumes_and_ends_with_the_same_store(assets, tmp_path):
    paths = [str(p) for p in sorted((assets / "hymenoptera" / "val" / "ants").iterdir())[:40]]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(root: Path, mode: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), str(root), mode, *paths], capture_output=True, text=True, env=env, timeout=300
        )

    whole = run(tmp_path / "whole", "fast")
    assert whole.returncode == 0 and "computed 40" in whole.stdout, whole.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(killed), "slow", *paths],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # its DataLoader worker is in its group: one kill ends both
    )
    meta = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            metas = list((killed / "features").glob("*/store.json")) if (killed / "features").is_dir() else []
            if metas and _rows(metas[0]) >= 16:
                meta = metas[0]
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert meta is not None, "the extraction never committed two chunks"
    assert proc.returncode == -signal.SIGKILL
    rows_at_kill = _rows(meta)
    assert 16 <= rows_at_kill < 40, rows_at_kill

    resumed = run(killed, "fast")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"computed {40 - rows_at_kill}" in resumed.stdout  # only what the killed run had not committed
    assert _store_files(killed) == _store_files(tmp_path / "whole")
