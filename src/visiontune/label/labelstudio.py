"""Label Studio files: the labelling config, task JSON with pre-annotations, and the JSON export.

Tasks reference images through Label Studio's local-files storage: ``/data/local-files/?d=<path
under LOCAL_FILES_DOCUMENT_ROOT>``; the dataset root must be a sub-folder of that document root
(Label Studio refuses the root itself). Each task's ``data`` also carries ``vt_path`` (the
image's path in the dataset version; absolute for images outside its root), ``vt_sha256``, ``vt_version`` and ``vt_label`` (the current
label, shown above the image for classification).

Pre-annotations are ``predictions``: the model's (``model_version`` = the run or model id, with
scores) and, for labelled images, the current labels (``model_version`` = ``labels <version>``),
so an annotator starts from whichever the project shows. Coordinates are percentages of
``original_width`` / ``original_height``; masks are brush RLE (see :mod:`visiontune.label.masks`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from visiontune._atomic import write_text
from visiontune.errors import DatasetError
from visiontune.label import masks as mk
from visiontune.label.core import EXPORT_META, Item, LabelExport, LabelSet, Shape, class_list, raise_problems

URL_PREFIX = "/data/local-files/?d="
CONTROL = {"tag": ("class", "choices"), "box": ("box", "rectanglelabels"), "polygon": ("polygon", "polygonlabels")}
CONTROL["mask"] = ("mask", "brushlabels")
TYPES = {t: k for k, (_, t) in CONTROL.items()}
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4"]
PALETTE += ["#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075", "#a9a9a9"]


def labelling_config(classes: Sequence[str], task: str, multi_label: bool = False, show_label: bool = True) -> str:
    """The ``<View>`` XML for ``task``: Choices (classification), RectangleLabels (detection),
    PolygonLabels + BrushLabels (segmentation). Class names are XML-escaped."""
    lines = ["<View>"]
    if task == "classification" and show_label:
        lines.append('  <Header value="current label: $vt_label"/>')
    lines.append('  <Image name="image" value="$image" zoom="true"/>')
    if task == "classification":
        choice = "multiple" if multi_label else "single"
        lines.append(f'  <Choices name="class" toName="image" choice="{choice}" showInline="true">')
        lines += [f"    <Choice value={quoteattr(c)}/>" for c in classes]
        lines.append("  </Choices>")
    controls = {"detection": ["box"], "segmentation": ["polygon", "mask"]}.get(task, [])
    tag = {"box": "RectangleLabels", "polygon": "PolygonLabels", "mask": "BrushLabels"}
    for kind in controls:
        lines.append(f'  <{tag[kind]} name="{CONTROL[kind][0]}" toName="image">')
        lines += [
            f"    <Label value={quoteattr(c)} background={quoteattr(PALETTE[i % len(PALETTE)])}/>"
            for i, c in enumerate(classes)
        ]
        lines.append(f"  </{tag[kind]}>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


# -- shapes <-> results -----------------------------------------------------------------------------
def shape_to_result(s: Shape, width: int, height: int, rid: str) -> dict[str, Any]:
    """One Label Studio result item for a shape of an ``width x height`` image."""
    name, typ = CONTROL[s.kind]
    r: dict[str, Any] = {"id": rid, "from_name": name, "to_name": "image", "type": typ}
    if s.kind == "tag":
        r["value"] = {"choices": [s.label]}
    else:
        r.update(original_width=int(width), original_height=int(height), image_rotation=0)
        if s.kind == "box":
            x1, y1, x2, y2 = s.box  # type: ignore[misc]
            r["value"] = {
                "x": 100.0 * x1 / width,
                "y": 100.0 * y1 / height,
                "width": 100.0 * (x2 - x1) / width,
                "height": 100.0 * (y2 - y1) / height,
                "rotation": 0,
                typ: [s.label],
            }
        elif s.kind == "polygon":
            pts = np.asarray(s.points) * [100.0 / width, 100.0 / height]
            r["value"] = {"points": pts.tolist(), "closed": True, typ: [s.label]}
        else:
            assert s.mask is not None  # a mask shape carries its mask
            r["value"] = {"format": "rle", "rle": mk.mask_to_brush(s.mask), typ: [s.label]}
    if s.score is not None:
        r["score"] = float(s.score)
    return r


def result_to_shape(r: dict[str, Any], width: int, height: int) -> tuple[list[Shape], str | None]:
    """Shapes of one result item (a choices result may hold several) and a warning, if any.
    Raises KeyError / ValueError / TypeError on a malformed item."""
    typ = str(r.get("type", "")).lower()
    v = r["value"]
    if typ == "choices":
        return [Shape(str(c), "tag") for c in v["choices"]], None
    kind = TYPES.get(typ)
    if kind is None:
        return [], f"result type {typ!r} ignored (not a choices / rectangle / polygon / brush label)"
    labels = v.get(typ) or []
    if len(labels) != 1:
        raise ValueError(f"{typ} region has {len(labels)} labels, expected one")
    label, warn = str(labels[0]), None
    ow, oh = r.get("original_width"), r.get("original_height")
    if ow is not None and oh is not None and (int(ow), int(oh)) != (width, height):
        raise ValueError(f"region drawn on a {ow}x{oh} image but the file is {width}x{height}")
    if kind == "box":
        x, y = float(v["x"]) * width / 100, float(v["y"]) * height / 100
        w, h = float(v["width"]) * width / 100, float(v["height"]) * height / 100
        rot = float(v.get("rotation") or 0.0)
        if rot:
            corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
            t = np.deg2rad(rot)
            rotm = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            c = corners @ rotm.T + [x, y]
            box = (c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max())
            warn = f"box rotated by {rot:g} degrees replaced by its axis-aligned enclosing box"
        else:
            box = (x, y, x + w, y + h)
        return [Shape(label, "box", box=box, id=r.get("id"))], warn
    if kind == "polygon":
        pts = np.asarray(v["points"], np.float64).reshape(-1, 2) * [width / 100.0, height / 100.0]
        return [Shape(label, "polygon", points=pts, id=r.get("id"))], None
    if v.get("format", "rle") != "rle":
        raise ValueError(f"brush format {v.get('format')!r} is not rle")
    return [Shape(label, "mask", mask=mk.brush_to_mask(v["rle"], height, width), id=r.get("id"))], None


# -- export -------------------------------------------------------------------------------------------
def image_url(item: Item, document_root: str, prefix: str = URL_PREFIX) -> str:
    """The Label Studio local-files URL of ``item`` under ``document_root``; DatasetError when outside it."""
    rel = os.path.relpath(os.path.abspath(item.file), document_root)
    if rel.startswith(".."):
        raise DatasetError(f"{item.file} is not under the Label Studio document root {document_root}")
    return prefix + quote(Path(rel).as_posix(), safe="/")


def task_for(item: Item, ls: LabelSet, document_root: str, index: int) -> dict[str, Any]:
    """One Label Studio task: image URL, visiontune keys in ``data``, predictions."""
    w, h = item.ensure_size()
    data = {
        "image": image_url(item, document_root),
        "vt_path": item.path,
        "vt_sha256": item.sha256,
        "vt_version": ls.base_version,
        "vt_label": ", ".join(item.tags()) if item.labels is not None else "(not labelled)",
        "vt_index": index,
    }
    preds = []
    if item.predictions:
        scores = [s.score for s in item.predictions if s.score is not None]
        preds.append(
            {
                "model_version": ls.model_version or "model",
                "score": float(np.mean(scores)) if scores else None,
                "result": [shape_to_result(s, w, h, f"p{index}_{k}") for k, s in enumerate(item.predictions)],
            }
        )
    if item.labels:
        preds.append(
            {
                "model_version": f"labels {ls.base_version}",
                "result": [shape_to_result(s, w, h, f"l{index}_{k}") for k, s in enumerate(item.labels)],
            }
        )
    return {"data": data, "predictions": preds}


def write_export(
    ls: LabelSet,
    out: str | os.PathLike,
    *,
    base_file: str | None = None,
    document_root: str | os.PathLike | None = None,
    preannotate: str | None = None,
) -> LabelExport:
    """Write ``tasks.json``, ``config.xml`` and ``visiontune-export.json`` into ``out``.

    ``document_root`` (default: the folder above the dataset root) is what Label Studio's
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` must be set to; the local storage to add is the
    dataset root. ``preannotate``: ``labels`` or ``model``, which prediction set the project
    should show first (default: labels when there are any)."""
    out = Path(out)
    if ls.root is None:
        raise DatasetError("the label set has no root folder; Label Studio serves images from a local folder")
    doc_root = str(Path(document_root).resolve()) if document_root else str(Path(ls.root).resolve().parent)
    tasks = [task_for(it, ls, doc_root, i) for i, it in enumerate(ls.items)]
    has_labels = any(it.labels for it in ls.items)
    pre = preannotate or ("labels" if has_labels else "model")
    config = labelling_config(ls.classes, ls.task, ls.multi_label, show_label=has_labels)
    files = {"tasks": "tasks.json", "config": "config.xml"}
    write_text(out / files["tasks"], json.dumps(tasks, indent=1) + "\n")
    write_text(out / files["config"], config)
    meta = LabelExport(
        tool="label-studio",
        task=ls.task,
        classes=list(ls.classes),
        root=str(Path(ls.root).resolve()),
        base_version=ls.base_version,
        base_file=base_file,
        model_version=ls.model_version,
        document_root=doc_root,
        preannotate=pre,
        multi_label=ls.multi_label,
        images=len(tasks),
        files=files,
    )
    meta.write(out / EXPORT_META)
    return meta


# -- import -------------------------------------------------------------------------------------------
def read_tasks_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A Label Studio JSON export (a list of tasks); broken JSON names the line and column."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{p}: file not found") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(doc, dict) and "data" in doc:
        doc = [doc]
    if not isinstance(doc, list) or not all(isinstance(t, dict) for t in doc):
        raise DatasetError(
            f"{p}: expected Label Studio's JSON export (a list of tasks with data and annotations); "
            "export the project as JSON, not JSON_MIN or CSV"
        )
    return doc


def chosen_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The annotation that counts: a ground-truth one, else the latest updated; cancelled
    (skipped) annotations never count. None when nobody annotated the task."""
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not anns:
        return None
    gt = [a for a in anns if a.get("ground_truth")]
    pool = gt or anns
    return max(pool, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def task_path(task: dict[str, Any], meta: LabelExport | None) -> str | None:
    """The dataset path of a task: ``data.vt_path``, else derived from the local-files URL."""
    data = task.get("data") or {}
    if data.get("vt_path"):
        return str(data["vt_path"])
    url = str(data.get("image") or "")
    q = parse_qs(urlparse(url).query).get("d")
    if q and meta is not None and meta.document_root:
        f = os.path.join(meta.document_root, q[0])
        r = os.path.join(meta.root, "")
        return Path(f[len(r) :]).as_posix() if f.startswith(r) else Path(f).as_posix()
    return None


def read_export(
    path: str | os.PathLike, base: LabelSet, meta: LabelExport | None = None
) -> tuple[LabelSet, list[str], int]:
    """The annotated tasks of a Label Studio JSON export as a LabelSet over ``base``'s images.

    Returns (reviewed items, warnings, tasks not annotated). Every problem — a task whose image
    is not in the base version, an unknown label, a malformed region — is collected and raised
    as one DatasetError naming the task id."""
    tasks = read_tasks_json(path)
    index = base.by_path()
    known = set(base.classes)
    problems: list[str] = []
    warnings: list[str] = []
    items: list[Item] = []
    skipped = 0
    seen: dict[str, str] = {}
    for n, task in enumerate(tasks, 1):
        where = f"{Path(path).name}: task {task.get('id', f'#{n}')}"
        rel = task_path(task, meta)
        if rel is None:
            problems.append(f"{where}: no data.vt_path and no local-files image URL to find the image by")
            continue
        where += f" ({rel})"
        ann = chosen_annotation(task)
        if ann is None:
            skipped += 1
            continue
        if rel in seen:
            problems.append(f"{where}: the same image is already annotated in {seen[rel]}")
            continue
        seen[rel] = where
        src = index.get(rel)
        file = src.file if src is not None else (rel if os.path.isabs(rel) else os.path.join(base.root or "", rel))
        if not os.path.isfile(file):
            problems.append(f"{where}: image file not found: {file}")
            continue
        item = Item(rel, file, ref=where, sha256=(task.get("data") or {}).get("vt_sha256"))
        if src is not None:
            item.width, item.height, item.split = src.width, src.height, src.split
        try:
            w, h = item.ensure_size()
            shapes: list[Shape] = []
            for r in ann.get("result") or []:
                got, warn = result_to_shape(r, w, h)
                shapes += got
                if warn:
                    warnings.append(f"{where}: {warn}")
        except (KeyError, ValueError, TypeError) as e:
            problems.append(f"{where}: malformed result ({type(e).__name__}: {e})")
            continue
        bad = sorted({s.label for s in shapes} - known)
        if bad:
            problems.append(
                f"{where}: unknown label(s) {', '.join(map(repr, bad))} (classes: {class_list(base.classes)})"
            )
            continue
        item.labels = shapes
        items.append(item)
    raise_problems(f"Label Studio export {path}", problems)
    return LabelSet(items, list(base.classes), base.task, base.root, base.base_version), warnings, skipped
