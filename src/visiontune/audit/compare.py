"""`compare_versions()`: the same model on two versions of the data, to see how much of its
error was label noise. Images are matched by content (sha256)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontune._atomic import write_text
from visiontune.audit._inputs import SplitData, resolve_data, resolve_model
from visiontune.audit.result import VersionComparison
from visiontune.audit.steps import outputs_for, probs_for
from visiontune.errors import DatasetError


def compare_versions(
    model: Any,
    data_a: Any,
    data_b: Any,
    split: str = "val",
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    out: str | Path | None = None,
    quiet: bool = True,
) -> VersionComparison:
    """Evaluate `model` on the same split of two data versions and report the error difference.

    Images are matched by content (sha256), so a relabelled copy is compared image by image, and
    the embedding cache makes the second version nearly free. With `out`, writes
    `version_comparison.json` there.
    """
    src = resolve_model(model)
    a, b = resolve_data(data_a), resolve_data(data_b)
    if a.classes != b.classes:
        raise DatasetError(f"the two versions have different classes: {a.classes} vs {b.classes}")
    res = {}
    for tag, d in (("a", a), ("b", b)):
        o = outputs_for(src, d, [split], cache_dir, batch_size, 0, quiet)[split]
        probs = probs_for(src, o, d.classes)
        keep = np.flatnonzero(o.ok)
        sd: SplitData = d.get(split)
        res[tag] = pd.DataFrame(
            {"sha256": [o.sha256[i] for i in keep], "label": sd.labels[keep], "pred": probs.argmax(1)}
        )
    ra, rb = res["a"], res["b"]
    acc = {k: float((r["label"] == r["pred"]).mean()) if len(r) else float("nan") for k, r in res.items()}
    both = ra.drop_duplicates("sha256").merge(rb.drop_duplicates("sha256"), on="sha256", suffixes=("_a", "_b"))
    changed = both[both["label_a"] != both["label_b"]]
    cmp = VersionComparison(
        split=split,
        accuracy_a=acc["a"],
        accuracy_b=acc["b"],
        n_a=len(ra),
        n_b=len(rb),
        n_relabelled=int(len(changed)),
        errors_a_fixed_by_relabel=int(
            ((changed["pred_a"] != changed["label_a"]) & (changed["pred_b"] == changed["label_b"])).sum()
        ),
        errors_b_new_by_relabel=int(
            ((changed["pred_a"] == changed["label_a"]) & (changed["pred_b"] != changed["label_b"])).sum()
        ),
        version_a=a.version,
        version_b=b.version,
    )
    if out is not None:
        write_text(Path(out) / "version_comparison.json", json.dumps(cmp.to_dict(), indent=2))
    return cmp
