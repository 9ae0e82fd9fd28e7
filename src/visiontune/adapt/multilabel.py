"""Multi-label classification: metrics (mAP, per-label AP, micro / macro F1), per-label
thresholds tuned on validation, and the LightningModule that trains with BCE or ASL.

Thresholds: for each label the cut on its sigmoid probability that maximises that label's F1 on
the validation split (0.5 for a label without validation positives). They are saved with the
model (``card.extra["thresholds"]``) and used by ``Pretrained.predict`` and the ONNX sidecar.
F1 at the tuned thresholds on the split they were tuned on is optimistic; a test split (when the
data has one) is scored with the validation thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from visiontune.adapt.module import AdaptModule

TASK = "multilabel-classification"


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Non-interpolated AP of one label (sklearn's definition); None without positives."""
    if positives.sum() == 0:
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(positives, scores))


def tune_thresholds(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per label, the probability cut with the best F1 (ties: the lower cut); 0.5 without positives."""
    out = np.full(probs.shape[1], 0.5, dtype=np.float64)
    for j in range(probs.shape[1]):
        y = targets[:, j] > 0.5
        if not y.any():
            continue
        order = np.argsort(-probs[:, j], kind="stable")
        p, yy = probs[order, j], y[order]
        tp = np.cumsum(yy)
        fp = np.cumsum(~yy)
        f1 = 2 * tp / (tp + fp + y.sum())
        # only cut between distinct scores
        last = np.r_[p[1:] != p[:-1], True]
        k = int(np.argmax(np.where(last, f1, -1.0)))
        nxt = p[k + 1] if k + 1 < len(p) else 0.0
        out[j] = float((p[k] + nxt) / 2) if p[k] != nxt else float(p[k])
    return out


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def multilabel_metrics(
    logits: torch.Tensor,
    targets: torch.Tensor,
    classes: list[str],
    prefix: str = "val",
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> dict:
    """mAP (macro over labels with positives), per-label AP, micro / macro F1 at ``thresholds``
    (default 0.5), per-label precision / recall / F1, exact-match ratio."""
    probs = logits.float().sigmoid().numpy()
    y = targets.numpy() > 0.5
    th = np.full(len(classes), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pred = probs >= th
    tp, fp, fn = (pred & y).sum(0), (pred & ~y).sum(0), (~pred & y).sum(0)
    ap = {c: average_precision(probs[:, j], y[:, j]) for j, c in enumerate(classes)}
    defined = [v for v in ap.values() if v is not None]
    f1 = _f1(tp, fp, fn)
    with_pos = y.sum(0) > 0
    return {
        f"{prefix}/map": float(np.mean(defined)) if defined else 0.0,
        f"{prefix}/f1_micro": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        f"{prefix}/f1_macro": float(f1[with_pos].mean()) if with_pos.any() else 0.0,
        f"{prefix}/exact_match": float((pred == y).all(1).mean()) if len(y) else 0.0,
        f"{prefix}/n": int(len(y)),
        f"{prefix}/per_label_ap": ap,
        f"{prefix}/per_label_f1": {c: float(v) for c, v in zip(classes, f1)},
        f"{prefix}/per_label_precision": {
            c: (float(tp[j] / (tp[j] + fp[j])) if tp[j] + fp[j] else None) for j, c in enumerate(classes)
        },
        f"{prefix}/per_label_recall": {
            c: (float(tp[j] / (tp[j] + fn[j])) if tp[j] + fn[j] else None) for j, c in enumerate(classes)
        },
        f"{prefix}/positives": {c: int(v) for c, v in zip(classes, y.sum(0))},
    }


class MultiLabelModule(AdaptModule):
    """`AdaptModule` for multi-label data: the loss is ``loss_fn`` (BCE / ASL), validation logs
    ``val/loss``, ``val/map`` and ``val/f1_macro`` (at 0.5)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.val_top1 = self.val_top5 = self.val_bal = self.train_acc = None
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x).float()
        self.log("val/loss", self.loss_fn(logits, y), on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self._val.append((logits.detach(), y.detach().float()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        logits = torch.cat([v[0] for v in self._val])
        y = torch.cat([v[1] for v in self._val])
        self._val.clear()
        if self.trainer.world_size > 1:
            # all_gather of a tensor is a tensor (its stub covers dicts and sequences too)
            logits = cast(torch.Tensor, self.all_gather(logits)).flatten(0, 1)
            y = cast(torch.Tensor, self.all_gather(y)).flatten(0, 1)
        names = [str(i) for i in range(logits.shape[-1])]
        m = multilabel_metrics(logits.cpu(), y.cpu(), names)
        self.log("val/map", m["val/map"], prog_bar=True)
        self.log("val/f1_macro", m["val/f1_macro"])
