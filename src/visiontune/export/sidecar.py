"""The sidecar ``<artifact>.visiontune.json``: what an exported model needs to be used on its own.

It holds the preprocessing (the same dict as ``visiontune.Preprocess.to_dict()``), class names,
the input name/shape, the output format, the source model id and licences, and the parity check
made at export time. ``preprocess_array`` applies the preprocessing with PIL + NumPy only, so a
deployed artifact needs neither torch nor torchvision for its input pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visiontune.errors import ConfigError

SIDECAR_SUFFIX = ".visiontune.json"
SIDECAR_FORMAT = "visiontune.export"
SIDECAR_VERSION = 1

_PIL_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def sidecar_path(artifact: str | os.PathLike) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def write_json_atomic(path: Path, doc: dict) -> None:
    from visiontune._atomic import write_text

    write_text(path, json.dumps(doc, indent=2, default=str))


def read_sidecar(artifact: str | os.PathLike) -> dict:
    """Read and check the sidecar of ``artifact``; errors name the file and the key."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ConfigError(
            f"{path} not found: an exported artifact is used with the sidecar JSON written beside it by "
            f"`visiontune export`; re-export the model or copy the sidecar next to {Path(artifact).name}"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); re-export the model to rewrite it") from e
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise ConfigError(f"{path}: key 'format' must be {SIDECAR_FORMAT!r} (is this a visiontune sidecar?)")
    if int(doc.get("format_version", 0)) > SIDECAR_VERSION:
        raise ConfigError(
            f"{path}: format_version {doc['format_version']} is newer than this visiontune "
            f"understands ({SIDECAR_VERSION}); upgrade visiontune"
        )
    for key in ("task", "preprocessing", "input", "output"):
        if key not in doc:
            raise ConfigError(f"{path}: missing key {key!r}; re-export the model to rewrite the sidecar")
    if doc["task"] not in ("classification", "multilabel-classification", "detection"):
        raise ConfigError(
            f"{path}: key 'task' is {doc['task']!r}; expected classification, multilabel-classification or detection"
        )
    pre = doc["preprocessing"]
    interp = pre.get("interpolation", "bilinear")
    if interp not in _PIL_RESAMPLE:
        raise ConfigError(f"{path}: preprocessing.interpolation {interp!r} is not one of {sorted(_PIL_RESAMPLE)}")
    for key in ("mean", "std"):
        v = pre.get(key)
        if v is not None and (not isinstance(v, list) or len(v) != 3):
            raise ConfigError(f"{path}: preprocessing.{key} must be a list of 3 numbers or null, got {v!r}")
    return doc


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
            img = img.resize(size, _PIL_RESAMPLE[pre.get("interpolation", "bilinear")])
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
