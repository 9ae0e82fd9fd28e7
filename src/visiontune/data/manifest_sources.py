"""A dataset manifest (a saved version) as a source: its entries, checked against the files."""

from __future__ import annotations

import os
from pathlib import Path

from visiontune.data.manifest import Manifest
from visiontune.data.samples import SPLIT_ALIASES, Collected, Sample, raise_problems
from visiontune.errors import DatasetError


def collect_manifest(m: Manifest) -> Collected:
    """The samples of a manifest; a missing file or one whose size changed is an error."""
    if m.root is None:
        raise DatasetError(
            f"manifest {m.version} has no root folder (an in-memory dataset): load its source {m.source!r} instead"
        )
    root = Path(m.root)
    problems: list[str] = []
    samples: list[Sample] = []
    for e in m.entries:
        full = m.abspath(e)
        try:
            size = os.path.getsize(full)
        except OSError:
            problems.append(f"{e.path}: file not found under {root}")
            continue
        if size != e.size:
            problems.append(f"{e.path}: size {size} differs from the manifest's {e.size} (file changed)")
            continue
        split = e.split
        if split is None and "/" in e.path:  # e.g. a hand-made manifest of a train/val tree
            split = SPLIT_ALIASES.get(e.path.split("/", 1)[0].lower())
        samples.append(Sample(e.path, os.path.abspath(full), e.label, split))
    raise_problems(f"dataset version {m.version} ({m.file or m.root})", problems)
    has_split = any(s.split is not None for s in samples)
    return Collected(
        str(m.file or m.version),
        "manifest",
        root,
        samples,
        list(m.classes),
        manifest=m,
        info={
            "splits_from": "manifest paths" if has_split else "seeded stratified split",
            "version": m.version,
            "parent": m.parent,
        },
    )
