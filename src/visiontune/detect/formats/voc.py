"""Pascal VOC XML: ``Annotations/*.xml`` + ``JPEGImages/`` (+ ``ImageSets/Main/<split>.txt``).
``bndbox`` values are read and written as pixel ``x1 y1 x2 y2`` (no 1-based offset), so
conversions are lossless; ``labels.txt`` keeps the class order."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visiontune._atomic import write_text
from visiontune.detect.formats.common import format_number, place_image
from visiontune.detect.io import image_size
from visiontune.detect.records import AnnotationChecker, ImageRecord, Loaded, relative_name
from visiontune.errors import DatasetError


def _xml_files(source: Path, ann_dir: Path, split: str | None) -> list[Path]:
    if split is not None:
        lst = source / "ImageSets" / "Main" / f"{split}.txt"
        if not lst.is_file():
            raise DatasetError(f"VOC split list {lst} does not exist")
        xmls = [ann_dir / f"{line.split()[0]}.xml" for line in lst.read_text().splitlines() if line.strip()]
    else:
        xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise DatasetError(f"{source}: no VOC XML files (expected Annotations/*.xml)")
    return xmls


def _parse_xml(x: Path, img_dir: Path, chk: AnnotationChecker):
    """(image path, width, height, [(box, name, difficult, where)]) of one annotation file."""
    try:
        root = ET.parse(x).getroot()
    except (OSError, ET.ParseError) as e:
        raise DatasetError(f"cannot parse VOC XML {x}: {e}") from e
    fname = root.findtext("filename")
    if not fname:
        raise DatasetError(f"{x}: no <filename>")
    p = img_dir / fname
    try:
        w, h = int(float(root.findtext("size/width") or "")), int(float(root.findtext("size/height") or ""))
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
            box = [float(obj.findtext(f"bndbox/{t}") or "") for t in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            chk.bad(where, "<bndbox> lacks numeric xmin/ymin/xmax/ymax")
            continue
        b = chk.box(where + f" ({name})", box, w, h)
        if b is not None:
            objs.append((b, name, (obj.findtext("difficult") or "0").strip() == "1", where))
    return p, w, h, objs


def read_voc(
    source: str | os.PathLike,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    strict: bool = True,
) -> Loaded:
    """Read a Pascal VOC folder (``Annotations/*.xml`` + ``JPEGImages/``, optional
    ``ImageSets/Main/<split>.txt``). Class order: ``classes=``, else ``labels.txt``, else sorted names."""
    source = Path(source)
    ann_dir = source / "Annotations" if (source / "Annotations").is_dir() else source
    img_dir = source / "JPEGImages" if (source / "JPEGImages").is_dir() else ann_dir
    xmls = _xml_files(source, ann_dir, split)
    if classes is None and (source / "labels.txt").is_file():
        classes = [line.strip() for line in (source / "labels.txt").read_text().splitlines() if line.strip()]
    chk = AnnotationChecker(strict)
    parsed = [_parse_xml(x, img_dir, chk) for x in xmls]
    names_seen = sorted({o[1] for *_, objs in parsed for o in objs})
    classes = list(classes) if classes is not None else names_seen
    index = {n: i for i, n in enumerate(classes)}
    for _p, _w, _h, objs in parsed:
        for o in objs:
            if o[1] not in index:
                chk.bad(o[3], f"class {o[1]!r} is not in the class list ({', '.join(classes)})")
    issues = chk.finish(str(source))
    recs: list[ImageRecord] = []
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
    return Loaded(recs, classes, img_dir, issues)


def write_voc(
    images: Sequence[ImageRecord],
    classes: Sequence[str],
    directory: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    image_mode: str = "copy",
    split: str = "train",
) -> Path:
    """Write ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt`` and
    ``labels.txt`` (class order) under ``directory``; an image's id is its path relative to
    ``root`` with ``/`` written as ``__``. ``image_mode``: copy | link | none. Returns ``directory``."""
    d = Path(directory)
    ids = []
    for r in images:
        stem = Path(relative_name(r, root)).with_suffix("").as_posix().replace("/", "__")
        if stem in ids:
            raise DatasetError(f"two images map to the same VOC id {stem}; rename one of them")
        ids.append(stem)
        fname = stem + r.path.suffix
        place_image(r.path, d / "JPEGImages" / fname, image_mode)
        ann = ET.Element("annotation")
        ET.SubElement(ann, "folder").text = "JPEGImages"
        ET.SubElement(ann, "filename").text = fname
        size = ET.SubElement(ann, "size")
        for k, v in (("width", r.width), ("height", r.height), ("depth", 3)):
            ET.SubElement(size, k).text = str(v)
        for b, lab, crowd in zip(r.boxes.tolist(), r.labels.tolist(), r.crowd.tolist()):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = classes[lab]
            ET.SubElement(obj, "difficult").text = str(int(crowd))
            bb = ET.SubElement(obj, "bndbox")
            for k, v in zip(("xmin", "ymin", "xmax", "ymax"), b):
                ET.SubElement(bb, k).text = format_number(v)
        ET.indent(ann)
        write_text(d / "Annotations" / f"{stem}.xml", ET.tostring(ann, encoding="unicode") + "\n", fsync=False)
    write_text(d / "ImageSets" / "Main" / f"{split}.txt", "\n".join(ids) + "\n")
    write_text(d / "labels.txt", "\n".join(classes) + "\n")
    return d
