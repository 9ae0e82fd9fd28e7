"""Segmentation datasets: semantic mask folders and instance polygons / RLE, one in-memory form.

A :class:`SegmentationDataset` is a list of :class:`SegSample` (an image and either a class-index
mask file or a list of instances) plus the class names and the ignore index (void). Readers for
each on-disk layout live in :mod:`visiontune.segment.formats`; this module holds the common form,
rasterisation, validation and the data version.

Label conventions are explicit: ``ignore_index`` is the void value (CamVid 11, VOC 255), excluded
from losses and metrics; ``background`` says whether class 0 is a real "background" class (VOC,
ADE20K ``reduce_labels``) — it is an ordinary class either way, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visiontune.data.hashing import hash_files
from visiontune.errors import DatasetError, require
from visiontune.progress import progress as progress_bar

#: ignore index used when a dataset names none (VOC's border value, torchvision's default)
DEFAULT_IGNORE = 255
#: how finely mask outlines are traced into polygons (4: corners on a quarter-pixel grid, exact)
_TRACE = 4


@dataclass
class Instance:
    """One object: a class index and its shape (``polygons`` in pixels, flat x, y lists, or a COCO
    ``rle``); ``iscrowd`` as in COCO."""

    label: int
    polygons: list[list[float]] | None = None
    rle: dict | None = None
    iscrowd: int = 0

    def mask(self, height: int, width: int) -> np.ndarray:
        """The instance as a bool H×W mask (pycocotools rasterisation)."""
        mask_util = require("pycocotools.mask", "dev", "polygon masks")
        if self.rle is not None:
            counts = self.rle["counts"]
            if isinstance(counts, list):
                r = mask_util.frPyObjects(self.rle, height, width)
            else:
                r = {"size": list(self.rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
            return mask_util.decode(r).astype(bool)
        polys = [p for p in (self.polygons or []) if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), bool)
        return mask_util.decode(mask_util.merge(mask_util.frPyObjects(polys, height, width))).astype(bool)


@dataclass
class SegSample:
    """One image with its labels: a class-index ``mask`` file (semantic) or ``instances``."""

    image: Path
    mask: Path | None = None
    instances: list[Instance] | None = None
    height: int | None = None
    width: int | None = None
    image_id: int | None = None


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outline polygons (pixels, flat x, y lists) whose rasterisation is ``mask`` again: outlines
    traced on a quarter-pixel grid, holes spliced into their outer ring (a keyhole), so COCO
    polygons and YOLO-seg lines keep masks with holes."""
    import cv2

    m = np.asarray(mask, dtype=np.uint8)
    h, w = m.shape
    up = cv2.resize(m, (w * _TRACE, h * _TRACE), interpolation=cv2.INTER_NEAREST)
    contours, hier = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hier is None:
        return []
    hier = hier[0]
    out = []
    for i, c in enumerate(contours):
        if hier[i][3] != -1:
            continue  # a hole: spliced into its parent below
        ring = c.reshape(-1, 2).astype(np.float64)
        j = hier[i][2]
        while j != -1:
            hole = contours[j].reshape(-1, 2).astype(np.float64)
            d = ((ring[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
            a, b = np.unravel_index(int(d.argmin()), d.shape)
            hole = np.roll(hole, -b, axis=0)
            ring = np.concatenate([ring[: a + 1], hole, hole[:1], ring[a:]])
            j = hier[j][0]
        if len(ring) >= 3:
            out.append([round(float(v), 3) for v in ((ring + 0.5) / _TRACE).ravel()])
    return out


def join_polygons(polygons: list[list[float]]) -> list[float]:
    """Several rings as one polygon (zero-width bridges between nearest points), for formats with
    one polygon per instance (YOLO-seg); rasterises to the union of the rings."""
    rings = [np.asarray(p, np.float64).reshape(-1, 2) for p in polygons if len(p) >= 6]
    if not rings:
        return []
    out = rings[0]
    for ring in rings[1:]:
        d = ((out[:, None, :] - ring[None, :, :]) ** 2).sum(-1)
        a, b = np.unravel_index(int(d.argmin()), d.shape)
        ring = np.roll(ring, -b, axis=0)
        out = np.concatenate([out[: a + 1], ring, ring[:1], out[a:]])
    return [round(float(v), 3) for v in out.ravel()]


def read_mask(path: str | Path) -> np.ndarray:
    """A class-index mask PNG (``L``/``P``/``I`` mode; a palette PNG's indices are the classes,
    as in VOC) -> int64 H×W. RGB colour masks are refused with the fix."""
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA"):
                arr = np.asarray(im)
                if not (arr[..., 0] == arr[..., 1]).all() or not (arr[..., 1] == arr[..., 2]).all():
                    raise DatasetError(
                        f"{path}: an RGB colour mask; visiontune reads class-index masks (mode L or a "
                        "palette PNG). Convert it with a colour -> index table first"
                    )
                return arr[..., 0].astype(np.int64)
            return np.asarray(im if im.mode in ("L", "P", "I", "I;16") else im.convert("L")).astype(np.int64)
    except (OSError, ImportError) as e:  # ImportError: a decoder plugin patched into PIL.Image.open (ultralytics)
        raise DatasetError(f"{path}: cannot read the mask ({e})") from e


@dataclass
class SegmentationDataset:
    """Samples + class names + label conventions (see the module docstring)."""

    samples: list[SegSample]
    classes: list[str]
    ignore_index: int | None = DEFAULT_IGNORE
    root: Path | None = None
    source: str = ""
    background: bool = False
    palette: list[int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def kind(self) -> str:
        """``semantic`` (mask files) or ``instance`` (polygons / RLE)."""
        return "instance" if any(s.instances is not None for s in self.samples) else "semantic"

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def size(self, i: int) -> tuple[int, int]:
        """(height, width) of sample ``i`` (read from the image header once)."""
        s = self.samples[i]
        if s.height is None or s.width is None:
            with Image.open(s.image) as im:
                s.width, s.height = im.size
        return int(s.height), int(s.width)

    def class_map(self, i: int, fill: int | None = None) -> np.ndarray:
        """Sample ``i``'s int64 H×W class map; instances are painted in order over ``fill``
        (default: the ignore index, i.e. unlabelled pixels count nowhere)."""
        s = self.samples[i]
        if s.mask is not None:
            return read_mask(s.mask)
        h, w = self.size(i)
        base = fill if fill is not None else (self.ignore_index if self.ignore_index is not None else 0)
        out = np.full((h, w), base, np.int64)
        for inst in s.instances or []:
            out[inst.mask(h, w)] = inst.label
        return out

    def instance_masks(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(masks N×H×W bool, labels N, iscrowd N) of sample ``i``; a semantic sample gives one
        mask per class present (ignore index excluded)."""
        s = self.samples[i]
        h, w = self.size(i)
        if s.instances is not None:
            insts = s.instances
            masks = np.stack([x.mask(h, w) for x in insts]) if insts else np.zeros((0, h, w), bool)
            return masks, np.array([x.label for x in insts], np.int64), np.array([x.iscrowd for x in insts], np.int64)
        cm = self.class_map(i)
        ids = [c for c in np.unique(cm).tolist() if c != self.ignore_index]
        masks = np.stack([cm == c for c in ids]) if ids else np.zeros((0, h, w), bool)
        return masks, np.array(ids, np.int64), np.zeros(len(ids), np.int64)

    # -- validation ----------------------------------------------------------------------------
    def validate(self, *, progress: bool = False) -> dict[str, Any]:
        """Check every sample: the mask's size equals its image's, mask values are class indices
        or the ignore index, polygons have at least 3 points, labels are known classes. Raises a
        `DatasetError` listing each bad file; returns pixel counts per class (semantic) or
        instance counts per class."""
        problems: list[str] = []
        counts = np.zeros(len(self.classes), np.int64)
        n = len(self.classes)
        with progress_bar("checking masks", len(self), enabled=progress) as bar:
            for i, s in enumerate(self.samples):
                if not s.image.is_file():
                    problems.append(f"{s.image}: image file not found")
                    bar.advance()
                    continue
                h, w = self.size(i)
                if s.mask is not None:
                    try:
                        cm = read_mask(s.mask)
                    except DatasetError as e:
                        problems.append(str(e))
                        bar.advance()
                        continue
                    if cm.shape != (h, w):
                        problems.append(
                            f"{s.mask}: mask is {cm.shape[1]}x{cm.shape[0]} but its image {s.image.name} is {w}x{h}"
                        )
                    vals, cnt = np.unique(cm, return_counts=True)
                    bad = [int(v) for v in vals if (v < 0 or v >= n) and v != self.ignore_index]
                    if bad:
                        problems.append(
                            f"{s.mask}: values {bad[:8]} are outside the {n} classes (0..{n - 1}) and are not the "
                            f"ignore index {self.ignore_index}; set ignore_index or fix the class list"
                        )
                    ok = (vals >= 0) & (vals < n)
                    np.add.at(counts, vals[ok], cnt[ok])
                for k, inst in enumerate(s.instances or []):
                    where = f"{self.meta.get('label_files', {}).get(str(s.image), s.image)}: instance {k + 1}"
                    if not 0 <= inst.label < n:
                        problems.append(f"{where}: class {inst.label} is outside the {n} classes")
                    elif not inst.iscrowd:
                        counts[inst.label] += 1
                    for p in inst.polygons or []:
                        if len(p) < 6 or len(p) % 2:
                            problems.append(f"{where}: a polygon with {len(p) // 2} points (needs at least 3)")
                    if inst.rle is not None and [int(v) for v in inst.rle.get("size", [])] != [h, w]:
                        problems.append(f"{where}: RLE size {inst.rle.get('size')} differs from the image's {[h, w]}")
                bar.advance()
        if problems:
            more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise DatasetError(
                f"{len(problems)} problem(s) in {self.root or self.source}:\n  " + "\n  ".join(problems[:20]) + more
            )
        return {
            "per_class": dict(zip(self.classes, counts.tolist())),
            "unit": "instances" if self.kind == "instance" else "pixels",
        }

    # -- identity and splits -------------------------------------------------------------------
    @property
    def version(self) -> str:
        """Content hash of images, masks and instance labels (12 hex digits)."""
        if "version" in self.meta:
            return self.meta["version"]
        files = [s.image for s in self.samples] + [s.mask for s in self.samples if s.mask is not None]
        digests = [d for d, _ in hash_files(files)] if files else []
        h = hashlib.sha256()
        h.update(json.dumps([self.classes, self.ignore_index]).encode())
        for d in digests:
            h.update(d.encode())
        for s in self.samples:
            if s.instances is not None:
                h.update(json.dumps([[x.label, x.polygons, x.rle, x.iscrowd] for x in s.instances]).encode())
        self.meta["version"] = h.hexdigest()[:12]
        return self.meta["version"]

    def subset(self, indices: Sequence[int]) -> SegmentationDataset:
        """The samples at ``indices``, same classes and conventions."""
        meta = {k: v for k, v in self.meta.items() if k != "version"}
        return SegmentationDataset(
            [self.samples[i] for i in indices],
            list(self.classes),
            self.ignore_index,
            self.root,
            self.source,
            self.background,
            self.palette,
            meta,
        )

    def split(self, fraction: float, seed: int = 0) -> tuple[SegmentationDataset, SegmentationDataset]:
        """(rest, held out ``fraction``), a seeded random split."""
        idx = list(range(len(self)))
        random.Random(seed).shuffle(idx)
        k = max(1, int(round(len(idx) * fraction)))
        return self.subset(sorted(idx[k:])), self.subset(sorted(idx[:k]))

    def summary(self) -> str:
        """``N images, C classes (semantic|instance), ignore I``."""
        return f"{len(self)} images, {len(self.classes)} classes ({self.kind}), ignore index {self.ignore_index}"
