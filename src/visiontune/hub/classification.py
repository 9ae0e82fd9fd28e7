"""Running a classifier: each image preprocessed as the weights expect, top-k classes out."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from visiontune.data.decode import read_image
from visiontune.errors import VisiontuneError
from visiontune.progress import progress as progress_bar
from visiontune.results import Prediction

if TYPE_CHECKING:  # pragma: no cover
    from visiontune.hub.pretrained import Pretrained


def logits_of(out: Any) -> torch.Tensor:
    """Class scores from a model output: a tensor, a Hugging Face ``ModelOutput`` or a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise VisiontuneError(f"cannot read class scores from a model output of type {type(out).__name__}")


def to_input(p: Pretrained, img: Any) -> torch.Tensor:
    """One image (path, PIL, CHW uint8 / float [0, 1] tensor) -> the normalised tensor ``p`` expects."""
    if isinstance(img, (str, os.PathLike)):
        img = read_image(img)
    if isinstance(img, Image.Image):
        return p.preprocess(img)
    if isinstance(img, torch.Tensor):
        if img.ndim != 3:
            raise VisiontuneError(f"expected a CHW image tensor, got shape {tuple(img.shape)}")
        return p.preprocess(img)
    raise TypeError(f"cannot predict on {type(img).__name__}: pass paths, PIL images or CHW tensors")


@torch.inference_mode()
def classify(
    p: Pretrained,
    images: Any,
    *,
    topk: int = 5,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[Prediction]:
    """Top-k class names and probabilities of each image, in order."""
    if not isinstance(images, (list, tuple)):
        images = [images]
    device = torch.device(device) if device else next(p.model.parameters()).device
    names = p.class_names
    out: list[Prediction] = []
    with progress_bar("predicting", len(images), enabled=progress and len(images) > batch_size) as bar:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.stack([to_input(p, im) for im in chunk]).to(device)
            probs = logits_of(p.model(batch)).float().softmax(-1)
            k = min(topk, probs.shape[-1])
            top, idx = probs.topk(k, dim=-1)
            for j, im in enumerate(chunk):
                ii = idx[j].tolist()
                out.append(
                    Prediction(
                        ii,
                        [names[i] if i < len(names) else f"class_{i}" for i in ii],
                        top[j].tolist(),
                        str(im) if isinstance(im, (str, os.PathLike)) else None,
                    )
                )
            bar.advance(len(chunk))
    return out
