"""What a run logs, turned into what its files hold: scalars, images, running statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torchvision

from visiontune.errors import ConfigError


def to_float(v: Any) -> float:
    """A float from a Python number, numpy scalar or one-element tensor."""
    if hasattr(v, "detach"):
        v = v.detach()
        if v.numel() != 1:
            raise ValueError(f"expected a scalar, got a tensor of shape {tuple(v.shape)}")
        v = v.item()
    elif hasattr(v, "item") and callable(v.item):
        v = v.item()
    return float(v)


def to_image_array(image: Any):
    """PIL image, HxWxC / CxHxW / BxCxHxW tensor or array (float in [0,1] or uint8), or a
    matplotlib Figure -> HxWx3 uint8 numpy array. A batch becomes a grid."""
    if hasattr(image, "savefig"):  # matplotlib figure
        image.canvas.draw()
        arr = np.asarray(image.canvas.buffer_rgba())[..., :3]
        return np.ascontiguousarray(arr)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray) and image.ndim in (3, 4) and image.shape[-1] not in (1, 3, 4):
        image = torch.from_numpy(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4:
            t = torchvision.utils.make_grid(
                t.float() if t.is_floating_point() else t, nrow=int(math.ceil(math.sqrt(t.shape[0]))), padding=2
            )
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3:
            raise ConfigError(f"log_image: expected an image or a batch of images, got shape {tuple(t.shape)}")
        if t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            t = t.permute(1, 2, 0)
        image = t.numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ConfigError(f"log_image: expected HxWx(1|3|4) pixels, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


class Stat:
    """Running last / min / max (and their steps) of one metric."""

    __slots__ = ("last", "min", "max", "count", "last_step", "min_step", "max_step", "last_epoch")

    last: float
    min: float
    max: float
    last_step: int
    min_step: int
    max_step: int
    last_epoch: int | None

    def __init__(self):
        self.count = 0

    def add(self, v: float, step: int, epoch: int | None):
        """Update last / min / max with value ``v`` at ``step``."""
        if self.count == 0 or (not math.isnan(v) and (math.isnan(self.min) or v < self.min)):
            self.min, self.min_step = v, step
        if self.count == 0 or (not math.isnan(v) and (math.isnan(self.max) or v > self.max)):
            self.max, self.max_step = v, step
        self.last, self.last_step, self.last_epoch = v, step, epoch
        self.count += 1

    def as_dict(self) -> dict[str, Any]:
        """Last, min, max, their steps and the count as a dict."""
        return {
            "last": self.last,
            "min": self.min,
            "max": self.max,
            "count": self.count,
            "last_step": self.last_step,
            "min_step": self.min_step,
            "max_step": self.max_step,
        }
