"""`Pretrained`: a model, its preprocessing and its card, travelling together — for every task.

``visiontune.load`` returns one for classifiers, detectors and (through registered tasks)
segmenters alike; ``predict`` returns the task's result type (`Prediction` for classifiers,
`Detections` for detectors). Tasks register their predictor with :func:`register_task`.
"""

from __future__ import annotations

import inspect
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visiontune import __version__
from visiontune.errors import ConfigError, VisiontuneError
from visiontune.hub.card import Card
from visiontune.hub.checkpoint import sha256_file
from visiontune.hub.classification import classify, logits_of
from visiontune.hub.detection import DETECTION_TASKS, detect
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.saved import CARD_FILE, WEIGHTS_FILE, SavedModel, write_directory
from visiontune.hub.segmentation import PREDICTORS as SEGMENTATION_PREDICTORS
from visiontune.results import Detections, Prediction

__all__ = ["CARD_FILE", "WEIGHTS_FILE", "Detections", "Prediction", "Pretrained", "logits_of", "register_task"]

#: task name -> predictor ``fn(pretrained, images, **options) -> list[result]``
PREDICTORS: dict[str, Callable[..., list]] = {"classification": classify}
PREDICTORS.update({t: detect for t in DETECTION_TASKS})
PREDICTORS.update(SEGMENTATION_PREDICTORS)  # instance segmenters: a Segmentation (still a Detections)


class RandomWeightsWarning(UserWarning):
    """Predictions of a model built with random weights (``pretrained=False``, ``--random-init``)."""


def random_weights_warning(model_id: str) -> str:
    """The one sentence that says a model's predictions come from random weights."""
    return (
        f"{model_id} has random weights (pretrained=False / --random-init): its predictions are noise; "
        "load pretrained weights (the default) or fine-tune it first"
    )


def register_task(task: str, predictor: Callable[..., list]) -> None:
    """Make ``Pretrained.predict`` of models whose ``card.task == task`` call ``predictor``."""
    PREDICTORS[task] = predictor


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


class Pretrained:
    """A model and its preprocessing as one object.

    ``model`` is in eval mode; ``preprocess`` turns a PIL image or CHW tensor into the tensor the
    weights expect (detectors normalise inside: their preprocess is the identity); ``card`` says
    where all of it came from. ``native`` is the source library's own object where it has one (a
    Hugging Face image processor, an Ultralytics YOLO, a callable detector).
    """

    def __init__(
        self, model: nn.Module, card: Card, preprocess: Preprocess, *, native: Any = None, load_report: Any = None
    ):
        self.model = model.eval()
        self.card = card
        self.preprocess = preprocess
        self.native = native
        self.load_report = load_report

    @property
    def task(self) -> str:
        """classification | detection | instance-segmentation | segmentation | features | …"""
        return self.card.task

    @property
    def class_names(self) -> list[str]:
        """The model's class names (``class_i`` where the card names none)."""
        if self.card.class_names:
            return list(self.card.class_names)
        return [f"class_{i}" for i in range(self.card.num_classes or 0)]

    def train_transform(self, strength: str = "default"):
        """Augmentation for fine-tuning, derived from the same size, interpolation and mean/std."""
        return self.preprocess.train_transform(strength)

    def to(self, device: str | torch.device) -> Pretrained:
        """Move the model (and the source's own object, where it holds one) to ``device``."""
        if self.card.source == "yolo" and hasattr(self.native, "to"):
            self.native.to(device)
        else:
            self.model.to(device)
        return self

    # -- inference -----------------------------------------------------------------------------
    def predict(self, images: Any, **options: Any) -> list:
        """The task's results for ``images`` (a path, PIL image or CHW tensor, or a list of them),
        each image preprocessed as the weights expect.

        Classification: ``topk=5, batch_size=32, device=None`` → list of `Prediction`.
        Detection: ``score_threshold=0.25, nms_iou=0.45, max_detections=100, classes=None,
        batch_size=8`` → list of `Detections`. Segmentation (semantic, instance, promptable):
        ``probabilities``, ``mode``, ``points`` / ``boxes`` (SAM) → list of `Segmentation`
        (see `visiontune.hub.segmentation`). Every task takes ``progress=False``.
        """
        fn = PREDICTORS.get(self.task)
        if fn is None:
            raise VisiontuneError(
                f"{self.card.model_id} is a {self.task} model; predict() covers {', '.join(sorted(PREDICTORS))}"
            )
        allowed = [n for n, prm in inspect.signature(fn).parameters.items() if prm.kind is prm.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{', '.join(unknown)}: not an option of predict() for {self.task} models; options: {', '.join(allowed)}"
            )
        if self.card.extra.get("random_weights") and not getattr(self, "_warned_random", False):
            self._warned_random = True
            warnings.warn(random_weights_warning(self.card.model_id), RandomWeightsWarning, stacklevel=2)
        return fn(self, images, **options)

    __call__ = predict

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, *, metrics: dict | None = None, training: dict | None = None) -> Path:
        """Write ``model.safetensors`` + ``visiontune.json`` (+ the HF config and image processor
        when the model is a Hugging Face one), atomically: the files go to a temporary sibling
        folder that replaces ``directory`` only once complete. ``visiontune.load(directory)``
        restores model, preprocessing and card, whatever the task."""
        from safetensors.torch import save_model

        if self.card.source in ("yolo", "callable"):
            raise VisiontuneError(
                f"{self.card.model_id}: {self.card.source} models are saved with their own format "
                "(Ultralytics: pretrained.native.save(path))"
            )
        card = self.card.model_copy(deep=True)
        card.extra.pop("random_weights", None)  # what is saved is whatever the weights are now
        if metrics:
            card.metrics = {**card.metrics, **metrics}

        def fill(tmp: Path) -> None:
            save_model(self.model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "visiontune": "model"})
            config = getattr(self.model, "config", None)
            if config is not None and hasattr(config, "save_pretrained"):
                config.save_pretrained(str(tmp))  # HF architecture, needed to rebuild offline
            if card.source == "hf" and hasattr(self.native, "save_pretrained"):
                self.native.save_pretrained(str(tmp))  # the image processor
            record = SavedModel(
                visiontune_version=__version__,
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                base_id=None if card.recipe else (card.base_id or card.model_id),
                recipe=card.recipe,
                card=card,
                preprocess=self.preprocess.to_dict(),
                metrics=metrics or {},
                training=json.loads(json.dumps(training or {}, default=str)),
                weights_sha256=sha256_file(tmp / WEIGHTS_FILE),
            )
            record.write(tmp / CARD_FILE)

        return write_directory(directory, fill)

    def __repr__(self) -> str:
        c = self.card
        if not c.num_params:
            return f"Pretrained({c.model_id!r}, task={c.task})"
        return (
            f"Pretrained({c.model_id!r}, task={c.task}, classes={c.num_classes}, "
            f"params={c.num_params:,}, preprocess={self.preprocess.describe()})"
        )
