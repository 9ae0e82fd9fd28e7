"""Dataset versions: snapshot a dataset, diff two versions, apply label fixes as a new version.

A version is a :class:`~visiontune.data.manifest.Manifest` saved as
``<store>/<version>.json`` (default store ``<dataset>/.visiontune/versions``). Fixes never touch
the image files: a fixed version points at the same files (absolute root + relative paths)
with new labels or without removed entries, and names its parent version.

    m1 = snapshot("data/pets")
    m2 = apply_fixes(m1, "audit/corrections.csv")     # path,action,new_label
    print(diff(m1, m2))                                # 3 relabelled, 1 removed
    splits = load_classification(m2.version)           # train on the fixed labels
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune.data.csv_sources import read_csv_rows
from visiontune.data.hashing import hash_files
from visiontune.data.manifest import Entry, Manifest, find_manifest
from visiontune.data.samples import DatasetWarning, raise_problems
from visiontune.data.sources import collect
from visiontune.data.splits import build_manifest
from visiontune.errors import DatasetError

__all__ = ["Manifest", "Entry", "ManifestDiff", "snapshot", "diff", "apply_fixes", "load_manifest", "list_versions"]

load_manifest = find_manifest


def list_versions(store: str | os.PathLike) -> list[Manifest]:
    """Every manifest in a versions store, oldest first (unreadable files are skipped)."""
    out = []
    for f in sorted(Path(store).glob("*.json")):
        try:
            out.append(Manifest.load(f))
        except DatasetError as e:
            warnings.warn(f"skipping {f}: {e}", DatasetWarning, stacklevel=2)
    return sorted(out, key=lambda m: (m.created, m.version))


def snapshot(
    directory: str | os.PathLike,
    store: str | os.PathLike | None = None,
    notes: str = "",
    parent: str | None = None,
) -> Manifest:
    """Hash every image of a dataset (folder of class folders, train/val/test tree, or CSV) and
    save its manifest as a version; returns it (``.version``, ``.file``).

    The parent is ``parent`` or else the newest other version of the same root in the store.
    Snapshotting unchanged data returns the existing version (same id, same file).
    """
    c = collect(directory)
    m = build_manifest(c)
    m.notes = notes
    folder = Path(store) if store is not None else m.default_store()
    existing = folder / f"{m.version}.json"
    if existing.is_file():
        return Manifest.load(existing)
    if parent is None and folder.is_dir():
        same_root = [v for v in list_versions(folder) if v.root == m.root and v.version != m.version]
        parent = same_root[-1].version if same_root else None
    m.parent = parent
    m.save(folder)
    return m


@dataclass
class ManifestDiff:
    """What changed from version ``a`` to version ``b`` (entries matched by relative path)."""

    a: str
    b: str
    added: list[Entry] = field(default_factory=list)
    removed: list[Entry] = field(default_factory=list)
    relabelled: list[tuple[str, str, str]] = field(default_factory=list)  # path, old, new
    modified: list[tuple[str, str, str]] = field(default_factory=list)  # path, old sha, new sha
    resplit: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        """True when the two versions hold the same samples and labels."""
        return not (self.added or self.removed or self.relabelled or self.modified or self.resplit)

    def to_dict(self) -> dict[str, Any]:
        """The differences as JSON-ready values."""
        return {
            "a": self.a,
            "b": self.b,
            "unchanged": self.unchanged,
            "added": [e._asdict() for e in self.added],
            "removed": [e._asdict() for e in self.removed],
            "relabelled": [{"path": p, "old_label": o, "new_label": n} for p, o, n in self.relabelled],
            "modified": [{"path": p, "old_sha256": o, "new_sha256": n} for p, o, n in self.modified],
            "resplit": [{"path": p, "old_split": o, "new_split": n} for p, o, n in self.resplit],
        }

    def __str__(self) -> str:
        lines = [
            f"{self.a} -> {self.b}: {len(self.added)} added, {len(self.removed)} removed, "
            f"{len(self.relabelled)} relabelled, {len(self.modified)} modified, "
            f"{len(self.resplit)} moved between splits, {self.unchanged} unchanged"
        ]
        lines += [f"  + {e.path} [{e.label}]" for e in self.added]
        lines += [f"  - {e.path} [{e.label}]" for e in self.removed]
        lines += [f"  ~ {p}: {o} -> {n}" for p, o, n in self.relabelled]
        lines += [f"  * {p}: content changed" for p, _, _ in self.modified]
        lines += [f"  > {p}: split {o} -> {n}" for p, o, n in self.resplit]
        return "\n".join(lines)


def diff(
    a: str | os.PathLike | Manifest, b: str | os.PathLike | Manifest, store: str | os.PathLike | None = None
) -> ManifestDiff:
    """Entries added, removed, relabelled, modified (content changed) and moved between splits
    from ``a`` to ``b`` (manifests, manifest files or version ids)."""
    ma, mb = find_manifest(a, store), find_manifest(b, store)
    ea, eb = ma.by_path(), mb.by_path()
    d = ManifestDiff(ma.version, mb.version)
    for path in sorted(ea.keys() | eb.keys()):
        x, y = ea.get(path), eb.get(path)
        if x is None and y is not None:
            d.added.append(y)
        elif y is None and x is not None:
            d.removed.append(x)
        elif x is not None and y is not None:
            same = True
            if x.label != y.label:
                d.relabelled.append((path, x.label, y.label))
                same = False
            if x.sha256 != y.sha256:
                d.modified.append((path, x.sha256, y.sha256))
                same = False
            if x.split != y.split:
                d.resplit.append((path, x.split, y.split))
                same = False
            d.unchanged += same
    return d


def _correction_rows(corrections: Any) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """(source name, [(where, row dict)]) from a CSV path, a DataFrame or an iterable of dicts."""
    if isinstance(corrections, (str, os.PathLike)):
        path = Path(corrections)
        header, rows = read_csv_rows(path)
        if "path" not in header or "action" not in header:
            raise DatasetError(f"{path}, line 1: header must name the columns path,action,new_label; found {header}")
        out = []
        for line, row in rows:
            d = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
            out.append((f"{path}, line {line}", d))
        return str(path), out
    if hasattr(corrections, "to_dict"):
        corrections = corrections.to_dict("records")
    if not isinstance(corrections, Iterable):
        raise DatasetError("corrections must be a CSV path, a DataFrame or a list of dicts")
    given = []
    for i, r in enumerate(corrections, 1):
        if not isinstance(r, Mapping):
            raise DatasetError(f"corrections row {i}: expected a mapping with path, action, new_label")
        fields = {str(k).lower(): "" if v is None or v != v else str(v).strip() for k, v in r.items()}  # NaN -> ""
        given.append((f"corrections row {i}", fields))
    return "corrections", given


def apply_fixes(
    version_or_manifest: str | os.PathLike | Manifest,
    corrections: Any,
    store: str | os.PathLike | None = None,
    notes: str | None = None,
) -> Manifest:
    """Apply label corrections as a NEW version (parent = the old one); image files untouched.

    ``corrections``: a CSV with columns ``path,action,new_label`` (``action`` is ``relabel`` or
    ``remove``; ``path`` relative to the dataset root as in the manifest, or absolute), or the
    same as a DataFrame / list of dicts. Unknown paths, unknown labels, unknown actions and
    conflicting rows raise a ``DatasetError`` naming every bad line; nothing is written then.
    ``action`` ``add`` adds a newly labelled file that is not in the version yet (it must
    exist; an optional ``split`` column, default ``train`` when the version has splits); its
    content is hashed like a snapshot's.
    The new manifest is saved next to the old one (or in ``store``).
    """
    m = find_manifest(version_or_manifest, store)
    name, rows = _correction_rows(corrections)
    by_path = m.by_path()
    classes = set(m.classes)
    problems: list[str] = []
    planned: dict[str, tuple[str, str | None, str]] = {}
    splits: dict[str, str | None] = {}
    for where, row in rows:
        raw_path = row.get("path", "")
        action = row.get("action", "").lower()
        new_label = row.get("new_label", "")
        if not raw_path:
            problems.append(f"{where}: empty path")
            continue
        rel = raw_path.replace("\\", "/")
        if os.path.isabs(raw_path) and m.root is not None:
            rel = Path(os.path.relpath(raw_path, m.root)).as_posix()
        if action == "add":
            rel = _add_path(raw_path, m)
            problem = _check_add(where, raw_path, rel, new_label, m, by_path, classes)
            if problem:
                problems.append(problem)
            elif rel in planned:
                problems.append(f"{where}: {rel} already corrected at {planned[rel][2]}")
            else:
                planned[rel] = ("add", new_label, where)
                splits[rel] = row.get("split") or ("train" if any(e.split for e in m.entries) else None)
            continue
        if rel not in by_path:
            problems.append(f"{where}: path {raw_path!r} is not in version {m.version}")
            continue
        if action not in ("relabel", "remove"):
            problems.append(f"{where}: unknown action {row.get('action', '')!r} (use relabel, remove or add)")
            continue
        if action == "relabel":
            if not new_label:
                problems.append(f"{where}: relabel of {rel} needs a new_label")
                continue
            if new_label not in classes:
                problems.append(f"{where}: unknown label {new_label!r} (classes: {', '.join(m.classes)})")
                continue
        if rel in planned:
            problems.append(f"{where}: {rel} already corrected at {planned[rel][2]}")
            continue
        planned[rel] = (action, new_label or None, where)
    raise_problems(f"corrections {name} for version {m.version}", problems)

    entries: list[Entry] = []
    changes: list[dict[str, Any]] = []
    for e in m.entries:
        fix = planned.get(e.path)
        if fix is None:
            entries.append(e)
        elif fix[0] == "remove":
            changes.append({"path": e.path, "action": "remove", "label": e.label})
        elif fix[1] == e.label:
            entries.append(e)
            warnings.warn(
                f"{fix[2]}: {e.path} already has label {e.label!r}; nothing to change", DatasetWarning, stacklevel=2
            )
        else:
            assert fix[1] is not None  # a relabel without new_label is a problem raised above
            entries.append(Entry(e.path, e.sha256, e.size, fix[1], e.split))
            changes.append({"path": e.path, "action": "relabel", "old_label": e.label, "new_label": fix[1]})
    added = [rel for rel, fix in planned.items() if fix[0] == "add"]
    hashes = hash_files([m.abspath(rel) for rel in added]) if added else []
    for rel, (digest, size) in zip(added, hashes):
        entries.append(Entry(rel, digest, size, planned[rel][1] or "", splits.get(rel)))
        changes.append({"path": rel, "action": "add", "label": planned[rel][1]})
    if not changes:
        warnings.warn(
            f"corrections {name} change nothing; version {m.version} stays current", DatasetWarning, stacklevel=2
        )
        return m
    new = Manifest(
        entries=entries,
        classes=list(m.classes),
        root=m.root,
        source=m.source,
        parent=m.version,
        notes=notes
        if notes is not None
        else f"apply_fixes({name}): "
        f"{sum(c['action'] == 'relabel' for c in changes)} relabelled, "
        f"{sum(c['action'] == 'remove' for c in changes)} removed" + (f", {len(added)} added" if added else ""),
        changes=changes,
    )
    new.save(store if store is not None else m.default_store())
    return new


def _add_path(raw_path: str, m: Manifest) -> str:
    """The manifest path of a file to add: relative to the root when under it, else absolute."""
    p = raw_path if os.path.isabs(raw_path) or m.root is None else os.path.join(m.root, raw_path)
    p = os.path.abspath(p)
    if m.root is not None:
        prefix = os.path.join(os.path.abspath(m.root), "")
        if p.startswith(prefix):
            return Path(p[len(prefix) :]).as_posix()
    return Path(p).as_posix()


def _check_add(
    where: str, raw_path: str, rel: str, new_label: str, m: Manifest, by_path: dict[str, Entry], classes: set[str]
) -> str | None:
    if rel in by_path:
        return f"{where}: {rel} is already in version {m.version} (use relabel)"
    if not os.path.isfile(m.abspath(rel)):
        return f"{where}: file to add not found: {raw_path}"
    if not new_label:
        return f"{where}: add of {rel} needs a new_label"
    if new_label not in classes:
        return f"{where}: unknown label {new_label!r} (classes: {', '.join(m.classes)})"
    return None
