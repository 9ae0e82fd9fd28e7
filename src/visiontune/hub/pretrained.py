"""`Pretrained`: a model, its preprocessing and its card, travelling together."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from visiontune.errors import VisiontuneError
from visiontune.hub.card import Card
from visiontune.hub.preprocess import Preprocess

SAVED_FORMAT = "visiontune.model"
SAVED_FORMAT_VERSION = 1
CARD_FILE = "visiontune.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class Prediction:
    """Top-k classes of one image."""

    indices: list[int]
    labels: list[str]
    probs: list[float]
    source: str | None = None

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def prob(self) -> float:
        return self.probs[0]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "top": [{"index": i, "label": lab, "prob": p} for i, lab, p in zip(self.indices, self.labels, self.probs)],
        }


def logits_of(out: Any) -> torch.Tensor:
    """Class scores from a model output: a tensor, a Hugging Face ``ModelOutput`` or a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise VisiontuneError(f"cannot read class scores from a model output of type {type(out).__name__}")


class Pretrained:
    """A model and its preprocessing as one object.

    ``model`` is in eval mode; ``preprocess`` turns a PIL image or CHW tensor into the normalised
    tensor the weights expect; ``card`` says where all of it came from. ``native`` is the source
    library's own object where it has one (a Hugging Face image processor, an Ultralytics YOLO).
    """

    def __init__(
        self, model: nn.Module, card: Card, preprocess: Preprocess, *, native: Any = None, load_report: Any = None
    ):
        self.model = model.eval()
        self.card = card
        self.preprocess = preprocess
        self.native = native
        self.load_report = load_report

    # -- transforms ----------------------------------------------------------------------------
    def train_transform(self, strength: str = "default"):
        """Augmentation for fine-tuning, derived from the same size, interpolation and mean/std."""
        return self.preprocess.train_transform(strength)

    @property
    def class_names(self) -> list[str]:
        if self.card.class_names:
            return list(self.card.class_names)
        n = self.card.num_classes or 0
        return [f"class_{i}" for i in range(n)]

    # -- inference -----------------------------------------------------------------------------
    def _to_tensor(self, img: Any) -> torch.Tensor:
        if isinstance(img, (str, os.PathLike)):
            from visiontune.data import read_image

            img = read_image(img)
        if isinstance(img, Image.Image):
            return self.preprocess(img)
        if isinstance(img, torch.Tensor):
            if img.ndim != 3:
                raise VisiontuneError(f"expected a CHW image tensor, got shape {tuple(img.shape)}")
            return self.preprocess(img)
        raise TypeError(f"cannot predict on {type(img).__name__}: pass paths, PIL images or CHW tensors")

    @torch.inference_mode()
    def predict(
        self, images: Any, topk: int = 5, batch_size: int = 32, device: str | torch.device | None = None
    ) -> list[Prediction]:
        """Top-k class names and probabilities, each image preprocessed as the weights expect.

        ``images``: a path, PIL image or CHW tensor, or a list of them. Tensors are raw pixels
        (uint8 0–255 or float 0–1), not yet normalised.
        """
        if self.card.task != "classification":
            raise VisiontuneError(
                f"{self.card.model_id} is a {self.card.task} model; use visiontune.detect for detectors"
            )
        if not isinstance(images, (list, tuple)):
            images = [images]
        device = torch.device(device) if device else next(self.model.parameters()).device
        names = self.class_names
        out: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = torch.stack([self._to_tensor(im) for im in chunk]).to(device)
            probs = logits_of(self.model(batch)).float().softmax(-1)
            k = min(topk, probs.shape[-1])
            p, idx = probs.topk(k, dim=-1)
            for j, im in enumerate(chunk):
                ii = idx[j].tolist()
                out.append(
                    Prediction(
                        ii,
                        [names[i] if i < len(names) else f"class_{i}" for i in ii],
                        p[j].tolist(),
                        str(im) if isinstance(im, (str, os.PathLike)) else None,
                    )
                )
        return out

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, *, metrics: dict | None = None, training: dict | None = None) -> Path:
        """Write ``model.safetensors`` + ``visiontune.json`` (+ the HF config when the model is one).

        Atomic: the files are written to a temporary sibling folder that replaces ``directory``
        only once complete. ``visiontune.load(directory)`` restores model, preprocessing and card.
        """
        from safetensors.torch import save_model

        if self.card.source == "yolo":
            raise VisiontuneError(
                "Ultralytics models are saved with their own format: use pretrained.native.save(path)"
            )
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir()
        try:
            save_model(self.model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "visiontune": SAVED_FORMAT})
            config = getattr(self.model, "config", None)
            if config is not None and hasattr(config, "save_pretrained"):
                config.save_pretrained(str(tmp))  # HF architecture, needed to rebuild offline
            if self.card.source == "hf" and hasattr(self.native, "save_pretrained"):
                self.native.save_pretrained(str(tmp))  # the image processor
            card = self.card.model_copy(deep=True)
            if metrics:
                card.metrics = {**card.metrics, **metrics}
            from visiontune.hub.checkpoint import sha256_file

            doc = {
                "format": SAVED_FORMAT,
                "format_version": SAVED_FORMAT_VERSION,
                "visiontune_version": _version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "base_id": card.base_id or card.model_id,
                "card": json.loads(card.model_dump_json()),
                "preprocess": self.preprocess.to_dict(),
                "metrics": metrics or {},
                "training": training or {},
                "weights_sha256": sha256_file(tmp / WEIGHTS_FILE),
            }
            (tmp / CARD_FILE).write_text(json.dumps(doc, indent=2, default=str))
            if directory.exists():
                old = directory.parent / f".{directory.name}.old-{os.getpid()}-{time.time_ns()}"
                os.replace(directory, old)
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    def __repr__(self) -> str:
        c = self.card
        return (
            f"Pretrained({c.model_id!r}, task={c.task}, classes={c.num_classes}, "
            f"params={c.num_params:,}, preprocess={self.preprocess.describe()})"
            if c.num_params
            else f"Pretrained({c.model_id!r})"
        )


def _version() -> str:
    from visiontune import __version__

    return __version__


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
