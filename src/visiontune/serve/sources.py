"""Image lists for batch prediction: folders, files, or one manifest (``.txt`` one path a line,
``.csv`` / ``.parquet`` with a ``path`` column, a visiontune dataset manifest ``.json``)."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from visiontune.data import Manifest, list_images
from visiontune.errors import DatasetError

MANIFEST_SUFFIXES = (".txt", ".csv", ".parquet", ".json")


def list_inputs(data: Any) -> list[str]:
    """Image paths of ``data``: folder(s) / files, or one manifest file (see module doc)."""
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            return _read_manifest(p)
        return [str(x) for x in list_images(p)]
    items = [str(x) for x in data]
    if len(items) == 1 and Path(items[0]).suffix.lower() in MANIFEST_SUFFIXES and Path(items[0]).is_file():
        return _read_manifest(Path(items[0]))
    out: list[str] = []
    for it in items:  # keep files as given (even unreadable: they become error rows); expand folders
        out += [str(x) for x in list_images(it)] if Path(it).is_dir() else [it]
    if not out:
        raise DatasetError("no images given")
    return out


def _resolve(base: Path, paths: Iterable[str]) -> list[str]:
    return [p if os.path.isabs(p) else str(base / p) for p in paths]


def _read_manifest(p: Path) -> list[str]:
    suffix = p.suffix.lower()
    if suffix == ".txt":
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
        paths = _resolve(p.parent, [ln for ln in lines if ln and not ln.startswith("#")])
    elif suffix == ".json":
        m = Manifest.load(p)
        paths = [m.abspath(e) for e in m.entries]
    else:
        if suffix == ".csv":
            with p.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            cols = list(rows[0]) if rows else []
            col = next((c for c in ("path", "file", "filename", "image") if c in cols), None)
            values = [r[col] for r in rows] if col else []
        else:
            table = pq.read_table(p)
            col = next((c for c in ("path", "file", "filename", "image") if c in table.column_names), None)
            cols = table.column_names
            values = table.column(col).to_pylist() if col else []
        if col is None:
            raise DatasetError(f"{p}: no 'path' column (columns: {', '.join(cols) or 'none'})")
        paths = _resolve(p.parent, [str(v) for v in values])
    if not paths:
        raise DatasetError(f"{p}: the manifest lists no images")
    return paths


def inputs_digest(paths: list[str]) -> str:
    """SHA-256 over the ordered input paths (identifies a batch prediction's inputs)."""
    h = hashlib.sha256()
    for s in paths:
        h.update(s.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()
