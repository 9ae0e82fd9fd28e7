"""Overhead of `visiontune.detect.Detector` against calling the torchvision model directly.

Same model, same images (COCO8, decoded once to float tensors), same post-processing settings.
Direct: ``model(list_of_tensors)`` under ``inference_mode``. Wrapper: ``detector(list_of_tensors,
...)``, which also builds `Detections` and applies the class-agnostic final filter. Rounds are
interleaved (ABAB…) so that load changes on a shared machine hit both alike; the median per-round
ratio is reported (target: <= 1.05).

    python benchmarks/bench_detect_overhead.py [--arch fasterrcnn_mobilenet_v3_large_320_fpn] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VISIONTUNE_ASSETS", REPO.parent / "shared" / "assets"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()

    from torchvision.transforms.functional import pil_to_tensor

    from visiontune.detect import Detector
    from visiontune.detect.io import read_image
    from visiontune.detect.models import build_from_recipe
    from visiontune.hub import describe

    torch.manual_seed(0)
    model = build_from_recipe({"builder": "torchvision", "arch": args.arch, "num_classes": 91}).eval()
    paths = sorted((ASSETS / "coco8" / "images").rglob("*.jpg"))
    images = [pil_to_tensor(read_image(p)).float().div(255) for p in paths]
    det = Detector.from_torchvision(model, describe(f"torchvision:{args.arch}").class_names, args.arch)
    # score threshold 0 so that the random-weights model returns its full 100 boxes per image and
    # the wrapper's own work (Detections, final filter) is exercised at its largest
    thr, iou, maxdet = 0.0, 0.5, 100
    owner = model.roi_heads if hasattr(model, "roi_heads") else model
    batches = [images[i : i + args.batch] for i in range(0, len(images), args.batch)]

    def direct():
        owner.score_thresh, owner.nms_thresh, owner.detections_per_img = thr, iou, maxdet
        with torch.inference_mode():
            return [o for b in batches for o in model(b)]

    def wrapped():
        return det(images, score_threshold=thr, nms_iou=iou, max_detections=maxdet, batch_size=args.batch)

    a, b = direct(), wrapped()  # warm-up, and both give the same boxes
    assert all(torch.allclose(x["boxes"], y.boxes, atol=1e-4) for x, y in zip(a, b)), "outputs differ"
    n_boxes = sum(len(y) for y in b)
    # time spent inside model.forward during the wrapped call: the rest is the wrapper's own cost,
    # measured within the same call and so immune to load changes between calls
    inside = [0.0]
    start = {}
    model.register_forward_pre_hook(lambda m, i: start.__setitem__("t", time.perf_counter()))
    model.register_forward_hook(lambda m, i, o: inside.__setitem__(0, inside[0] + time.perf_counter() - start["t"]))
    ratios, td, tw, own = [], [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        direct()
        t1 = time.perf_counter()
        inside[0] = 0.0
        wrapped()
        t2 = time.perf_counter()
        td.append(t1 - t0)
        tw.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
        own.append((t2 - t1 - inside[0]) / inside[0])
    print(
        f"{args.arch} (random weights), {len(images)} COCO8 images, batch {args.batch}, {n_boxes} boxes, "
        f"{args.rounds} interleaved rounds, torch threads {torch.get_num_threads()}"
    )
    print(f"direct torchvision: median {statistics.median(td) * 1000:.0f} ms / round")
    print(f"visiontune Detector: median {statistics.median(tw) * 1000:.0f} ms / round")
    print(
        f"overhead ratio (wrapper / direct): median {statistics.median(ratios):.3f}  "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})  target <= 1.05"
    )
    print(
        f"wrapper's own time / model time within the same call: median {statistics.median(own) * 100:.2f}% "
        f"(max {max(own) * 100:.2f}%)"
    )


if __name__ == "__main__":
    main()
