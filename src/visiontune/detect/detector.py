"""`Detector`: the detection view of a `visiontune.Pretrained`.

Loading goes through ``visiontune.load`` (one id parser, one cache lookup, one trust gate); the
running — each source's own pre/post-processing, then the user's score threshold, NMS IoU, max
detections and class filter — is ``Pretrained.predict`` of a detection model. A `Detector` adds
the constructors for models already in memory (a torchvision module, a Hugging Face model and its
processor, an Ultralytics object, any callable) and keeps the detection vocabulary in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from visiontune.errors import ConfigError
from visiontune.hub import Card, Preprocess, Pretrained, load
from visiontune.hub.detection import (
    DEFAULTS,
    DETECTION_TASKS,
    CallableModule,
    DetectionAdapter,
    adapter_for,
    detector_num_classes,
)
from visiontune.hub.pretrained import count_params
from visiontune.hub.saved import IDENTITY_PREPROCESS
from visiontune.hub.sources.hf import preprocess_from_processor
from visiontune.hub.sources.yolo import from_ultralytics
from visiontune.results import Detections

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = ["DEFAULTS", "Detector", "names_list"]


def names_list(names: Sequence[str] | dict | None) -> list[str]:
    """Class names from a list or an ``{index: name}`` dict (gaps filled with the index)."""
    if names is None:
        return []
    if isinstance(names, dict):
        n = max(int(k) for k in names) + 1 if names else 0
        return [str(names.get(i, names.get(str(i), str(i)))) for i in range(n)]
    return [str(x) for x in names]


def _card(source: str, model_id: str, class_names: list[str], model: nn.Module, **fields: Any) -> Card:
    return Card(
        source=source,
        name=model_id,
        model_id=model_id,
        task="detection",
        class_names=class_names,
        num_classes=len(class_names),
        num_params=count_params(model),
        pretrained=False,
        **fields,
    )


def _is_ultralytics(obj: Any) -> bool:
    return type(obj).__module__.startswith("ultralytics") and hasattr(obj, "predict")


class Detector:
    """One detector, whatever its source. Call it on images (paths, PIL, CHW tensors):

    >>> det = Detector.load("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    >>> dets = det(["bus.jpg"], score_threshold=0.5, classes=["person"])
    """

    def __init__(self, pretrained: Pretrained):
        if pretrained.task not in DETECTION_TASKS:
            raise ConfigError(
                f"{pretrained.card.model_id} is a {pretrained.task} model, not a detector; "
                "use visiontune.load(...).predict for it"
            )
        self.pretrained = pretrained

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, source: Any, *, device: str | torch.device | None = None, **load_kwargs: Any) -> Detector:
        """From a model id (``torchvision:…``, ``hf:…``, ``yolo:…``, a saved detector directory) —
        through ``visiontune.load`` with ``load_kwargs`` (``pretrained``, ``weights``,
        ``trust_pickle``, …) — or from a `Pretrained` / `Detector` / model object in memory."""
        if isinstance(source, Detector):
            det = source
        elif isinstance(source, Pretrained):
            det = cls(source)
        elif _is_ultralytics(source):
            det = cls(from_ultralytics(source, "yolo:" + str(getattr(source, "ckpt_path", "") or "model")))
        elif isinstance(source, nn.Module):
            if "class_names" not in load_kwargs:
                raise ConfigError("Detector.load(nn.Module) needs class_names=")
            det = cls.from_torchvision(source, load_kwargs.pop("class_names"))
        elif callable(source) and not isinstance(source, (str, os.PathLike)):
            det = cls.from_callable(source, load_kwargs.pop("class_names", None))
        else:
            det = cls(load(source, **load_kwargs))
        return det.to(device) if device is not None else det

    @classmethod
    def from_torchvision(
        cls,
        model: nn.Module,
        class_names: Sequence[str],
        model_id: str = "",
        config: dict | None = None,
        card: Card | None = None,
    ) -> Detector:
        """Wrap a torchvision-style detector module; ``config`` is the recipe that rebuilds it."""
        names = list(class_names)
        mid = model_id or type(model).__name__
        c = card.model_copy(deep=True) if card is not None else _card("torchvision", mid, names, model)
        c.recipe, c.class_names, c.num_classes, c.task = config, names, len(names), "detection"
        return cls(Pretrained(model, c, Preprocess(**IDENTITY_PREPROCESS)))

    @classmethod
    def from_hf(cls, model: nn.Module, processor: Any, model_id: str = "hf") -> Detector:
        """Wrap a Hugging Face object-detection model and its image processor."""
        names = names_list(cast("PretrainedConfig", model.config).id2label)
        pre, fields = preprocess_from_processor(processor)
        fields.pop("input_size", None)
        return cls(Pretrained(model, _card("hf", model_id, names, model, **fields), pre, native=processor))

    @classmethod
    def from_callable(
        cls, fn: Callable, class_names: Sequence[str] | dict | None = None, model_id: str = "callable"
    ) -> Detector:
        """Wrap a callable detector (see `visiontune.hub.detection.CallableAdapter`); class names
        default to ``fn.names``."""
        names = class_names if class_names is not None else getattr(fn, "names", None)
        if names is None:
            raise ConfigError("from_callable needs class_names= (the callable has no .names)")
        module = CallableModule(fn)
        card = _card("callable", model_id, names_list(names), module)
        return cls(Pretrained(module, card, Preprocess(**IDENTITY_PREPROCESS), native=fn))

    # ------------------------------------------------------------------ views
    @property
    def model(self) -> Any:
        """The model that runs (the Ultralytics / callable object itself for those sources)."""
        p = self.pretrained
        return p.native if p.card.source in ("yolo", "callable") else p.model

    @property
    def card(self) -> Card:
        """The model card."""
        return self.pretrained.card

    @property
    def class_names(self) -> list[str]:
        """The class names, in model output order."""
        return self.pretrained.class_names

    @property
    def model_id(self) -> str:
        """The id the detector was loaded from."""
        return self.card.model_id

    @property
    def config(self) -> dict | None:
        """The recipe that rebuilds a composed / fine-tuned detector (None for hub models)."""
        return self.card.recipe

    @property
    def adapter(self) -> DetectionAdapter:
        """The source's runner (used by training loops that need raw outputs)."""
        return adapter_for(self.pretrained)

    @property
    def source(self) -> str:
        """The library the detector comes from (torchvision, hf, yolo, callable)."""
        return self.adapter.source

    @property
    def num_outputs(self) -> int:
        """Class outputs of a torchvision detector, background included (0 if unknown)."""
        return detector_num_classes(self.pretrained.model)

    def to(self, device: str | torch.device) -> Detector:
        """Move the model to ``device``; returns self."""
        self.pretrained.to(device)
        return self

    # ------------------------------------------------------------------ prediction
    def __call__(
        self,
        images: Any,
        score_threshold: float = DEFAULTS["score_threshold"],
        nms_iou: float | None = DEFAULTS["nms_iou"],
        max_detections: int = DEFAULTS["max_detections"],
        classes: Iterable[int | str] | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Detections]:
        """Detect objects; returns one `Detections` per image, in order."""
        return self.pretrained.predict(
            images,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            max_detections=max_detections,
            classes=classes,
            batch_size=batch_size,
            progress=progress,
        )

    predict = __call__

    def __repr__(self) -> str:
        return f"Detector({self.model_id!r}, source={self.source}, classes={len(self.class_names)})"

    def save(self, directory: str | os.PathLike, metrics: dict | None = None, training: dict | None = None) -> Path:
        """Save as ``model.safetensors`` + ``visiontune.json`` (the one saved-model format)."""
        return self.pretrained.save(directory, metrics=metrics, training=training)
