"""CVAT's COCO 1.0 and YOLO 1.1 task exports, written for upload and read back.

COCO 1.0: ``annotations/instances_default.json`` (+ ``images/default/``): boxes, polygons
(``segmentation`` lists) and masks (RLE, ``iscrowd`` 1). YOLO 1.1: ``obj.names``, ``obj.data``,
``train.txt`` and ``obj_train_data/<name>.txt`` lines ``class cx cy w h`` (normalised; boxes
only). Both are read from the folder or the zip CVAT downloads; images are matched to the base
version by path, then by file name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from visiontune._atomic import write_text
from visiontune.errors import DatasetError
from visiontune.label import masks as mk
from visiontune.label.core import (
    EXPORT_META,
    Item,
    LabelExport,
    LabelSet,
    Shape,
    class_list,
    export_names,
    raise_problems,
)
from visiontune.label.cvat import XML_NAME, shapes_for

COCO_JSON = Path("annotations") / "instances_default.json"


def detect(path: str | os.PathLike) -> str:
    """``cvat`` (XML), ``coco`` or ``yolo`` for an export file, folder or zip."""
    p = Path(path)
    if p.suffix == ".xml":
        return "cvat"
    if p.suffix == ".json":
        return "coco"
    if p.suffix == ".zip":
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    elif p.is_dir():
        names = [f.relative_to(p).as_posix() for f in p.rglob("*") if f.is_file()]
    else:
        raise DatasetError(f"{p}: no such CVAT export (give annotations.xml, a COCO / YOLO folder or its zip)")
    if XML_NAME in names:
        return "cvat"
    if "obj.names" in names:
        return "yolo"
    if any(n.startswith("annotations/") and n.endswith(".json") for n in names):
        return "coco"
    raise DatasetError(f"{p}: neither annotations.xml, obj.names (YOLO 1.1) nor annotations/*.json (COCO 1.0) found")


def _place(it: Item, dst: Path, images: str) -> None:
    if images == "none":
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if images == "copy":
        shutil.copy2(it.file, dst)
    else:
        os.symlink(os.path.abspath(it.file), dst)


def coco_document(ls: LabelSet, preannotate: str = "auto") -> dict[str, Any]:
    """``ls`` as a COCO instances document (labels, else predictions per ``preannotate``)."""
    names = export_names(ls)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i, it in enumerate(ls.items, 1):
        w, h = it.ensure_size()
        images.append({"id": i, "file_name": names[it.path], "width": w, "height": h})
        shapes, source = shapes_for(it, preannotate)
        for s in shapes:
            if s.kind == "tag":
                raise DatasetError("COCO 1.0 holds no image tags: export classification as CVAT for images XML")
            box = s.bbox()
            if box is None:
                continue
            ann: dict[str, Any] = {"id": len(anns) + 1, "image_id": i, "category_id": ls.classes.index(s.label) + 1}
            ann["bbox"] = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            ann["iscrowd"], ann["segmentation"], ann["area"] = 0, [], ann["bbox"][2] * ann["bbox"][3]
            if s.kind == "polygon":
                assert s.points is not None  # a polygon shape carries its points
                ann["segmentation"] = [np.asarray(s.points).reshape(-1).round(2).tolist()]
                ann["area"] = float(mk.polygon_to_mask(s.points, h, w).sum())
            elif s.kind == "mask":
                assert s.mask is not None  # a mask shape carries its mask
                ann["iscrowd"], ann["segmentation"] = 1, mk.mask_to_coco_rle(s.mask)
                ann["area"] = float(s.mask.sum())
            ann["attributes"] = {"occluded": False, "source": source}
            if s.score is not None:
                ann["score"] = float(s.score)
            anns.append(ann)
    cats = [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(ls.classes)]
    return {"licenses": [], "info": {}, "categories": cats, "images": images, "annotations": anns}


def write_export(
    ls: LabelSet,
    out: str | os.PathLike,
    fmt: str,
    *,
    base_file: str | None = None,
    preannotate: str = "auto",
    images: str = "link",
) -> LabelExport:
    """Write a COCO 1.0 (``fmt="coco"``) or YOLO 1.1 (``fmt="yolo"``) task export into ``out``."""
    out = Path(out)
    if fmt == "coco":
        write_text(out / COCO_JSON, json.dumps(coco_document(ls, preannotate)))
        for it in ls.items:
            _place(it, out / "images" / "default" / export_names(ls)[it.path], images)
        files = {"annotations": COCO_JSON.as_posix()}
    elif fmt == "yolo":
        files = _write_yolo(ls, out, preannotate, images)
    else:
        raise DatasetError(f"unknown CVAT export format {fmt!r}: use cvat, coco or yolo")
    meta = LabelExport(
        tool=f"cvat-{fmt}",
        task=ls.task,
        classes=list(ls.classes),
        root=str(Path(ls.root or ".").resolve()),
        base_version=ls.base_version,
        base_file=base_file,
        model_version=ls.model_version,
        preannotate=preannotate,
        images=len(ls.items),
        files=files,
        paths={n: p for p, n in export_names(ls).items() if n != p},
    )
    meta.write(out / EXPORT_META)
    return meta


def _write_yolo(ls: LabelSet, out: Path, preannotate: str, images: str) -> dict[str, str]:
    names = [Path(it.path).name for it in ls.items]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DatasetError(f"YOLO 1.1 keys images by file name; these names repeat: {sorted(dup)[:5]}")
    listed = []
    for it in ls.items:
        w, h = it.ensure_size()
        shapes, _ = shapes_for(it, preannotate)
        lines = []
        for s in shapes:
            if s.kind != "box":
                raise DatasetError(f"{it.path}: YOLO 1.1 holds boxes only, not {s.kind}s: use CVAT XML or COCO 1.0")
            x1, y1, x2, y2 = s.box  # type: ignore[misc]
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{ls.classes.index(s.label)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        name = Path(it.path).name
        write_text(out / "obj_train_data" / (Path(name).stem + ".txt"), "".join(f"{x}\n" for x in lines), fsync=False)
        _place(it, out / "obj_train_data" / name, images)
        listed.append(f"obj_train_data/{name}")
    write_text(out / "obj.names", "".join(f"{c}\n" for c in ls.classes))
    write_text(out / "obj.data", f"classes = {len(ls.classes)}\nnames = obj.names\ntrain = train.txt\n")
    write_text(out / "train.txt", "".join(f"{x}\n" for x in listed))
    return {"names": "obj.names", "data": "obj.data", "list": "train.txt"}


# -- reading ----------------------------------------------------------------------------------------
def unpacked(path: Path) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """(folder, temporary directory to clean up) of a CVAT export: a ``.zip`` is unpacked, a folder used as is."""
    if path.suffix != ".zip":
        return path, None
    tmp = tempfile.TemporaryDirectory(prefix="visiontune-cvat-")
    try:
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.startswith("/") or ".." in Path(n).parts:
                    raise DatasetError(f"{path}: unsafe path {n!r} in the zip")
            z.extractall(tmp.name)
    except zipfile.BadZipFile as e:
        tmp.cleanup()
        raise DatasetError(f"{path}: not a readable zip ({e})") from None
    return Path(tmp.name), tmp


def read_export(
    path: str | os.PathLike, base: LabelSet, fmt: str, names: dict[str, str] | None = None
) -> tuple[LabelSet, list[str]]:
    """Every image of a CVAT COCO 1.0 / YOLO 1.1 export as a reviewed item over ``base``
    (``names``: the export's ``{name in CVAT: dataset path}`` for images outside the root)."""
    folder, tmp = unpacked(Path(path))
    try:
        if fmt == "coco":
            return _read_coco(folder, base, Path(path).name, names or {})
        return _read_yolo(folder, base, Path(path).name, names or {})
    finally:
        if tmp is not None:
            tmp.cleanup()


def _matcher(base: LabelSet, names: dict[str, str]):
    index = base.by_path()
    for path in names.values():  # images new to the version (a pool batch), by their export name
        if path not in index and os.path.isfile(path):
            index[path] = Item(path, path, ref=path)
    by_name: dict[str, list[str]] = {}
    for k in index:
        by_name.setdefault(Path(k).name, []).append(k)

    def match(name: str) -> str | None:
        name = names.get(name, name)
        if name in index:
            return name
        c = by_name.get(Path(name).name, [])
        return c[0] if len(c) == 1 else None

    return index, match


def _read_coco(folder: Path, base: LabelSet, label: str, names: dict[str, str]) -> tuple[LabelSet, list[str]]:
    f = folder if folder.is_file() else next(iter(sorted((folder / "annotations").glob("*.json"))), None)
    if f is None:
        raise DatasetError(f"{label}: no annotations/*.json")
    try:
        doc = json.loads(Path(f).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{f}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    index, match = _matcher(base, names)
    problems: list[str] = []
    cats = {c.get("id"): str(c.get("name")) for c in doc.get("categories", [])}
    unknown = sorted(set(cats.values()) - set(base.classes))
    if unknown:
        problems.append(f"{f.name}: unknown categories {unknown} (classes: {class_list(base.classes)})")
    items: dict[int, Item] = {}
    for im in doc.get("images", []):
        rel = match(str(im.get("file_name", "")))
        if rel is None:
            problems.append(
                f"{f.name}: image id {im.get('id')} {im.get('file_name')!r} is not in version {base.base_version}"
            )
            continue
        src = index[rel]
        if not os.path.isfile(src.file):
            problems.append(f"{f.name}: image id {im.get('id')}: file not found: {src.file}")
            continue
        w, h = src.ensure_size()
        items[im["id"]] = Item(
            rel, src.file, w, h, labels=[], sha256=src.sha256, split=src.split, ref=f"{f.name}: image id {im['id']}"
        )
    for a in doc.get("annotations", []):
        where = f"{f.name}: annotation id {a.get('id')}"
        it = items.get(a.get("image_id"))
        if it is None:
            if not any(p.startswith(f"{f.name}: image id {a.get('image_id')}") for p in problems):
                problems.append(f"{where}: image id {a.get('image_id')} is not listed")
            continue
        name = cats.get(a.get("category_id"))
        if name not in base.classes:
            problems.append(f"{where}: category id {a.get('category_id')} is not a dataset class")
            continue
        try:
            it.labels.append(_coco_shape(a, name, base.task, it.height, it.width))  # type: ignore[union-attr, arg-type]
        except (KeyError, ValueError, TypeError, IndexError) as e:
            problems.append(f"{where}: malformed ({type(e).__name__}: {e})")
    raise_problems(f"CVAT COCO export {label}", problems)
    return LabelSet(list(items.values()), list(base.classes), base.task, base.root, base.base_version), []


def _coco_shape(a: dict, name: str, task: str, h: int, w: int) -> Shape:
    seg = a.get("segmentation")
    if task == "segmentation" and seg:
        if isinstance(seg, dict):
            return Shape(name, "mask", mask=mk.coco_rle_to_mask(seg))
        if len(seg) == 1:
            return Shape(name, "polygon", points=np.asarray(seg[0], np.float64).reshape(-1, 2))
        m = np.zeros((h, w), bool)
        for part in seg:
            m |= mk.polygon_to_mask(np.asarray(part).reshape(-1, 2), h, w)
        return Shape(name, "mask", mask=m)
    x, y, bw, bh = (float(v) for v in a["bbox"])
    if bw < 0 or bh < 0:
        raise ValueError(f"negative box size {bw}x{bh}")
    return Shape(name, "box", box=(x, y, x + bw, y + bh))


def _read_yolo(folder: Path, base: LabelSet, label: str, paths: dict[str, str]) -> tuple[LabelSet, list[str]]:
    names_file = folder / "obj.names"
    if not names_file.is_file():
        raise DatasetError(f"{label}: obj.names not found")
    names = [n.strip() for n in names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    index, match = _matcher(base, paths)
    problems = [
        f"{names_file.name}, line {i}: unknown label {n!r}" for i, n in enumerate(names, 1) if n not in base.classes
    ]
    items = []
    for txt in sorted(folder.glob("obj_*_data/**/*.txt")):
        cands = [k for k in index if Path(k).stem == txt.stem]
        rel = cands[0] if len(cands) == 1 else match(txt.stem)
        if rel is None:
            problems.append(f"{txt.relative_to(folder)}: no image named {txt.stem}.* in version {base.base_version}")
            continue
        src = index[rel]
        w, h = src.ensure_size()
        shapes = []
        for n, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{txt.relative_to(folder)}, line {n}"
            try:
                c, *numbers = line.split()
                ci = int(c)
                cx, cy, bw, bh = (float(v) for v in numbers)
            except ValueError:
                problems.append(f"{where}: expected 'class cx cy w h', found {line!r}")
                continue
            if not 0 <= ci < len(names):
                problems.append(f"{where}: class {ci} outside 0..{len(names) - 1} of obj.names")
                continue
            shapes.append(
                Shape(
                    names[ci], "box", box=((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
                )
            )
        items.append(
            Item(
                rel, src.file, w, h, labels=shapes, sha256=src.sha256, split=src.split, ref=str(txt.relative_to(folder))
            )
        )
    raise_problems(f"CVAT YOLO export {label}", problems)
    return LabelSet(items, list(base.classes), base.task, base.root, base.base_version), []
