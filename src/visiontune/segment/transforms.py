"""Image and mask augmented together: torchvision transforms v2 with ``tv_tensors.Mask``.

Every geometric transform moves the image and its mask alike (the mask resampled with nearest
neighbour, pixels brought in from outside filled with the ignore index); colour transforms touch
the image only. ``augment``: ``none`` (resize), ``flip`` (resize + horizontal flip),
``default`` (random scale 0.75–1.25 + crop + flip + mild colour jitter), ``strong`` (scale
0.5–2.0, rotation ±10°, stronger jitter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from visiontune.data.decode import read_image
from visiontune.errors import ConfigError
from visiontune.segment.data import SegmentationDataset

AUGMENTS = ("none", "flip", "default", "strong")


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def joint_transform(
    size: int | Sequence[int] | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    *,
    train: bool,
    augment: str = "default",
    ignore_index: int = 255,
) -> v2.Compose:
    """A v2 pipeline taking ``(image, tv_tensors.Mask)`` and returning a normalised float image and
    an int64 mask of ``size`` (H, W); ``size=None`` keeps the image's own size (evaluation)."""
    if augment not in AUGMENTS:
        raise ConfigError(f"augment must be one of {', '.join(AUGMENTS)}; got {augment!r}")
    ops: list[Any] = [v2.ToImage()]
    hw = _size(size) if size is not None else None
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
    if train and augment in ("default", "strong") and hw is not None:
        lo, hi = (0.75, 1.25) if augment == "default" else (0.5, 2.0)
        ops += [
            v2.Resize(hw, antialias=True),
            v2.RandomAffine(degrees=10 if augment == "strong" else 0, scale=(lo, hi), fill=fill),
        ]
        jitter = 0.2 if augment == "default" else 0.4
        ops.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    elif hw is not None:
        ops.append(v2.Resize(hw, antialias=True))
    if train and augment != "none":
        ops.append(v2.RandomHorizontalFlip(0.5))
    ops.append(v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True))
    if mean is not None and std is not None:
        ops.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(ops)


class SegTorchDataset(torch.utils.data.Dataset):
    """``(image tensor, mask tensor)`` pairs of a `SegmentationDataset` through a joint transform.
    Instance datasets give their painted class map (unlabelled pixels: ``fill``)."""

    def __init__(self, ds: SegmentationDataset, transform: Any, fill: int | None = None):
        self.ds, self.transform, self.fill = ds, transform, fill

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = read_image(self.ds.samples[i].image)
        cm = torch.from_numpy(self.ds.class_map(i, fill=self.fill))
        if cm.shape != (img.height, img.width):
            raise ConfigError(
                f"{self.ds.samples[i].mask or self.ds.samples[i].image}: mask is {tuple(cm.shape[::-1])} "
                f"but the image is {img.size}"
            )
        x, m = self.transform(img, tv_tensors.Mask(cm))
        return x, m.as_subclass(torch.Tensor).long()
