"""Training losses of a classification run, built from the config in one place.

* multiclass: cross-entropy with optional class weights (``class_weights: auto`` = n / (C * n_c)
  from the training counts), label smoothing, soft targets (mixup / cutmix) and the logit-adjusted
  loss of Menon et al. (2021): ``tau * log(prior)`` is added to the logits during training only,
  so the model learns the balanced posterior and predicts with its raw logits.
* multilabel: binary cross-entropy (per-label positive weights with ``class_weights``) or the
  asymmetric loss of Ridnik et al. (2021): focusing ``gamma_neg`` on negatives, ``gamma_pos``
  on positives and a probability margin ``clip`` that discards very easy negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visiontune.errors import ConfigError


def class_weights_from(spec: str | Sequence[float] | None, counts: np.ndarray) -> list | None:
    """The per-class weights ``spec`` asks for, given the training counts per class.

    ``"auto"``: ``n / (C * n_c)`` (sklearn's "balanced"); a list is used as given (one weight per
    class). Classes without training images get weight 0. Multilabel runs: :func:`pos_weight_from`.
    """
    if spec is None:
        return None
    counts = np.asarray(counts, dtype=np.float64)
    c = len(counts)
    if isinstance(spec, str):
        if spec != "auto":
            raise ConfigError(f"key 'class_weights': expected 'auto' or a list of {c} numbers, got {spec!r}")
        total = counts.sum()
        auto = np.where(counts > 0, total / (c * np.maximum(counts, 1)), 0.0)
        return [float(v) for v in auto]
    w = [float(v) for v in spec]
    if len(w) != c:
        raise ConfigError(f"key 'class_weights': {len(w)} weights for {c} classes")
    if any(v < 0 for v in w):
        raise ConfigError("key 'class_weights': weights must be >= 0")
    return w


def pos_weight_from(spec: str | Sequence[float] | None, positives: np.ndarray, n: int) -> list | None:
    """BCE positive weights of a multilabel run: ``auto`` = negatives / positives per label."""
    if spec is None:
        return None
    pos = np.asarray(positives, dtype=np.float64)
    if isinstance(spec, str):
        if spec != "auto":
            raise ConfigError(f"key 'class_weights': expected 'auto' or a list of {len(pos)} numbers, got {spec!r}")
        auto = np.where(pos > 0, np.clip((n - pos) / np.maximum(pos, 1), 1e-3, 100.0), 1.0)
        return [float(v) for v in auto]
    w = [float(v) for v in spec]
    if len(w) != len(pos):
        raise ConfigError(f"key 'class_weights': {len(w)} weights for {len(pos)} labels")
    return w


class ClassificationLoss(nn.Module):
    """Cross-entropy with class weights, label smoothing, logit adjustment and soft targets."""

    weight: torch.Tensor | None  # buffers (register_buffer): declared for the type checker
    log_prior: torch.Tensor | None

    def __init__(
        self,
        weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        log_prior: Sequence[float] | None = None,
        tau: float = 0.0,
    ):
        super().__init__()
        self.label_smoothing = float(label_smoothing)
        self.tau = float(tau)
        self.register_buffer("weight", torch.tensor(weights, dtype=torch.float32) if weights else None)
        self.register_buffer(
            "log_prior", torch.tensor(log_prior, dtype=torch.float32) if (tau and log_prior is not None) else None
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.log_prior is not None:
            logits = logits + self.tau * self.log_prior
        if target.ndim == 1:  # class indices
            return F.cross_entropy(logits, target, weight=self.weight, label_smoothing=self.label_smoothing)
        # soft targets (mixup / cutmix): smoothing mixes in the uniform distribution
        soft = target.float()
        if self.label_smoothing:
            soft = soft * (1 - self.label_smoothing) + self.label_smoothing / soft.shape[-1]
        per = -(soft * logits.log_softmax(-1))
        if self.weight is not None:
            per = per * self.weight
            return per.sum(-1).sum() / (soft * self.weight).sum().clamp_min(1e-12)
        return per.sum(-1).mean()


class MultiLabelLoss(nn.Module):
    """BCE (``gamma_neg = gamma_pos = clip = 0``) or the asymmetric loss, mean over labels and
    images; ``pos_weight`` scales the positive term per label."""

    pos_weight: torch.Tensor | None  # a buffer (register_buffer): declared for the type checker

    def __init__(
        self,
        kind: str = "bce",
        pos_weight: Sequence[float] | None = None,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.kind = kind
        self.gamma_neg, self.gamma_pos, self.clip = float(gamma_neg), float(gamma_pos), float(clip)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("pos_weight", torch.tensor(pos_weight, dtype=torch.float32) if pos_weight else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, y = logits.float(), target.float()
        if self.label_smoothing:
            y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, y, pos_weight=self.pos_weight)
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0) if self.clip else p  # shifted probability of the negatives
        log_pos = F.logsigmoid(logits)
        log_neg = torch.log((1 - p_neg).clamp(min=1e-8))
        loss_pos = y * log_pos * (1 - p).pow(self.gamma_pos)
        loss_neg = (1 - y) * log_neg * p_neg.pow(self.gamma_neg)
        if self.pos_weight is not None:
            loss_pos = loss_pos * self.pos_weight
        return -(loss_pos + loss_neg).mean()


def build_loss(cfg, counts: np.ndarray, n_train: int) -> nn.Module:
    """The training loss ``cfg`` asks for; ``counts`` are per-class (multilabel: per-label
    positive) training counts, ``n_train`` the number of training images."""
    if cfg.task == "multilabel":
        kind = "asl" if cfg.loss == "asl" else "bce"
        return MultiLabelLoss(
            kind,
            pos_weight_from(cfg.class_weights, counts, n_train),
            gamma_neg=cfg.asl_gamma_neg if kind == "asl" else 0.0,
            gamma_pos=cfg.asl_gamma_pos if kind == "asl" else 0.0,
            clip=cfg.asl_clip if kind == "asl" else 0.0,
            label_smoothing=cfg.label_smoothing,
        )
    counts = np.asarray(counts, dtype=np.float64)
    prior = counts / max(counts.sum(), 1.0)
    log_prior = np.log(np.clip(prior, 1e-8, None)).tolist()
    return ClassificationLoss(
        class_weights_from(cfg.class_weights, counts),
        cfg.label_smoothing,
        log_prior if cfg.logit_adjustment else None,
        cfg.logit_adjustment,
    )
