"""The interface of one servable task: how it prepares an image and runs a batch (`Runner` holds one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image
from pydantic import BaseModel


class Task:
    """How one task prepares images and runs batches on one kind of loaded model."""

    name = ""
    options_model: type[BaseModel] = BaseModel

    def __init__(self, model: Any, class_names: Sequence[str]):
        self.model = model
        self.class_names = list(class_names)

    def prepare(self, image: Image.Image) -> Any:
        """Per-image work before batching (decode-side threads / DataLoader workers)."""
        return image

    def preparer(self) -> Any:
        """A picklable ``prepare`` for DataLoader worker processes (no model inside)."""
        return identity

    def run(self, items: list[Any], options: BaseModel) -> list[dict]:
        """The JSON-able results of one batch of prepared items, one dict each."""
        raise NotImplementedError


def identity(image: Image.Image) -> Image.Image:
    """The image itself (a task whose model preprocesses inside ``predict``)."""
    return image
