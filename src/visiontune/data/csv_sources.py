"""CSV label files: a header ``path,label[,split]``, paths relative to the CSV's folder (or ``root``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from visiontune.data.samples import SPLIT_ALIASES, Collected, Sample, raise_problems, rel_path, sort_classes
from visiontune.errors import DatasetError


def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(lower-cased header, [(line number, row)]) of a CSV; blank rows skipped, errors name the line."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: empty file; expected a header line 'path,label[,split]'") from None
        except csv.Error as e:
            raise DatasetError(f"{path}, line 1: {e}") from None
        rows: list[tuple[int, list[str]]] = []
        try:
            for row in reader:
                if any(v.strip() for v in row):
                    rows.append((reader.line_num, row))
        except csv.Error as e:
            raise DatasetError(f"{path}, line {reader.line_num}: {e}") from None
    return [h.strip().lower() for h in header], rows


def collect_csv(
    path: Path, base: Path | None, allow_split: bool = True, forced_split: str | None = None
) -> list[Sample]:
    """Samples of a ``path,label[,split]`` CSV (paths relative to ``base``, default its folder)."""
    header, rows = read_csv_rows(path)
    if "path" not in header or "label" not in header:
        raise DatasetError(
            f"{path}, line 1: header must name the columns 'path' and 'label' (and optionally 'split'); found {header}"
        )
    ip, il = header.index("path"), header.index("label")
    isp = header.index("split") if (allow_split and "split" in header) else None
    base = (base or path.parent).resolve()
    base_s = str(base)
    problems: list[str] = []
    samples: list[Sample] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        col = [v.strip() for v in row] + [""] * (len(header) - len(row))
        p, lab = col[ip], col[il]
        where = f"{path}, line {line}"
        if not p:
            problems.append(f"{where}: empty path")
            continue
        if not lab:
            problems.append(f"{where}: empty label for {p}")
            continue
        split = forced_split
        if isp is not None:
            raw = col[isp]
            split = SPLIT_ALIASES.get(raw.lower())
            if split is None:
                problems.append(f"{where}: unknown split {raw!r} (use train, val or test)")
                continue
        absp = os.path.normpath(os.path.join(base_s, p))  # an absolute p stays as it is
        if not os.path.isfile(absp):
            problems.append(f"{where}: file not found: {absp}")
            continue
        if absp in first_line:
            problems.append(f"{where}: {p} is listed again (first on line {first_line[absp]})")
            continue
        first_line[absp] = line
        samples.append(Sample(rel_path(absp, base_s), absp, lab, split))
    raise_problems(str(path), problems)
    if not samples:
        raise DatasetError(f"{path}: no samples (only a header?)")
    return samples


def collect_csv_source(path: Path, root: Path | None) -> Collected:
    """A CSV as a whole source (its split column, if any, gives the splits)."""
    samples = collect_csv(path, root)
    base = (root or path.parent).resolve()
    has_split = any(s.split is not None for s in samples)
    return Collected(
        str(path.resolve()),
        "csv",
        base,
        samples,
        sort_classes({s.label for s in samples}),
        info={"splits_from": "CSV split column" if has_split else "seeded stratified split"},
    )
