"""visiontune.label — the label loop: Label Studio and CVAT round trips with model
pre-annotations, corrections as new dataset versions, and which images to label next.

    import visiontune.label as vl
    ex = vl.export_label_studio("data/pets", "ls/", model="runs/exp1")
    res = vl.import_label_studio("ls/export.json")          # a new version + its diff
    batch = vl.select("runs/exp1", "pool/", budget=100, labelled="data/pets")

Names are resolved on first use, so ``import visiontune.label`` stays cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Shape": "visiontune.label.core",
    "Item": "visiontune.label.core",
    "LabelSet": "visiontune.label.core",
    "LabelExport": "visiontune.label.core",
    "from_manifest": "visiontune.label.sources",
    "from_classification": "visiontune.label.sources",
    "from_detection": "visiontune.label.sources",
    "from_yolo_seg": "visiontune.label.sources",
    "from_masks": "visiontune.label.sources",
    "from_images": "visiontune.label.sources",
    "add_predictions": "visiontune.label.predict",
    "export_label_studio": "visiontune.label.api",
    "import_label_studio": "visiontune.label.api",
    "push_label_studio": "visiontune.label.api",
    "pull_label_studio": "visiontune.label.api",
    "export_cvat": "visiontune.label.api",
    "import_cvat": "visiontune.label.api",
    "ExportResult": "visiontune.label.api",
    "ImportResult": "visiontune.label.corrections",
    "AnnotationVersion": "visiontune.label.versions",
    "diff_annotations": "visiontune.label.versions",
    "snapshot_annotations": "visiontune.label.versions",
    "LabelStudio": "visiontune.label.ls_server",
    "LocalServer": "visiontune.label.ls_server",
    "select": "visiontune.label.select",
    "SelectionResult": "visiontune.label.select",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'visiontune.label' has no attribute {name!r}")
