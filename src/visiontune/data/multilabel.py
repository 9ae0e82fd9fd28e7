"""Multi-label classification data: several labels per image.

Sources (``load_multilabel``):

* a CSV with a header ``path,labels[,split]`` — ``labels`` separated by ``;`` (or ``|``), empty
  for an image with none of the labels; paths relative to the CSV's folder (or ``root``);
* a folder of label folders, ``<root>/[train|val|test/]<label>/<image>`` — the same file name
  (path inside the label folder) under several label folders is one image with all of those
  labels (copies or links; the first one found is read).

Without a split, val is a seeded draw (``val_fraction``, ranked by ``sha256(seed:path)``, as the
single-label split does). ``labels_from_masks`` derives image-level labels from semantic masks
(a class is present when it covers at least ``min_fraction`` of the pixels).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

from visiontune._atomic import write_text
from visiontune.data.dataset import SPLIT_NAMES, ImageDataset, Splits
from visiontune.data.decode import is_image_file, read_image
from visiontune.data.hashing import hash_files
from visiontune.data.manifest import Entry, Manifest
from visiontune.data.samples import SPLIT_ALIASES
from visiontune.data.splits import stratified_split
from visiontune.errors import DatasetError, ImageDecodeError

SEPARATORS = (";", "|")


class MultiLabelDataset(ImageDataset):
    """``ds[i] -> (transform(image), multi-hot float tensor of len(classes))``; ``targets_matrix``
    is the (N, C) 0/1 matrix. An undecodable file is skipped as in `ImageDataset` (the next
    decodable sample is returned with its own labels)."""

    def __init__(self, samples: Sequence[tuple[str, Sequence[str]]], classes: Sequence[str], **kw: Any):
        super().__init__([(p, 0) for p, _ in samples], classes or ["_"], **kw)
        self.classes = [str(c) for c in classes]
        idx = {c: i for i, c in enumerate(self.classes)}
        t = np.zeros((len(samples), len(self.classes)), dtype=np.float32)
        for i, (p, labs) in enumerate(samples):
            for lab in labs:
                if lab not in idx:
                    raise DatasetError(f"sample {i} ({p}): label {lab!r} is not one of the labels {self.classes}")
                t[i, idx[lab]] = 1.0
        t.setflags(write=False)
        self._targets = t

    @property
    def targets_matrix(self) -> np.ndarray:
        """(N, C) float32 0/1, read-only."""
        return self._targets

    def subset(self, indices: Sequence[int] | np.ndarray) -> MultiLabelDataset:
        """A view holding only ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        new = cast(MultiLabelDataset, super().subset(idx))  # the view keeps the class
        t = self._targets[idx]
        t.setflags(write=False)
        new._targets = t
        return new

    def class_counts(self) -> dict[str, int]:
        """Images carrying each label."""
        return {c: int(k) for c, k in zip(self.classes, self._targets.sum(0))}

    def label_sets(self) -> list[list[str]]:
        """The labels of every sample."""
        return [[self.classes[j] for j in np.flatnonzero(row)] for row in self._targets]

    def __getitem__(self, index: int):
        n = len(self._paths)
        index = index + n if index < 0 else index
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        loader = self.loader or read_image
        for step in range(n):
            i = (index + step) % n
            path = self._paths[i]
            if path in self._skips.entries:
                continue
            try:
                img = loader(path)
            except ImageDecodeError as e:
                self._skips.add(path, str(e))
                continue
            if self.transform is not None:
                img = self.transform(img)
            return img, torch.from_numpy(self._targets[i].copy())
        raise DatasetError(f"none of the {n} images of this dataset can be decoded; see .skipped")

    def __repr__(self) -> str:
        return f"MultiLabelDataset({len(self)} samples, {len(self.classes)} labels)"


# -- sources -------------------------------------------------------------------------------------
def _split_labels(raw: str) -> list[str]:
    for sep in SEPARATORS:
        if sep in raw:
            return [x.strip() for x in raw.split(sep) if x.strip()]
    return [raw.strip()] if raw.strip() else []


def _collect_csv(path: Path, root: Path | None) -> list[tuple[str, str, list[str], str | None]]:
    import csv

    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    base = (root or path.parent).resolve()
    out, problems = [], []
    seen: dict[str, int] = {}
    with f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if "path" not in header or "labels" not in header:
            raise DatasetError(
                f"{path}, line 1: a multi-label CSV needs the columns 'path' and 'labels' "
                f"(labels separated by ';', optional 'split'); found {header}"
            )
        ip, il = header.index("path"), header.index("labels")
        isp = header.index("split") if "split" in header else None
        for row in reader:
            if not any(v.strip() for v in row):
                continue
            col = [v.strip() for v in row] + [""] * (len(header) - len(row))
            where = f"{path}, line {reader.line_num}"
            if not col[ip]:
                problems.append(f"{where}: empty path")
                continue
            split = None
            if isp is not None:
                split = SPLIT_ALIASES.get(col[isp].lower())
                if split is None:
                    problems.append(f"{where}: unknown split {col[isp]!r} (use train, val or test)")
                    continue
            absp = os.path.normpath(os.path.join(str(base), col[ip]))
            if not os.path.isfile(absp):
                problems.append(f"{where}: file not found: {absp}")
                continue
            if absp in seen:
                problems.append(f"{where}: {col[ip]} is listed again (first on line {seen[absp]})")
                continue
            seen[absp] = reader.line_num
            out.append((os.path.relpath(absp, base).replace(os.sep, "/"), absp, _split_labels(col[il]), split))
    if problems:
        listed = "\n  ".join(problems[:12])
        raise DatasetError(f"{path}: {len(problems)} problem(s):\n  {listed}")
    if not out:
        raise DatasetError(f"{path}: no samples (only a header?)")
    return out


def _collect_label_folders(root: Path) -> list[tuple[str, str, list[str], str | None]]:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    splits = {SPLIT_ALIASES[d.name.lower()]: d for d in dirs if d.name.lower() in SPLIT_ALIASES}
    parts = [(s, splits[s]) for s in SPLIT_NAMES if s in splits] if splits else [(None, root)]
    out = []
    for split, folder in parts:
        images: dict[str, tuple[str, list[str]]] = {}
        for ldir in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
            for dirpath, dirnames, files in os.walk(ldir, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(files):
                    if not is_image_file(name):
                        continue
                    full = os.path.join(dirpath, name)
                    key = os.path.relpath(full, ldir).replace(os.sep, "/")
                    first, labs = images.setdefault(key, (full, []))
                    labs.append(ldir.name)
        for key, (full, labs) in sorted(images.items()):
            rel = key if split is None else f"{folder.name}/{key}"
            out.append((rel, full, sorted(set(labs)), split))
    if not out:
        raise DatasetError(f"{root}: no images found; expected {root}/[train/]<label>/<image>")
    return out


def load_multilabel(
    source: str | os.PathLike, root: str | os.PathLike | None = None, val_fraction: float = 0.2, seed: int = 0
) -> Splits:
    """Multi-label `Splits` (datasets are :class:`MultiLabelDataset`) from a CSV
    ``path,labels[,split]`` or a folder of label folders; see the module docstring."""
    p = Path(source).expanduser()
    if p.is_file() and p.suffix.lower() == ".csv":
        rows, base, kind = _collect_csv(p, Path(root) if root else None), (Path(root) if root else p.parent), "csv"
    elif p.is_dir():
        rows, base, kind = _collect_label_folders(p.resolve()), p.resolve(), "label-folders"
    else:
        raise DatasetError(
            f"{source}: a multi-label source is a CSV (path,labels[,split]) or a folder of label folders"
        )
    classes = sorted({lab for _, _, labs, _ in rows for lab in labs})
    if not classes:
        raise DatasetError(f"{source}: no labels at all")
    explicit = {s for *_, s in rows}
    if None in explicit and len(explicit) > 1:
        raise DatasetError(f"{source}: some samples have a split and others none; give all a split or none")
    groups: dict[str, list] = {n: [] for n in SPLIT_NAMES}
    if explicit == {None} or not any(s == "val" for *_, s in rows):
        pool = [r for r in rows if r[3] in (None, "train")]
        groups["test"] = [r for r in rows if r[3] == "test"]
        tr, va = stratified_split([r[0] for r in pool], ["all"] * len(pool), val_fraction, seed)
        groups["train"], groups["val"] = [pool[i] for i in tr], [pool[i] for i in va]
    else:
        for r in rows:
            assert r[3] is not None  # every sample has a split here (checked above)
            groups[r[3]].append(r)

    def ds(split: str) -> MultiLabelDataset | None:
        items = groups[split]
        return MultiLabelDataset([(r[1], r[2]) for r in items], classes) if items else None

    def manifest() -> Manifest:
        hashes = hash_files([r[1] for r in rows])
        split_of = {r[1]: s for s in SPLIT_NAMES for r in groups[s]}
        entries = [Entry(r[0], d, size, ";".join(r[2]), split_of.get(r[1])) for r, (d, size) in zip(rows, hashes)]
        return Manifest(entries=entries, classes=classes, root=str(base.resolve()), source=str(p.resolve()))

    info = {"task": "multilabel", "kind": kind, "val_fraction": val_fraction, "seed": seed}
    return Splits(ds("train"), ds("val"), ds("test"), classes, str(p.resolve()), info, _manifest_fn=manifest)


def labels_from_masks(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    classes: Sequence[str],
    *,
    min_fraction: float = 0.005,
    ignore: Sequence[int] = (),
) -> list[tuple[str, list[str]]]:
    """``(image path, present classes)`` for every image with a same-stem mask: class ``k`` is
    present when pixels of value ``k`` cover at least ``min_fraction`` of the non-ignored pixels."""
    images, masks = Path(images), Path(masks)
    by_stem = {m.stem: m for m in masks.iterdir() if m.suffix.lower() == ".png"}
    out = []
    for img in sorted(i for i in images.iterdir() if is_image_file(i.name)):
        m = by_stem.get(img.stem)
        if m is None:
            raise DatasetError(f"{img}: no mask {img.stem}.png in {masks}")
        a = np.asarray(Image.open(m))
        if a.ndim != 2:
            raise DatasetError(f"{m}: expected a single-channel mask of class indices, got shape {a.shape}")
        keep = ~np.isin(a, list(ignore)) if ignore else np.ones(a.shape, bool)
        counts = np.bincount(a[keep].ravel(), minlength=len(classes))[: len(classes)]
        frac = counts / max(int(keep.sum()), 1)
        out.append((str(img), [classes[k] for k in np.flatnonzero(frac >= min_fraction).tolist()]))
    return out


def write_multilabel_csv(path: str | os.PathLike, rows: Sequence[tuple[str, Sequence[str], str | None]]) -> Path:
    """Write ``(path, labels, split)`` rows as a multi-label CSV (atomically); paths are written
    as given (absolute paths stay absolute)."""
    lines = ["path,labels,split"] + [f"{p},{';'.join(labs)},{split or ''}" for p, labs, split in rows]
    if any(s is None for *_, s in rows):
        lines = ["path,labels"] + [f"{p},{';'.join(labs)}" for p, labs, _ in rows]
    return write_text(path, "\n".join(lines) + "\n")
