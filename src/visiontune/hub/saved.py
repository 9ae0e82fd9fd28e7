"""The saved-model format: a directory with ``model.safetensors`` + ``visiontune.json``.

One format for every task. ``visiontune.json`` is a :class:`SavedModel` record: the card, the
preprocessing, and how to rebuild the architecture — a hub id (``base_id``, rebuilt with random
weights, then the head spec re-applied) or a recipe (``recipe``, rebuilt by the registered
architecture builder). The weights are read with safetensors only, so loading a saved model never
unpickles anything. Files written by visiontune 0.1 (``"format": "visiontune.model"`` with
``format_version: 1``, and saved detectors ``"format": "visiontune-detector/1"``) still load.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from visiontune.hub.card import Card
from visiontune.records import Record

CARD_FILE = "visiontune.json"
WEIGHTS_FILE = "model.safetensors"

#: what a saved detector without its own preprocessing uses: the model normalises inside
IDENTITY_PREPROCESS: dict[str, Any] = {
    "resize": None,
    "crop": None,
    "interpolation": "bilinear",
    "mean": None,
    "std": None,
}


class SavedModel(Record):
    """``visiontune.json`` of a saved model."""

    KIND: ClassVar[str] = "model"
    VERSION: ClassVar[int] = 2

    visiontune_version: str = ""
    created: str = ""
    base_id: str | None = None
    recipe: dict[str, Any] | None = None
    card: Card
    preprocess: dict[str, Any] = Field(default_factory=lambda: dict(IDENTITY_PREPROCESS))
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str | None = None

    @classmethod
    def upgrade(cls, doc: dict[str, Any]) -> dict[str, Any]:
        """A saved-model document of an older format rewritten to the current one."""
        fmt = doc.get("format")
        if fmt == "visiontune.model" and int(doc.get("format_version", 1)) == 1:  # visiontune 0.1 classifiers
            doc = {k: v for k, v in doc.items() if k != "format_version"}
            doc["format"] = "visiontune.model/1"
        elif fmt == "visiontune-detector/1":  # visiontune 0.1 detectors
            card = dict(doc.get("card") or {})
            recipe = (doc.get("detect") or {}).get("recipe")
            card.setdefault("source", "visiontune")
            card.setdefault("task", "detection")
            card["recipe"] = recipe
            doc = {
                "format": "visiontune.model/1",
                "card": card,
                "recipe": recipe,
                "base_id": None,
                "metrics": card.get("metrics") or {},
                "training": doc.get("training") or {},
            }
        return doc


def is_saved_model(path: str | os.PathLike) -> bool:
    """True for a directory holding a ``visiontune.json``."""
    return Path(path).is_dir() and (Path(path) / CARD_FILE).is_file()


def write_directory(directory: str | os.PathLike, fill: Any) -> Path:
    """Create ``directory`` atomically: ``fill(tmp)`` writes the files into a temporary sibling
    folder, which then replaces ``directory`` (an existing one is swapped out whole)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        fill(tmp)
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
