"""Test-time augmentation of a classifier on preprocessed batches.

``flip``: the image and its horizontal mirror. ``crops``: the image and four corner crops
covering ``crop_frac`` of each side (resized back to the input size), each also mirrored — 10
views. The probabilities of the views are averaged (softmax for one label per image, sigmoid per
label for multi-label models) and returned as logits of the mean, so every metric and decision
downstream reads them as it reads plain logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from visiontune.errors import ConfigError

TTA_MODES = ("none", "flip", "crops")


def tta_views(x: torch.Tensor, mode: str, crop_frac: float = 0.875) -> list[torch.Tensor]:
    """The views of an NCHW batch that ``mode`` averages over."""
    if mode not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    if mode == "none":
        return [x]
    views = [x]
    if mode == "crops":
        h, w = x.shape[-2:]
        ch, cw = max(1, int(round(h * crop_frac))), max(1, int(round(w * crop_frac)))
        for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)):
            crop = x[..., top : top + ch, left : left + cw]
            views.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
    return views + [v.flip(-1) for v in views]


def tta_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str = "none", multilabel: bool = False
) -> torch.Tensor:
    """Logits of the views' mean probability (``mode="none"``: ``forward(x)`` itself)."""
    if mode == "none":
        return forward(x)
    probs: torch.Tensor | None = None
    views = tta_views(x, mode)
    for v in views:
        out = forward(v).float()
        p = out.sigmoid() if multilabel else out.softmax(-1)
        probs = p if probs is None else probs + p
    assert probs is not None, "tta_views returns at least one view"
    mean = (probs / len(views)).clamp(1e-7, 1 - 1e-7)
    return torch.logit(mean) if multilabel else mean.log()
