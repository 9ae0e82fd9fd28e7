"""Model ids: ``source:name[@weights]``. The only place visiontune parses them.

Examples::

    torchvision:resnet50@IMAGENET1K_V2     torchvision:resnet50@DEFAULT
    timm:convnext_tiny.fb_in22k_ft_in1k    hf:microsoft/resnet-50@main
    hub:pytorch/vision:resnet18            yolo:yolo11n.pt
    file:runs/exp1/model                   ./runs/exp1/model   (an existing path)

The part after ``source:`` is read by the source itself (:meth:`Source.parse
<visiontune.hub.registry.Source.parse>`), so a plugin source can have its own grammar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from visiontune.errors import ModelIdError
from visiontune.hub.registry import canonical_source, close_matches, get_source, source_names


@dataclass(frozen=True)
class ModelId:
    """A parsed model id."""

    source: str
    name: str
    weights: str | None = None  # tag (torchvision), revision (hf), ref (hub); None = default

    def __str__(self) -> str:
        return f"{self.source}:{self.name}" + (f"@{self.weights}" if self.weights else "")


def parse_model_id(text: str | os.PathLike | ModelId) -> ModelId:
    """Parse a model id. A bare existing path is read as ``file:PATH``."""
    if isinstance(text, ModelId):
        return text
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    if not isinstance(text, str) or not text.strip():
        raise ModelIdError(
            f"empty model id; expected 'source:name[@weights]' with source one of {', '.join(source_names())}"
        )
    text = text.strip()
    src, sep, rest = text.partition(":")
    canon = canonical_source(src) if sep else None
    if canon is None:
        if os.path.exists(text):
            return ModelId("file", text)
        if not sep:
            hint = f" Did you mean 'timm:{text}' or 'torchvision:{text}'?"
        else:
            hits = close_matches(src, source_names())
            hint = (" Did you mean " + " or ".join(f"'{h}:{rest}'" for h in hits) + "?") if hits else ""
        raise ModelIdError(
            f"cannot read model id {text!r}: expected 'source:name[@weights]' with source one of "
            f"{', '.join(source_names())}, or a path that exists.{hint}"
        )
    if not rest:
        raise ModelIdError(f"model id {text!r} has no model name after '{src}:'")
    name, weights = get_source(canon).parse(rest, text)
    return ModelId(canon, name, weights)
