"""Batch prediction throughput: `visiontune.serve.predict_batch` vs a bare PyTorch DataLoader loop.

10,000 images (imagenet-sample-1k listed 10 times in a .txt manifest), a small model
(timm mobilenetv3_small_050, fixed random weights saved to a folder: the cost of a forward does
not depend on the weights). Both sides do the same work: ``read_image`` + the model's own
preprocessing in ``--num-workers`` DataLoader workers, batches of ``--batch-size``, a forward,
softmax and top-5, with the same torch thread count. The bare loop keeps its results in a
Python list; predict_batch also turns them into rows and writes zstd Parquet parts (resumable),
and reports progress. The ratio of the two images/s is printed at the end (>= 0.9 is the goal).

    python benchmarks/bench_batch_predict.py [--images 10000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VISIONTUNE_ASSETS", REPO.parent / "shared" / "assets"))


class Images(Dataset):
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from visiontune.data import read_image

        return self.preprocess(read_image(self.paths[i]))


def bare_loop(p, paths, batch_size, num_workers, threads) -> float:
    """The baseline: DataLoader → forward → softmax → top-5, results kept in a list."""
    torch.set_num_threads(threads)
    loader = DataLoader(Images(paths, p.preprocess), batch_size=batch_size, num_workers=num_workers, prefetch_factor=4)
    results = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x in loader:
            prob, idx = p.model(x).softmax(-1).topk(5, dim=-1)
            results += list(zip(idx.tolist(), prob.tolist()))
    seconds = time.perf_counter() - t0
    assert len(results) == len(paths)
    return len(paths) / seconds


def visiontune_run(model_dir, manifest, out, batch_size, num_workers, threads) -> tuple[float, dict]:
    from visiontune.serve import predict_batch

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = predict_batch(
        model_dir, manifest, out, batch_size=batch_size, num_workers=num_workers, threads=threads, topk=5
    )
    seconds = time.perf_counter() - t0
    return res.metrics["images"] / seconds, res.metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: as predict_batch picks)")
    ap.add_argument("--repeats", type=int, default=1, help="alternate baseline / visiontune this many times")
    args = ap.parse_args()

    import visiontune as vt
    from visiontune.serve.batch import default_threads

    threads = args.threads or default_threads(args.num_workers)
    files = sorted((ASSETS / "imagenet-sample-1k").glob("*.JPEG"))
    paths = [str(files[i % len(files)]) for i in range(args.images)]
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        manifest = work / "images.txt"
        manifest.write_text("\n".join(paths) + "\n")
        torch.manual_seed(0)
        model_dir = vt.load("timm:mobilenetv3_small_050", pretrained=False).save(work / "model")
        p = vt.load(model_dir)
        print(
            f"{len(paths):,} images ({len(files)} distinct), batch {args.batch_size}, {args.num_workers} workers, "
            f"{threads} torch thread(s); load average {os.getloadavg()}",
            flush=True,
        )
        base, ours = [], []
        for r in range(args.repeats):
            base.append(bare_loop(p, paths, args.batch_size, args.num_workers, threads))
            print(f"  bare DataLoader loop   run {r + 1}: {base[-1]:7.1f} images/s", flush=True)
            ips, metrics = visiontune_run(model_dir, manifest, work / "out", args.batch_size, args.num_workers, threads)
            ours.append(ips)
            print(
                f"  visiontune predict     run {r + 1}: {ours[-1]:7.1f} images/s  ({metrics['chunks']} parts)",
                flush=True,
            )
        size = sum(f.stat().st_size for f in (work / "out").glob("part-*.parquet"))
        print("\n| pipeline | images | images/s |")
        print("|---|---:|---:|")
        print(f"| bare PyTorch DataLoader loop | {len(paths):,} | {max(base):.1f} |")
        print(f"| visiontune predict_batch → Parquet | {len(paths):,} | {max(ours):.1f} |")
        print(f"\nratio visiontune / bare loop (best of {args.repeats}): {max(ours) / max(base):.3f}")
        print(f"Parquet: {size / 1e6:.2f} MB for {len(paths):,} rows; load average {os.getloadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
