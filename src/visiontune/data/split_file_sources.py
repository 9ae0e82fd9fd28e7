"""Explicit split files: ``split_files={"train": "train.txt", "val": "val.txt"}`` under a dataset
folder — text files of image paths (label = the parent folder's name) or ``path,label`` CSVs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from visiontune.data.csv_sources import collect_csv
from visiontune.data.samples import SPLIT_ALIASES, Collected, Sample, raise_problems, rel_path, sort_classes
from visiontune.errors import ConfigError, DatasetError


def collect_split_files(folder: Path, split_files: Mapping[str, str | os.PathLike]) -> Collected:
    """The samples every split file lists; a file listed in two splits is an error."""
    root = folder.resolve()
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    for key, fname in split_files.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None:
            raise ConfigError(f"split_files: unknown split name {key!r} (use train, val or test)")
        fpath = Path(fname) if os.path.isabs(fname) else root / fname
        if not fpath.is_file():
            raise DatasetError(f"split_files[{key!r}]: {fpath} not found")
        if fpath.suffix.lower() == ".csv":
            part = collect_csv(fpath, root, allow_split=False, forced_split=split)
        else:
            part = []
            problems = []
            for line_no, raw in enumerate(fpath.read_text(encoding="utf-8-sig").splitlines(), 1):
                rel = raw.strip()
                if not rel or rel.startswith("#"):
                    continue
                full = Path(rel) if os.path.isabs(rel) else root / rel
                if not full.is_file():
                    problems.append(f"{fpath}, line {line_no}: file not found: {full}")
                    continue
                label = full.parent.name
                if full.parent.resolve() == root:
                    problems.append(
                        f"{fpath}, line {line_no}: {rel} has no class folder "
                        "(the label is the name of the image's parent folder)"
                    )
                    continue
                absp = os.path.abspath(full)
                part.append(Sample(rel_path(absp, root), absp, label, split))
            raise_problems(str(fpath), problems)
        for s in part:
            if s.path in seen:
                raise DatasetError(f"{s.rel} is listed in both the {seen[s.path]} and the {s.split} split files")
            seen[s.path] = s.split or ""
        samples += part
    if not samples:
        raise DatasetError(f"split_files {dict(split_files)}: no samples listed")
    return Collected(
        str(root),
        "split-files",
        root,
        samples,
        sort_classes({s.label for s in samples}),
        info={"splits_from": "split files"},
    )
