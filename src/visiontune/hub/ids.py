"""Model ids: ``source:name[@weights]``.

Examples::

    torchvision:resnet50@IMAGENET1K_V2     torchvision:resnet50@DEFAULT
    timm:convnext_tiny.fb_in22k_ft_in1k    hf:microsoft/resnet-50@main
    hub:pytorch/vision:resnet18            yolo:yolo11n.pt
    file:runs/exp1/model                   ./runs/exp1/model   (an existing path)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from visiontune.errors import ModelIdError

SOURCES = ("torchvision", "timm", "hf", "hub", "yolo", "file")
ALIASES = {"tv": "torchvision", "huggingface": "hf", "torchhub": "hub", "ultralytics": "yolo"}


@dataclass(frozen=True)
class ModelId:
    source: str
    name: str
    weights: str | None = None  # tag (torchvision), revision (hf), ref (hub); None = default

    def __str__(self) -> str:
        return f"{self.source}:{self.name}" + (f"@{self.weights}" if self.weights else "")


def parse_model_id(text: str) -> ModelId:
    """Parse a model id. A bare existing path is read as ``file:PATH``."""
    if not isinstance(text, str) or not text.strip():
        raise ModelIdError(f"empty model id; expected 'source:name[@weights]' with source in {SOURCES}")
    text = text.strip()
    src, sep, rest = text.partition(":")
    src_l = ALIASES.get(src.lower(), src.lower())
    if not sep or src_l not in SOURCES:
        if os.path.exists(text):
            return ModelId("file", text)
        if os.name == "nt" and len(src) == 1 and os.path.exists(text):  # pragma: no cover
            return ModelId("file", text)
        hint = ""
        if not sep:
            hint = f" Did you mean 'timm:{text}' or 'torchvision:{text}'?"
        raise ModelIdError(
            f"cannot read model id {text!r}: expected 'source:name[@weights]' with source one of "
            f"{', '.join(SOURCES)}, or a path that exists.{hint}"
        )
    if src_l == "file":
        if not rest:
            raise ModelIdError("file: needs a path, e.g. 'file:runs/exp1/model'")
        return ModelId("file", rest)
    name, at, weights = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if src_l == "yolo":  # file names may contain '@' rarely; keep yolo ids whole
        name, weights = rest, ""
    if not name:
        raise ModelIdError(f"model id {text!r} has no model name after '{src}:'")
    if at and not weights:
        raise ModelIdError(f"model id {text!r} ends with '@' but names no weights")
    if src_l == "hub" and name.count(":") != 1:
        raise ModelIdError(
            f"torch.hub ids are 'hub:owner/repo:entrypoint[@ref]', got {text!r} (e.g. 'hub:pytorch/vision:resnet18')"
        )
    if src_l == "hf" and "/" not in name and not os.path.isdir(name):
        # Hugging Face also has a few un-namespaced legacy repos; accept but they are rare.
        pass
    return ModelId(src_l, name, weights or None)
