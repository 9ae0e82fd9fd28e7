"""``ImageDataset`` (a list of (path, label) samples that never crashes on a bad file) and
``Splits`` (train / val / test datasets sharing one class list and one data version)."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import Dataset

from visiontune.data.decode import read_image
from visiontune.errors import DatasetError, ImageDecodeError

if TYPE_CHECKING:
    from visiontune.data.manifest import Manifest

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


def _remove_if_owner(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        try:
            os.remove(path)
        except OSError:
            pass


class _SkipRecord:
    """Files that failed to decode, shared by every view of one dataset.

    DataLoader workers are separate processes: what they find is appended to a small log file
    (one line per file, O_APPEND) that the owning process merges back when ``.skipped`` is read,
    so the files a worker skipped are listed in the main process too.
    """

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.owner_pid = os.getpid()
        self.log_path = os.path.join(
            tempfile.gettempdir(), f"visiontune-skipped-{self.owner_pid}-{uuid.uuid4().hex}.tsv"
        )
        weakref.finalize(self, _remove_if_owner, self.log_path, self.owner_pid)

    def __getstate__(self) -> dict[str, Any]:
        self.refresh()
        return {"entries": dict(self.entries), "owner_pid": self.owner_pid, "log_path": self.log_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def add(self, path: str, reason: str) -> None:
        if path in self.entries:
            return
        self.entries[path] = reason
        if os.getpid() != self.owner_pid:
            line = (path + "\t" + reason).replace("\n", " ").replace("\r", " ")[:4000] + "\n"
            try:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as e:  # the sample is still skipped; only the report loses it
                log.warning("cannot record skipped file %s in %s: %s", path, self.log_path, e)

    def refresh(self) -> None:
        if os.getpid() != self.owner_pid or not os.path.exists(self.log_path):
            return
        with open(self.log_path, encoding="utf-8") as f:
            for line in f:
                path, _, reason = line.rstrip("\n").partition("\t")
                self.entries.setdefault(path, reason)

    def items(self) -> list[tuple[str, str]]:
        self.refresh()
        return list(self.entries.items())


def _default_loader(path: str):
    return read_image(path)


class ImageDataset(Dataset):
    """Image classification samples: ``ds[i] -> (transform(image), label)``.

    ``samples`` is a list of ``(path, label)``; a label is an index into ``classes`` or a class
    name. Relative paths are resolved against ``root``. ``loader(path) -> PIL.Image`` reads a
    sample (default :func:`~visiontune.data.read_image`); in-memory datasets (CIFAR) pass a
    loader that maps a sample id such as ``cifar10/train/000123`` to its pixels.

    A file that cannot be decoded never stops an epoch: it is recorded in :attr:`skipped`
    (``(path, reason)``, also from DataLoader workers) and the next decodable sample in index
    order is returned in its place, with that sample's label. :meth:`validate` finds and drops
    all bad files up front. The dataset pickles (DataLoader workers, spawn or fork).
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | os.PathLike, int | str]],
        classes: Sequence[str],
        transform: Callable | None = None,
        root: str | os.PathLike | None = None,
        loader: Callable[[str], Any] | None = None,
    ):
        self.classes: list[str] = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes):
            raise DatasetError(f"class names must be unique, got {self.classes}")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.root = Path(root) if root is not None else None
        self.transform = transform
        self.loader = loader
        paths: list[str] = []
        labels = np.empty(len(samples), dtype=np.int64)
        n = len(self.classes)
        for i, (p, lab) in enumerate(samples):
            p = os.fspath(p)
            if self.root is not None and not os.path.isabs(p) and loader is None:
                p = os.path.join(self.root, p)
            paths.append(p)
            if isinstance(lab, str):
                if lab not in self.class_to_idx:
                    raise DatasetError(f"sample {i} ({p}): label {lab!r} is not one of the classes {self.classes}")
                labels[i] = self.class_to_idx[lab]
            else:
                k = int(lab)
                if not 0 <= k < n:
                    raise DatasetError(f"sample {i} ({p}): label index {k} is outside 0..{n - 1}")
                labels[i] = k
        labels.setflags(write=False)
        self._paths = paths
        self._labels = labels
        self._skips = _SkipRecord()

    # -- views -----------------------------------------------------------------------------
    def _view(self, paths: list[str], labels: np.ndarray, transform: Callable | None) -> ImageDataset:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._paths, new._labels, new.transform = paths, labels, transform
        return new

    def with_transform(self, transform: Callable | None) -> ImageDataset:
        """A new view of the same samples (and the same skip record) with another transform."""
        return self._view(self._paths, self._labels, transform)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """A view holding only ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        labels = self._labels[idx]
        labels.setflags(write=False)
        return self._view([self._paths[i] for i in idx], labels, self.transform)

    # -- sample access ---------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        """Sample paths (files resolved against ``root``) or sample ids (in-memory datasets)."""
        return list(self._paths)

    @property
    def labels(self) -> np.ndarray:
        """Label indices, int64, read-only."""
        return self._labels

    @property
    def targets(self) -> list[int]:
        """Labels as a list (torchvision ``ImageFolder`` compatibility)."""
        return self._labels.tolist()

    @property
    def samples(self) -> list[tuple[str, int]]:
        """``(path, label index)`` of every sample."""
        return list(zip(self._paths, self._labels.tolist()))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` for every file found undecodable so far (any process)."""
        return self._skips.items()

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        counts = np.bincount(self._labels, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, counts)}

    def load_image(self, index: int):
        """The decoded (untransformed) image of sample ``index``; raises ``ImageDecodeError``."""
        loader = self.loader or _default_loader
        return loader(self._paths[index])

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int):
        n = len(self._paths)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        loader = self.loader or _default_loader
        for step in range(n):
            i = (index + step) % n
            path = self._paths[i]
            if path in self._skips.entries:
                continue
            try:
                img = loader(path)
            except ImageDecodeError as e:
                reason = str(e)
                if reason.startswith(path + ": "):
                    reason = reason[len(path) + 2 :]
                self._skips.add(path, reason)
                log.warning("skipping undecodable image %s: %s", path, reason)
                continue
            if self.transform is not None:
                img = self.transform(img)
            return img, int(self._labels[i])
        raise DatasetError(
            f"none of the {n} images of this dataset can be decoded; see .skipped "
            f"(first: {next(iter(self._skips.entries.items()), None)})"
        )

    def __iter__(self) -> Iterator:
        for i in range(len(self)):
            yield self[i]

    def validate(self, num_workers: int = 4, progress: bool = False) -> ImageDataset:
        """Decode every file now and return a view without the undecodable ones.

        The bad files are listed in ``.skipped`` of both datasets (with the reason) and in a
        warning. Uses ``num_workers`` threads (Pillow releases the GIL while decoding).
        """
        loader = self.loader or _default_loader
        unique = [p for p in dict.fromkeys(self._paths) if p not in self._skips.entries]

        def check(p: str) -> tuple[str, str | None]:
            try:
                loader(p)
                return p, None
            except ImageDecodeError as e:
                msg = str(e)
                return p, msg[len(p) + 2 :] if msg.startswith(p + ": ") else msg

        bar = None
        if progress:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task("validating images", total=len(unique))
        try:
            with ThreadPoolExecutor(max_workers=max(1, int(num_workers))) as ex:
                for p, reason in ex.map(check, unique):
                    if reason is not None:
                        self._skips.add(p, reason)
                    if bar is not None:
                        bar.advance(task)
        finally:
            if bar is not None:
                bar.stop()
        bad = self._skips.entries
        keep = [i for i, p in enumerate(self._paths) if p not in bad]
        if len(keep) < len(self._paths):
            dropped = sorted({p for p in self._paths if p in bad})
            log.warning(
                "validate: dropped %d of %d files that cannot be decoded: %s",
                len(dropped),
                len(dict.fromkeys(self._paths)),
                "; ".join(f"{p} ({bad[p]})" for p in dropped[:10]) + (" ..." if len(dropped) > 10 else ""),
            )
        return self.subset(keep)

    def __repr__(self) -> str:
        t = f", transform={self.transform!r}" if self.transform is not None else ""
        return f"ImageDataset({len(self)} samples, {len(self.classes)} classes{t})"


@dataclass
class Splits:
    """The train / val / test datasets of one source, with one class list and one data version.

    ``version`` is the content version of the data (see :mod:`visiontune.data.versions`): the
    same id ``snapshot()`` gives the same files. It is computed on first access (file hashes are
    cached). ``split_info`` says how each split was made (folder, CSV column, seeded split).
    """

    train: ImageDataset | None
    val: ImageDataset | None
    test: ImageDataset | None
    classes: list[str]
    source: str
    split_info: dict[str, Any] = field(default_factory=dict)
    _manifest_fn: Callable[[], Manifest] | None = field(default=None, repr=False)
    _manifest: Manifest | None = field(default=None, repr=False)

    def __getitem__(self, name: str) -> ImageDataset | None:
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; use one of {SPLIT_NAMES}")
        return getattr(self, name)

    def items(self) -> list[tuple[str, ImageDataset]]:
        """The (name, dataset) pairs of the splits that exist."""
        return [(n, getattr(self, n)) for n in SPLIT_NAMES if getattr(self, n) is not None]

    def manifest(self) -> Manifest:
        """The dataset manifest (entries with sha256) of the data these splits use."""
        if self._manifest is None:
            if self._manifest_fn is None:
                raise DatasetError(f"no content manifest can be made for {self.source}")
            self._manifest = self._manifest_fn()
        return self._manifest

    @property
    def version(self) -> str:
        """Content-based version id of the data used (hash of path, size, sha256, label)."""
        return self.manifest().version

    def summary(self) -> dict[str, dict[str, int]]:
        """Per split, the number of samples of every class (0 included), e.g.
        ``{"train": {"ants": 123, "bees": 121}, "val": {...}}``."""
        return {name: ds.class_counts() for name, ds in self.items()}

    @property
    def skipped(self) -> dict[str, list[tuple[str, str]]]:
        """Undecodable files found so far, per split."""
        return {name: ds.skipped for name, ds in self.items()}

    def with_transforms(self, train: Callable | None = None, eval: Callable | None = None) -> Splits:
        """New splits whose train set uses ``train`` and val / test use ``eval``."""
        return Splits(
            train=self.train.with_transform(train) if self.train is not None else None,
            val=self.val.with_transform(eval) if self.val is not None else None,
            test=self.test.with_transform(eval) if self.test is not None else None,
            classes=self.classes,
            source=self.source,
            split_info=self.split_info,
            _manifest_fn=self._manifest_fn,
            _manifest=self._manifest,
        )

    def validate(self, num_workers: int = 4, progress: bool = False) -> Splits:
        """Decode every file of every split now; return splits without the undecodable ones."""
        done = {n: ds.validate(num_workers, progress) for n, ds in self.items()}
        return Splits(
            train=done.get("train"),
            val=done.get("val"),
            test=done.get("test"),
            classes=self.classes,
            source=self.source,
            split_info=self.split_info,
            _manifest_fn=self._manifest_fn,
            _manifest=self._manifest,
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={len(ds)}" for n, ds in self.items())
        return f"Splits({self.source!r}, {parts}, {len(self.classes)} classes)"
