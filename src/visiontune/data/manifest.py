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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from visiontune.data.hashing import cache_dir, hash_files
from visiontune.errors import DatasetError
from visiontune.records import Record, parse_format

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
        """The fields that identify the entry, for comparing and hashing."""
        return [self.path, self.sha256, int(self.size), self.label, self.split]


def compute_version(entries: list[Entry], classes: list[str]) -> str:
    """Short content hash of the canonical (sorted) entries and the class list."""
    canonical = {"classes": list(classes), "entries": sorted(e.key() for e in entries)}
    blob = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:VERSION_LENGTH]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Manifest(Record):
    """One dataset version (``visiontune.dataset-manifest/1``), read and written only here.

    ``version`` is computed from the entries and classes; a document whose ``version`` does not
    match them was edited by hand and is refused. ``file`` is where it was loaded from / saved to
    (not serialised). ``num_entries`` is written for readers and ignored on read.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    KIND: ClassVar[str] = "dataset-manifest"
    VERSION: ClassVar[int] = 1

    version: str = ""
    parent: str | None = None
    created: str = Field(default_factory=_now)
    root: str | None = None
    source: str | None = None
    notes: str = ""
    classes: list[str]
    changes: list[dict[str, Any]] = Field(default_factory=list)
    entries: list[Entry]
    _file: Path | None = PrivateAttr(default=None)

    @classmethod
    def upgrade(cls, doc: dict[str, Any]) -> dict[str, Any]:
        """``num_entries`` is derived: dropped on read, written again from the entries."""
        doc.pop("num_entries", None)
        for key, empty in (("notes", ""), ("changes", []), ("version", "")):
            if doc.get(key) is None:  # null (hand-made files) means none
                doc[key] = empty
        if not doc.get("created"):
            doc.pop("created", None)  # the default: now
        return doc

    def model_post_init(self, context: Any) -> None:
        """Compute ``version``; refuse a given one that the entries do not hash to."""
        expected = compute_version(self.entries, self.classes)
        if self.version and self.version != expected:
            raise ValueError(
                f"the manifest says version {self.version} but its entries hash to {expected}: "
                "the file was edited by hand; restore it or make a new version with apply_fixes()"
            )
        self.version = expected

    @property
    def file(self) -> Path | None:
        """The manifest file this version was read from or saved to."""
        return self._file

    @file.setter
    def file(self, value: Path | None) -> None:
        self._file = value

    # -- lookups ---------------------------------------------------------------------------
    def by_path(self) -> dict[str, Entry]:
        """Entries keyed by their path."""
        return {e.path: e for e in self.entries}

    def abspath(self, entry: Entry | str) -> str:
        """Absolute path of ``entry`` (a path relative to the manifest root, or absolute as is)."""
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
        """The JSON document: the fields, ``num_entries``, entries sorted by path."""
        dumped = super().to_dict()
        entries = dumped.pop("entries")
        doc = {k: dumped.pop(k) for k in ("format", "version", "parent", "created", "root", "source", "notes")}
        doc["classes"] = dumped.pop("classes")
        doc["num_entries"] = len(entries)
        doc["changes"] = dumped.pop("changes")
        doc["entries"] = [dict(zip(Entry._fields, e)) for e in sorted(entries, key=lambda e: e[0])]
        return {**doc, **dumped}  # what is left: keys a newer writer added

    @classmethod
    def from_dict(cls, d: dict[str, Any], file: Path | None = None, *, source: str | None = None) -> Manifest:
        """Validate a manifest document; DatasetError names ``file`` (or ``source``) and the field."""
        where = file or source or "manifest"
        parsed = parse_format(d.get("format", "")) if isinstance(d, dict) else None
        if parsed is None or parsed[0] != cls.KIND:
            fmt = d.get("format") if isinstance(d, dict) else None
            raise DatasetError(
                f"{where}: not a visiontune dataset manifest (format {fmt!r}, expected {cls.format_id()!r})"
            )
        try:
            m = cls.model_validate(d)
        except ValidationError as e:
            raise DatasetError(f"{where}: {_explain(e)}") from None
        m.file = file
        return m

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest file (DatasetError naming the file when it is missing or malformed)."""
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{p}: manifest file not found") from None
        except json.JSONDecodeError as e:
            raise DatasetError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        if not isinstance(d, dict):
            raise DatasetError(f"{p}: expected a JSON object, found {type(d).__name__}")
        return cls.from_dict(d, file=p.resolve())

    @classmethod
    def read(cls, path: str | os.PathLike) -> Manifest:
        """Same as `load`."""
        return cls.load(path)

    def default_store(self) -> Path:
        """Where `save` writes by default: beside its file, else ``<root>/.visiontune/versions``
        (the cache's ``versions/`` for an in-memory dataset)."""
        if self.file is not None:
            return self.file.parent
        if self.root is None:
            return cache_dir() / "versions"
        return Path(self.root) / STORE_SUBDIR

    def save(self, store: str | os.PathLike | None = None) -> Path:
        """Write ``<store>/<version>.json`` atomically (default store: ``<root>/.visiontune/versions``)
        and register it in the user's version index so the id alone finds it later."""
        folder = Path(store) if store is not None else self.default_store()
        target = self.write(folder / f"{self.version}.json", indent=1)
        self.file = target.resolve()
        _index_add(self.version, self.file, self.created)
        return self.file


#: ``visiontune.dataset-manifest/1``
FORMAT = Manifest.format_id()


def _explain(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"malformed manifest: {loc}: {msg}" if loc else msg)
    return "; ".join(parts)


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
    """True when ``ref`` looks like a version id (4–64 hex digits)."""
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
