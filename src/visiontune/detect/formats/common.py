"""Helpers the format writers share: placing image files and writing short numbers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from visiontune.errors import DatasetError

#: what a writer does with the image files: copy them, symlink them, or write labels only
IMAGE_MODES = ("copy", "link", "none")


def format_number(v: float) -> str:
    """A coordinate with up to 8 decimals and no trailing zeros (``-0`` written as ``0``)."""
    s = f"{float(v):.8f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def place_image(src: Path, dst: Path, mode: str) -> None:
    """Put image ``src`` at ``dst`` by ``mode`` (copy | link | none); a ``dst`` that already is
    ``src`` is left alone, another file there is replaced."""
    if mode == "none":
        return
    if mode not in IMAGE_MODES:
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
