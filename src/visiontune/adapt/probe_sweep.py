"""Many linear heads in one pass over cached features: a (lr, weight decay) sweep that costs
about one setting (the approach of DINOv2's linear evaluation).

All K heads are one ``(K, D, C)`` weight tensor: every batch is read once and multiplied by all
heads at once; the losses are summed (each head's gradient is its own) and a vectorised AdamW
applies each head's learning rate and weight decay, with the same warmup-free cosine schedule the
``linear`` strategy uses. The batch order is a function of (seed, epoch), as in training.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visiontune.adapt.config import TrainConfig
from visiontune.adapt.features import cache_key, cached_features, weights_hash
from visiontune.adapt.multilabel import multilabel_metrics
from visiontune.adapt.report import classification_metrics
from visiontune.adapt.setup import get_module, head_path, load_pretrained, load_splits
from visiontune.engine import device_for, mix_seed
from visiontune.errors import ConfigError
from visiontune.records import Record


class SweepRecord(Record):
    """``sweep.json``: every (lr, weight decay) setting of a one-pass probe sweep and its score."""

    KIND: ClassVar[str] = "probe-sweep"
    VERSION: ClassVar[int] = 1

    model: str
    data: str
    metric: str
    epochs: int
    settings: list[dict[str, Any]]
    best: dict[str, Any]
    seconds: float


@dataclass
class SweepResult:
    """Scores of every setting; ``best`` is the setting with the highest ``metric``."""

    settings: list[dict[str, Any]]
    metric: str
    seconds: float
    dir: Path | None = None
    weights: torch.Tensor | None = field(default=None, repr=False)  # (K, D, C) trained heads

    @property
    def best(self) -> dict[str, Any]:
        """The best setting (``lr``, ``weight_decay``, the metric)."""
        return max(self.settings, key=lambda s: s[self.metric])

    @property
    def metrics(self) -> dict[str, Any]:
        """The best setting's scores."""
        return dict(self.best)

    def to_dict(self) -> dict:
        """JSON-ready: every setting, the best one, the time taken."""
        return {"metric": self.metric, "settings": self.settings, "best": self.best, "seconds": self.seconds}

    def summary(self) -> str:
        """One line: how many settings, the best one."""
        b = self.best
        return (
            f"{len(self.settings)} settings in {self.seconds:.1f}s; best lr {b['lr']:.3g} weight_decay "
            f"{b['weight_decay']:.3g}: {self.metric} {b[self.metric]:.4f}"
        )


def grid(lrs: Sequence[float], weight_decays: Sequence[float]) -> list[tuple[float, float]]:
    """Every (lr, weight decay) pair."""
    return [(float(a), float(b)) for a, b in itertools.product(lrs, weight_decays)]


def train_heads(
    x: torch.Tensor,
    y: torch.Tensor,
    settings: Sequence[tuple[float, float]],
    *,
    num_classes: int,
    epochs: int = 10,
    batch_size: int = 32,
    seed: int = 0,
    multilabel: bool = False,
    label_smoothing: float = 0.0,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one linear head per ``(lr, weight_decay)`` setting on features ``x`` (N, D) in one
    pass per epoch; returns the weights (K, D, C) and biases (K, C)."""
    k, (n, d) = len(settings), x.shape
    x = x.float().contiguous()
    g = torch.Generator().manual_seed(mix_seed(seed, 0xC0FFEE))
    if init is None:  # nn.Linear's default init, the same start for every head
        bound = 1 / math.sqrt(d)
        w0 = (torch.rand(d, num_classes, generator=g) * 2 - 1) * bound
        b0 = (torch.rand(num_classes, generator=g) * 2 - 1) * bound
    else:
        w0, b0 = init
    c = num_classes
    # all heads side by side: one (D, K*C) matrix, one GEMM per batch
    w = w0[:, None, :].expand(d, k, c).reshape(d, k * c).clone().requires_grad_(True)
    b = b0[None, :].expand(k, c).reshape(k * c).clone().requires_grad_(True)
    lr = torch.tensor([s[0] for s in settings], dtype=torch.float32)[:, None].expand(k, c).reshape(k * c)
    wd = torch.tensor([s[1] for s in settings], dtype=torch.float32)[:, None].expand(k, c).reshape(k * c)
    state = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for p in (w, b)}
    b1, b2, eps = 0.9, 0.999, 1e-8
    steps_per_epoch = math.ceil(n / batch_size)
    total, step = max(1, epochs * steps_per_epoch), 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
            logits = torch.addmm(b, xb, w).view(len(idx), k, c)
            if multilabel:
                loss = F.binary_cross_entropy_with_logits(
                    logits, yb.float()[:, None, :].expand_as(logits), reduction="sum"
                ) / (len(idx) * c)
            else:  # the sum over heads of each head's mean loss: every head gets its own gradient
                target = yb[:, None].expand(len(idx), k).reshape(-1)
                loss = F.cross_entropy(
                    logits.reshape(-1, c), target, reduction="sum", label_smoothing=label_smoothing
                ) / len(idx)
            w.grad = b.grad = None
            loss.backward()
            step += 1
            factor = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - 1) / total)))
            with torch.no_grad():
                bc1, bc2 = 1 - b1**step, 1 - b2**step
                decay = 1 - lr * factor * wd  # decoupled weight decay, per head
                for p in (w, b):
                    m, v = state[id(p)]
                    grad = p.grad
                    assert grad is not None  # loss.backward() just filled it
                    p.mul_(decay)
                    m.lerp_(grad, 1 - b1)
                    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    # m / (sqrt(v / bc2) + eps) = sqrt(bc2) * m / (sqrt(v) + eps * sqrt(bc2)): one temporary
                    upd = v.sqrt().add_(eps * math.sqrt(bc2))
                    torch.div(m, upd, out=upd)
                    p.addcmul_(upd, lr, value=-factor * math.sqrt(bc2) / bc1)
    w_out = w.detach().view(d, k, c).permute(1, 0, 2).contiguous()
    return w_out, b.detach().view(k, c)


def score_heads(
    w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, classes: list[str], multilabel: bool
) -> list[dict[str, float]]:
    """Validation metrics of every head."""
    out = []
    with torch.no_grad():
        logits = torch.einsum("nd,kdc->knc", x, w) + b[:, None, :]
    for k in range(len(w)):
        if multilabel:
            m = multilabel_metrics(logits[k], y.float(), classes)
            out.append({"val/map": m["val/map"], "val/f1_macro@0.5": m["val/f1_macro"]})
        else:
            m, _ = classification_metrics(logits[k], y, classes)
            out.append({"val/acc": m["val/acc"], "val/balanced_acc": m["val/balanced_acc"]})
    return out


def probe_sweep(
    cfg: TrainConfig | dict,
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    *,
    out: str | Path | None = None,
    trust_pickle: bool = False,
) -> SweepResult:
    """Sweep ``lrs`` x ``weight_decays`` for the cached-feature probe of ``cfg`` (its model, data,
    epochs, batch size, seed) in one pass; with ``out``, ``sweep.json`` is written there."""
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    settings = grid(lrs, weight_decays)
    if not settings:
        raise ConfigError("probe_sweep needs at least one lr and one weight decay")
    splits = load_splits(cfg)
    p = load_pretrained(cfg, list(splits.classes), trust_pickle)
    hpath = head_path(p)
    head = get_module(p.model, hpath)
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"{cfg.model}: the one-pass sweep trains linear heads; this head is a {type(head).__name__}")
    device = device_for(cfg.accelerator)
    p.model.to(device)
    bh = weights_hash(p.model, exclude_prefix=hpath)
    feats = {}
    for split, ds in (("train", splits.train), ("val", splits.val)):
        ds = ds.with_transform(p.preprocess)
        key = cache_key(cfg.model, bh, splits.version, split, ds.paths, p.preprocess)
        feats[split] = cached_features(
            p.model, hpath, ds, key, mode=cfg.feature_cache, cache_dir=cfg.cache_dir, device=device
        )
    multi = cfg.task == "multilabel"
    t0 = time.perf_counter()
    w, b = train_heads(
        feats["train"].x,
        feats["train"].y,
        settings,
        num_classes=len(splits.classes),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        multilabel=multi,
        label_smoothing=cfg.label_smoothing,
    )
    scores = score_heads(w, b, feats["val"].x, feats["val"].y, list(splits.classes), multi)
    seconds = time.perf_counter() - t0
    rows = [{"lr": lr, "weight_decay": wd, **s} for (lr, wd), s in zip(settings, scores)]
    result = SweepResult(rows, "val/map" if multi else "val/acc", seconds, weights=w)
    if out is not None:
        result.dir = Path(out)
        SweepRecord(
            model=cfg.model,
            data=cfg.data,
            metric=result.metric,
            epochs=cfg.epochs,
            settings=rows,
            best=result.best,
            seconds=seconds,
        ).write(result.dir / "sweep.json")
    return result


def log_grid(low: float, high: float, n: int) -> list[float]:
    """``n`` log-spaced values from ``low`` to ``high``."""
    return [float(v) for v in np.geomspace(low, high, n)] if n > 1 else [float(low)]
