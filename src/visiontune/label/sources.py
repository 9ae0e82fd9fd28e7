"""Label sets from the data visiontune already reads: classification versions, detection
datasets (COCO / YOLO / VOC), YOLO-seg polygons, semantic mask folders and unlabelled pools."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visiontune.data.decode import is_image_file, list_images
from visiontune.data.manifest import Manifest, find_manifest, looks_like_version
from visiontune.data.versions import snapshot
from visiontune.detect.datasets import DetectionDataset, load_detection
from visiontune.errors import DatasetError
from visiontune.label import masks as mk
from visiontune.label.core import Item, LabelSet, Shape, raise_problems, rel_path


def from_manifest(version: str | os.PathLike | Manifest, store: str | os.PathLike | None = None) -> LabelSet:
    """A classification label set from a dataset version (manifest JSON, version id or Manifest)."""
    m = find_manifest(version, store)
    if m.root is None:
        raise DatasetError(f"dataset version {m.version} has no root folder (in-memory data): nothing to label")
    items = [
        Item(
            path=e.path,
            file=m.abspath(e),
            labels=[Shape(e.label)],
            sha256=e.sha256,
            size=e.size,
            split=e.split,
            ref=e.path,
        )
        for e in m.entries
    ]
    return LabelSet(items, list(m.classes), "classification", m.root, m.version, source=str(m.file or m.version))


def from_classification(data: str | os.PathLike | Manifest, store: str | os.PathLike | None = None) -> LabelSet:
    """A folder of class folders, a train/val/test tree or a CSV (snapshotted as a version
    first, so corrections have a parent), or a manifest / version id."""
    if isinstance(data, Manifest) or Path(data).suffix == ".json" or looks_like_version(str(data)):
        return from_manifest(data, store)
    return from_manifest(snapshot(data, store=store))


def from_detection(data: Any, **load_kw: Any) -> LabelSet:
    """Boxes of a COCO JSON, YOLO data.yaml / folder or VOC folder (or a DetectionDataset)."""
    ds: DetectionDataset = load_detection(data, **load_kw)
    root = str(ds.root) if ds.root is not None else os.path.commonpath([str(r.path.parent) for r in ds.images])
    items = []
    for r in ds.images:
        shapes = [Shape(ds.classes[int(c)], "box", box=tuple(b)) for b, c in zip(r.boxes.tolist(), r.labels.tolist())]
        f = str(Path(r.path).resolve())
        items.append(
            Item(rel_path(f, root), f, int(r.width), int(r.height), labels=shapes, ref=f"image id {r.image_id}")
        )
    return LabelSet(items, list(ds.classes), "detection", str(Path(root).resolve()), source=str(ds.source or data))


def _yolo_seg_lines(path: Path, names: Sequence[str], w: int, h: int, problems: list[str]) -> list[Shape]:
    shapes = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            xy = np.asarray([float(v) for v in parts[1:]], np.float64)
        except ValueError:
            problems.append(f"{path}, line {n}: not numbers")
            continue
        if not 0 <= cls < len(names):
            problems.append(f"{path}, line {n}: class {cls} outside 0..{len(names) - 1}")
            continue
        if len(xy) < 6 or len(xy) % 2:
            problems.append(f"{path}, line {n}: a polygon needs an even number (>= 6) of coordinates, found {len(xy)}")
            continue
        pts = xy.reshape(-1, 2) * [w, h]
        shapes.append(Shape(names[cls], "polygon", points=pts))
    return shapes


def from_yolo_seg(images: str | os.PathLike, names: Sequence[str], labels: str | os.PathLike | None = None) -> LabelSet:
    """YOLO-seg polygons (``cls x1 y1 x2 y2 ...`` normalised, one object per line) for the images
    under ``images`` (labels in the sibling ``labels/`` tree by default, as Ultralytics lays out)."""
    img_root = Path(images).resolve()
    lab_root = Path(labels).resolve() if labels else Path(str(img_root).replace(f"{os.sep}images", f"{os.sep}labels"))
    root = img_root.parent if img_root.name in ("train", "val", "test") else img_root
    problems: list[str] = []
    items = []
    for f in list_images(img_root):
        rel_to_images = Path(f).resolve().relative_to(img_root)
        txt = (lab_root / rel_to_images).with_suffix(".txt")
        with Image.open(f) as im:
            w, h = im.size
        shapes = _yolo_seg_lines(txt, names, w, h, problems) if txt.is_file() else []
        items.append(Item(rel_path(f, root), str(Path(f).resolve()), w, h, labels=shapes, ref=str(txt)))
    raise_problems(f"YOLO-seg labels under {lab_root}", problems)
    if not items:
        raise DatasetError(f"no images under {img_root}")
    return LabelSet(items, list(names), "segmentation", str(root), source=str(img_root))


def from_masks(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    classes: Sequence[str],
    ignore_index: int | None = None,
    limit: int | None = None,
) -> LabelSet:
    """Semantic masks (a PNG of class indices per image, same stem) as one mask shape per class
    present; pixels equal to ``ignore_index`` (e.g. CamVid's void 11) are left unlabelled."""
    img_dir, mask_dir = Path(images).resolve(), Path(masks).resolve()
    by_stem = {p.stem: p for p in mask_dir.iterdir() if is_image_file(p)} if mask_dir.is_dir() else {}
    root = img_dir.parent
    problems: list[str] = []
    items = []
    for f in list_images(img_dir)[:limit]:
        mp = by_stem.get(Path(f).stem)
        if mp is None:
            problems.append(f"{f}: no mask {Path(f).stem}.* in {mask_dir}")
            continue
        cm = np.asarray(Image.open(mp))
        if cm.ndim != 2:
            problems.append(f"{mp}: expected a single-channel class-index PNG, found shape {cm.shape}")
            continue
        bad = [int(v) for v in np.unique(cm) if v >= len(classes) and v != ignore_index]
        if bad:
            problems.append(f"{mp}: class values {bad} outside 0..{len(classes) - 1}")
            continue
        ignore = () if ignore_index is None else (ignore_index,)
        shapes = [Shape(classes[c], "mask", mask=m) for c, m in sorted(mk.class_map_to_masks(cm, ignore).items())]
        items.append(
            Item(rel_path(f, root), str(Path(f).resolve()), cm.shape[1], cm.shape[0], labels=shapes, ref=str(mp))
        )
    raise_problems(f"masks in {mask_dir}", problems)
    return LabelSet(items, list(classes), "segmentation", str(root), source=str(img_dir))


def from_images(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    classes: Sequence[str],
    task: str = "classification",
    root: str | os.PathLike | None = None,
) -> LabelSet:
    """An unlabelled pool: every image under a folder (or the given files), no labels yet."""
    files: Sequence[str | Path]
    if isinstance(images, (str, os.PathLike)):
        files = list_images(images)
        root = root if root is not None else images
    else:
        files = [str(Path(f).resolve()) for f in images]
        root = (
            root if root is not None else (os.path.commonpath([str(Path(f).parent) for f in files]) if files else ".")
        )
    root = str(Path(root).resolve())
    missing = [f for f in files if not Path(f).is_file()]
    raise_problems("pool images", [f"{f}: file not found" for f in missing])
    items = [Item(rel_path(f, root), str(Path(f).resolve()), ref=rel_path(f, root)) for f in files]
    return LabelSet(items, list(classes), task, root, source=str(root))


def load(data: Any, task: str | None = None, **kw: Any) -> LabelSet:
    """Dispatch: a LabelSet as is; ``task="detection"`` (or a COCO .json / YOLO .yaml / VOC
    folder) → :func:`from_detection`; otherwise a classification dataset or version."""
    if isinstance(data, LabelSet):
        return data
    if isinstance(data, DetectionDataset):
        return from_detection(data)
    s = Path(str(data))
    if task == "detection" or (task is None and (s.suffix in (".yaml", ".yml") or _is_coco_json(s))):
        return from_detection(data, **kw)
    if task == "segmentation":
        raise DatasetError(
            "segmentation data: build the label set with from_yolo_seg(images, names) or "
            "from_masks(images, masks, classes) (visiontune has no segmentation dataset format yet)"
        )
    return from_classification(data, **kw)


def _is_coco_json(p: Path) -> bool:
    if p.suffix != ".json" or not p.is_file():
        return False
    with open(p, "rb") as f:
        head = f.read(4096)
    return b'"images"' in head or b'"annotations"' in head
