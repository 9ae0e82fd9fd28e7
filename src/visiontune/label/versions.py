"""Versions of detection / segmentation annotations (classification uses the dataset manifest).

An :class:`AnnotationVersion` (``visiontune.annotations/1``) lists every image (relative path,
sha256, size, width, height, split) with its objects (label + box, polygon or COCO-RLE mask). Its
``version`` is a content hash of the classes, the task and the images, so the same annotations
always get the same id. Versions live in ``<root>/.visiontune/annotations/<version>.json``; a
corrected version names its ``parent`` and lists its ``changes``; the image files are never
touched. :func:`diff_annotations` matches objects per image (exact, then by overlap) and says
which were added, removed, relabelled or reshaped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
from pydantic import BaseModel

from visiontune.data.hashing import hash_files
from visiontune.errors import DatasetError
from visiontune.label import masks as mk
from visiontune.label.core import Item, LabelSet, Shape
from visiontune.records import Record

STORE_SUBDIR = Path(".visiontune") / "annotations"
TOLERANCE_PX = 0.05  # coordinates equal within this after a round trip through percentages
MATCH_IOU = 0.5


class ObjectDoc(BaseModel):
    """One object of an annotation version: label, kind and its box, points or RLE mask."""

    label: str
    kind: str
    box: list[float] | None = None
    points: list[list[float]] | None = None
    rle: dict[str, Any] | None = None


class ImageDoc(BaseModel):
    """One image of an annotation version: path, content hash, size and objects."""

    path: str
    sha256: str
    size: int
    width: int
    height: int
    split: str | None = None
    objects: list[ObjectDoc] = []


class AnnotationVersion(Record):
    """One version of a detection / segmentation dataset's annotations."""

    KIND: ClassVar[str] = "annotations"
    VERSION: ClassVar[int] = 1

    version: str = ""
    parent: str | None = None
    created: str = ""
    root: str
    task: str
    classes: list[str]
    notes: str = ""
    changes: list[dict[str, Any]] = []
    images: list[ImageDoc] = []

    def content_hash(self) -> str:
        """SHA-256 of the task, classes and images (the version id is derived from it)."""
        doc = {"task": self.task, "classes": self.classes, "images": [i.model_dump() for i in self.sorted_images()]}
        blob = json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:12]

    def sorted_images(self) -> list[ImageDoc]:
        """Images sorted by path."""
        return sorted(self.images, key=lambda i: i.path)

    def by_path(self) -> dict[str, ImageDoc]:
        """Images keyed by their path."""
        return {i.path: i for i in self.images}

    def default_store(self) -> Path:
        """The default store under the dataset root."""
        return Path(self.root) / STORE_SUBDIR

    def save(self, store: str | os.PathLike | None = None) -> Path:
        """Write ``<store>/<version>.json`` atomically (an existing identical version is kept)."""
        self.version = self.content_hash()
        self.created = self.created or _now()
        folder = Path(store) if store is not None else self.default_store()
        target = folder / f"{self.version}.json"
        if not target.is_file():
            self.write(target, indent=1)
        return target.resolve()

    def to_labelset(self) -> LabelSet:
        """The annotations as a LabelSet (labels only), base version = this one."""
        items = []
        for d in self.images:
            shapes = [doc_to_shape(o, d.height, d.width) for o in d.objects]
            f = d.path if os.path.isabs(d.path) else os.path.join(self.root, d.path)
            items.append(Item(d.path, f, d.width, d.height, shapes, [], d.sha256, d.size, d.split, ref=d.path))
        return LabelSet(
            items, list(self.classes), self.task, self.root, self.version, source=f"annotations {self.version}"
        )

    def summary(self) -> str:
        """One line: version, images, objects and classes."""
        n = sum(len(i.objects) for i in self.images)
        return f"annotations {self.version}: {len(self.images)} images, {n} objects, {len(self.classes)} classes"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _r(v: float) -> float:
    return round(float(v), 2)


def shape_to_doc(s: Shape) -> ObjectDoc:
    """The stored form of a `Shape`."""
    if s.kind == "box":
        return ObjectDoc(label=s.label, kind="box", box=[_r(v) for v in s.box or ()])
    if s.kind == "polygon":
        return ObjectDoc(label=s.label, kind="polygon", points=[[_r(x), _r(y)] for x, y in np.asarray(s.points)])
    if s.kind == "mask":
        assert s.mask is not None  # a mask shape carries its mask
        return ObjectDoc(label=s.label, kind="mask", rle=mk.mask_to_coco_rle(s.mask))
    return ObjectDoc(label=s.label, kind="tag")


def doc_to_shape(o: ObjectDoc, height: int, width: int) -> Shape:
    """The `Shape` of a stored object (masks decoded at ``height`` × ``width``)."""
    if o.kind == "box":
        box = cast("tuple[float, float, float, float]", tuple(o.box or ()))  # shape_to_doc writes 4 numbers
        return Shape(o.label, "box", box=box)
    if o.kind == "polygon":
        return Shape(o.label, "polygon", points=np.asarray(o.points or [], np.float64))
    if o.kind == "mask":
        return Shape(o.label, "mask", mask=mk.coco_rle_to_mask(o.rle or {"size": [height, width], "counts": ""}))
    return Shape(o.label, "tag")


def version_from_labelset(ls: LabelSet, parent: str | None = None, notes: str = "") -> AnnotationVersion:
    """An AnnotationVersion of the labelled items of ``ls`` (files hashed, sizes read)."""
    if ls.root is None:
        raise DatasetError("a label set without a root folder cannot be versioned")
    items = [it for it in ls.items if it.labels is not None]
    todo = [it for it in items if it.sha256 is None]
    for it, (digest, size) in zip(todo, hash_files([it.file for it in todo]) if todo else []):
        it.sha256, it.size = digest, size
    docs = []
    for it in items:
        w, h = it.ensure_size()
        docs.append(
            ImageDoc(
                path=it.path,
                sha256=it.sha256 or "",
                size=int(it.size or 0),
                width=w,
                height=h,
                split=it.split,
                objects=[shape_to_doc(s) for s in it.labels or [] if s.kind != "tag"],
            )
        )
    return AnnotationVersion(
        root=str(ls.root), task=ls.task, classes=list(ls.classes), parent=parent, notes=notes, images=docs
    )


def snapshot_annotations(ls: LabelSet, store: str | os.PathLike | None = None, notes: str = "") -> AnnotationVersion:
    """Save the current annotations of a detection / segmentation label set as a version and
    set ``ls.base_version`` to it (an unchanged set returns the same id)."""
    v = version_from_labelset(ls, notes=notes)
    path = v.save(store)
    v = AnnotationVersion.read(path)
    ls.base_version = v.version
    ls.source = ls.source or str(path)
    return v


def find_annotations(
    ref: str | os.PathLike | AnnotationVersion, store: str | os.PathLike | None = None
) -> AnnotationVersion:
    """An annotation version from its file, or its id in ``store`` / ``./.visiontune/annotations``."""
    if isinstance(ref, AnnotationVersion):
        return ref
    p = Path(ref)
    if p.is_file():
        v = AnnotationVersion.read(p)
        _check_hash(v, p)
        return v
    folders = ([Path(store)] if store is not None else []) + [Path.cwd() / STORE_SUBDIR]
    hits = sorted({f for d in folders if d.is_dir() for f in d.glob(f"{ref}*.json")})
    if len(hits) != 1:
        where = ", ".join(str(f) for f in folders)
        what = "not found" if not hits else f"ambiguous ({', '.join(h.stem for h in hits)})"
        raise DatasetError(f"annotation version {ref} {what} in {where}; pass the version file's path")
    v = AnnotationVersion.read(hits[0])
    _check_hash(v, hits[0])
    return v


def _check_hash(v: AnnotationVersion, path: Path) -> None:
    if v.version != v.content_hash():
        raise DatasetError(
            f"{path} says version {v.version} but its images hash to {v.content_hash()}: the file was edited by hand"
        )


# -- diff --------------------------------------------------------------------------------------------
@dataclass
class AnnotationDiff:
    """What changed from version ``a`` to ``b``: images added / removed, objects per image."""

    a: str
    b: str
    added_images: list[str] = field(default_factory=list)
    removed_images: list[str] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)  # path, change, old, new
    unchanged_images: int = 0

    @property
    def empty(self) -> bool:
        """True when the versions hold the same images and objects."""
        return not (self.added_images or self.removed_images or self.objects)

    def count(self, change: str) -> int:
        """Number of object changes of kind ``change``."""
        return sum(o["change"] == change for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        """The differences as JSON-ready values."""
        return {
            "a": self.a,
            "b": self.b,
            "added_images": self.added_images,
            "removed_images": self.removed_images,
            "objects": self.objects,
            "unchanged_images": self.unchanged_images,
        }

    def __str__(self) -> str:
        kinds = ("relabelled", "added", "removed", "reshaped")
        head = ", ".join(f"{self.count(k)} {k}" for k in kinds)
        lines = [
            f"{self.a} -> {self.b}: {len(self.added_images)} images added, {len(self.removed_images)} removed; "
            f"objects: {head}; {self.unchanged_images} images unchanged"
        ]
        lines += [f"  + image {p}" for p in self.added_images]
        lines += [f"  - image {p}" for p in self.removed_images]
        sym = {"relabelled": "~", "added": "+", "removed": "-", "reshaped": "*"}
        for o in self.objects:
            if o["change"] == "relabelled":
                text = f"{o['old']} -> {o['new_label']}"
            elif o["change"] == "reshaped":
                text = f"{o['old']} -> {o['new']}"
            else:
                text = o["new"] if o["change"] == "added" else o["old"]
            lines.append(f"  {sym[o['change']]} {o['path']}: {text}")
        return "\n".join(lines)


def _same_geometry(a: ObjectDoc, b: ObjectDoc) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "box":
        return np.allclose(a.box or [], b.box or [], atol=TOLERANCE_PX, rtol=0)
    if a.kind == "polygon":
        pa, pb = np.asarray(a.points or []), np.asarray(b.points or [])
        return pa.shape == pb.shape and np.allclose(pa, pb, atol=TOLERANCE_PX, rtol=0)
    if a.kind == "mask":
        return (a.rle or {}) == (b.rle or {})
    return True


def _doc_bbox(o: ObjectDoc, h: int, w: int) -> tuple[float, float, float, float] | None:
    return doc_to_shape(o, h, w).bbox()


def _box_iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_objects(old: list[ObjectDoc], new: list[ObjectDoc], h: int, w: int) -> list[dict[str, Any]]:
    """Per-image object changes: exact matches drop out, then pairs overlapping >= 0.5 IoU are
    relabelled / reshaped, and what is left was added or removed."""
    o_left = list(range(len(old)))
    n_left = list(range(len(new)))
    for i in list(o_left):
        j = next((j for j in n_left if old[i].label == new[j].label and _same_geometry(old[i], new[j])), None)
        if j is not None:
            o_left.remove(i)
            n_left.remove(j)
    boxes_o = {i: _doc_bbox(old[i], h, w) for i in o_left}
    boxes_n = {j: _doc_bbox(new[j], h, w) for j in n_left}
    pairs = sorted(((_box_iou(boxes_o[i], boxes_n[j]), i, j) for i in o_left for j in n_left), reverse=True)
    out = []
    for iou, i, j in pairs:
        if iou < MATCH_IOU or i not in o_left or j not in n_left:
            continue
        o_left.remove(i)
        n_left.remove(j)
        a, b = doc_to_shape(old[i], h, w), doc_to_shape(new[j], h, w)
        if old[i].label != new[j].label:
            reshaped = not _same_geometry(old[i], new[j])
            out.append(
                {
                    "change": "relabelled",
                    "old": a.describe(),
                    "new": b.describe(),
                    "old_label": a.label,
                    "new_label": b.label,
                    "reshaped": reshaped,
                }
            )
        else:
            out.append({"change": "reshaped", "old": a.describe(), "new": b.describe(), "iou": round(iou, 3)})
    out += [{"change": "removed", "old": doc_to_shape(old[i], h, w).describe(), "new": None} for i in o_left]
    out += [{"change": "added", "old": None, "new": doc_to_shape(new[j], h, w).describe()} for j in n_left]
    return out


def diff_annotations(
    a: AnnotationVersion | str | os.PathLike, b: AnnotationVersion | str | os.PathLike
) -> AnnotationDiff:
    """Images added / removed and object changes (see :func:`match_objects`) from ``a`` to ``b``."""
    va, vb = find_annotations(a), find_annotations(b)
    ia, ib = va.by_path(), vb.by_path()
    d = AnnotationDiff(va.version, vb.version)
    for path in sorted(ia.keys() | ib.keys()):
        x, y = ia.get(path), ib.get(path)
        if x is None:
            d.added_images.append(path)
        elif y is None:
            d.removed_images.append(path)
        else:
            changes = match_objects(x.objects, y.objects, x.height, x.width)
            for c in changes:
                c["path"] = path
            d.objects += changes
            d.unchanged_images += not changes
    return d
