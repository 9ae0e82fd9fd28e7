"""The one in-memory form every label-tool conversion goes through.

A :class:`LabelSet` is a list of :class:`Item` (one image: its current ``labels`` and the model's
``predictions``, each a list of :class:`Shape`) with the class list, the task and the dataset
version it came from. Label Studio and CVAT files are written from it and read back into it;
corrections are the difference between two of them.

Shapes are in image pixels: ``tag`` (an image-level class, classification), ``box`` (``x1, y1,
x2, y2``), ``polygon`` (``(K, 2)`` vertices) and ``mask`` (an ``(H, W)`` bool array).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from visiontune.errors import DatasetError, ImageDecodeError
from visiontune.label import masks as mk
from visiontune.records import Record

KINDS = ("tag", "box", "polygon", "mask")
TASKS = ("classification", "detection", "segmentation")
MAX_LISTED = 12


@dataclass
class Shape:
    """One label: an image tag, a box, a polygon or a mask, with an optional model score."""

    label: str
    kind: str = "tag"
    box: tuple[float, float, float, float] | None = None
    points: np.ndarray | None = None
    mask: np.ndarray | None = None
    score: float | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"shape kind must be one of {KINDS}, not {self.kind!r}")
        if self.box is not None:
            self.box = tuple(float(v) for v in self.box)  # type: ignore[assignment]
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)

    def bbox(self) -> tuple[float, float, float, float] | None:
        """Pixel ``x1, y1, x2, y2`` of a box, polygon or mask (None for tags and empty masks)."""
        if self.kind == "box":
            return self.box
        if self.kind == "polygon" and self.points is not None and len(self.points):
            return mk.polygon_bbox(self.points)
        if self.kind == "mask" and self.mask is not None:
            return mk.mask_bbox(self.mask)
        return None

    def to_mask(self, height: int, width: int) -> np.ndarray:
        """The region as an ``(H, W)`` bool mask (boxes filled, polygons rasterised)."""
        if self.kind == "mask" and self.mask is not None:
            return self.mask
        if self.kind == "polygon" and self.points is not None:
            return mk.polygon_to_mask(self.points, height, width)
        out = np.zeros((height, width), bool)
        if self.kind == "box" and self.box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in self.box)
            out[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
        return out

    def describe(self) -> str:
        """Short text for diffs: ``box dog [10,20,50,60]``."""
        if self.kind == "tag":
            return f"tag {self.label}"
        b = self.bbox()
        where = "[" + ",".join(f"{v:.0f}" for v in b) + "]" if b else "[empty]"
        return f"{self.kind} {self.label} {where}"


@dataclass
class Item:
    """One image: where it is, its current labels (None: not labelled yet) and predictions."""

    path: str  # identity: relative to LabelSet.root ('/'-separated) or absolute
    file: str  # absolute path of the image file
    width: int | None = None
    height: int | None = None
    labels: list[Shape] | None = None
    predictions: list[Shape] = field(default_factory=list)
    sha256: str | None = None
    size: int | None = None
    split: str | None = None
    ref: str = ""  # where this item came from, for messages ("task 12", "image id 3")
    meta: dict[str, Any] = field(default_factory=dict)

    def ensure_size(self) -> tuple[int, int]:
        """``(width, height)`` as displayed (EXIF rotation applied), read from the header once."""
        if self.width is None or self.height is None:
            self.width, self.height = image_size(self.file)
        return int(self.width), int(self.height)

    def tags(self, which: str = "labels") -> list[str]:
        """The tag labels of the item (``which="predictions"``: of its predictions)."""
        shapes = self.labels if which == "labels" else self.predictions
        return [s.label for s in shapes or [] if s.kind == "tag"]


@dataclass
class LabelSet:
    """Images with labels and predictions, one class list, one task."""

    items: list[Item]
    classes: list[str]
    task: str = "classification"
    root: str | None = None
    base_version: str | None = None
    model_version: str | None = None
    source: str | None = None
    multi_label: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {self.task!r}")
        self.classes = [str(c) for c in self.classes]

    def __len__(self) -> int:
        return len(self.items)

    def by_path(self) -> dict[str, Item]:
        """Items keyed by their path."""
        return {it.path: it for it in self.items}

    def subset(self, paths: Iterable[str]) -> LabelSet:
        """The items with these paths (in that order); unknown paths raise a DatasetError."""
        index = self.by_path()
        missing = [p for p in paths if p not in index]
        if missing:
            raise DatasetError(f"not in this label set: {', '.join(missing[:MAX_LISTED])}")
        return LabelSet(
            [index[p] for p in paths],
            list(self.classes),
            self.task,
            self.root,
            self.base_version,
            self.model_version,
            self.source,
            self.multi_label,
        )

    def summary(self) -> dict[str, Any]:
        """Task, classes and counts of images, labelled images and shapes."""
        labelled = sum(it.labels is not None for it in self.items)
        return {
            "task": self.task,
            "images": len(self.items),
            "labelled": labelled,
            "with_predictions": sum(bool(it.predictions) for it in self.items),
            "classes": len(self.classes),
            "base_version": self.base_version,
            "model_version": self.model_version,
        }


# -- helpers -------------------------------------------------------------------------------------
def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF orientation applied), from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise ImageDecodeError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"cannot read image header of {path}: {e}") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def raise_problems(what: str, problems: list[str]) -> None:
    """One DatasetError listing every problem (the first 12), or nothing."""
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DatasetError(f"{what}: {len(problems)} problem(s):\n  {listed}{more}")


def rel_path(file: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """``file`` relative to ``root`` ('/'-separated) when it lies under it, else absolute."""
    f = os.path.abspath(os.fspath(file))
    if root is None:
        return Path(f).as_posix()
    r = os.path.join(os.path.abspath(os.fspath(root)), "")
    return Path(f[len(r) :]).as_posix() if f.startswith(r) else Path(f).as_posix()


def class_list(classes: list[str], n: int = 20) -> str:
    """``a, b, c`` — the first ``n`` class names for messages, and how many there are."""
    head = ", ".join(classes[:n])
    return head if len(classes) <= n else f"{head}, ... ({len(classes)} in all)"


def label_index(classes: list[str]) -> dict[str, int]:
    """Class name → index."""
    return {c: i for i, c in enumerate(classes)}


class LabelExport(Record):
    """``visiontune-export.json`` beside every export: what was exported, from which version,
    with which model, and where the images are served from (so an import can find its base)."""

    KIND: ClassVar[str] = "label-export"
    VERSION: ClassVar[int] = 1

    tool: str  # label-studio | cvat | cvat-coco | cvat-yolo
    task: str
    classes: list[str]
    root: str
    base_version: str | None = None
    base_file: str | None = None
    model_version: str | None = None
    document_root: str | None = None
    preannotate: str | None = None
    multi_label: bool = False
    images: int = 0
    created: str = ""
    files: dict[str, str] = {}
    paths: dict[str, str] = {}  # name in the tool -> dataset path, where they differ (images outside the root)


def export_names(ls: LabelSet) -> dict[str, str]:
    """``{dataset path: name in the tool}``: the path itself, or for images outside the dataset
    root (absolute paths, e.g. a selected pool batch) their path under the pool's common folder."""
    outside = [it.path for it in ls.items if os.path.isabs(it.path)]
    base = os.path.commonpath([os.path.dirname(p) for p in outside]) if outside else ""
    return {
        it.path: (Path(os.path.relpath(it.path, base)).as_posix() if os.path.isabs(it.path) else it.path)
        for it in ls.items
    }


EXPORT_META = "visiontune-export.json"


def read_export_meta(folder: str | os.PathLike) -> LabelExport | None:
    """The export record in ``folder`` (or beside the file ``folder``), or None."""
    p = Path(folder)
    f = p / EXPORT_META if p.is_dir() else p.parent / EXPORT_META
    return LabelExport.read(f) if f.is_file() else None
