"""``load_classification``: every supported classification source becomes ``Splits``.

Sources: an image folder with ``train/`` ``val/`` [``test/``] subfolders of class folders; a
single folder of class folders (seeded stratified train/val split); a CSV ``path,label[,split]``;
explicit split files; a dataset manifest JSON or version id; ``"torchvision:<Name>"``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune.data.dataset import SPLIT_NAMES, ImageDataset, Splits
from visiontune.data.decode import is_image_file
from visiontune.data.hashing import hash_files
from visiontune.data.manifest import Entry, Manifest, find_manifest, looks_like_version
from visiontune.errors import ConfigError, DatasetError

#: Folder / CSV split names and what they mean (compared lower-cased).
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

_MAX_LISTED = 12


class DatasetWarning(UserWarning):
    """Something in a dataset looks wrong but loading can go on (empty class folder, a class
    with no training images, ignored files)."""


def _warn(msg: str) -> None:
    warnings.warn(msg, DatasetWarning, stacklevel=3)


def _raise_problems(what: str, problems: list[str]) -> None:
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DatasetError(f"{what}: {len(problems)} problem(s):\n  {listed}{more}")


@dataclass
class _Sample:
    rel: str  # identity inside the dataset: path relative to root ('/'-separated) or id
    path: str  # what the loader reads (absolute path, or the id for in-memory data)
    label: str
    split: str | None  # explicit split from the source, None when it must be drawn


@dataclass
class _Collected:
    source: str
    kind: str
    root: Path | None
    samples: list[_Sample]
    classes: list[str]
    loader: Callable[[str], Any] | None = None
    hasher: Callable[[list[_Sample]], list[tuple[str, int]]] | None = None
    manifest: Manifest | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _sort_classes(labels: set[str]) -> list[str]:
    """Sorted class names; all-integer names sort numerically ('2' before '10')."""
    if labels and all(s.lstrip("-").isdigit() for s in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _rel(path: str, root: Path | str) -> str:
    """The identity of a file in a manifest: ``path`` relative to ``root`` ('/'-separated) when it
    lies under ``root``, else the absolute path itself (``path`` and ``root`` absolute)."""
    prefix = os.path.join(os.fspath(root), "")
    r = path[len(prefix) :] if path.startswith(prefix) else path
    return r.replace(os.sep, "/") if os.sep != "/" else r


# -- stratified split ------------------------------------------------------------------------
def stratified_split(
    keys: list[str], labels: list[str], val_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Seeded stratified split of sample indices into (train, val).

    Within each class the samples are ranked by ``sha256(f"{seed}:{key}")`` and the first
    ``round(n * val_fraction)`` go to val (at least 1 and at most n-1 when a class has two or more
    samples; a class with a single sample stays in train). The result depends only on the keys,
    labels, fraction and seed — not on the order of the input, the machine or the library
    versions — and adding a file to one class does not reshuffle the others.
    """
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    train: list[int] = []
    val: list[int] = []
    for lab in sorted(by_class):
        idx = sorted(by_class[lab], key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).hexdigest())
        n = len(idx)
        k = int(round(n * val_fraction))
        if val_fraction > 0 and n >= 2:
            k = min(max(k, 1), n - 1)
        elif n < 2:
            k = 0
        val += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(val)


# -- image folders -----------------------------------------------------------------------------
def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_class_folders(folder: Path, root: Path, split: str | None) -> list[_Sample]:
    """Images under ``folder/<class>/**`` (sorted, hidden entries skipped)."""
    samples: list[_Sample] = []
    loose = [p.name for p in folder.iterdir() if p.is_file() and is_image_file(p)]
    if loose:
        _warn(
            f"{folder}: {len(loose)} image(s) directly in the folder are ignored "
            f"(expected {folder}/<class>/<image>), e.g. {loose[0]}"
        )
    for cdir in _visible_dirs(folder):
        cls = cdir.name
        found = 0
        for dirpath, dirnames, filenames in os.walk(cdir, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if is_image_file(name):
                    full = os.path.join(dirpath, name)
                    samples.append(_Sample(_rel(full, root), full, cls, split))
                    found += 1
        if found == 0:
            _warn(f"{cdir}: empty class folder (no {'/'.join(sorted(_exts()))} images)")
    return samples


def _exts() -> set[str]:
    from visiontune.data.decode import IMAGE_EXTENSIONS

    return {e.lstrip(".") for e in IMAGE_EXTENSIONS}


def _collect_folder(folder: Path) -> _Collected:
    root = folder.resolve()
    subdirs = _visible_dirs(root)
    split_dirs: dict[str, Path] = {}
    for d in subdirs:
        split = SPLIT_ALIASES.get(d.name.lower())
        if split is None:
            continue
        if split in split_dirs:
            raise DatasetError(
                f"{root}: both {split_dirs[split].name}/ and {d.name}/ hold the {split} split; keep one of them"
            )
        split_dirs[split] = d
    if split_dirs and "train" not in split_dirs:
        names = ", ".join(f"{d.name}/" for d in split_dirs.values())
        raise DatasetError(
            f"{root}: has {names} but no train/ folder. Use train/ val/ [test/] subfolders of "
            "class folders, or a single folder of class folders (no split names among them)"
        )
    samples: list[_Sample] = []
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs.values()]
        if others:
            _warn(f"{root}: folders {others} are not train/val/test and are ignored")
        for split in SPLIT_NAMES:
            if split in split_dirs:
                samples += _scan_class_folders(split_dirs[split], root, split)
        kind = "image-folder-splits"
    else:
        samples = _scan_class_folders(root, root, None)
        kind = "image-folder"
    if not samples:
        raise DatasetError(
            f"{root}: no images found. Expected {root}/<class>/<image> or "
            f"{root}/train/<class>/<image> (extensions: {', '.join(sorted(_exts()))})"
        )
    classes = _sort_classes({s.label for s in samples})
    return _Collected(
        str(root),
        kind,
        root,
        samples,
        classes,
        info={"splits_from": "folders" if split_dirs else "seeded stratified split"},
    )


# -- CSV / split files -------------------------------------------------------------------------
def _read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
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


def _collect_csv(
    path: Path, base: Path | None, allow_split: bool = True, forced_split: str | None = None
) -> list[_Sample]:
    """Samples of a ``path,label[,split]`` CSV (paths relative to ``base``, default its folder)."""
    header, rows = _read_csv_rows(path)
    if "path" not in header or "label" not in header:
        raise DatasetError(
            f"{path}, line 1: header must name the columns 'path' and 'label' (and optionally 'split'); found {header}"
        )
    ip, il = header.index("path"), header.index("label")
    isp = header.index("split") if (allow_split and "split" in header) else None
    base = (base or path.parent).resolve()
    base_s = str(base)
    problems: list[str] = []
    samples: list[_Sample] = []
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
        samples.append(_Sample(_rel(absp, base_s), absp, lab, split))
    _raise_problems(str(path), problems)
    if not samples:
        raise DatasetError(f"{path}: no samples (only a header?)")
    return samples


def _collect_csv_source(path: Path, root: Path | None) -> _Collected:
    samples = _collect_csv(path, root)
    base = (root or path.parent).resolve()
    has_split = any(s.split is not None for s in samples)
    return _Collected(
        str(path.resolve()),
        "csv",
        base,
        samples,
        _sort_classes({s.label for s in samples}),
        info={"splits_from": "CSV split column" if has_split else "seeded stratified split"},
    )


def _collect_split_files(folder: Path, split_files: Mapping[str, str | os.PathLike]) -> _Collected:
    root = folder.resolve()
    samples: list[_Sample] = []
    seen: dict[str, str] = {}
    for key, fname in split_files.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None:
            raise ConfigError(f"split_files: unknown split name {key!r} (use train, val or test)")
        fpath = Path(fname) if os.path.isabs(fname) else root / fname
        if not fpath.is_file():
            raise DatasetError(f"split_files[{key!r}]: {fpath} not found")
        if fpath.suffix.lower() == ".csv":
            part = _collect_csv(fpath, root, allow_split=False, forced_split=split)
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
                part.append(_Sample(_rel(absp, root), absp, label, split))
            _raise_problems(str(fpath), problems)
        for s in part:
            if s.path in seen:
                raise DatasetError(f"{s.rel} is listed in both the {seen[s.path]} and the {s.split} split files")
            seen[s.path] = s.split or ""
        samples += part
    if not samples:
        raise DatasetError(f"split_files {dict(split_files)}: no samples listed")
    return _Collected(
        str(root),
        "split-files",
        root,
        samples,
        _sort_classes({s.label for s in samples}),
        info={"splits_from": "split files"},
    )


# -- manifests ---------------------------------------------------------------------------------
def _collect_manifest(m: Manifest) -> _Collected:
    if m.root is None:
        raise DatasetError(
            f"manifest {m.version} has no root folder (an in-memory dataset): load its source {m.source!r} instead"
        )
    root = Path(m.root)
    problems: list[str] = []
    samples: list[_Sample] = []
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
        samples.append(_Sample(e.path, os.path.abspath(full), e.label, split))
    _raise_problems(f"dataset version {m.version} ({m.file or m.root})", problems)
    has_split = any(s.split is not None for s in samples)
    return _Collected(
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


# -- from collected samples to Splits ------------------------------------------------------------
def _build_manifest(c: _Collected) -> Manifest:
    if c.manifest is not None:
        return c.manifest
    hashes = c.hasher(c.samples) if c.hasher is not None else hash_files([s.path for s in c.samples])
    entries = [Entry(s.rel, d, size, s.label, s.split) for s, (d, size) in zip(c.samples, hashes)]
    return Manifest(
        entries=entries, classes=list(c.classes), root=str(c.root) if c.root is not None else None, source=c.source
    )


def _make_splits(c: _Collected, val_fraction: float, seed: int) -> Splits:
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    explicit = {s.split for s in c.samples}
    if None in explicit and len(explicit) > 1:
        raise DatasetError(f"{c.source}: some samples have a split and others none; give all a split or none")
    groups: dict[str, list[_Sample]] = {n: [] for n in SPLIT_NAMES}
    info = dict(c.info)
    info.update(val_fraction=val_fraction, seed=seed)
    if explicit == {None}:
        tr, va = stratified_split([s.rel for s in c.samples], [s.label for s in c.samples], val_fraction, seed)
        groups["train"] = [c.samples[i] for i in tr]
        groups["val"] = [c.samples[i] for i in va]
        info["val_from"] = "seeded stratified split of all samples" if val_fraction > 0 else "none"
    else:
        for s in c.samples:
            groups[s.split].append(s)
        if not groups["train"]:
            raise DatasetError(f"{c.source}: no training samples (splits found: {sorted(x for x in explicit if x)})")
        if not groups["val"] and val_fraction > 0:
            pool = groups["train"]
            tr, va = stratified_split([s.rel for s in pool], [s.label for s in pool], val_fraction, seed)
            groups["train"] = [pool[i] for i in tr]
            groups["val"] = [pool[i] for i in va]
            info["val_from"] = "seeded stratified split of train"
        else:
            info["val_from"] = "source" if groups["val"] else "none"
    train_classes = {s.label for s in groups["train"]}
    for split in ("val", "test"):
        missing = sorted({s.label for s in groups[split]} - train_classes)
        if missing:
            _warn(
                f"{c.source}: class(es) {missing} have {split} images but no training images; "
                "the model cannot learn them (they keep their index)"
            )

    def ds(split: str) -> ImageDataset | None:
        items = groups[split]
        if not items:
            return None
        return ImageDataset([(s.path, s.label) for s in items], c.classes, loader=c.loader)

    return Splits(
        train=ds("train"),
        val=ds("val"),
        test=ds("test"),
        classes=list(c.classes),
        source=c.source,
        split_info=info,
        _manifest_fn=functools.partial(_build_manifest, c),
    )


def collect(
    source: Any, root: str | os.PathLike | None = None, split_files: Mapping[str, str | os.PathLike] | None = None
) -> _Collected:
    """Samples, classes and explicit splits of ``source`` (no train/val drawing, no hashing)."""
    if isinstance(source, Manifest):
        return _collect_manifest(source)
    if isinstance(source, str) and source.startswith("torchvision:"):
        from visiontune.data.torchvision_sources import collect_torchvision

        return collect_torchvision(source.split(":", 1)[1], root)
    p = Path(source).expanduser()
    if split_files:
        if not p.is_dir():
            raise DatasetError(f"{p}: split_files need the dataset root folder as source")
        return _collect_split_files(p, split_files)
    if p.is_dir():
        return _collect_folder(p)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".csv":
            return _collect_csv_source(p, Path(root) if root is not None else None)
        if suffix == ".json":
            return _collect_manifest(Manifest.load(p))
        raise DatasetError(f"{p}: unsupported source file (expected a .csv labels file or a .json manifest)")
    if looks_like_version(str(source)):
        return _collect_manifest(find_manifest(str(source), store=root))
    raise DatasetError(
        f"{source}: not found. Give an image folder, a CSV (path,label[,split]), a manifest JSON, "
        "a dataset version id or 'torchvision:<Name>'"
    )


def load_classification(
    source: str | os.PathLike | Manifest,
    root: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    split_files: Mapping[str, str | os.PathLike] | None = None,
) -> Splits:
    """Load an image classification dataset as :class:`Splits` (train / val / test).

    ``source`` is one of:

    * a folder with ``train/`` and ``val/`` (or ``valid/``, ``validation/``) and optional
      ``test/`` subfolders of class folders — classes are the sorted union of the class folder
      names, with the same index in every split;
    * a single folder of class folders — a seeded stratified train/val split (``val_fraction``,
      ``seed``; see :func:`stratified_split`);
    * a CSV with a header ``path,label[,split]`` — paths relative to the CSV's folder (or
      ``root``); without a split column the split is drawn as above;
    * a folder plus ``split_files={"train": "train.txt", "val": "val.txt"}`` — text files of
      paths relative to the folder (label = parent folder name) or ``path,label`` CSVs;
    * a dataset manifest JSON, or a version id (``root`` = the versions store to search);
    * ``"torchvision:CIFAR10"`` (CIFAR100, OxfordIIITPet, Flowers102, Food101, DTD,
      StanfordCars) with ``root`` = the folder holding (or to receive) the files.

    When a source has no val split, val is drawn from train with ``val_fraction`` (0: no val).
    A class with val/test images but none in train triggers a :class:`DatasetWarning`.
    Image extensions accepted (any case): jpg jpeg png bmp gif webp tif tiff; hidden files and
    folders are skipped; an empty class folder is warned about.
    """
    return _make_splits(collect(source, root=root, split_files=split_files), val_fraction, seed)
