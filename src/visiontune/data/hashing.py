"""File content hashes (sha256) with a persistent cache keyed by (path, size, mtime).

A dataset version needs the sha256 of every file; re-reading thousands of images on every
``load_classification`` would be slow, so each hash is remembered in a small SQLite database
(``$VISIONTUNE_CACHE/hashes.sqlite``, default ``~/.cache/visiontune``). A file whose size or
modification time changed is hashed again. The cache is an optimisation only: when it cannot be
opened or written (read-only home, locked database) hashing simply goes on without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """visiontune's one cache folder (file hashes, the feature store, demo data):
    ``$VISIONTUNE_CACHE``, else ``$XDG_CACHE_HOME/visiontune``, else ``~/.cache/visiontune``.
    ``$VISIONTUNE_CACHE_DIR``, its old name, is still read when ``$VISIONTUNE_CACHE`` is unset."""
    env = os.environ.get("VISIONTUNE_CACHE") or os.environ.get("VISIONTUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "visiontune"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (no cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cached_sha256(path: str | os.PathLike) -> str:
    """sha256 of one file through the hash cache: a large weights file is read once, then known
    by (path, size, mtime)."""
    return hash_files([path])[0][0]


class HashCache:
    """SQLite table ``(path, size, mtime_ns) -> sha256``; thread-safe, process-safe (SQLite locks)."""

    def __init__(self, db_path: str | os.PathLike | None = None):
        self.db_path = Path(db_path) if db_path is not None else cache_dir() / "hashes.sqlite"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None or self._broken:
            return self._conn
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.db_path), timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                " mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"
            )
            conn.commit()
            self._conn = conn
        except (sqlite3.Error, OSError) as e:
            log.warning("hash cache %s unavailable (%s); hashing without it", self.db_path, e)
            self._broken = True
        return self._conn

    def lookup(self, keys: Sequence[tuple[str, int, int]]) -> dict[str, str]:
        """Cached hashes for the (abs path, size, mtime_ns) keys that are still valid."""
        out: dict[str, str] = {}
        with self._lock:
            conn = self._connect()
            if conn is None:
                return out
            try:
                wanted = {k[0]: k for k in keys}
                names = list(wanted)
                for i in range(0, len(names), 500):
                    part = names[i : i + 500]
                    marks = ",".join("?" * len(part))
                    q = f"SELECT path, size, mtime_ns, sha256 FROM hashes WHERE path IN ({marks})"
                    for path, size, mtime_ns, digest in conn.execute(q, part):
                        if wanted[path][1] == size and wanted[path][2] == mtime_ns:
                            out[path] = digest
            except sqlite3.Error as e:
                log.warning("hash cache read failed (%s); hashing without it", e)
        return out

    def store(self, rows: Iterable[tuple[str, int, int, str]]) -> None:
        """Remember ``(path, size, mtime_ns, sha256)`` rows in the cache."""
        rows = list(rows)
        if not rows:
            return
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            try:
                conn.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", rows)
                conn.commit()
            except sqlite3.Error as e:
                log.warning("hash cache write failed (%s); continuing without caching", e)

    def close(self) -> None:
        """Close the cache's database connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def hash_files(
    paths: Sequence[str | os.PathLike],
    cache: HashCache | None | bool = True,
    num_threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, int]]:
    """``[(sha256, size), ...]`` for ``paths`` (same order), reusing the hash cache.

    ``cache=True`` uses the default cache, ``False``/``None`` none, or pass a :class:`HashCache`.
    Files not in the cache are read by a small thread pool (hashlib releases the GIL).
    ``progress(n)`` is called with the number of files done since the last call.
    Raises ``FileNotFoundError`` / ``OSError`` for unreadable files.
    """
    own = cache is True
    hc: HashCache | None = HashCache() if cache is True else (cache or None)
    abspaths = [os.path.abspath(os.fspath(p)) for p in paths]
    stats = [os.stat(p) for p in abspaths]
    keys = [(p, st.st_size, st.st_mtime_ns) for p, st in zip(abspaths, stats)]
    known = hc.lookup(keys) if hc is not None else {}
    if progress and known:
        progress(sum(1 for p in abspaths if p in known))
    todo = [i for i, p in enumerate(abspaths) if p not in known]
    results: dict[str, str] = dict(known)
    if todo:
        threads = num_threads or min(4, (os.cpu_count() or 2))
        new_rows: list[tuple[str, int, int, str]] = []

        def work(batch: list[int]) -> list[tuple[int, str]]:
            return [(i, sha256_file(abspaths[i])) for i in batch]

        # Batches of ~8 MB (at least one file) keep thread overhead low for small images.
        batches: list[list[int]] = [[]]
        acc = 0
        for i in todo:
            if batches[-1] and acc + keys[i][1] > (8 << 20):
                batches.append([])
                acc = 0
            batches[-1].append(i)
            acc += keys[i][1]
        with ThreadPoolExecutor(max_workers=threads) as ex:
            for done in ex.map(work, batches):
                for i, digest in done:
                    results[abspaths[i]] = digest
                    new_rows.append((*keys[i], digest))
                if progress:
                    progress(len(done))
                if len(new_rows) >= 2000:
                    if hc is not None:
                        hc.store(new_rows)
                    new_rows = []
        if hc is not None:
            hc.store(new_rows)
    if own and hc is not None:
        hc.close()
    return [(results[p], st.st_size) for p, st in zip(abspaths, stats)]
