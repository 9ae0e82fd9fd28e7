"""Detection datasets: COCO JSON, YOLO txt (+ data.yaml) and Pascal VOC XML.

Everything loads into one `DetectionDataset` (pixel ``x1, y1, x2, y2`` boxes, class indices into
``classes``) and writes back to any of the three formats. Loading validates every annotation —
boxes inside the image (1 px tolerance, then clipped), positive area, known classes, numbers that
parse — and a `DatasetError` names the file and the line (YOLO), the annotation id (COCO) or the
object index (VOC). ``strict=False`` skips bad annotations instead and lists them in ``issues``.

Coordinate conventions: COCO ``bbox`` is ``x, y, w, h`` in pixels; YOLO is normalised
``cx cy w h``; VOC ``bndbox`` values are read and written as pixel ``x1 y1 x2 y2`` (no 1-based
offset), so conversions are lossless.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from visiontune._atomic import write_text
from visiontune.data.decode import IMAGE_EXTENSIONS
from visiontune.data.hashing import hash_files
from visiontune.errors import DatasetError

from .io import image_size

TOLERANCE_PX = 1.0


@dataclass
class ImageRecord:
    """One image and its objects. ``refs`` says where each object came from (for messages)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float64 pixel xyxy
    labels: np.ndarray  # (N,) int64 class index into DetectionDataset.classes
    image_id: int = 0
    crowd: np.ndarray | None = None  # (N,) bool; COCO iscrowd, VOC difficult
    refs: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        if self.crowd is None:
            self.crowd = np.zeros(len(self.labels), bool)


@dataclass
class DetectionDataset:
    images: list[ImageRecord]
    classes: list[str]
    root: Path | None = None  # image root (relative file names are written against it)
    source: str = ""
    issues: list[str] = field(default_factory=list)  # annotations skipped with strict=False

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(r.labels) for r in self.images))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(
            np.concatenate([r.labels for r in self.images] or [np.zeros(0, np.int64)]), minlength=len(self.classes)
        )
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def summary(self) -> str:
        return f"{len(self)} images, {self.num_boxes} boxes, {len(self.classes)} classes" + (
            f", {len(self.issues)} annotations skipped" if self.issues else ""
        )

    def subset(self, indices: Iterable[int]) -> DetectionDataset:
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
        return rec.path

    @property
    def version(self) -> str:
        """Content hash of the data (12 hex digits, like classification's dataset versions): the
        images' bytes (sha256, through the hash cache), their boxes (to 0.01 px) and labels, and
        the class list — independent of the order of the images."""
        digests = hash_files([r.path for r in self.images]) if self.images else []
        entries = sorted(
            [self._rel(r), sha, np.round(r.boxes, 2).tolist(), r.labels.tolist()]
            for r, (sha, _) in zip(self.images, digests)
        )
        blob = json.dumps({"classes": list(self.classes), "entries": entries}, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def _rel(self, rec: ImageRecord) -> str:
        if self.root is not None:
            try:
                return rec.path.resolve().relative_to(Path(self.root).resolve()).as_posix()
            except ValueError:
                pass
        return rec.path.name

    # ------------------------------------------------------------------ writers
    def to_coco(self, path, image_root=None) -> Path:
        """Write a COCO instances JSON; category ids 1..C in class order. ``file_name`` is relative
        to ``image_root`` (default: the JSON's folder, so `load_coco(path)` finds the images)."""
        path = Path(path)
        root = Path(image_root) if image_root is not None else path.parent
        images, anns = [], []
        aid = 1
        for i, r in enumerate(self.images, 1):
            rel = os.path.relpath(Path(r.path).resolve(), root.resolve())
            images.append({"id": i, "file_name": Path(rel).as_posix(), "width": r.width, "height": r.height})
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
        cats = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(self.classes)]
        write_text(path, json.dumps({"images": images, "annotations": anns, "categories": cats}))
        return path

    def to_yolo(self, directory, split: str = "train", images: str = "copy") -> Path:
        """Write ``images/<split>/``, ``labels/<split>/*.txt`` and ``data.yaml`` under ``directory``.
        ``images``: copy | link (symlink) | none (labels only)."""
        import yaml

        d = Path(directory)
        seen: set[str] = set()
        for r in self.images:
            rel = Path(self._rel(r))
            key = rel.with_suffix("").as_posix()
            if key in seen:
                raise DatasetError(f"two images map to the same YOLO label file {key}.txt; rename one of them")
            seen.add(key)
            _place_image(r.path, d / "images" / split / rel, images)
            lines = []
            for b, lab in zip(r.boxes, r.labels):
                cx, cy = (b[0] + b[2]) / 2 / r.width, (b[1] + b[3]) / 2 / r.height
                w, h = (b[2] - b[0]) / r.width, (b[3] - b[1]) / r.height
                lines.append(f"{int(lab)} {_num(cx)} {_num(cy)} {_num(w)} {_num(h)}")
            write_text(
                d / "labels" / split / rel.with_suffix(".txt"), "\n".join(lines) + ("\n" if lines else ""), fsync=False
            )
        data = {}
        if (d / "data.yaml").is_file():
            data = yaml.safe_load((d / "data.yaml").read_text()) or {}
        data.update(
            {
                "path": str(d.resolve()),
                split: f"images/{split}",
                "names": {i: n for i, n in enumerate(self.classes)},
                "nc": len(self.classes),
            }
        )
        write_text(d / "data.yaml", yaml.safe_dump(data, sort_keys=False))
        return d / "data.yaml"

    def to_voc(self, directory, images: str = "copy", split: str = "train") -> Path:
        """Write ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt`` and
        ``labels.txt`` (class order) under ``directory``."""
        d = Path(directory)
        ids = []
        for r in self.images:
            stem = Path(self._rel(r)).with_suffix("").as_posix().replace("/", "__")
            if stem in ids:
                raise DatasetError(f"two images map to the same VOC id {stem}; rename one of them")
            ids.append(stem)
            fname = stem + r.path.suffix
            _place_image(r.path, d / "JPEGImages" / fname, images)
            ann = ET.Element("annotation")
            ET.SubElement(ann, "folder").text = "JPEGImages"
            ET.SubElement(ann, "filename").text = fname
            size = ET.SubElement(ann, "size")
            for k, v in (("width", r.width), ("height", r.height), ("depth", 3)):
                ET.SubElement(size, k).text = str(v)
            for b, lab, crowd in zip(r.boxes.tolist(), r.labels.tolist(), r.crowd.tolist()):
                obj = ET.SubElement(ann, "object")
                ET.SubElement(obj, "name").text = self.classes[lab]
                ET.SubElement(obj, "difficult").text = str(int(crowd))
                bb = ET.SubElement(obj, "bndbox")
                for k, v in zip(("xmin", "ymin", "xmax", "ymax"), b):
                    ET.SubElement(bb, k).text = _num(v)
            ET.indent(ann)
            write_text(d / "Annotations" / f"{stem}.xml", ET.tostring(ann, encoding="unicode") + "\n", fsync=False)
        write_text(d / "ImageSets" / "Main" / f"{split}.txt", "\n".join(ids) + "\n")
        write_text(d / "labels.txt", "\n".join(self.classes) + "\n")
        return d

    def save(self, target, fmt: str | None = None, **kw) -> Path:
        """Write in ``fmt`` (coco | yolo | voc; default from ``target``: ``.json`` -> coco)."""
        fmt = fmt or ("coco" if str(target).endswith(".json") else "yolo")
        if fmt == "coco":
            return self.to_coco(target, **kw)
        if fmt == "yolo":
            return self.to_yolo(target, **kw)
        if fmt == "voc":
            return self.to_voc(target, **kw)
        raise DatasetError(f"unknown detection format {fmt!r}; use coco, yolo or voc")


def _num(v: float) -> str:
    s = f"{float(v):.8f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def _place_image(src: Path, dst: Path, mode: str) -> None:
    if mode == "none":
        return
    if mode not in ("copy", "link"):
        raise DatasetError(f"images= must be copy, link or none, not {mode!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        if dst.resolve() == Path(src).resolve():
            return
        dst.unlink()
    if mode == "link":
        os.symlink(Path(src).resolve(), dst)
    else:
        shutil.copy2(src, dst)


# ----------------------------------------------------------------------------- validation
class _Checker:
    """Collects per-annotation problems; raises them together (strict) or records them."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.problems: list[str] = []

    def box(self, where: str, box, width: float, height: float) -> np.ndarray | None:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(np.isfinite([x1, y1, x2, y2])):
            return self.bad(where, f"box {box} has a non-finite value")
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            return self.bad(where, f"box {_fmt_box(box)} has no positive area (x2 <= x1 or y2 <= y1)")
        t = TOLERANCE_PX
        if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
            return self.bad(where, f"box {_fmt_box(box)} lies outside the {width:g}x{height:g} image")
        b = np.array([max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)])
        if b[2] - b[0] <= 0 or b[3] - b[1] <= 0:
            return self.bad(where, f"box {_fmt_box(box)} has no area inside the image")
        return b

    def bad(self, where: str, what: str):
        self.problems.append(f"{where}: {what}")
        return None

    def finish(self, what: str) -> list[str]:
        if self.problems and self.strict:
            shown = "\n  ".join(self.problems[:20])
            more = f"\n  … {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            raise DatasetError(
                f"{len(self.problems)} bad annotation(s) in {what}:\n  {shown}{more}\n"
                "Fix them, or load with strict=False (CLI --no-strict) to skip them and list them in .issues"
            )
        return self.problems


def _fmt_box(b) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in b) + "]"


# ----------------------------------------------------------------------------- COCO
def load_coco(path, image_root=None, strict: bool = True) -> DetectionDataset:
    """A COCO instances JSON. ``image_root``: where ``file_name`` is relative to (default: the
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
    chk = _Checker(strict)
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
    return DetectionDataset(list(recs.values()), classes, root, f"coco:{path}", issues)


# ----------------------------------------------------------------------------- YOLO
def _yolo_names(names) -> list[str]:
    if isinstance(names, dict):
        n = max(int(k) for k in names) + 1 if names else 0
        return [str(names.get(i, names.get(str(i), f"class{i}"))) for i in range(n)]
    return [str(x) for x in names]


def _labels_dir_for(images_dir: Path) -> Path:
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir


def load_yolo(
    source, split: str = "train", names: Sequence[str] | None = None, strict: bool = True
) -> DetectionDataset:
    """A YOLO dataset: a ``data.yaml`` (``path``, ``train``/``val``/``test``, ``names``) or a
    folder holding ``images/[split]/`` and ``labels/[split]/`` (then ``names=`` or a
    ``classes.txt`` gives the class names)."""
    import yaml

    source = Path(source)
    if source.suffix in (".yaml", ".yml"):
        try:
            cfg = yaml.safe_load(source.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise DatasetError(f"cannot read {source}: {e}") from e
        if "names" not in cfg:
            raise DatasetError(f"{source}: no 'names' key (the class names)")
        names = names or _yolo_names(cfg["names"])
        base = Path(cfg.get("path") or source.parent)
        if not base.is_absolute():
            base = (source.parent / base).resolve()
        if split not in cfg or cfg[split] is None:
            raise DatasetError(
                f"{source}: no '{split}' split (has: {[k for k in ('train', 'val', 'test') if cfg.get(k)]})"
            )
        entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
        image_dirs = [base / e for e in entries]
        root = base
    else:
        root = source
        cand = [source / "images" / split, source / "images", source]
        image_dirs = [next(c for c in cand if c.is_dir())] if source.is_dir() else []
        if not image_dirs:
            raise DatasetError(f"{source}: not a YOLO data.yaml or folder")
        if names is None:
            ct = source / "classes.txt"
            if ct.is_file():
                names = [line.strip() for line in ct.read_text().splitlines() if line.strip()]
            else:
                raise DatasetError(f"{source}: no data.yaml or classes.txt; pass names=[...]")
    names = list(names)
    chk = _Checker(strict)
    recs: list[ImageRecord] = []
    for idir in image_dirs:
        if idir.suffix == ".txt":  # a list of image paths
            files = [
                Path(line.strip()) if Path(line.strip()).is_absolute() else root / line.strip()
                for line in idir.read_text().splitlines()
                if line.strip()
            ]
            ldir_of = lambda f: _labels_dir_for(f.parent)  # noqa: E731
        else:
            if not idir.is_dir():
                raise DatasetError(f"YOLO image folder {idir} does not exist")
            files = sorted(p for p in idir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            ldir_of = lambda f, idir=idir: _labels_dir_for(idir) / f.parent.relative_to(idir)  # noqa: E731
        for f in files:
            w, h = image_size(f)
            lf = ldir_of(f) / (f.stem + ".txt")
            bxs, labs, refs = [], [], []
            if lf.is_file():
                for ln, line in enumerate(lf.read_text().splitlines(), 1):
                    if not line.strip():
                        continue
                    where = f"{lf}:{ln}"
                    parts = line.split()
                    try:
                        vals = [float(x) for x in parts]
                    except ValueError:
                        chk.bad(where, f"not numbers: {line.strip()!r} (expected 'class cx cy w h')")
                        continue
                    if len(vals) < 5 or (len(vals) > 5 and len(vals) % 2 == 0):
                        chk.bad(
                            where,
                            f"{len(vals)} values; expected 'class cx cy w h' or 'class x1 y1 x2 y2 ...' (polygon)",
                        )
                        continue
                    c = vals[0]
                    if c != int(c) or not 0 <= c < len(names):
                        chk.bad(where, f"class id {parts[0]} is not in 0..{len(names) - 1}")
                        continue
                    if len(vals) == 5:
                        cx, cy, bw, bh = vals[1:]
                        box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
                    else:  # segment polygon -> its bounding box
                        xs, ys = np.array(vals[1::2]) * w, np.array(vals[2::2]) * h
                        box = (xs.min(), ys.min(), xs.max(), ys.max())
                    b = chk.box(where, box, w, h)
                    if b is not None:
                        bxs.append(b)
                        labs.append(int(c))
                        refs.append(where)
            recs.append(
                ImageRecord(
                    f, w, h, np.array(bxs).reshape(-1, 4), np.array(labs, np.int64), image_id=len(recs) + 1, refs=refs
                )
            )
    issues = chk.finish(str(source))
    img_root = image_dirs[0] if len(image_dirs) == 1 and image_dirs[0].is_dir() else root
    return DetectionDataset(recs, names, img_root, f"yolo:{source}", issues)


# ----------------------------------------------------------------------------- VOC
def load_voc(
    source, split: str | None = None, classes: Sequence[str] | None = None, strict: bool = True
) -> DetectionDataset:
    """A Pascal VOC folder (``Annotations/*.xml`` + ``JPEGImages/``, optional
    ``ImageSets/Main/<split>.txt``). Class order: ``classes=``, else ``labels.txt``, else sorted names."""
    source = Path(source)
    ann_dir = source / "Annotations" if (source / "Annotations").is_dir() else source
    img_dir = source / "JPEGImages" if (source / "JPEGImages").is_dir() else ann_dir
    if split is not None:
        lst = source / "ImageSets" / "Main" / f"{split}.txt"
        if not lst.is_file():
            raise DatasetError(f"VOC split list {lst} does not exist")
        xmls = [ann_dir / f"{line.split()[0]}.xml" for line in lst.read_text().splitlines() if line.strip()]
    else:
        xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise DatasetError(f"{source}: no VOC XML files (expected Annotations/*.xml)")
    if classes is None and (source / "labels.txt").is_file():
        classes = [line.strip() for line in (source / "labels.txt").read_text().splitlines() if line.strip()]
    parsed = []
    chk = _Checker(strict)
    for x in xmls:
        try:
            root = ET.parse(x).getroot()
        except (OSError, ET.ParseError) as e:
            raise DatasetError(f"cannot parse VOC XML {x}: {e}") from e
        fname = root.findtext("filename")
        if not fname:
            raise DatasetError(f"{x}: no <filename>")
        p = img_dir / fname
        try:
            w, h = int(float(root.findtext("size/width"))), int(float(root.findtext("size/height")))
        except (TypeError, ValueError):
            if not p.exists():
                raise DatasetError(f"{x}: no valid <size> and image {p} not found") from None
            w, h = image_size(p)
        objs = []
        for k, obj in enumerate(root.findall("object"), 1):
            where = f"{x} object {k}"
            name = (obj.findtext("name") or "").strip()
            if not name:
                chk.bad(where, "object without <name>")
                continue
            try:
                box = [float(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                chk.bad(where, "<bndbox> lacks numeric xmin/ymin/xmax/ymax")
                continue
            b = chk.box(where + f" ({name})", box, w, h)
            if b is not None:
                objs.append((b, name, (obj.findtext("difficult") or "0").strip() == "1", where))
        parsed.append((p, w, h, objs))
    names_seen = sorted({o[1] for *_, objs in parsed for o in objs})
    classes = list(classes) if classes is not None else names_seen
    index = {n: i for i, n in enumerate(classes)}
    for _p, _w, _h, objs in parsed:
        for o in objs:
            if o[1] not in index:
                chk.bad(o[3], f"class {o[1]!r} is not in the class list ({', '.join(classes)})")
    issues = chk.finish(str(source))
    recs = []
    for p, w, h, objs in parsed:
        objs = [o for o in objs if o[1] in index]
        recs.append(
            ImageRecord(
                p,
                w,
                h,
                np.array([o[0] for o in objs]).reshape(-1, 4),
                np.array([index[o[1]] for o in objs], np.int64),
                image_id=len(recs) + 1,
                crowd=np.array([o[2] for o in objs], bool),
                refs=[o[3] for o in objs],
            )
        )
    return DetectionDataset(recs, classes, img_dir, f"voc:{source}", issues)


# ----------------------------------------------------------------------------- auto
def detect_format(source) -> str:
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
class TorchDetectionDataset:
    """``(image CHW float [0, 1], {"boxes", "labels"})`` pairs for torchvision detectors; labels are
    class index + 1 (0 is background). Crowd / difficult objects are left out of training targets."""

    def __init__(self, ds: DetectionDataset, train: bool = False, hflip: float = 0.5):
        # the flip draws from torch's RNG: wrapped in adapt.data.SeededDataset (as detection training
        # does) it is a function of (seed, epoch, index), so a resumed epoch replays exactly
        self.ds, self.train, self.hflip = ds, train, hflip

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        from .io import read_image

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
    return tuple(zip(*batch))
