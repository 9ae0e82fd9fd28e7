"""The input pipeline of an exported model with PIL + NumPy only: ``preprocess_array`` applies a
sidecar's ``preprocessing`` (the dict of ``visiontune.Preprocess.to_dict()``), so a deployed
artifact needs neither torch nor torchvision to prepare its inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

#: the sidecar's ``preprocessing.interpolation`` names and their PIL resampling filters
PIL_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _resized_size(w: int, h: int, resize: Any) -> tuple[int, int]:
    """Output (w, h) of a resize: an int sets the shorter edge (aspect kept, as torchvision does);
    a pair [h, w] sets both."""
    if isinstance(resize, (list, tuple)):
        return int(resize[1]), int(resize[0])
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = int(resize), int(int(resize) * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def preprocess_array(img: Image.Image, pre: dict) -> np.ndarray:
    """One PIL image → float32 CHW array, as the sidecar's preprocessing says.

    Same steps and rounding as ``visiontune.Preprocess`` on a PIL image: resize (PIL resampling,
    antialiased), centre crop (torchvision's rounding, zero padding if the image is smaller),
    scale to [0, 1], normalise with mean/std (skipped when null).
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    resize = pre.get("resize")
    if resize is not None:
        size = _resized_size(img.width, img.height, resize)
        if size != img.size:
            img = img.resize(size, PIL_RESAMPLE[pre.get("interpolation", "bilinear")])
    arr = np.asarray(img, dtype=np.uint8)
    crop = pre.get("crop")
    if crop is not None:
        ch, cw = int(crop[0]), int(crop[1])
        h, w = arr.shape[:2]
        if ch > h or cw > w:  # torchvision pads symmetrically with zeros first
            top, left = (ch - h) // 2 if ch > h else 0, (cw - w) // 2 if cw > w else 0
            padded = np.zeros((max(h, ch), max(w, cw), 3), np.uint8)
            padded[top : top + h, left : left + w] = arr
            arr, h, w = padded, padded.shape[0], padded.shape[1]
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        arr = arr[top : top + ch, left : left + cw]
    x = arr.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    mean, std = pre.get("mean"), pre.get("std")
    if mean is not None and std is not None:
        x = (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return np.ascontiguousarray(x, dtype=np.float32)
