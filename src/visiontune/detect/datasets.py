"""Detection datasets: COCO JSON, YOLO txt (+ data.yaml) and Pascal VOC XML.

Everything loads into one `DetectionDataset` (pixel ``x1, y1, x2, y2`` boxes, class indices into
``classes``) and writes back to any of the three formats. Loading validates every annotation —
boxes inside the image (1 px tolerance, then clipped), positive area, known classes, numbers that
parse — and a `DatasetError` names the file and the line (YOLO), the annotation id (COCO) or the
object index (VOC). ``strict=False`` skips bad annotations instead and lists them in ``issues``.

The readers and writers live in `visiontune.detect.formats` (one module per format, working on
plain `ImageRecord` lists); this module is the dataset object and the format-agnostic entry points.
Coordinate conventions: COCO ``bbox`` is ``x, y, w, h`` in pixels; YOLO is normalised
``cx cy w h``; VOC ``bndbox`` values are read and written as pixel ``x1 y1 x2 y2`` (no 1-based
offset), so conversions are lossless.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.functional import pil_to_tensor

from visiontune.detect.formats import read_coco, read_voc, read_yolo, write_coco, write_voc, write_yolo
from visiontune.detect.io import read_image
from visiontune.detect.records import (
    TOLERANCE_PX,
    ImageRecord,
    Loaded,
    content_version,
    relative_name,
)
from visiontune.errors import DatasetError

__all__ = [
    "TOLERANCE_PX",
    "DetectionDataset",
    "ImageRecord",
    "TorchDetectionDataset",
    "collate",
    "convert",
    "detect_format",
    "load_coco",
    "load_detection",
    "load_voc",
    "load_yolo",
]


@dataclass
class DetectionDataset:
    """Images with boxes and labels, whatever format they came from (see the module docstring)."""

    images: list[ImageRecord]
    classes: list[str]
    root: Path | None = None  # image root (relative file names are written against it)
    source: str = ""
    issues: list[str] = field(default_factory=list)  # annotations skipped with strict=False

    @classmethod
    def from_loaded(cls, loaded: Loaded, source: str) -> DetectionDataset:
        """Wrap what a `visiontune.detect.formats` reader returned."""
        return cls(loaded.images, loaded.classes, loaded.root, source, loaded.issues)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        """Objects over all images."""
        return int(sum(len(r.labels) for r in self.images))

    @property
    def version(self) -> str:
        """Content version id of the data (12 hex digits), as classification's ``Splits.version``:
        the same images (by relative path and file sha256), boxes (to 0.01 px), labels and class
        list give the same id, in any order and wherever the folder lies. Image hashes are cached
        by (path, size, mtime), so asking again is cheap."""
        return content_version(self.images, self.classes, self.root)

    def class_counts(self) -> dict[str, int]:
        """Objects per class (0 included)."""
        counts = np.bincount(
            np.concatenate([r.labels for r in self.images] or [np.zeros(0, np.int64)]), minlength=len(self.classes)
        )
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def summary(self) -> str:
        """``"N images, M boxes, C classes"`` (+ skipped annotations)."""
        return f"{len(self)} images, {self.num_boxes} boxes, {len(self.classes)} classes" + (
            f", {len(self.issues)} annotations skipped" if self.issues else ""
        )

    def subset(self, indices: Iterable[int]) -> DetectionDataset:
        """The images at ``indices`` (same classes, root and issues)."""
        return replace(self, images=[self.images[i] for i in indices], issues=list(self.issues))

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[DetectionDataset, DetectionDataset]:
        """Seeded split, stratified by each image's most frequent class."""
        rng = random.Random(seed)
        by_class: dict[int, list[int]] = {}
        for i, r in enumerate(self.images):
            key = int(np.bincount(r.labels).argmax()) if len(r.labels) else -1
            by_class.setdefault(key, []).append(i)
        train, val = [], []
        for key in sorted(by_class):
            idx = by_class[key]
            rng.shuffle(idx)
            k = int(round(len(idx) * val_fraction))
            val += idx[:k]
            train += idx[k:]
        return self.subset(sorted(train)), self.subset(sorted(val))

    def image_path(self, rec: ImageRecord) -> Path:
        """Where the image of ``rec`` is read from."""
        return rec.path

    def relative_name(self, rec: ImageRecord) -> str:
        """``rec``'s path relative to the dataset root (its file name when outside it)."""
        return relative_name(rec, self.root)

    # ------------------------------------------------------------------ writers
    def to_coco(self, path, image_root=None) -> Path:
        """Write a COCO instances JSON; category ids 1..C in class order. ``file_name`` is relative
        to ``image_root`` (default: the JSON's folder, so `load_coco(path)` finds the images)."""
        return write_coco(self.images, self.classes, path, image_root=image_root)

    def to_yolo(self, directory, split: str = "train", images: str = "copy") -> Path:
        """Write ``images/<split>/``, ``labels/<split>/*.txt`` and ``data.yaml`` under ``directory``.
        ``images``: copy | link (symlink) | none (labels only)."""
        return write_yolo(self.images, self.classes, directory, root=self.root, split=split, image_mode=images)

    def to_voc(self, directory, images: str = "copy", split: str = "train") -> Path:
        """Write ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt`` and
        ``labels.txt`` (class order) under ``directory``."""
        return write_voc(self.images, self.classes, directory, root=self.root, image_mode=images, split=split)

    def save(self, target, fmt: str | None = None, **kw) -> Path:
        """Write in ``fmt`` (coco | yolo | voc; default from ``target``: ``.json`` -> coco)."""
        fmt = fmt or ("coco" if str(target).endswith(".json") else "yolo")
        writers: dict[str, Callable[..., Path]] = {"coco": self.to_coco, "yolo": self.to_yolo, "voc": self.to_voc}
        if fmt not in writers:
            raise DatasetError(f"unknown detection format {fmt!r}; use coco, yolo or voc")
        return writers[fmt](target, **kw)


# ----------------------------------------------------------------------------- loaders
def load_coco(path, image_root=None, strict: bool = True) -> DetectionDataset:
    """A COCO instances JSON. ``image_root``: where ``file_name`` is relative to (default: the
    JSON's folder, or its sibling ``images/`` folder when the files are there)."""
    return DetectionDataset.from_loaded(read_coco(path, image_root=image_root, strict=strict), f"coco:{Path(path)}")


def load_yolo(
    source, split: str = "train", names: Sequence[str] | None = None, strict: bool = True
) -> DetectionDataset:
    """A YOLO dataset: a ``data.yaml`` (``path``, ``train``/``val``/``test``, ``names``) or a
    folder holding ``images/[split]/`` and ``labels/[split]/`` (then ``names=`` or a
    ``classes.txt`` gives the class names)."""
    return DetectionDataset.from_loaded(
        read_yolo(source, split=split, names=names, strict=strict), f"yolo:{Path(source)}"
    )


def load_voc(
    source, split: str | None = None, classes: Sequence[str] | None = None, strict: bool = True
) -> DetectionDataset:
    """A Pascal VOC folder (``Annotations/*.xml`` + ``JPEGImages/``, optional
    ``ImageSets/Main/<split>.txt``). Class order: ``classes=``, else ``labels.txt``, else sorted names."""
    loaded = read_voc(source, split=split, classes=classes, strict=strict)
    return DetectionDataset.from_loaded(loaded, f"voc:{Path(source)}")


# ----------------------------------------------------------------------------- any format
def detect_format(source) -> str:
    """``coco`` | ``yolo`` | ``voc`` for a path: a .json, a data.yaml, or a folder's layout."""
    s = Path(source)
    if s.suffix == ".json":
        return "coco"
    if s.suffix in (".yaml", ".yml"):
        return "yolo"
    if s.is_dir():
        if (s / "Annotations").is_dir() or any(s.glob("*.xml")):
            return "voc"
        if (s / "data.yaml").is_file() or (s / "labels").is_dir():
            return "yolo"
        jsons = list(s.glob("*.json")) + list((s / "annotations").glob("*.json"))
        if len(jsons) == 1:
            return "coco"
    raise DatasetError(
        f"cannot tell the detection format of {source}: give a COCO .json, a YOLO data.yaml / "
        "folder with labels/, or a VOC folder with Annotations/"
    )


def load_detection(
    source, split: str | None = None, fmt: str | None = None, strict: bool = True, **kw
) -> DetectionDataset:
    """Load any of the three formats (detected from ``source`` unless ``fmt`` is given)."""
    if isinstance(source, DetectionDataset):
        return source
    fmt = fmt or detect_format(source)
    s = Path(source)
    if fmt == "coco":
        if s.is_dir():
            s = (list(s.glob("*.json")) + list((s / "annotations").glob("*.json")))[0]
        return load_coco(s, strict=strict, **kw)
    if fmt == "yolo":
        if s.is_dir() and (s / "data.yaml").is_file():
            s = s / "data.yaml"
        return load_yolo(s, split=split or "train", strict=strict, **kw)
    if fmt == "voc":
        return load_voc(s, split=split, strict=strict, **kw)
    raise DatasetError(f"unknown detection format {fmt!r}; use coco, yolo or voc")


def convert(source, target, to: str, **kw) -> Path:
    """Convert a dataset between COCO / YOLO / VOC: ``convert("ann.json", "out/", to="yolo")``."""
    return load_detection(source).save(target, fmt=to, **kw)


# ----------------------------------------------------------------------------- torch
class TorchDetectionDataset(torch.utils.data.Dataset):
    """``(image CHW float [0, 1], {"boxes", "labels"})`` pairs for torchvision detectors; labels are
    class index + 1 (0 is background). Crowd / difficult objects are left out of training targets."""

    def __init__(self, ds: DetectionDataset, train: bool = False, hflip: float = 0.5):
        # the flip draws from torch's RNG: wrapped in adapt.data.SeededDataset (as detection training
        # does) it is a function of (seed, epoch, index), so a resumed epoch replays exactly
        self.ds, self.train, self.hflip = ds, train, hflip

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        r = self.ds.images[i]
        img = pil_to_tensor(read_image(r.path)).float().div_(255.0)
        keep = ~r.crowd
        boxes = torch.as_tensor(r.boxes[keep], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(r.labels[keep] + 1, dtype=torch.int64)
        if img.shape[-2:] != (r.height, r.width):  # annotation size differs from the file: rescale
            sy, sx = img.shape[-2] / r.height, img.shape[-1] / r.width
            boxes = boxes * torch.tensor([sx, sy, sx, sy])
        if self.train and self.hflip and float(torch.rand(())) < self.hflip:
            img = img.flip(-1)
            w = img.shape[-1]
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return img, {"boxes": boxes, "labels": labels, "image_id": r.image_id}


def collate(batch):
    """A detection batch as ``(images, targets)`` tuples (images differ in size)."""
    return tuple(zip(*batch))
