"""CVAT for images 1.1 XML: write tags, boxes, polygons and masks (pre-annotations marked
``source="auto"`` with a ``score`` attribute), and read CVAT's export back with errors that name
the line.

Layout written: ``annotations.xml`` and ``images/<path>`` (symlinks by default) — the layout of
CVAT's own "CVAT for images" export, so the folder zipped is a CVAT dataset and the XML alone
can be uploaded to a task made from the same images (names are the dataset-relative paths).
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.parsers import expat

import numpy as np

from visiontune._atomic import write_bytes
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
from visiontune.label.labelstudio import PALETTE

XML_NAME = "annotations.xml"


def _fmt(v: float) -> str:
    return f"{float(v):.2f}"


def shapes_for(item: Item, preannotate: str) -> tuple[list[Shape], str]:
    """(shapes, source) an image is exported with: its labels, or the model's predictions."""
    if preannotate == "labels" or (preannotate == "auto" and item.labels is not None):
        return list(item.labels or []), "manual"
    if preannotate in ("model", "auto"):
        return list(item.predictions), "auto"
    raise ValueError(f"preannotate must be labels, model or auto, not {preannotate!r}")


def build_xml(ls: LabelSet, preannotate: str = "auto", name: str = "visiontune") -> bytes:
    """The CVAT for images 1.1 document of a label set."""
    names = export_names(ls)
    now = datetime.now(timezone.utc).isoformat()
    chosen = [shapes_for(it, preannotate) for it in ls.items]
    scored = any(s.score is not None for shapes, _ in chosen for s in shapes)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for k, v in (("id", "0"), ("name", name), ("size", str(len(ls.items))), ("mode", "annotation"), ("overlap", "0")):
        ET.SubElement(task, k).text = v
    for k, v in (("bugtracker", ""), ("created", now), ("updated", now), ("subset", "default")):
        ET.SubElement(task, k).text = v
    ET.SubElement(task, "start_frame").text = "0"
    ET.SubElement(task, "stop_frame").text = str(max(len(ls.items) - 1, 0))
    labels = ET.SubElement(task, "labels")
    for i, c in enumerate(ls.classes):
        lab = ET.SubElement(labels, "label")
        ET.SubElement(lab, "name").text = c
        ET.SubElement(lab, "color").text = PALETTE[i % len(PALETTE)]
        ET.SubElement(lab, "type").text = "any"
        attrs = ET.SubElement(lab, "attributes")
        if scored:
            a = ET.SubElement(attrs, "attribute")
            for k, v in (
                ("name", "score"),
                ("mutable", "False"),
                ("input_type", "text"),
                ("default_value", ""),
                ("values", ""),
            ):
                ET.SubElement(a, k).text = v
    ET.SubElement(root[1], "dumped").text = now
    for i, (it, (shapes, source)) in enumerate(zip(ls.items, chosen)):
        w, h = it.ensure_size()
        img = ET.SubElement(root, "image", id=str(i), name=names[it.path], width=str(w), height=str(h))
        for s in shapes:
            el = _shape_element(img, s, source)
            if el is not None and s.score is not None:
                ET.SubElement(el, "attribute", name="score").text = f"{s.score:.4f}"
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def _shape_element(img: ET.Element, s: Shape, source: str) -> ET.Element | None:
    common = {"label": s.label, "source": source, "occluded": "0", "z_order": "0"}
    if s.kind == "tag":
        return ET.SubElement(img, "tag", label=s.label, source=source)
    if s.kind == "box":
        x1, y1, x2, y2 = s.box  # type: ignore[misc]
        return ET.SubElement(img, "box", common, xtl=_fmt(x1), ytl=_fmt(y1), xbr=_fmt(x2), ybr=_fmt(y2))
    if s.kind == "polygon":
        pts = ";".join(f"{_fmt(x)},{_fmt(y)}" for x, y in np.asarray(s.points))
        return ET.SubElement(img, "polygon", common, points=pts)
    assert s.mask is not None  # a mask shape carries its mask
    enc = mk.mask_to_cvat(s.mask)
    if enc is None:
        return None
    rle, left, top, width, height = enc
    return ET.SubElement(
        img, "mask", common, rle=rle, left=str(left), top=str(top), width=str(width), height=str(height)
    )


def write_export(
    ls: LabelSet,
    out: str | os.PathLike,
    *,
    base_file: str | None = None,
    preannotate: str = "auto",
    images: str = "link",
) -> LabelExport:
    """``annotations.xml`` (+ ``images/`` as ``link`` / ``copy`` / ``none``) and the export record."""
    out = Path(out)
    write_bytes(out / XML_NAME, build_xml(ls, preannotate))
    names = export_names(ls)
    if images != "none":
        for it in ls.items:
            dst = out / "images" / names[it.path]
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            if images == "copy":
                shutil.copy2(it.file, dst)
            else:
                os.symlink(os.path.abspath(it.file), dst)
    meta = LabelExport(
        tool="cvat",
        task=ls.task,
        classes=list(ls.classes),
        root=str(Path(ls.root or ".").resolve()),
        base_version=ls.base_version,
        base_file=base_file,
        model_version=ls.model_version,
        preannotate=preannotate,
        images=len(ls.items),
        files={"annotations": XML_NAME},
        paths={n: p for p, n in names.items() if n != p},
    )
    meta.write(out / EXPORT_META)
    return meta


# -- reading ----------------------------------------------------------------------------------------
@dataclass
class Node:
    """One parsed XML element: tag, attributes, source line and children."""

    tag: str
    attrib: dict[str, str]
    line: int
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def find(self, tag: str) -> Node | None:
        """The first child with ``tag``, or None."""
        return next((c for c in self.children if c.tag == tag), None)

    def iter(self, tag: str):
        """This node and its descendants with ``tag``, depth first."""
        if self.tag == tag:
            yield self
        for c in self.children:
            yield from c.iter(tag)


def parse_xml(path: str | os.PathLike) -> Node:
    """Parse with expat, keeping each element's line; DTDs with entities are refused."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{p}: file not found") from None
    parser = expat.ParserCreate()
    stack: list[Node] = [Node("#document", {}, 0)]

    def start(tag, attrib):
        node = Node(tag, dict(attrib), parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def chars(text):
        stack[-1].text += text

    def entity(*args):
        raise DatasetError(f"{p}, line {parser.CurrentLineNumber}: XML entity declarations are not accepted")

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise DatasetError(
            f"{p}, line {e.lineno} column {e.offset}: not well-formed XML ({expat.errors.messages[e.code]})"
        ) from None
    doc = stack[0]
    if not doc.children or doc.children[0].tag != "annotations":
        raise DatasetError(f"{p}: not a CVAT XML file (the root element must be <annotations>)")
    return doc.children[0]


def task_of(path: str | os.PathLike) -> str:
    """The task a CVAT XML holds: detection (boxes), segmentation (polygons / masks) or classification."""
    root = parse_xml(path)
    tags = {n.tag for img in root.iter("image") for n in img.children}
    if "box" in tags:
        return "detection"
    return "segmentation" if tags & {"polygon", "mask"} else "classification"


def _match_image(name: str, index: dict[str, Item], by_base: dict[str, list[str]]) -> str | None:
    if name in index:
        return name
    cands = by_base.get(Path(name).name, [])
    return cands[0] if len(cands) == 1 else None


def _read_shape(n: Node, w: int, h: int) -> tuple[Shape | None, str | None]:
    a = n.attrib
    if n.tag == "tag":
        return Shape(a["label"], "tag"), None
    if n.tag == "box":
        x1, y1, x2, y2 = (float(a[k]) for k in ("xtl", "ytl", "xbr", "ybr"))
        box = (x1, y1, x2, y2)
        rot = float(a.get("rotation", 0) or 0)
        if rot:
            cx, cy, bw, bh = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
            t = np.deg2rad(rot)
            ex, ey = (
                abs(bw * np.cos(t)) / 2 + abs(bh * np.sin(t)) / 2,
                abs(bw * np.sin(t)) / 2 + abs(bh * np.cos(t)) / 2,
            )
            return Shape(
                a["label"], "box", box=(cx - ex, cy - ey, cx + ex, cy + ey)
            ), f"box rotated by {rot:g} degrees replaced by its enclosing box"
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box corners out of order {box}")
        return Shape(a["label"], "box", box=box), None
    if n.tag == "polygon":
        pts = [[float(v) for v in pair.split(",")] for pair in a["points"].split(";") if pair.strip()]
        if len(pts) < 3 or any(len(p) != 2 for p in pts):
            raise ValueError("a polygon needs at least 3 x,y points")
        return Shape(a["label"], "polygon", points=np.asarray(pts)), None
    if n.tag == "mask":
        m = mk.cvat_to_mask(a["rle"], int(a["left"]), int(a["top"]), int(a["width"]), int(a["height"]), h, w)
        return Shape(a["label"], "mask", mask=m), None
    return None, f"<{n.tag}> ignored (visiontune reads tags, boxes, polygons and masks)"


def read_export(
    path: str | os.PathLike, base: LabelSet, names: dict[str, str] | None = None
) -> tuple[LabelSet, list[str]]:
    """Every ``<image>`` of a CVAT for images XML as a reviewed item over ``base``'s images
    (``names``: the export's ``{name in CVAT: dataset path}`` for images outside the root)."""
    names = names or {}
    p = Path(path)
    if p.is_dir():
        p = p / XML_NAME
    root = parse_xml(p)
    if root.find("track") is not None:
        raise DatasetError(f"{p}: holds video tracks (CVAT for video); export the task as 'CVAT for images 1.1'")
    meta_labels = {n.text.strip() for lab in root.iter("label") for n in lab.children if n.tag == "name"}
    known = set(base.classes)
    index = base.by_path()
    by_base: dict[str, list[str]] = {}
    for k in index:
        by_base.setdefault(Path(k).name, []).append(k)
    problems: list[str] = []
    warnings: list[str] = []
    extra = sorted(meta_labels - known)
    if extra:
        warnings.append(f"{p.name}: labels {extra} are declared in the CVAT task but are not dataset classes")
    items: list[Item] = []
    seen: dict[str, int] = {}
    for img in root.iter("image"):
        where = f"{p.name}, line {img.line}: image {img.attrib.get('name')!r} (id {img.attrib.get('id')})"
        name = names.get(img.attrib.get("name", ""), img.attrib.get("name", ""))
        rel = _match_image(name, index, by_base)
        new_file = name if os.path.isabs(name) else os.path.join(base.root or "", name)
        if rel is None and name and os.path.isfile(new_file):
            rel = Path(name).as_posix()  # an image labelled for the first time (from a pool)
            index[rel] = Item(rel, new_file, ref=where)
        if rel is None:
            problems.append(f"{where} is not in version {base.base_version} nor under {base.root}")
            continue
        if rel in seen:
            problems.append(f"{where} is listed again (first on line {seen[rel]})")
            continue
        seen[rel] = img.line
        src = index[rel]
        if not os.path.isfile(src.file):
            problems.append(f"{where}: image file not found: {src.file}")
            continue
        w, h = src.ensure_size()
        try:
            iw, ih = int(img.attrib.get("width", w)), int(img.attrib.get("height", h))
        except ValueError:
            iw, ih = -1, -1
        if (iw, ih) != (w, h):
            problems.append(f"{where}: size {iw}x{ih} in the XML, {w}x{h} on disk")
            continue
        shapes: list[Shape] = []
        for n in img.children:
            at = f"{p.name}, line {n.line}: <{n.tag}> on image {img.attrib.get('name')!r}"
            try:
                s, warn = _read_shape(n, w, h)
            except (KeyError, ValueError) as e:
                problems.append(f"{at}: malformed ({type(e).__name__}: {e})")
                continue
            if warn:
                warnings.append(f"{at}: {warn}")
            if s is None:
                continue
            if s.label not in known:
                problems.append(f"{at}: unknown label {s.label!r} (classes: {class_list(base.classes)})")
                continue
            shapes.append(s)
        items.append(Item(rel, src.file, w, h, labels=shapes, sha256=src.sha256, split=src.split, ref=where))
    raise_problems(f"CVAT XML {p}", problems)
    return LabelSet(items, list(base.classes), base.task, base.root, base.base_version), warnings
