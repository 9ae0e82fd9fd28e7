"""LR range test (Smith, 2015): raise the learning rate exponentially from 1e-7 to 1 over a few
hundred steps, record the smoothed loss, stop when it diverges, and suggest the learning rate at
the steepest descent of the loss. The model and optimizer state are restored afterwards."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visiontune._atomic import save_figure
from visiontune.adapt.features import extract
from visiontune.adapt.groups import LayerGroups, layer_groups
from visiontune.adapt.groups import param_groups as make_groups
from visiontune.adapt.losses import build_loss
from visiontune.adapt.recipe import training_counts
from visiontune.adapt.setup import get_module, head_path, load_pretrained, load_splits
from visiontune.adapt.strategies import freeze_frozen_norms, n_trainable_backbone, set_trainable
from visiontune.engine import device_for
from visiontune.hub.classification import logits_of


@dataclass
class LRFindResult:
    """The LR range test: the learning rates tried, their (smoothed and raw) losses and the suggestion."""

    lrs: list[float]  # head learning rate at each step
    losses: list[float]  # smoothed (bias-corrected EMA) loss
    raw_losses: list[float]
    suggestion: float | None  # steepest descent of the smoothed loss
    min_loss_lr: float | None  # where the smoothed loss is lowest
    plot: Path | None = None

    def to_dict(self) -> dict:
        """The suggestion and the curve as JSON-ready values."""
        return {
            "suggestion": self.suggestion,
            "min_loss_lr": self.min_loss_lr,
            "steps": len(self.lrs),
            "plot": str(self.plot) if self.plot else None,
        }


def _cycle(batches: Iterable):
    """Repeat an iterable of batches (a DataLoader reshuffles each pass); stop if it is empty."""
    while True:
        n = 0
        for b in batches:
            n += 1
            yield b
        if n == 0:
            return


def suggest(lrs: list[float], losses: list[float], skip_start: int = 5, skip_end: int = 3) -> float | None:
    """Learning rate of the steepest negative slope of loss vs log(lr), before the minimum."""
    if len(lrs) < skip_start + skip_end + 3:
        return None
    lo = np.log10(np.asarray(lrs))
    ls = np.asarray(losses)
    end = int(np.argmin(ls[: len(ls) - skip_end])) + 1 if len(ls) > skip_end else len(ls)
    end = max(end, skip_start + 3)
    g = np.gradient(ls[skip_start:end], lo[skip_start:end])
    if not len(g):
        return None
    return float(lrs[skip_start + int(np.argmin(g))])


def lr_find(
    model: nn.Module,
    batches: Iterable,
    param_groups: list[dict] | None = None,
    *,
    optimizer: str = "adamw",
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    num_steps: int = 100,
    smooth: float = 0.98,
    diverge: float = 4.0,
    loss_fn: Callable = F.cross_entropy,
    forward: Callable | None = None,
    device: torch.device | str = "cpu",
    plot: str | os.PathLike | None = None,
    title: str = "LR range test",
) -> LRFindResult:
    """Run the range test on ``model`` over ``batches`` (cycled as needed).

    ``param_groups`` (from :func:`visiontune.adapt.param_groups`) keep their ratios: every group's
    lr is scaled by the same factor, and the head's lr is what is swept and reported.
    """

    forward = forward or (lambda x: logits_of(model(x)))
    state = copy.deepcopy(model.state_dict())
    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": 1.0}]
    ref = param_groups[-1]["lr"]
    ratios = [g["lr"] / ref for g in param_groups]
    groups = [{k: v for k, v in g.items()} for g in param_groups]
    opt = (
        torch.optim.SGD(groups, lr=start_lr, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.AdamW(groups, lr=start_lr)
    )
    gamma = (end_lr / start_lr) ** (1.0 / max(1, num_steps - 1))
    lrs, raw, smoothed = [], [], []
    avg, best = 0.0, math.inf
    step = 0
    model.train()
    freeze_frozen_norms(model)  # frozen BatchNorm keeps its statistics, as in training
    try:
        for x, y in _cycle(batches):
            lr = start_lr * gamma**step
            for g, r in zip(opt.param_groups, ratios):
                g["lr"] = lr * r
            x, y = x.to(device), y.to(device)
            loss = loss_fn(forward(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            v = float(loss.detach())
            if not math.isfinite(v):
                break
            avg = smooth * avg + (1 - smooth) * v
            s = avg / (1 - smooth ** (step + 1))
            lrs.append(lr)
            raw.append(v)
            smoothed.append(s)
            best = min(best, s)
            step += 1
            if step >= num_steps or (step > 10 and s > diverge * best):
                break
    finally:
        model.load_state_dict(state)
        opt.zero_grad(set_to_none=True)
    sug = suggest(lrs, smoothed)
    min_lr = float(lrs[int(np.argmin(smoothed))]) if smoothed else None
    res = LRFindResult(lrs, smoothed, raw, sug, min_lr)
    if plot is not None:
        res.plot = plot_lr_find(res, plot, title)
    return res


def plot_lr_find(res: LRFindResult, path: str | os.PathLike, title: str = "LR range test") -> Path:
    """Plot loss against learning rate (log scale, suggestion marked) to the PNG ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(res.lrs, res.raw_losses, color="0.8", lw=1, label="loss per step")
    ax.plot(res.lrs, res.losses, color="C0", lw=2, label="smoothed loss")
    if res.suggestion:
        i = res.lrs.index(res.suggestion)
        ax.plot([res.suggestion], [res.losses[i]], "o", color="C3", ms=8, label=f"suggested lr {res.suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (head)")
    ax.set_ylabel("training loss")
    if res.losses:
        lo, hi = min(res.losses), res.losses[0]
        ax.set_ylim(lo - 0.1 * abs(hi - lo + 1e-8), max(hi, lo) + 0.5 * abs(hi - lo + 1e-8) + 1e-6)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def lr_find_config(
    cfg,
    out: str | os.PathLike = "lr_find.png",
    num_steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    *,
    trust_pickle: bool = False,
) -> LRFindResult:
    """The range test for a :class:`TrainConfig`: same model, data, strategy (at epoch 0), layer
    groups and lr ratios as ``train`` would use. The linear strategy runs on cached features."""
    torch.manual_seed(cfg.seed)
    splits = load_splits(cfg)
    p = load_pretrained(cfg, list(splits.classes), trust_pickle)
    model, hpath = p.model, head_path(p)
    loss = build_loss(cfg, *training_counts(cfg, splits))  # the run's loss (weights, multi-label, ...)
    device = device_for(cfg.accelerator)
    model.to(device)
    loss.to(device)
    if cfg.strategy == "linear":
        x, y = extract(
            model,
            hpath,
            splits.train.with_transform(p.preprocess),
            batch_size=64,
            num_workers=cfg.num_workers,
            device=device,
        )
        head = get_module(model, hpath)
        g = make_groups(
            head,
            LayerGroups(["head"], [[n for n, _ in head.named_parameters()]], ""),
            cfg.lr,
            head_lr=cfg.head_lr,
            weight_decay=cfg.weight_decay,
        )
        loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size, shuffle=True)
        return lr_find(
            head,
            loader,
            g,
            optimizer=cfg.optimizer,
            num_steps=num_steps,
            start_lr=start_lr,
            end_lr=end_lr,
            device=device,
            plot=out,
            title=f"LR range test: {cfg.model} (linear)",
            loss_fn=loss,
        )
    groups = layer_groups(model, hpath)
    set_trainable(model, groups, n_trainable_backbone(cfg.strategy, groups.n_backbone, 0, cfg.n_stages, []))
    g = make_groups(model, groups, cfg.lr, cfg.lr_decay, cfg.head_lr, cfg.weight_decay)
    ds = splits.train.with_transform(p.preprocess if cfg.augment == "none" else p.train_transform(cfg.augment))
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers)

    def fwd(x):
        return logits_of(model(x))

    return lr_find(
        model,
        loader,
        g,
        optimizer=cfg.optimizer,
        num_steps=num_steps,
        start_lr=start_lr,
        end_lr=end_lr,
        forward=fwd,
        device=device,
        plot=out,
        title=f"LR range test: {cfg.model} ({cfg.strategy})",
        loss_fn=loss,
    )
