"""What gets exported: any accepted model normalised to an `ExportSource` (module, task,
preprocessing dict, class names, provenance)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.ssd import SSD

from visiontune.errors import ConfigError, ExportError
from visiontune.hub.loader import load
from visiontune.hub.preprocess import Preprocess

DETECTION_OUTPUTS = ("boxes", "labels", "scores")


@dataclass
class ExportSource:
    """A model normalised for export: module, task, preprocessing dict and provenance."""

    model: nn.Module
    task: str
    preprocessing: dict
    class_names: list[str] | None
    model_id: str
    torch_preprocess: Any = None
    card: dict = field(default_factory=dict)
    output_names: list[str] | None = None


def is_torchvision_detector(model: Any) -> bool:
    """True for torchvision's Faster/Mask R-CNN, RetinaNet, SSD and FCOS models."""
    return isinstance(model, (GeneralizedRCNN, RetinaNet, SSD, FCOS))


def detector_preprocessing(module: nn.Module) -> dict:
    """Resize outside the graph to the size the model would resize to itself, so that the
    model's internal resize is the identity: the exported graphs (ONNX, TorchScript) round an
    internal resize differently from eager PyTorch (±1 px), which moves boxes; this way every
    runtime sees the same pixels. The runtime maps boxes back to the original image."""
    t = getattr(module, "transform", None)
    fixed = getattr(t, "fixed_size", None)
    if fixed:  # (width, height), e.g. SSD's 320x320 squash
        resize: Any = [int(fixed[1]), int(fixed[0])]
    else:
        resize = int(t.min_size[-1]) if t is not None else None
    return {
        "resize": resize,
        "crop": None,
        "interpolation": "bilinear",
        "mean": None,
        "std": None,
        "antialias": True,
        "value_range": [0.0, 1.0],
        "channel_order": "RGB",
        "max_size": int(getattr(t, "max_size", 0) or 0) or None,
        "note": "the model normalises inside; boxes are mapped back to the original image size",
    }


def resolve_source(
    model: Any, *, preprocess: Any = None, class_names: Sequence[str] | None = None, model_id: str | None = None
) -> ExportSource:
    """Accept a model id / saved directory, a `visiontune.Pretrained`, a `visiontune.detect.Detector`
    or a bare ``nn.Module`` (classification needs ``preprocess``: a `visiontune.Preprocess` or its dict)."""
    if isinstance(model, (str, os.PathLike)):
        model = load(str(model))
    card: dict = {}
    task = None
    torch_pre = None
    if hasattr(model, "adapter") and isinstance(getattr(model, "model", None), nn.Module):  # Detector
        module = model.model
        task = "detection"
        class_names = list(class_names or getattr(model, "class_names", []) or []) or None
        model_id = model_id or getattr(model, "model_id", None)
        c = getattr(model, "card", None)
        if c is not None and hasattr(c, "model_dump"):
            card = c.model_dump(mode="json")
    elif hasattr(model, "card") and hasattr(model, "model") and isinstance(model.model, nn.Module):  # Pretrained
        c = model.card
        card = c.model_dump(mode="json") if hasattr(c, "model_dump") else dict(c)
        task = card.get("task", "classification")
        class_names = list(class_names or card.get("class_names") or []) or None
        model_id = model_id or card.get("model_id")
        preprocess = preprocess if preprocess is not None else getattr(model, "preprocess", None)
        module = model.model
    elif isinstance(model, nn.Module):
        module = model
    else:
        raise ConfigError(
            f"cannot export a {type(model).__name__}: pass a model id, a saved model directory, "
            f"a visiontune.Pretrained, a visiontune.detect.Detector or a torch nn.Module"
        )
    if is_torchvision_detector(module):
        task = "detection"
    task = task or "classification"
    if task == "detection":
        if not is_torchvision_detector(module):
            # the message names Ultralytics' own exporter; nothing is loaded here
            raise ExportError(
                f"{model_id or type(module).__name__}: only torchvision detectors (Faster/Mask R-CNN, "
                f"RetinaNet, FCOS, SSD) export here; Ultralytics models export with their own "
                f"`YOLO(...).export(format='onnx')`"
            )
        pre = detector_preprocessing(module)
    elif task not in ("classification", "multilabel-classification"):
        raise ExportError(f"{model_id}: exporting {task} models is not supported (classification and detection are)")
    else:
        if preprocess is None:
            raise ConfigError(
                "exporting a bare nn.Module needs preprocess= (a visiontune.Preprocess or its "
                "to_dict()), so the artifact knows its input size and normalisation"
            )
        if isinstance(preprocess, dict):
            preprocess = Preprocess.from_dict(preprocess)
        pre = preprocess.to_dict()
        torch_pre = preprocess
    names = list(class_names) if class_names is not None else None
    return ExportSource(module.eval(), task, pre, names, model_id or type(module).__name__, torch_pre, card)


def input_hw(input_size: Any, src: ExportSource) -> tuple[int, int]:
    """(height, width) of the classifier's input: ``input_size``, else the preprocessing's crop or
    fixed resize, else the card's input size."""
    if input_size is not None:
        if isinstance(input_size, int):
            return (input_size, input_size)
        vals = [int(v) for v in input_size]
        return (vals[-2], vals[-1]) if len(vals) >= 2 else (vals[0], vals[0])
    crop = src.preprocessing.get("crop")
    if crop:
        return (int(crop[0]), int(crop[1]))
    resize = src.preprocessing.get("resize")
    if isinstance(resize, (list, tuple)):
        return (int(resize[0]), int(resize[1]))
    size = src.card.get("input_size")
    if size:
        return (int(size[-2]), int(size[-1]))
    raise ConfigError(f"{src.model_id}: the input size is unknown (no crop in the preprocessing); pass input_size=")


def resize_preprocessing(src: ExportSource, size: tuple[int, int]) -> None:
    """An explicit input size changes the preprocessing with it: crop to ``size`` and resize by the
    same crop ratio as before (e.g. 256→224 becomes 73→64), so the sidecar feeds the graph its shape."""
    pre = dict(src.preprocessing)
    crop, resize = pre.get("crop"), pre.get("resize")
    if crop is not None and list(crop) == list(size):
        return
    if isinstance(resize, int) and crop is not None:
        pre["resize"] = int(round(resize * size[0] / crop[0]))
        pre["crop"] = list(size)
    elif isinstance(resize, int):
        pre["resize"], pre["crop"] = int(min(size)), list(size)
    else:
        pre["resize"], pre["crop"] = list(size), None
    src.preprocessing = pre
    src.torch_preprocess = Preprocess.from_dict(pre)


def detector_output_names(module: nn.Module, src: ExportSource) -> list[str]:
    """Detector outputs in the order the model's dict yields them (SSD: boxes, scores, labels)."""
    if src.output_names:
        return src.output_names
    with torch.inference_mode():
        out = module([torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))])[0]
    names = [k for k in out.keys() if k in DETECTION_OUTPUTS]
    if set(names) != set(DETECTION_OUTPUTS) or len(out) != len(names):
        raise ExportError(
            f"{src.model_id}: detector outputs {list(out)} (masks/keypoints) are not supported for "
            f"export; boxes, labels and scores are"
        )
    src.output_names = names
    return names
