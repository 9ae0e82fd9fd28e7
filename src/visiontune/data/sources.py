"""``load_classification``: every supported classification source becomes ``Splits``.

Sources: an image folder with ``train/`` ``val/`` [``test/``] subfolders of class folders; a
single folder of class folders (seeded stratified train/val split); a CSV ``path,label[,split]``;
explicit split files; a dataset manifest JSON or version id; ``"torchvision:<Name>"``. Each kind
is collected by its own module (`folder_sources`, `csv_sources`, `split_file_sources`,
`manifest_sources`, `torchvision_sources`) into `visiontune.data.samples.Collected`;
`visiontune.data.splits` draws the splits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visiontune.data.csv_sources import collect_csv_source
from visiontune.data.dataset import Splits
from visiontune.data.folder_sources import collect_folder
from visiontune.data.manifest import Manifest, find_manifest, looks_like_version
from visiontune.data.manifest_sources import collect_manifest
from visiontune.data.samples import Collected, DatasetWarning
from visiontune.data.split_file_sources import collect_split_files
from visiontune.data.splits import make_splits, stratified_split
from visiontune.data.torchvision_sources import collect_torchvision
from visiontune.errors import DatasetError

__all__ = ["DatasetWarning", "collect", "load_classification", "stratified_split"]


def collect(
    source: Any, root: str | os.PathLike | None = None, split_files: Mapping[str, str | os.PathLike] | None = None
) -> Collected:
    """Samples, classes and explicit splits of ``source`` (no train/val drawing, no hashing)."""
    if isinstance(source, Manifest):
        return collect_manifest(source)
    if isinstance(source, str) and source.startswith("torchvision:"):
        return collect_torchvision(source.split(":", 1)[1], root)
    p = Path(source).expanduser()
    if split_files:
        if not p.is_dir():
            raise DatasetError(f"{p}: split_files need the dataset root folder as source")
        return collect_split_files(p, split_files)
    if p.is_dir():
        return collect_folder(p)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".csv":
            return collect_csv_source(p, Path(root) if root is not None else None)
        if suffix == ".json":
            return collect_manifest(Manifest.load(p))
        raise DatasetError(f"{p}: unsupported source file (expected a .csv labels file or a .json manifest)")
    if looks_like_version(str(source)):
        return collect_manifest(find_manifest(str(source), store=root))
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
    return make_splits(collect(source, root=root, split_files=split_files), val_fraction, seed)
