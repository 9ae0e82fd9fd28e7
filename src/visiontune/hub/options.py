"""What a caller asked ``visiontune.load`` for, handed to every source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadOptions:
    """Arguments of :func:`visiontune.load` as one object (see its docstring)."""

    num_classes: int | None = None
    pretrained: bool = True
    weights: str | None = None  # a local weights file
    trust_pickle: bool = False
    trust_remote_code: bool = False
    strict: bool = True
    head: dict | None = None  # {"dropout": p, "hidden": n}
    class_names: list[str] | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the source's builder
    describe: bool = False  # the card only: no weights read or downloaded
