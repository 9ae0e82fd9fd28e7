"""visiontune: download, adapt, audit and track pretrained vision models.

``import visiontune`` is cheap: torch and the hubs are imported on first use of ``load`` etc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "load": "visiontune.hub.loader",
    "train": "visiontune.api",
    "evaluate": "visiontune.api",
    "audit": "visiontune.api",
    "export": "visiontune.api",
    "bench": "visiontune.api",
    "list_models": "visiontune.hub.loader",
    "describe": "visiontune.hub.loader",
    "Pretrained": "visiontune.hub.pretrained",
    "Prediction": "visiontune.results",
    "Detections": "visiontune.results",
    "Card": "visiontune.hub.card",
    "Preprocess": "visiontune.hub.preprocess",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from visiontune.api import audit, bench, evaluate, export, train
    from visiontune.hub.card import Card
    from visiontune.hub.loader import describe, list_models, load
    from visiontune.hub.preprocess import Preprocess
    from visiontune.hub.pretrained import Pretrained
    from visiontune.results import Detections, Prediction


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'visiontune' has no attribute {name!r}")
