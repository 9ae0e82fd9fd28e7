"""Label Studio tasks for an audit's suspected label errors, so its report can link each one.

The tasks (written under ``<audit>/label/``) show the image with its current label, the model's
prediction pre-selected (with its probability) and the current label as a second prediction set;
importing Label Studio's export of them makes a new version of the audited dataset.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from visiontune.label.api import export_label_studio
from visiontune.label.core import Shape
from visiontune.label.sources import from_classification


def write_issue_tasks(
    issues: pd.DataFrame,
    predictions: pd.DataFrame,
    data: Any,
    out: str | os.PathLike,
    model_version: str | None = None,
) -> dict[str, str]:
    """Tasks for the flagged rows of ``issues`` (columns ``path``, ``is_issue``); the model's
    prediction (``pred``, ``confidence`` in ``predictions``) is the pre-annotation. Returns
    ``{image path: link}`` with links relative to the audit folder (``label/tasks.json#task-N``)."""
    flagged = [str(p) for p in issues.loc[issues["is_issue"].astype(bool), "path"]]
    if not flagged or not isinstance(data, (str, os.PathLike)) or str(data).startswith("torchvision:"):
        return {}  # in-memory datasets have no files for a label tool to show
    ls = from_classification(data)
    by_file = {os.path.abspath(it.file): it for it in ls.items}
    chosen = [by_file[os.path.abspath(p)] for p in flagged if os.path.abspath(p) in by_file]
    batch = ls.subset([it.path for it in chosen])
    batch.model_version = model_version or "audit"
    pred = predictions.set_index("path")
    for it, f in zip(batch.items, [p for p in flagged if os.path.abspath(p) in by_file]):
        if f in pred.index and str(pred.at[f, "pred"]) in batch.classes:
            it.predictions = [Shape(str(pred.at[f, "pred"]), "tag", score=float(pred.at[f, "confidence"]))]
    export_label_studio(batch, out, preannotate="model", progress=False)
    rel = os.path.basename(os.fspath(out))
    return {f: f"{rel}/tasks.json#task-{k}" for k, f in enumerate(p for p in flagged if os.path.abspath(p) in by_file)}
