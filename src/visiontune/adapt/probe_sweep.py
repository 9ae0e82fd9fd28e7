"""Many linear heads in one pass over cached features: a (lr, weight decay) sweep that costs
about one setting (the approach of DINOv2's linear evaluation).

All K heads (biases included) are one ``(D+1, C*K)`` matrix: every batch is read once and
multiplied by all heads in one GEMM; each head's gradient of its own mean loss (cross-entropy with
label smoothing, or BCE) comes in closed form in a second GEMM, and a vectorised AdamW applies
each head's learning rate and weight decay, with the same warmup-free cosine schedule the
``linear`` strategy uses. The batch order is a function of (seed, epoch), as in training.
``train_heads`` returns the weights as ``(K, D, C)`` and the biases as ``(K, C)``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
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


@contextlib.contextmanager
def _flush_denormals():
    """Treat subnormal floats as zero, and use one CPU thread, while the heads train (restoring
    both after).

    Heads with a large learning rate saturate: softmax / sigmoid gradients and Adam's second
    moments pass through the subnormal range (< 1.2e-38), where x86 arithmetic is 10-100x slower;
    with 20 heads some always do, and the sweep cost 2.5x one head instead of ~1.3x."""
    was = float(torch.tensor([1e-40]) * 1.0) == 0.0  # a subnormal reads as 0 when flushing is on
    supported = torch.set_flush_denormal(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~50k-element ops: a second thread only adds contention
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if supported:
            torch.set_flush_denormal(was)


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
    pass per epoch; returns the weights (K, D, C) and biases (K, C). Subnormal floats are flushed
    to zero meanwhile (see ``_flush_denormals``)."""
    with _flush_denormals():
        return _train_heads(
            x,
            y,
            settings,
            num_classes=num_classes,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            multilabel=multilabel,
            label_smoothing=label_smoothing,
            init=init,
        )


def _train_heads(
    x: torch.Tensor,
    y: torch.Tensor,
    settings: Sequence[tuple[float, float]],
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    seed: int,
    multilabel: bool,
    label_smoothing: float,
    init: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    k, (n, d) = len(settings), x.shape
    c = num_classes
    g = torch.Generator().manual_seed(mix_seed(seed, 0xC0FFEE))
    if init is None:  # nn.Linear's default init, the same start for every head
        bound = 1 / math.sqrt(d)
        w0 = (torch.rand(d, num_classes, generator=g) * 2 - 1) * bound
        b0 = (torch.rand(num_classes, generator=g) * 2 - 1) * bound
    else:
        w0, b0 = init
    # all heads (and their biases: a column of ones appended to x) in one (D+1, C*K) matrix,
    # column c*K + k = class c of head k: one GEMM per batch forward, one for the gradient, one
    # vectorised AdamW step; class-major columns make the softmax over classes run along K
    x1 = torch.cat([x.float(), torch.ones(n, 1)], dim=1)
    y = y.float() if multilabel else y.long()
    wb0 = torch.cat([w0.t(), b0[:, None]], dim=1)  # (C, D+1)
    w = wb0.t()[:, :, None].expand(d + 1, c, k).reshape(d + 1, c * k).clone()
    lr, wd = (torch.tensor(v, dtype=torch.float32).repeat(c) for v in zip(*settings))
    m, v, grad, denom = (torch.zeros_like(w) for _ in range(4))
    b1, b2, eps = 0.9, 0.999, 1e-8
    total, step = max(1, epochs * math.ceil(n / batch_size)), 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb, nb = torch.index_select(x1, 0, idx), torch.index_select(y, 0, idx), len(idx)
            logits = torch.mm(xb, w).view(nb, c, k)
            # d(loss)/d(logits) in closed form, the loss being each head's mean over the batch
            if multilabel:  # BCE averaged over batch and labels
                dz = torch.sigmoid(logits).sub_(yb[:, :, None]).div_(nb * c)
            else:  # cross-entropy with label smoothing: softmax minus the smoothed one-hot target
                dz = torch.softmax(logits, dim=1)
                dz.sub_(label_smoothing / c)
                dz.scatter_add_(1, yb[:, None, None].expand(nb, 1, k), torch.full((nb, 1, k), label_smoothing - 1.0))
                dz.div_(nb)
            torch.mm(xb.t(), dz.view(nb, c * k), out=grad)
            step += 1
            factor = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - 1) / total)))
            bc1, bc2 = 1 - b1**step, 1 - b2**step
            w.mul_(1 - lr * factor * wd)  # decoupled weight decay, per head
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            # lr * m / (sqrt(v / bc2) + eps) = lr * sqrt(bc2) * m / (sqrt(v) + eps * sqrt(bc2))
            torch.sqrt(v, out=denom).add_(eps * math.sqrt(bc2)).div_(lr)
            w.addcdiv_(m, denom, value=-factor * math.sqrt(bc2) / bc1)
    w = w.view(d + 1, c, k)
    return w[:d].permute(2, 0, 1).contiguous(), w[d].t().contiguous()


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
