"""What every classification source collects before the splits are drawn: `Sample` (one file or
in-memory image, its label and explicit split) and `Collected` (a source's samples, classes,
loader and provenance), plus the helpers all sources share."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune.data.manifest import Manifest
from visiontune.errors import DatasetError

#: Folder / CSV split names and what they mean (compared lower-cased).
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

#: problems listed in one error message
MAX_LISTED = 12


class DatasetWarning(UserWarning):
    """Something in a dataset looks wrong but loading can go on (empty class folder, a class
    with no training images, ignored files)."""


def warn(msg: str) -> None:
    """A `DatasetWarning` pointing at the caller of the source function."""
    warnings.warn(msg, DatasetWarning, stacklevel=3)


def raise_problems(what: str, problems: list[str]) -> None:
    """One DatasetError listing ``problems`` found in ``what`` (the first 12), if there are any."""
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DatasetError(f"{what}: {len(problems)} problem(s):\n  {listed}{more}")


@dataclass
class Sample:
    """One sample as a source lists it."""

    rel: str  # identity inside the dataset: path relative to root ('/'-separated) or id
    path: str  # what the loader reads (absolute path, or the id for in-memory data)
    label: str
    split: str | None  # explicit split from the source, None when it must be drawn


@dataclass
class Collected:
    """A source's samples and classes, with how to read (``loader``) and hash (``hasher``) them."""

    source: str
    kind: str
    root: Path | None
    samples: list[Sample]
    classes: list[str]
    loader: Callable[[str], Any] | None = None
    hasher: Callable[[list[Sample]], list[tuple[str, int]]] | None = None
    manifest: Manifest | None = None
    info: dict[str, Any] = field(default_factory=dict)


def sort_classes(labels: set[str]) -> list[str]:
    """Sorted class names; all-integer names sort numerically ('2' before '10')."""
    if labels and all(s.lstrip("-").isdigit() for s in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def rel_path(path: str, root: Path | str) -> str:
    """The identity of a file in a manifest: ``path`` relative to ``root`` ('/'-separated) when it
    lies under ``root``, else the absolute path itself (``path`` and ``root`` absolute)."""
    prefix = os.path.join(os.fspath(root), "")
    r = path[len(prefix) :] if path.startswith(prefix) else path
    return r.replace(os.sep, "/") if os.sep != "/" else r
