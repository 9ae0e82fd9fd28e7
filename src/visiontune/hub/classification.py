"""Running a classifier: each image preprocessed as the weights expect, top-k classes out
(``classify``), or — for a multi-label model (task ``multilabel-classification``) — every
label's probability and the decision at its saved threshold (``classify_multilabel``). Both take
``tta`` (none | flip | crops, see `visiontune.hub.tta`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from visiontune.data.decode import read_image
from visiontune.errors import VisiontuneError
from visiontune.hub.tta import tta_logits
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
    tta: str = "none",
) -> list[Prediction]:
    """Top-k class names and probabilities of each image, in order (``tta``: average over
    flipped / cropped views)."""
    if not isinstance(images, (list, tuple)):
        images = [images]
    device = torch.device(device) if device else next(p.model.parameters()).device
    names = p.class_names
    out: list[Prediction] = []
    with progress_bar("predicting", len(images), enabled=progress and len(images) > batch_size) as bar:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.stack([to_input(p, im) for im in chunk]).to(device)
            probs = tta_logits(lambda v: logits_of(p.model(v)), batch, tta).float().softmax(-1)
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


MULTILABEL_TASK = "multilabel-classification"


@dataclass
class MultiLabelPrediction:
    """Every label of one image: its probability and whether it passes its threshold."""

    labels: list[str]  # the labels decided present, most probable first
    probs: dict[str, float]  # every label's sigmoid probability
    thresholds: dict[str, float] = field(default_factory=dict)
    source: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: ``{"source", "labels", "probs", "thresholds"}``."""
        return {"source": self.source, "labels": self.labels, "probs": self.probs, "thresholds": self.thresholds}


def thresholds_of(p: Pretrained) -> list[float]:
    """The per-label thresholds saved on the card (0.5 for labels without one)."""
    saved = (p.card.extra or {}).get("thresholds") or {}
    return [float(saved.get(c, 0.5)) for c in p.class_names]


@torch.inference_mode()
def classify_multilabel(
    p: Pretrained,
    images: Any,
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = False,
    tta: str = "none",
) -> list[MultiLabelPrediction]:
    """Per-label sigmoid probabilities of each image and the labels at or above their tuned
    thresholds (``threshold``: one cut for every label instead)."""
    if not isinstance(images, (list, tuple)):
        images = [images]
    device = torch.device(device) if device else next(p.model.parameters()).device
    names = p.class_names
    cuts = [float(threshold)] * len(names) if threshold is not None else thresholds_of(p)
    out: list[MultiLabelPrediction] = []
    with progress_bar("predicting", len(images), enabled=progress and len(images) > batch_size) as bar:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.stack([to_input(p, im) for im in chunk]).to(device)
            probs = tta_logits(lambda v: logits_of(p.model(v)), batch, tta, multilabel=True).float().sigmoid()
            for j, im in enumerate(chunk):
                pr = probs[j].tolist()
                on = sorted((k for k in range(len(names)) if pr[k] >= cuts[k]), key=lambda k: -pr[k])
                out.append(
                    MultiLabelPrediction(
                        [names[k] for k in on],
                        {n: float(v) for n, v in zip(names, pr)},
                        dict(zip(names, cuts)),
                        str(im) if isinstance(im, (str, os.PathLike)) else None,
                    )
                )
            bar.advance(len(chunk))
    return out
