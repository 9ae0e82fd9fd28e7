"""Image folders: ``<root>/<class>/<image>`` (a seeded split is drawn) or ``<root>/train|val|test/
<class>/<image>`` (the folders are the splits)."""

from __future__ import annotations

import os
from pathlib import Path

from visiontune.data.dataset import SPLIT_NAMES
from visiontune.data.decode import IMAGE_EXTENSIONS, is_image_file
from visiontune.data.samples import SPLIT_ALIASES, Collected, Sample, rel_path, sort_classes, warn
from visiontune.errors import DatasetError


def visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``, sorted, hidden ones skipped."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_class_folders(folder: Path, root: Path, split: str | None) -> list[Sample]:
    """Images under ``folder/<class>/**`` (sorted, hidden entries skipped)."""
    samples: list[Sample] = []
    loose = [p.name for p in folder.iterdir() if p.is_file() and is_image_file(p)]
    if loose:
        warn(
            f"{folder}: {len(loose)} image(s) directly in the folder are ignored "
            f"(expected {folder}/<class>/<image>), e.g. {loose[0]}"
        )
    for cdir in visible_dirs(folder):
        cls = cdir.name
        found = 0
        for dirpath, dirnames, filenames in os.walk(cdir, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if is_image_file(name):
                    full = os.path.join(dirpath, name)
                    samples.append(Sample(rel_path(full, root), full, cls, split))
                    found += 1
        if found == 0:
            warn(f"{cdir}: empty class folder (no {'/'.join(sorted(image_extensions()))} images)")
    return samples


def image_extensions() -> set[str]:
    """The accepted image extensions without their dot, for messages."""
    return {e.lstrip(".") for e in IMAGE_EXTENSIONS}


def collect_folder(folder: Path) -> Collected:
    """The samples of an image folder, in either layout (see the module docstring)."""
    root = folder.resolve()
    subdirs = visible_dirs(root)
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
    samples: list[Sample] = []
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs.values()]
        if others:
            warn(f"{root}: folders {others} are not train/val/test and are ignored")
        for split in SPLIT_NAMES:
            if split in split_dirs:
                samples += scan_class_folders(split_dirs[split], root, split)
        kind = "image-folder-splits"
    else:
        samples = scan_class_folders(root, root, None)
        kind = "image-folder"
    if not samples:
        raise DatasetError(
            f"{root}: no images found. Expected {root}/<class>/<image> or "
            f"{root}/train/<class>/<image> (extensions: {', '.join(sorted(image_extensions()))})"
        )
    classes = sort_classes({s.label for s in samples})
    return Collected(
        str(root),
        kind,
        root,
        samples,
        classes,
        info={"splits_from": "folders" if split_dirs else "seeded stratified split"},
    )
