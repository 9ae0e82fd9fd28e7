"""From collected samples to ``Splits``: the seeded stratified split, the explicit splits a source
gives, and the dataset manifest (content version) of what was collected."""

from __future__ import annotations

import functools
import hashlib

from visiontune.data.dataset import SPLIT_NAMES, ImageDataset, Splits
from visiontune.data.hashing import hash_files
from visiontune.data.manifest import Entry, Manifest
from visiontune.data.samples import Collected, Sample, warn
from visiontune.errors import ConfigError, DatasetError


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


def build_manifest(c: Collected) -> Manifest:
    """The manifest of what ``c`` collected (file hashes from the cache; ``c``'s own when it has one)."""
    if c.manifest is not None:
        return c.manifest
    hashes = c.hasher(c.samples) if c.hasher is not None else hash_files([s.path for s in c.samples])
    entries = [Entry(s.rel, d, size, s.label, s.split) for s, (d, size) in zip(c.samples, hashes)]
    return Manifest(
        entries=entries, classes=list(c.classes), root=str(c.root) if c.root is not None else None, source=c.source
    )


def make_splits(c: Collected, val_fraction: float, seed: int) -> Splits:
    """Train / val / test of ``c``: the source's own splits, val drawn from train when absent
    (``val_fraction``, ``seed``), everything drawn when the source has no splits."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    explicit = {s.split for s in c.samples}
    if None in explicit and len(explicit) > 1:
        raise DatasetError(f"{c.source}: some samples have a split and others none; give all a split or none")
    groups: dict[str, list[Sample]] = {n: [] for n in SPLIT_NAMES}
    info = dict(c.info)
    info.update(val_fraction=val_fraction, seed=seed)
    if explicit == {None}:
        tr, va = stratified_split([s.rel for s in c.samples], [s.label for s in c.samples], val_fraction, seed)
        groups["train"] = [c.samples[i] for i in tr]
        groups["val"] = [c.samples[i] for i in va]
        info["val_from"] = "seeded stratified split of all samples" if val_fraction > 0 else "none"
    else:
        for s in c.samples:
            if s.split is not None:  # every sample has one here
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
            warn(
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
        _manifest_fn=functools.partial(build_manifest, c),
    )
