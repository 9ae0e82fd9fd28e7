"""YOLO txt labels (+ ``data.yaml``): one ``labels/<split>/<image>.txt`` per image, a line
``class cx cy w h`` (normalised) per object; segment polygons are read as their bounding box."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from visiontune._atomic import write_text
from visiontune.data.decode import IMAGE_EXTENSIONS
from visiontune.detect.formats.common import format_number, place_image
from visiontune.detect.io import image_size
from visiontune.detect.records import AnnotationChecker, ImageRecord, Loaded, relative_name
from visiontune.errors import DatasetError


def yolo_names(names) -> list[str]:
    """A ``names`` entry of a data.yaml (a list, or a dict ``{index: name}``) as a list."""
    if isinstance(names, dict):
        n = max(int(k) for k in names) + 1 if names else 0
        return [str(names.get(i, names.get(str(i), f"class{i}"))) for i in range(n)]
    return [str(x) for x in names]


def labels_dir_for(images_dir: Path) -> Path:
    """The labels folder of an images folder: the last ``images`` part of the path becomes ``labels``."""
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir


def _label_dir(image: Path, listed_from: Path | None) -> Path:
    """The labels folder of ``image``: beside its own ``images`` folder when it came from a list
    file (``listed_from`` None), else mirrored under the labels folder of the image folder."""
    if listed_from is None:
        return labels_dir_for(image.parent)
    return labels_dir_for(listed_from) / image.parent.relative_to(listed_from)


def _resolve(source: Path, split: str, names: Sequence[str] | None) -> tuple[list[Path], Path, list[str]]:
    """(image folders or list files, dataset root, class names) of a data.yaml or a folder."""
    if source.suffix in (".yaml", ".yml"):
        try:
            cfg = yaml.safe_load(source.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise DatasetError(f"cannot read {source}: {e}") from e
        if "names" not in cfg:
            raise DatasetError(f"{source}: no 'names' key (the class names)")
        names = names or yolo_names(cfg["names"])
        base = Path(cfg.get("path") or source.parent)
        if not base.is_absolute():
            base = (source.parent / base).resolve()
        if split not in cfg or cfg[split] is None:
            raise DatasetError(
                f"{source}: no '{split}' split (has: {[k for k in ('train', 'val', 'test') if cfg.get(k)]})"
            )
        entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
        return [base / e for e in entries], base, list(names)
    cand = [source / "images" / split, source / "images", source]
    image_dirs = [next(c for c in cand if c.is_dir())] if source.is_dir() else []
    if not image_dirs:
        raise DatasetError(f"{source}: not a YOLO data.yaml or folder")
    if names is None:
        ct = source / "classes.txt"
        if not ct.is_file():
            raise DatasetError(f"{source}: no data.yaml or classes.txt; pass names=[...]")
        names = [line.strip() for line in ct.read_text().splitlines() if line.strip()]
    return image_dirs, source, list(names)


def _read_label_file(lf: Path, w: int, h: int, names: list[str], chk: AnnotationChecker):
    """(boxes, labels, refs) of one label file; bad lines go to ``chk``."""
    bxs, labs, refs = [], [], []
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
            chk.bad(where, f"{len(vals)} values; expected 'class cx cy w h' or 'class x1 y1 x2 y2 ...' (polygon)")
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
    return bxs, labs, refs


def read_yolo(
    source: str | os.PathLike, split: str = "train", names: Sequence[str] | None = None, strict: bool = True
) -> Loaded:
    """Read a YOLO dataset: a ``data.yaml`` (``path``, ``train``/``val``/``test``, ``names``) or a
    folder holding ``images/[split]/`` and ``labels/[split]/`` (then ``names=`` or a
    ``classes.txt`` gives the class names). A split may also be a ``.txt`` list of image paths."""
    source = Path(source)
    image_dirs, root, names = _resolve(source, split, names)
    chk = AnnotationChecker(strict)
    recs: list[ImageRecord] = []
    for idir in image_dirs:
        listed_from: Path | None = None
        if idir.suffix == ".txt":  # a list of image paths
            files = [
                Path(line.strip()) if Path(line.strip()).is_absolute() else root / line.strip()
                for line in idir.read_text().splitlines()
                if line.strip()
            ]
        else:
            if not idir.is_dir():
                raise DatasetError(f"YOLO image folder {idir} does not exist")
            files = sorted(p for p in idir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            listed_from = idir
        for f in files:
            w, h = image_size(f)
            lf = _label_dir(f, listed_from) / (f.stem + ".txt")
            bxs, labs, refs = _read_label_file(lf, w, h, names, chk) if lf.is_file() else ([], [], [])
            recs.append(
                ImageRecord(
                    f, w, h, np.array(bxs).reshape(-1, 4), np.array(labs, np.int64), image_id=len(recs) + 1, refs=refs
                )
            )
    issues = chk.finish(str(source))
    img_root = image_dirs[0] if len(image_dirs) == 1 and image_dirs[0].is_dir() else root
    return Loaded(recs, names, img_root, issues)


def write_yolo(
    images: Sequence[ImageRecord],
    classes: Sequence[str],
    directory: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    split: str = "train",
    image_mode: str = "copy",
) -> Path:
    """Write ``images/<split>/``, ``labels/<split>/*.txt`` and ``data.yaml`` under ``directory``
    (an existing data.yaml keeps its other splits). Image paths are kept relative to ``root``.
    ``image_mode``: copy | link (symlink) | none (labels only). Returns the data.yaml path."""
    d = Path(directory)
    seen: set[str] = set()
    for r in images:
        rel = Path(relative_name(r, root))
        key = rel.with_suffix("").as_posix()
        if key in seen:
            raise DatasetError(f"two images map to the same YOLO label file {key}.txt; rename one of them")
        seen.add(key)
        place_image(r.path, d / "images" / split / rel, image_mode)
        lines = []
        for b, lab in zip(r.boxes, r.labels):
            cx, cy = (b[0] + b[2]) / 2 / r.width, (b[1] + b[3]) / 2 / r.height
            w, h = (b[2] - b[0]) / r.width, (b[3] - b[1]) / r.height
            lines.append(f"{int(lab)} {format_number(cx)} {format_number(cy)} {format_number(w)} {format_number(h)}")
        write_text(
            d / "labels" / split / rel.with_suffix(".txt"), "\n".join(lines) + ("\n" if lines else ""), fsync=False
        )
    data: dict = {}
    if (d / "data.yaml").is_file():
        data = yaml.safe_load((d / "data.yaml").read_text()) or {}
    data.update(
        {
            "path": str(d.resolve()),
            split: f"images/{split}",
            "names": {i: n for i, n in enumerate(classes)},
            "nc": len(classes),
        }
    )
    write_text(d / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return d / "data.yaml"
