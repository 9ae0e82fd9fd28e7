"""The label loop's Python API: export tasks with pre-annotations, push / pull a Label Studio
server, and import corrections as a new dataset version (Label Studio and CVAT).

    import visiontune.label as vl
    ex = vl.export_label_studio("data/pets", "ls/", model="runs/exp1")   # tasks + config + meta
    push = vl.push_label_studio("ls/", url, token)                       # project, storage, tasks
    res = vl.pull_label_studio(url, token, push.project, "ls/")          # export → new version
    print(res.diff)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune._atomic import write_text
from visiontune.errors import DatasetError
from visiontune.label import cvat, cvat_formats, labelstudio
from visiontune.label.core import LabelExport, LabelSet, read_export_meta
from visiontune.label.corrections import ImportResult, apply_corrections, ensure_base, load_base
from visiontune.label.ls_server import LabelStudio
from visiontune.label.predict import add_predictions
from visiontune.label.sources import load


@dataclass
class ExportResult:
    """Files written for a label tool, and how to open them there."""

    dir: Path
    meta: LabelExport
    files: dict[str, Path]

    @property
    def metrics(self) -> dict[str, Any]:
        """Images and classes exported."""
        return {"images": self.meta.images, "classes": len(self.meta.classes)}

    def to_dict(self) -> dict[str, Any]:
        """Folder, files and export metadata as JSON-ready values."""
        return {"dir": str(self.dir), "files": {k: str(v) for k, v in self.files.items()}, "meta": self.meta.to_dict()}

    def summary(self) -> str:
        """What was exported, from which version, and where."""
        m = self.meta
        lines = [f"{m.tool}: {m.images} {m.task} task(s) from version {m.base_version or '-'} in {self.dir}"]
        if m.model_version:
            lines.append(f"pre-annotations: {m.model_version}")
        if m.tool == "label-studio":
            lines.append(
                f"serve the images: LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
                f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={m.document_root} label-studio start; "
                f"add Local storage {m.root}; import {self.files['tasks'].name} with config {self.files['config'].name}"
            )
        return "\n".join(lines)


@dataclass
class PushResult:
    """Tasks pushed to a Label Studio project: server URL, project id and task id per image."""

    url: str
    project: int
    tasks: dict[str, int] = field(default_factory=dict)  # dataset path -> task id
    dir: Path | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """Number of tasks pushed."""
        return {"tasks": len(self.tasks)}

    def task_url(self, path: str) -> str:
        """The Label Studio URL of the task of image ``path``."""
        return f"{self.url}/projects/{self.project}/data?task={self.tasks[path]}"

    def to_dict(self) -> dict[str, Any]:
        """URL, project and tasks as JSON-ready values."""
        return {"url": self.url, "project": self.project, "tasks": self.tasks}

    def summary(self) -> str:
        """One line: how many tasks, in which project."""
        return f"{len(self.tasks)} task(s) in {self.url}/projects/{self.project}"


def prepare(
    data: Any,
    *,
    model: Any = None,
    task: str | None = None,
    images: Sequence[str] | None = None,
    progress: bool = True,
    store: str | os.PathLike | None = None,
) -> tuple[LabelSet, str | None]:
    """(label set with predictions, base version file) for an export."""
    ls = load(data, task)
    if images is not None:
        ls = ls.subset([str(p) for p in images])
    base_file = ensure_base(ls, store)
    if model is not None:
        add_predictions(ls, model, progress=progress)
    return ls, base_file


def export_label_studio(
    data: Any,
    out: str | os.PathLike,
    *,
    model: Any = None,
    task: str | None = None,
    images: Sequence[str] | None = None,
    document_root: str | os.PathLike | None = None,
    preannotate: str | None = None,
    progress: bool = True,
) -> ExportResult:
    """Label Studio tasks for ``data`` (a dataset, version, detection dataset or LabelSet),
    pre-annotated by ``model``, with the matching config; ``images`` limits them to those paths."""
    ls, base_file = prepare(data, model=model, task=task, images=images, progress=progress)
    meta = labelstudio.write_export(ls, out, base_file=base_file, document_root=document_root, preannotate=preannotate)
    return ExportResult(Path(out), meta, {k: Path(out) / v for k, v in meta.files.items()})


def export_cvat(
    data: Any,
    out: str | os.PathLike,
    *,
    model: Any = None,
    task: str | None = None,
    images: Sequence[str] | None = None,
    fmt: str = "cvat",
    preannotate: str = "auto",
    progress: bool = True,
) -> ExportResult:
    """CVAT annotations for ``data``: ``fmt`` ``cvat`` (CVAT for images 1.1 XML), ``coco``
    (COCO 1.0) or ``yolo`` (YOLO 1.1). ``preannotate``: ``labels``, ``model`` or ``auto`` (an
    image's labels when it has any, else the model's predictions, marked ``source="auto"``)."""
    ls, base_file = prepare(data, model=model, task=task, images=images, progress=progress)
    if fmt == "cvat":
        meta = cvat.write_export(ls, out, base_file=base_file, preannotate=preannotate)
    else:
        meta = cvat_formats.write_export(ls, out, fmt, base_file=base_file, preannotate=preannotate)
    return ExportResult(Path(out), meta, {k: Path(out) / v for k, v in meta.files.items()})


def _meta_near(path: str | os.PathLike) -> LabelExport | None:
    p = Path(path)
    return read_export_meta(p if p.is_dir() else p.parent)


def import_label_studio(
    export: str | os.PathLike,
    *,
    base: Any = None,
    meta: LabelExport | None = None,
    store: str | os.PathLike | None = None,
    notes: str | None = None,
) -> ImportResult:
    """Read Label Studio's JSON export: annotated tasks become a new version of the exported
    one (``base`` overrides it). Malformed exports raise a DatasetError naming every bad task
    and change nothing."""
    meta = meta or _meta_near(export)
    base_ls, base_obj = load_base(meta, base, _task_of_export(export, meta))
    reviewed, warnings, skipped = labelstudio.read_export(export, base_ls, meta)
    return apply_corrections(
        reviewed,
        base_ls,
        base_obj,
        tool="label-studio",
        not_annotated=skipped,
        warnings=warnings,
        store=store,
        notes=notes,
    )


def _task_of_export(export: str | os.PathLike, meta: LabelExport | None) -> str | None:
    if meta is not None:
        return meta.task
    tasks = labelstudio.read_tasks_json(export)
    types = {str(r.get("type")) for t in tasks for a in t.get("annotations") or [] for r in a.get("result") or []}
    if types & {"rectanglelabels"}:
        return "detection"
    if types & {"polygonlabels", "brushlabels"}:
        return "segmentation"
    return "classification"


def import_cvat(
    export: str | os.PathLike,
    *,
    base: Any = None,
    fmt: str | None = None,
    store: str | os.PathLike | None = None,
    notes: str | None = None,
) -> ImportResult:
    """Read a CVAT export (annotations.xml, a COCO 1.0 / YOLO 1.1 folder or zip): every image
    in it is taken as reviewed and becomes part of a new version of ``base``."""
    meta = _meta_near(export)
    fmt = fmt or cvat_formats.detect(export)
    task = meta.task if meta else None
    if task is None and fmt != "cvat":
        task = "detection"
    names = meta.paths if meta else {}
    if fmt == "cvat":
        folder, tmp = cvat_formats.unpacked(Path(export))
        try:
            xml = folder / cvat.XML_NAME if folder.is_dir() else folder
            base_ls, base_obj = load_base(meta, base, task or cvat.task_of(xml))
            reviewed, warnings = cvat.read_export(xml, base_ls, names)
        finally:
            if tmp is not None:
                tmp.cleanup()
    else:
        base_ls, base_obj = load_base(meta, base, task)
        reviewed, warnings = cvat_formats.read_export(export, base_ls, fmt, names)
    return apply_corrections(
        reviewed,
        base_ls,
        base_obj,
        tool=f"cvat-{fmt}" if fmt != "cvat" else "cvat",
        warnings=warnings,
        store=store,
        notes=notes,
    )


# -- Label Studio server -------------------------------------------------------------------------------
def push_label_studio(
    export_dir: str | os.PathLike, url: str, token: str, *, title: str | None = None, project: int | None = None
) -> PushResult:
    """Create a project from an export folder's config (or reuse ``project``), add the dataset
    root as local-files storage, import the tasks with their predictions and make the project
    pre-label with the export's chosen predictions. Writes ``pushed.json`` beside the tasks."""
    d = Path(export_dir)
    meta = read_export_meta(d)
    if meta is None or meta.tool != "label-studio":
        raise DatasetError(
            f"{d}: not a Label Studio export folder (no visiontune-export.json from export_label_studio)"
        )
    client = LabelStudio(url, token)
    tasks = labelstudio.read_tasks_json(d / meta.files["tasks"])
    config = (d / meta.files["config"]).read_text(encoding="utf-8")
    if project is None:
        name = title or f"visiontune {meta.task} {meta.base_version or ''}".strip()
        project = int(client.create_project(name, config)["id"])
        client.add_local_storage(project, meta.root)
    before = {t["id"] for t in client.tasks(project)}
    client.import_tasks(project, tasks)
    shown = f"labels {meta.base_version}" if meta.preannotate == "labels" else (meta.model_version or "")
    if shown:
        client.update_project(project, model_version=shown, show_collab_predictions=True)
    new = [t for t in client.tasks(project) if t["id"] not in before]
    ids = {str(t["data"].get("vt_path")): int(t["id"]) for t in new}
    res = PushResult(url.rstrip("/"), project, ids, d)
    write_text(d / "pushed.json", json.dumps(res.to_dict(), indent=1) + "\n")
    return res


def pull_label_studio(
    url: str,
    token: str,
    project: int,
    export_dir: str | os.PathLike,
    *,
    base: Any = None,
    store: str | os.PathLike | None = None,
    notes: str | None = None,
) -> ImportResult:
    """Download the project's JSON export into ``export_dir`` and import it."""
    d = Path(export_dir)
    tasks = LabelStudio(url, token).export(project)
    target = d / f"label-studio-export-{int(project)}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    write_text(target, json.dumps(tasks, indent=1) + "\n")
    return import_label_studio(target, base=base, store=store, notes=notes)
