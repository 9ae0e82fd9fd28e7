"""Atomic file writes, the one implementation every verb uses.

A file is written to a temporary sibling, flushed to disk and renamed over its target, so a
reader — or a crash, SIGKILL included — sees the previous file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (same extension, so libraries that infer a format
    from it still work); it replaces ``path`` only when the block succeeds, and is removed otherwise.

    ``fsync=False`` skips the flush to disk (the rename is still atomic): for many small files,
    such as one YOLO label file per image, where a power cut costs a re-run, not a corrupt file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` atomically, then close the figure (pyplot figures are released)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:  # a bare Figure not managed by pyplot: nothing to release
        pass
    return Path(path)
