"""Dataset manifests: the content of one dataset version, as a JSON file.

A manifest lists every sample as ``(path, sha256, size, label, split)`` with ``path`` relative
to ``root`` (an absolute folder; in-memory datasets have ids and no root). Its ``version`` is the
first 12 hex digits of the sha256 of the canonical entries and the class list, so the same data
always gets the same id, wherever and whenever it is computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from visiontune._atomic import write_text
from visiontune.data.hashing import cache_dir, hash_files
from visiontune.errors import DatasetError

FORMAT = "visiontune.dataset-manifest/1"
VERSION_LENGTH = 12
STORE_SUBDIR = Path(".visiontune") / "versions"


class Entry(NamedTuple):
    """One file of a dataset version."""

    path: str  # relative to the manifest's root, '/'-separated (or an in-memory id)
    sha256: str
    size: int
    label: str
    split: str | None = None

    def key(self) -> list[Any]:
        return [self.path, self.sha256, int(self.size), self.label, self.split]


def compute_version(entries: list[Entry], classes: list[str]) -> str:
    """Short content hash of the canonical (sorted) entries and the class list."""
    canonical = {"classes": list(classes), "entries": sorted(e.key() for e in entries)}
    blob = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:VERSION_LENGTH]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Manifest:
    """One dataset version. ``file`` is where it was loaded from / saved to (not serialised)."""

    entries: list[Entry]
    classes: list[str]
    root: str | None = None
    source: str | None = None
    created: str = field(default_factory=_now)
    parent: str | None = None
    notes: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    version: str = ""
    file: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        expected = compute_version(self.entries, self.classes)
        if self.version and self.version != expected:
            where = f" ({self.file})" if self.file else ""
            raise DatasetError(
                f"manifest{where} says version {self.version} but its entries hash to {expected}: "
                "the file was edited by hand; restore it or make a new version with apply_fixes()"
            )
        self.version = expected

    # -- lookups ---------------------------------------------------------------------------
    def by_path(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}

    def abspath(self, entry: Entry | str) -> str:
        rel = entry.path if isinstance(entry, Entry) else entry
        if self.root is None or os.path.isabs(rel):
            return rel
        return os.path.join(self.root, rel)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split (``"all"`` when entries carry no split) the number of entries per class."""
        out: dict[str, dict[str, int]] = {}
        for e in self.entries:
            d = out.setdefault(e.split or "all", {c: 0 for c in self.classes})
            d[e.label] = d.get(e.label, 0) + 1
        return out

    def verify(self) -> list[tuple[str, str]]:
        """Re-hash the files (cached by path, size, mtime); ``(path, problem)`` for each file
        that is missing or whose content differs from the manifest. Empty list: all intact."""
        if self.root is None:
            raise DatasetError(f"manifest {self.version} has no root folder; nothing to verify")
        problems: list[tuple[str, str]] = []
        present: list[Entry] = []
        for e in self.entries:
            if os.path.isfile(self.abspath(e)):
                present.append(e)
            else:
                problems.append((e.path, "missing"))
        hashes = hash_files([self.abspath(e) for e in present])
        for e, (digest, size) in zip(present, hashes):
            if digest != e.sha256:
                problems.append((e.path, f"content changed (size {e.size} -> {size})"))
        return problems

    # -- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "parent": self.parent,
            "created": self.created,
            "root": self.root,
            "source": self.source,
            "notes": self.notes,
            "classes": list(self.classes),
            "num_entries": len(self.entries),
            "changes": self.changes,
            "entries": [e._asdict() for e in sorted(self.entries, key=lambda e: e.path)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], file: Path | None = None) -> Manifest:
        where = file or "manifest"
        if d.get("format") != FORMAT:
            raise DatasetError(
                f"{where}: not a visiontune dataset manifest (format {d.get('format')!r}, expected {FORMAT!r})"
            )
        try:
            entries = [
                Entry(str(e["path"]), str(e["sha256"]), int(e["size"]), str(e["label"]), e.get("split"))
                for e in d["entries"]
            ]
            return cls(
                entries=entries,
                classes=[str(c) for c in d["classes"]],
                root=d.get("root"),
                source=d.get("source"),
                created=d.get("created") or _now(),
                parent=d.get("parent"),
                notes=d.get("notes") or "",
                changes=list(d.get("changes") or []),
                version=d.get("version") or "",
                file=file,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{where}: malformed manifest ({type(e).__name__}: {e})") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{p}: manifest file not found") from None
        except json.JSONDecodeError as e:
            raise DatasetError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        return cls.from_dict(d, file=p.resolve())

    def default_store(self) -> Path:
        if self.file is not None:
            return self.file.parent
        if self.root is None:
            return cache_dir() / "versions"
        return Path(self.root) / STORE_SUBDIR

    def save(self, store: str | os.PathLike | None = None) -> Path:
        """Write ``<store>/<version>.json`` atomically (default store: ``<root>/.visiontune/versions``)
        and register it in the user's version index so the id alone finds it later."""
        folder = Path(store) if store is not None else self.default_store()
        target = write_text(
            folder / f"{self.version}.json", json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"
        )
        self.file = target.resolve()
        _index_add(self.version, self.file, self.created)
        return self.file


# -- version index: id -> manifest file, so `load_classification("3f2a9c01b7de")` works -------
def _index_db() -> Path:
    return cache_dir() / "versions.sqlite"


def _index_add(version: str, path: Path, created: str) -> None:
    try:
        db = _index_db()
        db.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(str(db), timeout=30) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS versions (version TEXT, path TEXT, created TEXT,"
                " PRIMARY KEY (version, path))"
            )
            conn.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?)", (version, str(path), created))
        conn.close()
    except (sqlite3.Error, OSError):
        pass  # the index is a convenience; the manifest file itself is written


def _index_lookup(prefix: str) -> list[Path]:
    db = _index_db()
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(str(db), timeout=30)
        try:
            rows = conn.execute(
                "SELECT path FROM versions WHERE version LIKE ? ORDER BY created DESC", (prefix + "%",)
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    return [Path(r[0]) for r in rows if Path(r[0]).is_file()]


def looks_like_version(ref: str) -> bool:
    return 4 <= len(ref) <= 64 and all(c in "0123456789abcdef" for c in ref.lower())


def find_manifest(ref: str | os.PathLike | Manifest, store: str | os.PathLike | None = None) -> Manifest:
    """A manifest from a file path, or a version id (or unique prefix of at least 4 hex digits)
    looked up in ``store``, in ``./.visiontune/versions`` and in the user's version index."""
    if isinstance(ref, Manifest):
        return ref
    p = Path(ref)
    if p.is_file():
        return Manifest.load(p)
    s = str(ref)
    if not looks_like_version(s):
        raise DatasetError(f"{s}: no such manifest file, and not a version id")
    folders = [Path(store)] if store is not None else []
    folders.append(Path.cwd() / STORE_SUBDIR)
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for f in folder.glob(f"{s.lower()}*.json"):
                found.setdefault(f.stem, f)
    if not found:
        for f in _index_lookup(s.lower()):
            found.setdefault(f.stem, f)
    if not found:
        where = ", ".join(str(f) for f in folders)
        raise DatasetError(
            f"dataset version {s} not found (looked in {where} and the index {_index_db()}); "
            "pass the manifest JSON path or store="
        )
    if len(found) > 1:
        raise DatasetError(f"version prefix {s} is ambiguous: {sorted(found)}; give more digits")
    return Manifest.load(next(iter(found.values())))
