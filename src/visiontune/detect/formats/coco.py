"""COCO instances JSON: ``bbox`` is ``x, y, w, h`` in pixels; category ids are written 1..C in
class order and read in id order."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visiontune._atomic import write_text
from visiontune.detect.io import image_size
from visiontune.detect.records import AnnotationChecker, ImageRecord, Loaded
from visiontune.errors import DatasetError


def read_coco(path: str | os.PathLike, image_root: str | os.PathLike | None = None, strict: bool = True) -> Loaded:
    """Read a COCO instances JSON. ``image_root``: where ``file_name`` is relative to (default: the
    JSON's folder, or its sibling ``images/`` folder when the files are there)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"cannot read COCO JSON {path}: {e}") from e
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing or non-list '{key}' (not a COCO instances file)")
    cats = sorted(data["categories"], key=lambda c: c.get("id", 0))
    try:
        cat_index = {int(c["id"]): i for i, c in enumerate(cats)}
        classes = [str(c["name"]) for c in cats]
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: a category lacks 'id' or 'name' ({e})") from e
    root = Path(image_root) if image_root is not None else path.parent
    chk = AnnotationChecker(strict)
    recs: dict[int, ImageRecord] = {}
    for k, im in enumerate(data["images"]):
        try:
            iid, fname = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: images[{k}] lacks 'id' or 'file_name'") from None
        p = root / fname
        if image_root is None and not p.exists() and (path.parent / "images" / fname).exists():
            root = path.parent / "images"
            p = root / fname
        w, h = im.get("width"), im.get("height")
        if not w or not h:
            if not p.exists():
                raise DatasetError(
                    f"{path}: image id {iid} ({fname}) has no width/height and the file is not at {p}; pass image_root="
                )
            w, h = image_size(p)
        recs[iid] = ImageRecord(p, int(w), int(h), np.zeros((0, 4)), np.zeros(0), image_id=iid)
    boxes: dict[int, list] = {i: [] for i in recs}
    for k, a in enumerate(data["annotations"]):
        aid = a.get("id", f"#{k}")
        where = f"{path} annotation id {aid}"
        iid = a.get("image_id")
        if iid not in recs:
            chk.bad(where, f"image_id {iid} is not in 'images'")
            continue
        cid = a.get("category_id")
        if cid not in cat_index:
            chk.bad(where, f"category_id {cid} is not in 'categories' (known: {sorted(cat_index)})")
            continue
        bb = a.get("bbox")
        if not (isinstance(bb, (list, tuple)) and len(bb) == 4 and all(isinstance(v, (int, float)) for v in bb)):
            chk.bad(where, f"bbox {bb!r} is not four numbers [x, y, w, h]")
            continue
        r = recs[iid]
        b = chk.box(where, (bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3]), r.width, r.height)
        if b is not None:
            boxes[iid].append((b, cat_index[cid], bool(a.get("iscrowd", 0)), f"annotation id {aid}"))
    issues = chk.finish(str(path))
    for iid, items in boxes.items():
        r = recs[iid]
        if items:
            r.boxes = np.stack([x[0] for x in items])
            r.labels = np.array([x[1] for x in items], np.int64)
            r.crowd = np.array([x[2] for x in items], bool)
            r.refs = [x[3] for x in items]
        else:
            r.crowd = np.zeros(0, bool)
    return Loaded(list(recs.values()), classes, root, issues)


def write_coco(
    images: Sequence[ImageRecord],
    classes: Sequence[str],
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
) -> Path:
    """Write a COCO instances JSON; category ids 1..C in class order. ``file_name`` is relative
    to ``image_root`` (default: the JSON's folder, so `read_coco(path)` finds the images)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out_images, anns = [], []
    aid = 1
    for i, r in enumerate(images, 1):
        rel = os.path.relpath(Path(r.path).resolve(), root.resolve())
        out_images.append({"id": i, "file_name": Path(rel).as_posix(), "width": r.width, "height": r.height})
        for b, lab, crowd in zip(r.boxes.tolist(), r.labels.tolist(), r.crowd.tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": aid,
                    "image_id": i,
                    "category_id": lab + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                }
            )
            aid += 1
    cats = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(classes)]
    write_text(path, json.dumps({"images": out_images, "annotations": anns, "categories": cats}))
    return path
