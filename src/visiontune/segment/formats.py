"""Reading and writing segmentation data: mask folders, COCO polygons / RLE, YOLO-seg polygons.

* **mask folder** — images and same-stem class-index PNGs (``L`` mode or palette PNGs as in VOC),
  in any of ``root/<split>/{images,masks}``, ``root/{images,masks}/<split>``,
  ``root/{images,masks}`` or VOC's ``JPEGImages`` + ``SegmentationClass`` +
  ``ImageSets/Segmentation/<split>.txt``; class names from ``classes=`` or a ``classes.txt`` /
  ``labelmap.txt`` / ``class_names.txt`` (one name a line) in the root.
* **COCO** — ``instances.json`` with polygon or RLE (compressed or not) ``segmentation``.
* **YOLO-seg** — ``labels/<split>/<stem>.txt`` lines ``class x1 y1 x2 y2 …`` (normalised), with a
  ``data.yaml`` (``names``) or ``classes=``.

``convert`` writes any of them from any other; mask outlines become polygons exactly
(:func:`visiontune.segment.data.mask_to_polygons`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visiontune._atomic import write_text
from visiontune._config import read_yaml
from visiontune.data.decode import is_image_file
from visiontune.errors import ConfigError, DatasetError, require
from visiontune.results.segmentation import encode_rle
from visiontune.segment.data import (
    DEFAULT_IGNORE,
    Instance,
    SegmentationDataset,
    SegSample,
    join_polygons,
    mask_to_polygons,
)

CLASS_FILES = ("classes.txt", "labelmap.txt", "class_names.txt")
VOC_CLASSES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse "
    "motorbike person pottedplant sheep sofa train tvmonitor"
).split()


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved), flat RGB for ``Image.putpalette``."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names, one a line (``name`` or ``index name`` / ``name:...`` as in labelmap.txt)."""
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head = (line[: line.index(":")] if ":" in line else line).strip()  # labelmap.txt "name:rgb:..."
        parts = head.split()
        names.append(" ".join(parts[1:]) if len(parts) > 1 and parts[0].isdigit() else head)
    if not names:
        raise DatasetError(f"{path}: no class names in it (one name a line)")
    return names


def _classes(classes: Any, root: Path) -> list[str] | None:
    if classes is None:
        for name in CLASS_FILES:
            if (root / name).is_file():
                return read_class_names(root / name)
        return None
    if isinstance(classes, (str, os.PathLike)):
        return read_class_names(classes)
    return [str(c) for c in classes]


def _pairs(img_dir: Path, mask_dir: Path, stems: list[str] | None = None) -> list[SegSample]:
    images = {p.stem: p for p in sorted(img_dir.iterdir()) if is_image_file(p)}
    masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if p.suffix.lower() == ".png"}
    wanted = stems if stems is not None else sorted(images)
    missing = [images[s].name if s in images else s for s in wanted if s not in masks]
    orphans = [] if stems is not None else [masks[s].name for s in masks if s not in images]
    if missing or orphans:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image(s) without a mask in {mask_dir} (e.g. {', '.join(missing[:3])})")
        if orphans:
            parts.append(f"{len(orphans)} mask(s) without an image in {img_dir} (e.g. {', '.join(orphans[:3])})")
        raise DatasetError("; ".join(parts) + ": masks pair with images by file stem")
    absent = [s for s in wanted if s not in images]
    if absent:
        raise DatasetError(f"{len(absent)} listed image(s) not found in {img_dir} (e.g. {', '.join(absent[:3])})")
    return [SegSample(images[s].resolve(), masks[s].resolve()) for s in wanted]


def load_mask_folder(
    root: str | os.PathLike,
    split: str | None = None,
    *,
    classes: Any = None,
    ignore_index: int | None = None,
    background: bool | None = None,
) -> SegmentationDataset:
    """A mask folder (see the module docstring). ``ignore_index`` defaults to 255 (VOC's border)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    stems = None
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():  # PASCAL VOC
        img_dir, mask_dir = root / "JPEGImages", root / "SegmentationClass"
        lst = root / "ImageSets" / "Segmentation" / f"{split or 'train'}.txt"
        if not lst.is_file():
            raise DatasetError(f"{lst}: no such split list in the VOC folder {root}")
        stems = [s.strip() for s in lst.read_text().split() if s.strip()]
        names: list[str] | None = _classes(classes, root) or list(VOC_CLASSES)
        bg = True if background is None else background
        source = "voc"
    else:
        cands = (
            [(root / split / "images", root / split / "masks"), (root / "images" / split, root / "masks" / split)]
            if split
            else []
        )
        cands.append((root / "images", root / "masks"))
        found = next(((i, m) for i, m in cands if i.is_dir() and m.is_dir()), None)
        if found is None:
            tried = ", ".join(f"{i.relative_to(root)} + {m.relative_to(root)}" for i, m in cands)
            raise DatasetError(f"{root}: no images/masks folders for split {split!r} (looked for {tried})")
        img_dir, mask_dir = found
        names = _classes(classes, root) or _classes(None, img_dir.parent)
        bg = bool(background)
        source = "masks"
    if not names:
        raise DatasetError(f"{root}: no class names: pass classes= or put a classes.txt (one name a line) in {root}")
    ds = SegmentationDataset(
        _pairs(img_dir, mask_dir, stems),
        names,
        DEFAULT_IGNORE if ignore_index is None else int(ignore_index),
        root,
        source,
        bg,
    )
    assert ds.samples[0].mask is not None  # a mask-folder dataset: every sample has its mask
    with Image.open(ds.samples[0].mask) as im:
        if im.mode == "P":
            ds.palette = list(im.getpalette() or [])[: 3 * 256]
    return ds


def load_coco_seg(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> SegmentationDataset:
    """COCO instances JSON with polygon / RLE segmentations (categories in id order)."""
    path = Path(path).resolve()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a readable COCO JSON ({e})") from e
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise DatasetError(f"{path}: no {key!r} list (a COCO instances file has images, annotations, categories)")
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(cats)}
    base = Path(image_root) if image_root else path.parent
    samples: dict[int, SegSample] = {}
    for im in doc["images"]:
        f = Path(im["file_name"])
        samples[im["id"]] = SegSample(
            (f if f.is_absolute() else base / f).resolve(), None, [], im.get("height"), im.get("width"), im["id"]
        )
    problems = []
    for a in doc["annotations"]:
        where = f"{path}: annotation id {a.get('id')}"
        if a.get("image_id") not in samples:
            problems.append(f"{where}: image_id {a.get('image_id')} is not in images")
            continue
        if a.get("category_id") not in index:
            problems.append(f"{where}: category_id {a.get('category_id')} is not in categories")
            continue
        seg = a.get("segmentation")
        if not seg:
            problems.append(f"{where}: no segmentation (a box-only annotation; use visiontune.detect for boxes)")
            continue
        inst = Instance(index[a["category_id"]], iscrowd=int(a.get("iscrowd", 0)))
        if isinstance(seg, list):
            inst.polygons = [list(map(float, p)) for p in seg]
            short = [len(p) // 2 for p in inst.polygons if len(p) < 6]
            if short:
                problems.append(f"{where}: a polygon with {short[0]} points (needs at least 3)")
        else:
            inst.rle = dict(seg)
        samples[a["image_id"]].instances.append(inst)  # type: ignore[union-attr]
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in {path}:\n  " + "\n  ".join(problems[:20]))
    return SegmentationDataset(list(samples.values()), [c["name"] for c in cats], None, path.parent, "coco", False)


def _yolo_names(names: Any) -> list[str]:
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names]


def load_yolo_seg(path: str | os.PathLike, split: str | None = "train", *, classes: Any = None) -> SegmentationDataset:
    """YOLO-seg polygons: a ``data.yaml`` or a folder with ``images/<split>`` + ``labels/<split>``."""
    path = Path(path).resolve()
    names = None
    if path.suffix in (".yaml", ".yml"):
        doc = read_yaml(path, "YOLO data.yaml")
        base = Path(doc.get("path") or path.parent)
        base = base if base.is_absolute() else (path.parent / base)
        entry = doc.get(split or "train")
        if entry is None:
            raise DatasetError(
                f"{path}: no {split!r} split (keys: {', '.join(k for k in doc if k in ('train', 'val', 'test'))})"
            )
        img_dir = (base / entry).resolve()
        names = _yolo_names(doc.get("names") or [])
    else:
        img_dir = path / "images" / split if split and (path / "images" / split).is_dir() else path / "images"
        base = path
    lbl_dir = Path(str(img_dir).replace(f"{os.sep}images", f"{os.sep}labels", 1))
    if not img_dir.is_dir():
        raise DatasetError(f"{img_dir}: no such images folder")
    names = _classes(classes, base) if classes is not None or names is None else names
    samples, problems, label_files, top = [], [], {}, -1
    for img in sorted(p for p in img_dir.iterdir() if is_image_file(p)):
        lf = lbl_dir / f"{img.stem}.txt"
        with Image.open(img) as im:
            w, h = im.size
        insts = []
        if lf.is_file():
            for n, line in enumerate(lf.read_text().splitlines(), 1):
                v = line.split()
                if not v:
                    continue
                try:
                    c, xy = int(v[0]), [float(x) for x in v[1:]]
                except ValueError:
                    problems.append(f"{lf}:{n}: not 'class x1 y1 x2 y2 …' numbers")
                    continue
                if len(xy) < 6 or len(xy) % 2:
                    problems.append(
                        f"{lf}:{n}: a polygon with {len(xy) // 2} points (needs at least 3; 4 numbers is a box)"
                    )
                    continue
                if any(not -0.01 <= x <= 1.01 for x in xy):
                    problems.append(f"{lf}:{n}: coordinates outside 0..1 (YOLO-seg polygons are normalised)")
                    continue
                pts = (np.array(xy).reshape(-1, 2) * [w, h]).ravel().tolist()
                insts.append(Instance(c, [pts]))
                top = max(top, c)
        samples.append(SegSample(img.resolve(), None, insts, h, w))
        label_files[str(img.resolve())] = str(lf)
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in {lbl_dir}:\n  " + "\n  ".join(problems[:20]))
    if not samples:
        raise DatasetError(f"{img_dir}: no images")
    names = names or [f"class{i}" for i in range(top + 1)]
    return SegmentationDataset(samples, names, None, base, "yolo", False, meta={"label_files": label_files})


def detect_format(data: str | os.PathLike) -> str:
    """``coco`` | ``yolo`` | ``masks`` for a path."""
    p = Path(data)
    if p.suffix == ".json":
        return "coco"
    if p.suffix in (".yaml", ".yml") or (p / "labels").is_dir():
        return "yolo"
    if p.is_dir():
        return "masks"
    raise DatasetError(f"{data}: not a segmentation dataset (a mask folder, COCO .json or YOLO-seg data.yaml / folder)")


def load_segmentation(
    data: Any, split: str | None = None, *, classes: Any = None, ignore_index: int | None = None, **kw: Any
) -> SegmentationDataset:
    """Any supported layout (see the module docstring); a `SegmentationDataset` passes through."""
    if isinstance(data, SegmentationDataset):
        return data
    fmt = detect_format(data)
    if fmt == "coco":
        ds = load_coco_seg(data, kw.get("image_root"))
    elif fmt == "yolo":
        ds = load_yolo_seg(data, split or "train", classes=classes)
    else:
        return load_mask_folder(
            data, split, classes=classes, ignore_index=ignore_index, background=kw.get("background")
        )
    if ignore_index is not None:
        ds.ignore_index = int(ignore_index)
    return ds


# -- writers ---------------------------------------------------------------------------------------
def _place(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "symlink":
        os.symlink(src, dst)
    else:
        shutil.copy2(src, dst)


def _polygons(ds: SegmentationDataset, i: int, inst: Instance) -> list[list[float]]:
    if inst.polygons is not None:
        return inst.polygons
    return mask_to_polygons(inst.mask(*ds.size(i)))


def _as_instances(ds: SegmentationDataset, i: int) -> list[Instance]:
    s = ds.samples[i]
    if s.instances is not None:
        return s.instances
    masks, labels, _ = ds.instance_masks(i)
    return [Instance(int(c), rle=encode_rle(m)) for m, c in zip(masks, labels)]


def write_coco_seg(ds: SegmentationDataset, path: str | os.PathLike, *, mode: str = "polygon") -> Path:
    """A COCO instances JSON (absolute image paths); ``mode`` ``polygon`` or ``rle``."""
    if mode not in ("polygon", "rle"):
        raise ConfigError(f"mode must be 'polygon' or 'rle', got {mode!r}")
    mask_util = require("pycocotools.mask", "dev", "COCO masks")
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i, s in enumerate(ds.samples):
        h, w = ds.size(i)
        iid = s.image_id or i + 1
        images.append({"id": iid, "file_name": str(s.image), "height": h, "width": w})
        for inst in _as_instances(ds, i):
            m = inst.mask(h, w)
            rle = encode_rle(m)
            seg: Any = rle if mode == "rle" or inst.iscrowd else _polygons(ds, i, inst)
            x, y, bw, bh = mask_util.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}).tolist()
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": inst.label + 1,
                    "segmentation": seg,
                    "area": int(m.sum()),
                    "bbox": [x, y, bw, bh],
                    "iscrowd": int(inst.iscrowd),
                }
            )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(ds.classes)]
    out = Path(path)
    write_text(out, json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out


def write_yolo_seg(
    ds: SegmentationDataset, out: str | os.PathLike, split: str = "train", *, images: str = "symlink"
) -> Path:
    """``out/images/<split>`` (links or copies), ``out/labels/<split>/*.txt``, ``out/data.yaml``."""
    out = Path(out)
    for i, s in enumerate(ds.samples):
        h, w = ds.size(i)
        _place(s.image, out / "images" / split / s.image.name, images)
        lines = []
        for inst in _as_instances(ds, i):
            poly = join_polygons(_polygons(ds, i, inst))  # YOLO-seg: one polygon per instance
            if poly:
                xy = np.array(poly).reshape(-1, 2) / [w, h]
                lines.append(" ".join([str(inst.label), *(f"{v:.6f}" for v in xy.ravel())]))
        write_text(out / "labels" / split / f"{s.image.stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
    doc = out / "data.yaml"
    entries = {}
    if doc.is_file():
        entries = {k: v for k, v in (read_yaml(doc, "YOLO data.yaml") or {}).items() if k in ("train", "val", "test")}
    entries[split] = f"images/{split}"
    names = "\n".join(f"  {k}: {json.dumps(n)}" for k, n in enumerate(ds.classes))
    body = f"path: {out.resolve()}\n" + "".join(f"{k}: {v}\n" for k, v in entries.items()) + f"names:\n{names}\n"
    write_text(doc, body)
    return doc


def write_mask_folder(
    ds: SegmentationDataset,
    out: str | os.PathLike,
    split: str | None = None,
    *,
    images: str = "symlink",
    palette: bool = True,
) -> Path:
    """``out[/<split>]/images`` + ``masks`` (class-index PNGs, VOC palette unless ``palette=False``)
    + ``out/classes.txt``; instances are painted over the ignore index (default 255)."""
    out = Path(out)
    base = out / split if split else out
    pal = ds.palette or voc_palette()
    fill = ds.ignore_index if ds.ignore_index is not None else DEFAULT_IGNORE
    for i, s in enumerate(ds.samples):
        _place(s.image, base / "images" / s.image.name, images)
        cm = ds.class_map(i, fill=fill)
        if cm.max(initial=0) > 255 or cm.min(initial=0) < 0:
            raise DatasetError(f"{s.image}: class indices beyond 0..255 do not fit an 8-bit mask PNG")
        im = Image.fromarray(cm.astype(np.uint8), mode="L")
        if palette:
            im = im.convert("P")
            im.putpalette(pal)
        dst = base / "masks" / f"{s.image.stem}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        im.save(tmp, format="PNG")
        os.replace(tmp, dst)
    write_text(out / "classes.txt", "\n".join(ds.classes) + "\n")
    return out


def convert(source: Any, out: str | os.PathLike, to: str, *, split: str | None = None, **kw: Any) -> Path:
    """Convert ``source`` (any layout, or a dataset) to ``to``: ``coco`` (polygons), ``coco-rle``,
    ``yolo`` or ``masks``; ``kw`` go to the reader (``classes``, ``ignore_index``)."""
    ds = load_segmentation(source, split, **kw)
    if to == "coco":
        return write_coco_seg(ds, out, mode="polygon")
    if to == "coco-rle":
        return write_coco_seg(ds, out, mode="rle")
    if to == "yolo":
        return write_yolo_seg(ds, out, split or "train")
    if to == "masks":
        return write_mask_folder(ds, out, split)
    raise ConfigError(f"to must be one of coco, coco-rle, yolo, masks; got {to!r}")
