"""What every detection format reads into and writes from: `ImageRecord` (one image and its
objects), the annotation checker all readers share, and the content version of a set of records.

Boxes are pixel ``x1, y1, x2, y2`` floats; labels are indices into the dataset's class list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from visiontune.data.hashing import hash_files, sha256_bytes
from visiontune.data.manifest import VERSION_LENGTH
from visiontune.errors import DatasetError

#: how far (px) a box may reach outside its image before it is an error (it is clipped otherwise)
TOLERANCE_PX = 1.0
#: box coordinates are rounded to this many decimals (0.01 px) in the content version
VERSION_DECIMALS = 2


@dataclass
class ImageRecord:
    """One image and its objects. ``refs`` says where each object came from (for messages)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float64 pixel xyxy
    labels: np.ndarray  # (N,) int64 class index into DetectionDataset.classes
    image_id: int = 0
    crowd: np.ndarray = None  # type: ignore[assignment]  # (N,) bool; COCO iscrowd, VOC difficult (None: all False)
    refs: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        if self.crowd is None:
            self.crowd = np.zeros(len(self.labels), bool)


class Loaded(NamedTuple):
    """What a format reader returns: the records, the class list, the image root (relative file
    names are written against it) and the annotations skipped with ``strict=False``."""

    images: list[ImageRecord]
    classes: list[str]
    root: Path | None
    issues: list[str]


def relative_name(rec: ImageRecord, root: str | os.PathLike | None) -> str:
    """``rec.path`` relative to ``root`` ('/'-separated), or its file name when it lies elsewhere."""
    if root is not None:
        try:
            return rec.path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return rec.path.name


def content_version(images: Sequence[ImageRecord], classes: Sequence[str], root: str | os.PathLike | None) -> str:
    """Short content hash of a detection dataset, in the style of
    `visiontune.data.manifest.compute_version`: the first 12 hex digits of the sha256 of the class
    list and the sorted entries ``(relative path, image sha256, sorted objects)``, each object
    ``[x1, y1, x2, y2]`` rounded to 0.01 px, its label and its crowd / difficult flag. Independent of
    the order of images and objects and of where the dataset folder lies; file hashes are cached."""
    try:
        hashes = hash_files([r.path for r in images])
    except OSError as e:
        raise DatasetError(
            f"the dataset version hashes every image file, and {e.filename or e} cannot be read ({e.strerror or e}); "
            "restore it or drop the image from the dataset"
        ) from e
    prefix = os.path.join(os.path.abspath(root), "") if root is not None else None
    entries = []
    for r, (digest, _size) in zip(images, hashes):
        objects = sorted(
            [*(round(float(v), VERSION_DECIMALS) + 0.0 for v in b), int(lab), int(crowd)]
            for b, lab, crowd in zip(r.boxes.tolist(), r.labels.tolist(), r.crowd.tolist())
        )
        entries.append([_name_under(os.path.abspath(r.path), prefix), digest, objects])
    canonical = {"classes": list(classes), "entries": sorted(entries)}
    blob = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return sha256_bytes(blob)[:VERSION_LENGTH]


def _name_under(path: str, prefix: str | None) -> str:
    """``path`` relative to the folder ``prefix`` ('/'-separated) as the dataset names it (no
    symlink resolution: ``relative_name`` resolves, which costs a syscall per path component),
    else its file name."""
    if prefix is not None and path.startswith(prefix):
        return path[len(prefix) :].replace(os.sep, "/")
    return os.path.basename(path)


def format_box(b) -> str:
    """``[x1, y1, x2, y2]`` with short numbers, for messages."""
    return "[" + ", ".join(f"{float(v):g}" for v in b) + "]"


class AnnotationChecker:
    """Collects per-annotation problems while a reader runs; `finish` raises them together
    (``strict``) or returns them for ``DetectionDataset.issues``."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.problems: list[str] = []

    def box(self, where: str, box, width: float, height: float) -> np.ndarray | None:
        """The box clipped to the image, or None (problem recorded) when it is not finite, has no
        area, or lies more than `TOLERANCE_PX` outside the ``width`` x ``height`` image."""
        x1, y1, x2, y2 = (float(v) for v in box)
        t = TOLERANCE_PX
        b = np.array([max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)])
        if not all(np.isfinite([x1, y1, x2, y2])):
            problem = f"box {box} has a non-finite value"
        elif x2 - x1 <= 0 or y2 - y1 <= 0:
            problem = f"box {format_box(box)} has no positive area (x2 <= x1 or y2 <= y1)"
        elif x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
            problem = f"box {format_box(box)} lies outside the {width:g}x{height:g} image"
        elif b[2] - b[0] <= 0 or b[3] - b[1] <= 0:
            problem = f"box {format_box(box)} has no area inside the image"
        else:
            return b
        self.bad(where, problem)
        return None

    def bad(self, where: str, what: str) -> None:
        """Record one problem (``where: what``)."""
        self.problems.append(f"{where}: {what}")

    def finish(self, what: str) -> list[str]:
        """Raise a `DatasetError` listing the problems in ``what`` (strict), else return them."""
        if self.problems and self.strict:
            shown = "\n  ".join(self.problems[:20])
            more = f"\n  … {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            raise DatasetError(
                f"{len(self.problems)} bad annotation(s) in {what}:\n  {shown}{more}\n"
                "Fix them, or load with strict=False (CLI --no-strict) to skip them and list them in .issues"
            )
        return self.problems
