"""The parts of a classification run that its options decide: the module (loss, mixer,
multi-label or not), the training loader (shuffle or balanced), the cached-feature probe's
setup, and the final evaluation (multiclass or multi-label metrics, TTA, the EMA weights) with
what is saved beside the model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visiontune.adapt.features import cache_key, cached_features, weights_hash
from visiontune.adapt.groups import LayerGroups, layer_groups
from visiontune.adapt.losses import build_loss
from visiontune.adapt.module import AdaptModule
from visiontune.adapt.multilabel import TASK, MultiLabelModule, multilabel_metrics, tune_thresholds
from visiontune.adapt.report import classification_metrics, plot_confusion_matrix, predict_logits
from visiontune.adapt.sampling import train_loader
from visiontune.adapt.setup import get_module
from visiontune.adapt.strategies import set_trainable
from visiontune.adapt.tricks import make_mixer
from visiontune.engine import device_for
from visiontune.hub import Pretrained
from visiontune.hub.classification import logits_of
from visiontune.hub.tta import tta_logits
from visiontune.progress import progress as progress_bar


def training_counts(cfg: Any, splits: Any) -> tuple[np.ndarray, int]:
    """(per-class counts — per-label positives for multilabel —, images) of the training split."""
    ds = splits.train
    if cfg.task == "multilabel":
        return ds.targets_matrix.sum(0), len(ds)
    return np.bincount(ds.labels, minlength=len(splits.classes)), len(ds)


def make_module(cfg: Any, model: nn.Module, groups: LayerGroups, n_classes: int, hp: dict, counts, n_train: int, **kw):
    """The LightningModule of the run, with its loss and batch mixer."""
    cls = MultiLabelModule if cfg.task == "multilabel" else AdaptModule
    mixer = make_mixer(cfg, n_classes, cached=kw.pop("cached", False))
    return cls(model, groups, n_classes, hp, loss_fn=build_loss(cfg, counts, n_train), mixer=mixer, **kw)


def image_loaders(cfg: Any, train_ds: Any, val_ds: Any, splits: Any) -> tuple[DataLoader, DataLoader]:
    """Training loader (seeded shuffle or balanced sampler) and validation loader over images."""
    from visiontune.engine import seeded_loader

    labels = splits.train.labels
    val = seeded_loader(val_ds, cfg.batch_size, shuffle=False, seed=cfg.seed, num_workers=cfg.num_workers, train=False)
    return train_loader(train_ds, labels, cfg), val


def cached_setup(cfg, p, hpath, splits, val_ds, hp, timings, console, progress, counts, n_train):
    """Linear strategy fast path: backbone features once, then a head-only module on tensors."""
    model = p.model
    set_trainable(model, layer_groups(model, hpath), 0)  # the backbone is frozen: only the head trains
    device = device_for(cfg.accelerator)
    model.to(device)
    bh = weights_hash(model, exclude_prefix=hpath)
    eval_train = splits.train.with_transform(p.preprocess)  # eval preprocessing: no augmentation
    out = {}
    for split, ds in (("train", eval_train), ("val", val_ds)):
        key = cache_key(cfg.model, bh, splits.version, split, ds.paths, p.preprocess)
        with progress_bar(f"features ({split})", len(ds), enabled=progress, console=console) as bar:
            f = cached_features(
                model,
                hpath,
                ds,
                key,
                mode=cfg.feature_cache,
                cache_dir=cfg.cache_dir,
                batch_size=max(cfg.batch_size, 64),
                num_workers=cfg.num_workers,
                device=device,
                progress=bar,
            )
        timings[f"features_{split}_s"] = f.seconds
        how = "from cache" if f.cached else f"computed in {f.seconds:.1f}s"
        console.print(f"features ({split}): {tuple(f.x.shape)} {how}")
        if cfg.task == "multilabel":
            f.y = f.y.float()
        out[split] = f
    model.to("cpu")
    head = get_module(model, hpath)
    names = [n for n, _ in head.named_parameters()]
    head_groups = LayerGroups(["head"], [names], head_path="", source="head-only (cached features)")
    module = make_module(
        cfg, head, head_groups, len(splits.classes), {**hp, "strategy": "full"}, counts, n_train, cached=True
    )
    tensors = TensorDataset(out["train"].x, out["train"].y)
    loader = train_loader(tensors, splits.train.labels, cfg, seeded=False)
    val_loader = DataLoader(TensorDataset(out["val"].x, out["val"].y), batch_size=1024, shuffle=False)
    return module, loader, val_loader, out


def set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the submodule at a dotted path."""
    parent_path, _, last = path.rpartition(".")
    parent = get_module(model, parent_path) if parent_path else model
    if last.lstrip("-").isdigit():
        cast(nn.Sequential, parent)[int(last)] = new
    else:
        setattr(parent, last, new)


def ema_model(model: nn.Module, hpath: str, averaged: nn.Module | None, cached: bool) -> nn.Module | None:
    """The whole classifier with the EMA weights (for a cached probe: the EMA head swapped in)."""
    if averaged is None:
        return None
    if not cached:
        return copy.deepcopy(averaged).eval()
    full = copy.deepcopy(model).eval()
    set_module(full, hpath, copy.deepcopy(averaged).eval())
    return full


def split_logits(cfg, model: nn.Module, hpath: str, ds: Any, feats: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) of ``model`` on one split: on the cached features when there are some
    and no TTA is asked for, else on the images (with ``cfg.tta``)."""
    model = model.eval()
    device = next(model.parameters()).device
    multi = cfg.task == "multilabel"
    if feats is not None and cfg.tta == "none":
        head = get_module(model, hpath).eval()
        batches = DataLoader(TensorDataset(feats.x, feats.y), batch_size=1024)
        logits, y = predict_logits(lambda x: logits_of(head(x)), batches, device)
    else:
        batches = DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        logits, y = predict_logits(
            lambda x: tta_logits(lambda v: logits_of(model(v)), x, cfg.tta, multilabel=multi), batches, device
        )
    return logits, (y.float() if multi else y)


def evaluate_splits(cfg, p, hpath, val_ds, splits, feats, run_dir: Path, console, averaged=None) -> dict:
    """Metrics of the trained model (and of its EMA weights, prefixed ``<split>_ema``) on val and
    test; multilabel runs tune per-label thresholds on val (``metrics["thresholds"]``)."""
    classes = list(splits.classes)
    evals = [("val", val_ds, feats["val"] if feats else None)]
    if splits.test is not None and len(splits.test):
        evals.append(("test", splits.test.with_transform(p.preprocess), None))
    models = [("", p.model)]
    ema = ema_model(p.model, hpath, averaged, feats is not None)
    if ema is not None:
        models.append(("_ema", ema))
    metrics: dict = {}
    for suffix, model in models:
        thresholds = None
        for split, ds, f in evals:
            logits, y = split_logits(cfg, model, hpath, ds, f)
            name = f"{split}{suffix}"
            if cfg.task == "multilabel":
                if thresholds is None:  # tuned on val, applied to test
                    thresholds = tune_thresholds(logits.sigmoid().numpy(), y.numpy())
                m = multilabel_metrics(logits, y, classes, prefix=name, thresholds=thresholds)
                m[f"{name}/f1_macro@0.5"] = multilabel_metrics(logits, y, classes, prefix=name)[f"{name}/f1_macro"]
                metrics.update(m)
                print_multilabel(console, name, m, classes)
                continue
            m, cm = classification_metrics(logits, y, classes, prefix=name)
            metrics.update(m)
            png = plot_confusion_matrix(
                cm, classes, run_dir / "plots" / f"confusion_matrix_{name}.png", title=f"{name} confusion matrix"
            )
            metrics[f"{name}/confusion_matrix_png"] = str(png)
            print_split_metrics(console, name, m, classes)
        if thresholds is not None:
            metrics[f"thresholds{suffix}"] = {c: float(t) for c, t in zip(classes, thresholds)}
    if ema is not None:
        metrics["ema_model"] = ema
    return metrics


def print_split_metrics(console: Any, split: str, m: dict, classes: list[str]) -> None:
    """The headline line and (for up to 50 classes) the per-class table of one split."""
    top5 = f"  top-5 {m[f'{split}/top5']:.4f}" if f"{split}/top5" in m else ""
    console.print(
        f"[bold]{split}[/]: top-1 {m[f'{split}/acc']:.4f}{top5}  balanced {m[f'{split}/balanced_acc']:.4f}  "
        f"ECE {m[f'{split}/ece']:.4f}  (n={m[f'{split}/n']})",
        highlight=False,
    )
    if len(classes) > 50:
        return
    from rich.table import Table

    t = Table(title=f"{split} per class")
    t.add_column("class", justify="left")
    t.add_column("precision", justify="right")
    t.add_column("recall", justify="right")
    prec, rec = m[f"{split}/per_class_precision"], m[f"{split}/per_class_recall"]
    for c in classes:
        t.add_row(c, "-" if prec[c] is None else f"{prec[c]:.4f}", "-" if rec[c] is None else f"{rec[c]:.4f}")
    console.print(t)


def print_multilabel(console: Any, split: str, m: dict, classes: list[str]) -> None:
    """Headline line and per-label table (AP, F1, positives) of one split."""
    from rich.table import Table

    console.print(
        f"[bold]{split}[/]: mAP {m[f'{split}/map']:.4f}  F1 macro {m[f'{split}/f1_macro']:.4f}  "
        f"micro {m[f'{split}/f1_micro']:.4f}  (n={m[f'{split}/n']})",
        highlight=False,
    )
    if len(classes) > 50:
        return
    t = Table(title=f"{split} per label")
    for c in ("label", "AP", "F1", "positives"):
        t.add_column(c, justify="left" if c == "label" else "right")
    ap, f1, pos = m[f"{split}/per_label_ap"], m[f"{split}/per_label_f1"], m[f"{split}/positives"]
    for c in classes:
        t.add_row(c, "-" if ap[c] is None else f"{ap[c]:.4f}", f"{f1[c]:.4f}", str(pos[c]))
    console.print(t)


def prepare_card(cfg: Any, p: Pretrained, metrics: dict, suffix: str = "") -> None:
    """Multi-label models carry their task and per-label thresholds on the card."""
    if cfg.task == "multilabel":
        p.card.task = TASK
        p.card.extra["thresholds"] = dict(metrics.get(f"thresholds{suffix}") or {})
        p.card.extra["output"] = "sigmoid"


def save_ema(cfg: Any, p: Pretrained, metrics: dict, run_dir: Path, training: dict, scalars: Any) -> Path | None:
    """``<run>/model_ema``: the EMA weights as a saved model of their own."""
    ema = metrics.pop("ema_model", None)
    if ema is None:
        return None
    q = Pretrained(ema, p.card.model_copy(deep=True), p.preprocess)
    prepare_card(cfg, q, metrics, "_ema")
    ema_metrics = {k.replace("_ema/", "/"): v for k, v in scalars(metrics).items() if "_ema/" in k}
    return q.save(run_dir / "model_ema", metrics=ema_metrics, training={**training, "ema_weights": True})
