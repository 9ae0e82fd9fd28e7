"""Optional FiftyOne export: the audited split with ground truth, predictions, confidences and
mistake scores, plus a saved view of the confident mistakes."""

from __future__ import annotations

import pandas as pd

from visiontune.errors import MissingDependencyError, VisiontuneError, require


class FiftyOneUnavailable(VisiontuneError):
    """FiftyOne is not installed, or its database cannot start on this machine."""


def export_fiftyone(
    table: pd.DataFrame,
    name: str,
    *,
    label_quality: pd.Series | None = None,
    overwrite: bool = True,
    launch: bool = False,
):
    """Create (or replace) the FiftyOne dataset `name` and return it.

    Fields: `ground_truth` and `predictions` (Classification, with confidence), `loss`,
    `mistake_score`, `correct` and, when given, `label_quality` (lower = more likely mislabelled).
    The saved view `confident_mistakes` holds the wrong predictions, most confident first.
    Raises FiftyOneUnavailable with the reason when FiftyOne or its database cannot be used.
    """
    try:
        fo = require("fiftyone", "fiftyone", "Exporting an audit to FiftyOne")
    except MissingDependencyError as e:
        raise FiftyOneUnavailable(str(e)) from e
    from fiftyone import ViewField as F

    try:
        if overwrite and name in fo.list_datasets():
            fo.delete_dataset(name)
        ds = fo.Dataset(name, persistent=True)
    except Exception as e:  # FiftyOneConfigError / ServerSelectionTimeoutError / OSError ...
        raise FiftyOneUnavailable(
            f"FiftyOne is installed but its database could not start ({type(e).__name__}: {e}). "
            "Set FIFTYONE_DATABASE_URI to a running MongoDB, or install a fiftyone-db build for "
            "this OS; the rest of the audit is unaffected."
        ) from e
    quality = label_quality.to_dict() if label_quality is not None else {}
    samples = []
    for row in table.to_dict("records"):
        s = fo.Sample(filepath=row["path"])
        s["ground_truth"] = fo.Classification(label=row["label"])
        s["predictions"] = fo.Classification(label=row["pred"], confidence=float(row["confidence"]))
        s["loss"] = float(row["loss"])
        s["mistake_score"] = float(row["mistake_score"])
        s["correct"] = bool(row["correct"])
        if row["path"] in quality:
            s["label_quality"] = float(quality[row["path"]])
        samples.append(s)
    ds.add_samples(samples)
    view = ds.match(F("correct") == False).sort_by("mistake_score", reverse=True)  # noqa: E712
    ds.save_view("confident_mistakes", view)
    if launch:
        fo.launch_app(ds)
    return ds
