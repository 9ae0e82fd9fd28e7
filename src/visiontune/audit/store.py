"""The feature store: one content-keyed, append-only, memory-mapped cache of embeddings.

Shared by the audit and the ``linear`` training strategy. One store per *backbone* (the weights
before the head, the head's location and the preprocessing: :func:`store_key`), one row per
image content (the sha256 of the file's bytes), so a renamed, moved or relabelled copy of the
data, a retrained head, a second training run with another learning rate and an audit of that run
all reuse the rows. Layout of ``<root>/features/<key>/``::

    store.json   visiontune.feature-store/1: dim, feature shape, committed row count
    emb.f32      rows x dim float32, C order (the head's input, flattened)
    dhash.u64    rows uint64 (64-bit perceptual hash of the decoded image)
    keys.bin     rows x 32 bytes (sha256 digest of the image's bytes)

Rows are appended a chunk at a time through a memory-mapped window onto the end of the files,
flushed, and only then counted in ``store.json`` (written atomically). A process killed mid-way
(SIGKILL, power loss) leaves at most an uncounted tail that the next writer overwrites, so an
interrupted extraction resumes where its last chunk ended. Readers map one window of rows at a
time (:meth:`FeatureStore.iter_chunks`): memory stays bounded by the chunk, not the dataset.
The root is ``$VISIONTUNE_CACHE`` (default ``~/.cache/visiontune``), see :func:`cache_root`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from visiontune.data.hashing import cache_dir
from visiontune.errors import ConfigError
from visiontune.records import Record

ENV = "VISIONTUNE_CACHE"
_FILES = ("emb.f32", "dhash.u64", "keys.bin")


def cache_root() -> Path:
    """visiontune's cache folder (:func:`visiontune.data.hashing.cache_dir`): ``$VISIONTUNE_CACHE``,
    else ``$XDG_CACHE_HOME/visiontune``, else ``~/.cache/visiontune``."""
    return cache_dir()


def features_root(root: str | os.PathLike | None = None) -> Path:
    """Where the feature stores live: ``<root>/features`` (default root: :func:`cache_root`)."""
    return Path(root) / "features" if root is not None else cache_root() / "features"


def backbone_hash(model: nn.Module, head_path: str) -> str:
    """sha256 over every parameter and buffer outside the head (names, shapes, dtypes, values)."""
    h = hashlib.sha256()
    sd = model.state_dict()
    for name in sorted(sd):
        if head_path and (name == head_path or name.startswith(head_path + ".")):
            continue
        t = sd[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(sd[name].shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def describe_preprocess(preprocess: Any) -> Any:
    """A JSON-able description of a preprocessing callable (its ``to_dict()`` or ``repr``)."""
    return preprocess.to_dict() if hasattr(preprocess, "to_dict") else repr(preprocess)


def store_key(model: nn.Module, head_path: str, preprocess: Any) -> str:
    """Identity of what produces the embeddings: backbone weights, head location, preprocessing."""
    doc = json.dumps(
        {"weights": backbone_hash(model, head_path), "head": head_path, "preprocess": describe_preprocess(preprocess)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def digest(sha256_hex: str) -> bytes:
    """The 32-byte digest of a sha256 hex string (a store row's key)."""
    return bytes.fromhex(sha256_hex)


class StoreInfo(Record):
    """``store.json``: what a feature store holds. ``rows`` counts only flushed, complete rows."""

    KIND: ClassVar[str] = "feature-store"
    VERSION: ClassVar[int] = 1

    key: str
    dim: int
    feature_shape: list[int]
    rows: int = 0
    source: str | None = None  # what made it (model id), for `visiontune cache info`


class FeatureStore:
    """An append-only, content-keyed feature file (see the module doc). ``dim`` is needed to
    create a store; an existing one is opened with ``dim=None``. Not thread-safe; writers in
    several processes take a file lock per chunk."""

    def __init__(self, directory: str | os.PathLike, info: StoreInfo):
        self.dir = Path(directory)
        self.info = info
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        key: str,
        *,
        root: str | os.PathLike | None = None,
        dim: int | None = None,
        feature_shape: Sequence[int] | None = None,
        source: str | None = None,
    ) -> FeatureStore | None:
        """The store ``key`` under ``features_root(root)``; created when ``dim`` is given and it
        does not exist yet (None when it does not exist and ``dim`` is None). A store whose
        ``store.json`` is unreadable, or whose files are shorter than it says, is started over."""
        d = features_root(root) / key
        meta = d / "store.json"
        info = None
        if meta.is_file():
            try:
                info = StoreInfo.read(meta)
                if info.key != key or not cls._files_hold(d, info):
                    info = None
            except Exception:  # a damaged store is rebuilt, never trusted
                info = None
        if info is None:
            if dim is None:
                return None
            d.mkdir(parents=True, exist_ok=True)
            for f in _FILES:
                (d / f).write_bytes(b"")
            shape = list(feature_shape) if feature_shape is not None else [int(dim)]
            info = StoreInfo(key=key, dim=int(dim), feature_shape=shape, rows=0, source=source)
            info.write(meta)
        elif dim is not None and int(dim) != info.dim:
            raise ConfigError(
                f"feature store {d} holds {info.dim}-d features, not {dim}-d: clear it (visiontune cache clear)"
            )
        return cls(d, info)

    @staticmethod
    def _files_hold(d: Path, info: StoreInfo) -> bool:
        sizes = {"emb.f32": 4 * info.dim, "dhash.u64": 8, "keys.bin": 32}
        try:
            return all((d / f).stat().st_size >= info.rows * b for f, b in sizes.items())
        except OSError:
            return False

    @property
    def rows(self) -> int:
        """Number of rows stored."""
        return self.info.rows

    @property
    def dim(self) -> int:
        """Width of the stored embeddings."""
        return self.info.dim

    def __len__(self) -> int:
        return self.info.rows

    def nbytes(self) -> int:
        """Bytes the store's files take on disk."""
        return sum((self.dir / f).stat().st_size for f in (*_FILES, "store.json") if (self.dir / f).exists())

    # -- lookups -------------------------------------------------------------------------------
    def keys(self) -> np.ndarray:
        """All committed keys, as an (rows,) array of 32-byte strings."""
        n = self.info.rows
        if n == 0:
            return np.zeros(0, dtype="S32")
        return np.fromfile(self.dir / "keys.bin", dtype="S32", count=n)

    def lookup(self, sha256: Sequence[str]) -> np.ndarray:
        """Row of each sha256 hex digest, -1 where the store has none (int64)."""
        q = np.array([digest(s) for s in sha256], dtype="S32") if len(sha256) else np.zeros(0, "S32")
        if self._sorted is None or len(self._sorted[0]) != self.info.rows:
            k = self.keys()
            order = np.argsort(k, kind="stable")
            self._sorted = (k[order], order)
        sk, order = self._sorted
        out = np.full(len(q), -1, dtype=np.int64)
        if len(sk) and len(q):
            pos = np.minimum(np.searchsorted(sk, q), len(sk) - 1)
            hit = sk[pos] == q
            out[hit] = order[pos[hit]]
        return out

    # -- reading -------------------------------------------------------------------------------
    def _map(self, name: str, dtype: Any, width: int, start: int, stop: int) -> np.ndarray:
        item = np.dtype(dtype).itemsize * width
        shape = (stop - start, width) if width > 1 else (stop - start,)
        return np.memmap(self.dir / name, dtype=dtype, mode="r", offset=start * item, shape=shape)

    def read(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Embeddings of ``rows`` (any order, repeats allowed), as a float32 copy."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        if len(rows) == 0:
            return out
        if rows.min() < 0 or rows.max() >= self.rows:
            raise IndexError(f"row outside the feature store's {self.rows} rows")
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        # read in windows of contiguous-ish rows so a random read maps only what it needs
        i = 0
        while i < len(srt):
            lo = srt[i]
            j = int(np.searchsorted(srt, lo + 65536, side="left"))
            hi = int(srt[j - 1]) + 1
            m = self._map("emb.f32", np.float32, self.dim, int(lo), hi)
            out[order[i:j]] = m[srt[i:j] - lo]
            del m
            i = j
        return out

    def dhash(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Perceptual hashes of ``rows`` (uint64)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.rows == 0 or len(rows) == 0:
            return np.zeros(len(rows), dtype=np.uint64)
        return np.fromfile(self.dir / "dhash.u64", dtype=np.uint64, count=self.rows)[rows]

    def iter_chunks(self, rows: np.ndarray | None = None, chunk: int = 16384) -> Iterator[tuple[int, np.ndarray]]:
        """(offset, embeddings of ``rows[offset:offset+chunk]``) for all of ``rows`` (default:
        every row in store order): at most ``chunk`` rows are in memory at a time."""
        n = self.rows if rows is None else len(rows)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            if rows is None:
                m = self._map("emb.f32", np.float32, self.dim, s, e)
                yield s, np.array(m)
                del m
            else:
                yield s, self.read(rows[s:e])

    # -- writing -------------------------------------------------------------------------------
    def append(self, keys: Sequence[str], emb: np.ndarray, dhash: np.ndarray) -> np.ndarray:
        """Append one chunk and commit it; returns the rows written. Keys already in the store
        (written meanwhile by another process) are kept and not written twice."""
        emb = np.ascontiguousarray(emb, dtype=np.float32).reshape(len(keys), -1)
        if emb.shape[1] != self.dim:
            raise ConfigError(f"features of width {emb.shape[1]} do not fit the {self.dim}-d store {self.dir}")
        with open(self.dir / "lock", "a+") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            try:
                self._reload()
                have = self.lookup(list(keys))
                out = have.copy()
                new = np.flatnonzero(have < 0).tolist()
                # the same content twice in one chunk is written once
                first: dict[str, int] = {}
                write: list[int] = []
                for i in new:
                    if keys[i] in first:
                        continue
                    first[keys[i]] = len(write)
                    write.append(i)
                start = self.info.rows
                stop = start + len(write)
                if write:
                    w = np.asarray(write)
                    self._write("emb.f32", emb[w], np.float32, self.dim, start, stop)
                    self._write("dhash.u64", np.asarray(dhash, dtype=np.uint64)[w], np.uint64, 1, start, stop)
                    kb = np.array([digest(keys[i]) for i in w], dtype="S32")
                    self._write("keys.bin", kb.view(np.uint8).reshape(-1, 32), np.uint8, 32, start, stop)
                    self.info = self.info.model_copy(update={"rows": stop})
                    self.info.write(self.dir / "store.json")
                    self._sorted = None
                for i in new:
                    out[i] = start + first[keys[i]]
            finally:
                fcntl.flock(lk, fcntl.LOCK_UN)
        return out

    def _write(self, name: str, data: np.ndarray, dtype: Any, width: int, start: int, stop: int) -> None:
        path = self.dir / name
        item = np.dtype(dtype).itemsize * width
        with open(path, "r+b") as f:
            f.truncate(stop * item)  # drops an uncommitted tail left by a killed writer
        m = np.memmap(path, dtype=dtype, mode="r+", offset=start * item, shape=data.shape)
        m[:] = data
        m.flush()
        del m
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _reload(self) -> None:
        try:
            info = StoreInfo.read(self.dir / "store.json")
        except Exception:
            return
        if info.rows != self.info.rows:
            self._sorted = None
        self.info = info


def list_stores(root: str | os.PathLike | None = None) -> list[FeatureStore]:
    """Every readable feature store under ``features_root(root)``."""
    base = features_root(root)
    out = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if d.is_dir():
            s = FeatureStore.open(d.name, root=root)
            if s is not None:
                out.append(s)
    return out


def clear_stores(root: str | os.PathLike | None = None, key: str | None = None) -> int:
    """Delete every store (or the one ``key``) under ``features_root(root)``; returns bytes freed."""
    base = features_root(root)
    freed = 0
    targets = [base / key] if key else ([d for d in base.iterdir() if d.is_dir()] if base.is_dir() else [])
    for d in targets:
        if d.is_dir():
            freed += sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            shutil.rmtree(d)
    return freed
