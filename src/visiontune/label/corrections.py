"""Corrections read back from a label tool become a new dataset version.

Classification: the reviewed tags become ``relabel`` / ``add`` rows for
:func:`visiontune.data.versions.apply_fixes` (a new manifest whose parent is the exported one).
Detection / segmentation: the reviewed images' objects replace the base version's in a new
:class:`~visiontune.label.versions.AnnotationVersion`. Either way the image files are never
touched — their sha256 is checked against the base before anything is written — and the result
carries a readable diff. Nothing is written when any task is bad.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune.data.hashing import hash_files
from visiontune.data.manifest import Manifest, find_manifest
from visiontune.data.versions import ManifestDiff, apply_fixes, diff
from visiontune.errors import DatasetError
from visiontune.label.core import LabelExport, LabelSet, raise_problems
from visiontune.label.sources import from_manifest
from visiontune.label.versions import (
    AnnotationDiff,
    AnnotationVersion,
    ImageDoc,
    diff_annotations,
    find_annotations,
    shape_to_doc,
    snapshot_annotations,
)


@dataclass
class ImportResult:
    """A label tool's corrections applied: the new version, its parent and the diff."""

    tool: str
    task: str
    base: str
    version: str
    file: Path
    diff: ManifestDiff | AnnotationDiff
    reviewed: int
    not_annotated: int
    warnings: list[str] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        """The folder the corrections file is in."""
        return self.file.parent

    @property
    def changed(self) -> bool:
        """True when the import produced a new version."""
        return self.version != self.base

    @property
    def metrics(self) -> dict[str, Any]:
        """Counts of images reviewed and of labels changed, added and removed."""
        d = self.diff
        if isinstance(d, ManifestDiff):
            counts = {"relabelled": len(d.relabelled), "added": len(d.added), "removed": len(d.removed)}
        else:
            counts = {k: d.count(k) for k in ("relabelled", "added", "removed", "reshaped")}
            counts["images_added"] = len(d.added_images)
        return {"reviewed": self.reviewed, "not_annotated": self.not_annotated, **counts}

    def to_dict(self) -> dict[str, Any]:
        """Tool, task, versions, counts and diff as JSON-ready values."""
        return {
            "tool": self.tool,
            "task": self.task,
            "base": self.base,
            "version": self.version,
            "file": str(self.file),
            "metrics": self.metrics,
            "diff": self.diff.to_dict(),
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        """What the import changed and the version it produced (or that nothing changed)."""
        head = f"{self.tool}: {self.reviewed} annotated image(s), {self.not_annotated} not annotated"
        if not self.changed:
            return f"{head}; no label changed, version {self.base} stays current"
        return f"{head}; new version {self.version} (parent {self.base})\n{self.diff}\n{self.file}"


# -- bases ------------------------------------------------------------------------------------------
def ensure_base(ls: LabelSet, store: str | os.PathLike | None = None) -> str | None:
    """Make sure the labels being exported are a saved version; returns that version's file.

    Classification label sets come from a manifest already; detection / segmentation ones are
    snapshotted as an annotation version (same content, same id)."""
    if ls.task == "classification":
        if ls.base_version is None:
            return None
        return str(find_manifest(ls.base_version, store).file)
    if not any(it.labels is not None for it in ls.items):
        return None
    v = snapshot_annotations(ls, store)
    return str(Path(v.default_store() if store is None else store, f"{v.version}.json").resolve())


def load_base(meta: LabelExport | None, base: Any = None, task: str | None = None) -> tuple[LabelSet, Any]:
    """(label set, manifest or annotation version) of the version corrections apply to:
    ``base`` (a version id / file / Manifest / AnnotationVersion) or the export record's."""
    task = task or (meta.task if meta else None)
    ref = base if base is not None else (meta.base_file or meta.base_version if meta else None)
    if ref is None:
        raise DatasetError(
            "no base version to apply the corrections to: pass base= (the dataset version the tasks "
            "were exported from) or import from a folder holding visiontune-export.json"
        )
    if isinstance(ref, AnnotationVersion) or (task and task != "classification"):
        v = find_annotations(ref)
        return v.to_labelset(), v
    m = find_manifest(ref)
    return from_manifest(m), m


# -- apply --------------------------------------------------------------------------------------------
def _check_images(reviewed: LabelSet, base: LabelSet) -> list[str]:
    """Problems with the reviewed images: content changed since the export / the base version."""
    index = base.by_path()
    files = [it.file for it in reviewed.items]
    problems = []
    for it, (digest, _) in zip(reviewed.items, hash_files(files) if files else []):
        src = index.get(it.path)
        expected = src.sha256 if src is not None and src.sha256 else it.sha256
        if expected and digest != expected:
            problems.append(f"{it.ref}: image content changed since it was exported (sha256 {digest[:12]}...)")
        if src is None:
            it.sha256 = digest
    return problems


def apply_corrections(
    reviewed: LabelSet,
    base_ls: LabelSet,
    base_obj: Manifest | AnnotationVersion,
    *,
    tool: str,
    not_annotated: int = 0,
    warnings: list[str] | None = None,
    store: str | os.PathLike | None = None,
    notes: str | None = None,
) -> ImportResult:
    """Turn reviewed items into a new version of ``base_obj``; see the module docstring."""
    warnings = list(warnings or [])
    problems = _check_images(reviewed, base_ls)
    if reviewed.task == "classification" and not reviewed.multi_label:
        for it in reviewed.items:
            if len(it.tags()) > 1:
                problems.append(f"{it.ref}: {len(it.tags())} classes chosen ({', '.join(it.tags())}); one expected")
    raise_problems(f"{tool} corrections for version {base_ls.base_version}", problems)
    note = notes or f"{tool} import: {len(reviewed.items)} annotated image(s)"
    if isinstance(base_obj, Manifest):
        return _apply_classification(reviewed, base_ls, base_obj, tool, not_annotated, warnings, store, note)
    return _apply_objects(reviewed, base_obj, tool, not_annotated, warnings, store, note)


def _apply_classification(reviewed, base_ls, m, tool, not_annotated, warnings, store, note) -> ImportResult:
    index = base_ls.by_path()
    rows = []
    for it in reviewed.items:
        tags = it.tags()
        if not tags:
            warnings.append(f"{it.ref}: annotated without a class; left as it was")
            continue
        action = "relabel" if it.path in index else "add"
        if action == "relabel" and index[it.path].tags() == tags:
            continue
        row = {"path": it.path, "action": action, "new_label": tags[0]}
        if action == "add" and it.split:
            row["split"] = it.split
        rows.append(row)
    new = apply_fixes(m, rows, store=store, notes=note) if rows else m
    return ImportResult(
        tool,
        "classification",
        m.version,
        new.version,
        Path(new.file or m.file),
        diff(m, new),
        len(reviewed.items),
        not_annotated,
        warnings,
    )


def _apply_objects(reviewed, v, tool, not_annotated, warnings, store, note) -> ImportResult:
    docs = v.by_path()
    for it in reviewed.items:
        w, h = it.ensure_size()
        objects = [shape_to_doc(s) for s in it.labels or [] if s.kind != "tag"]
        old = docs.get(it.path)
        if old is not None:
            docs[it.path] = old.model_copy(update={"objects": objects})
        else:
            size = os.path.getsize(it.file)
            docs[it.path] = ImageDoc(
                path=it.path, sha256=it.sha256 or "", size=size, width=w, height=h, split=it.split, objects=objects
            )
    new = AnnotationVersion(
        root=v.root, task=v.task, classes=list(v.classes), parent=v.version, notes=note, images=list(docs.values())
    )
    if new.content_hash() == v.version:
        d = diff_annotations(v, v)
        return ImportResult(
            tool, v.task, v.version, v.version, _version_file(v, store), d, len(reviewed.items), not_annotated, warnings
        )
    d = diff_annotations(v, new.model_copy(update={"version": new.content_hash()}))
    new.changes = d.objects + [{"path": p, "change": "image added"} for p in d.added_images]
    path = new.save(store if store is not None else _version_file(v, None).parent)
    return ImportResult(tool, v.task, v.version, new.version, path, d, len(reviewed.items), not_annotated, warnings)


def _version_file(v: AnnotationVersion, store) -> Path:
    return Path(store if store is not None else v.default_store(), f"{v.version}.json").resolve()
