"""torchvision's classification datasets by name: ``load_classification("torchvision:CIFAR10",
root=...)``.

Files already under ``root`` are reused. When they are absent the download runs only if the
host is reachable (checked in under 2 s); otherwise an ``OfflineError`` says exactly which
files to put where. File-based datasets keep their image paths; in-memory ones (CIFAR) get
sample ids such as ``cifar10/train/000123`` that the dataset's loader maps to pixels.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from visiontune.data.hashing import cache_dir, sha256_bytes
from visiontune.data.samples import Collected, Sample, rel_path
from visiontune.errors import DatasetError, ImageDecodeError, OfflineError


@dataclass(frozen=True)
class TVSpec:
    """How to read one torchvision dataset class: its splits' arguments and the files it expects."""

    name: str  # torchvision class name
    splits: dict[str, dict]  # our split -> kwargs for the torchvision class
    expect: str  # what must exist under root, for the error message
    url: str  # where the download comes from
    marker: str  # a path under root that exists once the files are there
    in_memory: bool = False
    downloadable: bool = True


_SPECS = {
    "cifar10": TVSpec(
        "CIFAR10",
        {"train": {"train": True}, "test": {"train": False}},
        "<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} "
        "(the contents of cifar-10-python.tar.gz)",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        in_memory=True,
    ),
    "cifar100": TVSpec(
        "CIFAR100",
        {"train": {"train": True}, "test": {"train": False}},
        "<root>/cifar-100-python/{train, test, meta} (the contents of cifar-100-python.tar.gz)",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python",
        in_memory=True,
    ),
    "oxfordiiitpet": TVSpec(
        "OxfordIIITPet",
        {"train": {"split": "trainval"}, "test": {"split": "test"}},
        "<root>/oxford-iiit-pet/images/*.jpg and <root>/oxford-iiit-pet/annotations/{trainval,test}.txt "
        "(images.tar.gz and annotations.tar.gz extracted there)",
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
        "oxford-iiit-pet/annotations",
    ),
    "flowers102": TVSpec(
        "Flowers102",
        {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
        "<root>/flowers-102/jpg/image_*.jpg (from 102flowers.tgz), <root>/flowers-102/imagelabels.mat "
        "and <root>/flowers-102/setid.mat",
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
        "flowers-102/jpg",
    ),
    "food101": TVSpec(
        "Food101",
        {"train": {"split": "train"}, "test": {"split": "test"}},
        "<root>/food-101/images/<class>/*.jpg and <root>/food-101/meta/{train,test}.json "
        "(food-101.tar.gz extracted in <root>)",
        "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
        "food-101/meta",
    ),
    "dtd": TVSpec(
        "DTD",
        {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
        "<root>/dtd/dtd/images/<class>/*.jpg and <root>/dtd/dtd/labels/{train,val,test}1.txt "
        "(dtd-r1.0.1.tar.gz extracted in <root>/dtd)",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
        "dtd/dtd/labels",
    ),
    "stanfordcars": TVSpec(
        "StanfordCars",
        {"train": {"split": "train"}, "test": {"split": "test"}},
        "<root>/stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/, "
        "cars_test/, cars_test_annos_withlabels.mat}",
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
        "stanford_cars/devkit",
        downloadable=False,
    ),
}


def supported() -> list[str]:
    """Names of the torchvision datasets visiontune reads."""
    return sorted(s.name for s in _SPECS.values())


def network_reachable(url: str, timeout: float = 1.5) -> bool:
    """True when a TCP connection to ``url``'s host opens within ``timeout`` seconds.
    ``VISIONTUNE_OFFLINE=1`` forces False. DNS lookups that hang are cut off too."""
    if os.environ.get("VISIONTUNE_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    u = urlparse(url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


class ArrayImages:
    """Loader for in-memory datasets: maps ``<prefix>/<index>`` ids to ``PIL`` RGB images."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays  # prefix -> (N, H, W, 3) uint8

    def __call__(self, sample_id: str) -> Image.Image:
        prefix, _, idx = sample_id.rpartition("/")
        try:
            return Image.fromarray(self.arrays[prefix][int(idx)]).convert("RGB")
        except (KeyError, ValueError, IndexError):
            raise ImageDecodeError(f"{sample_id}: no such sample in this in-memory dataset") from None

    def content(self, sample_id: str) -> bytes:
        """The raw pixel bytes of sample ``sample_id`` (``<array>/<index>``), for content hashing."""
        prefix, _, idx = sample_id.rpartition("/")
        return np.ascontiguousarray(self.arrays[prefix][int(idx)]).tobytes()

    def hash_samples(self, samples: list) -> list[tuple[str, int]]:
        """(sha256 of the raw pixels, byte count) per sample: the content of an in-memory image."""
        out = []
        for s in samples:
            blob = self.content(s.path)
            out.append((sha256_bytes(blob), len(blob)))
        return out


def collect_arrays(name: str, parts: dict[str, tuple[np.ndarray, list[int]]], classes: list[str]) -> Collected:
    """Collected samples of an in-memory dataset: ``parts[split] = (uint8 NHWC array, labels)``."""
    arrays: dict[str, np.ndarray] = {}
    samples: list[Sample] = []
    for split, (data, targets) in parts.items():
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
            raise DatasetError(f"{name}/{split}: expected uint8 (N, H, W, 3) pixels, got {data.dtype} {data.shape}")
        prefix = f"{name}/{split}"
        arrays[prefix] = data
        for i, t in enumerate(targets):
            sid = f"{prefix}/{i:06d}"
            samples.append(Sample(sid, sid, classes[int(t)], split))
    loader = ArrayImages(arrays)
    return Collected(
        f"torchvision:{name}",
        "in-memory",
        None,
        samples,
        list(classes),
        loader=loader,
        hasher=loader.hash_samples,
        info={"splits_from": "torchvision splits"},
    )


def _files_and_labels(ds: Any) -> tuple[list[str], list[int]]:
    if hasattr(ds, "_samples"):  # StanfordCars
        return [str(p) for p, _ in ds._samples], [int(t) for _, t in ds._samples]
    for attr in ("_image_files", "_images"):
        if hasattr(ds, attr):
            return [str(p) for p in getattr(ds, attr)], [int(t) for t in ds._labels]
    raise DatasetError(
        f"this torchvision version's {type(ds).__name__} keeps its file list in an unknown place; "
        "please report it (visiontune needs the image paths to version the data)"
    )


def _absent(spec: TVSpec, root_path: Path, cause: BaseException | None = None) -> Exception:
    where = spec.expect.replace("<root>", str(root_path))
    if not spec.downloadable:
        err: Exception = DatasetError(
            f"torchvision:{spec.name} is not in {root_path} and cannot be downloaded automatically "
            f"(see {spec.url}). Put the files at {where}"
        )
    else:
        err = OfflineError(
            f"torchvision:{spec.name} is not in {root_path} and {urlparse(spec.url).hostname} is "
            f"unreachable. Put the files at {where} (download {spec.url} on a connected machine), "
            f"or pass root= pointing to the folder that holds them"
        )
    err.__cause__ = cause
    return err


def collect_torchvision(name: str, root: str | os.PathLike | None) -> Collected:
    """The samples of ``torchvision:<name>`` under ``root`` (default: the cache's ``datasets/``),
    downloaded only when absent and the host is reachable."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    spec = _SPECS.get(key)
    if spec is None:
        raise DatasetError(f"torchvision:{name} is not supported; use one of {supported()}")
    root_path = Path(root).expanduser() if root is not None else cache_dir() / "datasets"
    # Decide before importing torchvision.datasets (seconds) so a missing dataset fails fast.
    if not (root_path / spec.marker).exists() and (not spec.downloadable or not network_reachable(spec.url)):
        raise _absent(spec, root_path)

    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.name)

    def build(download: bool) -> dict[str, Any]:
        return {split: cls(str(root_path), download=download, **kw) for split, kw in spec.splits.items()}

    try:
        built = build(False)
    except (RuntimeError, FileNotFoundError, OSError) as missing:
        if not spec.downloadable or not network_reachable(spec.url):
            raise _absent(spec, root_path, missing) from missing
        root_path.mkdir(parents=True, exist_ok=True)
        built = build(True)

    if spec.in_memory:
        first = next(iter(built.values()))
        return collect_arrays(
            key, {s: (d.data, list(d.targets)) for s, d in built.items()}, [str(c) for c in first.classes]
        )
    classes = [str(c) for c in next(iter(built.values())).classes]
    base = root_path.resolve()
    samples: list[Sample] = []
    for split, d in built.items():
        files, labels = _files_and_labels(d)
        for f, t in zip(files, labels):
            absp = os.path.abspath(f)
            samples.append(Sample(rel_path(absp, base), absp, classes[t], split))
    return Collected(
        f"torchvision:{spec.name}",
        "torchvision-files",
        base,
        samples,
        classes,
        info={"splits_from": "torchvision splits"},
    )
