"""Preprocessing checks: compare a user's transform with the card, and the normalisation sweep."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from visiontune._atomic import save_figure
from visiontune.errors import DatasetError, VisiontuneError
from visiontune.hub.preprocess import Preprocess, interpolation_name
from visiontune.hub.pretrained import Pretrained, logits_of


@dataclass
class Mismatch:
    """One preprocessing field where a transform disagrees with the model card, and why it matters."""

    field: str
    expected: Any
    got: Any
    why: str

    def __str__(self) -> str:
        return f"{self.field}: card says {self.expected}, transform has {self.got} — {self.why}"


# -- describing a transform ------------------------------------------------------------------------
def describe_transform(t: Any) -> dict:
    """Read resize / crop / interpolation / value range / mean / std / channel order from a
    torchvision transform (v1 or v2 Compose), a `Preprocess`, or a dict (YAML description)."""
    if isinstance(t, Preprocess):
        d: dict = t.to_dict()
        return {
            "resize": d["resize"],
            "crop": d["crop"],
            "interpolation": d["interpolation"],
            "mean": d["mean"],
            "std": d["std"],
            "value_range": [0.0, 1.0],
            "channel_order": "RGB",
        }
    if isinstance(t, dict):
        d = dict(t)
        if d.get("interpolation"):
            d["interpolation"] = interpolation_name(d["interpolation"])
        if isinstance(d.get("crop"), int):
            d["crop"] = [d["crop"], d["crop"]]
        if isinstance(d.get("resize"), (list, tuple)) and len(d["resize"]) == 1:
            d["resize"] = d["resize"][0]
        d.setdefault("channel_order", "RGB")
        d.setdefault("value_range", [0.0, 1.0] if d.get("to_tensor", True) else [0.0, 255.0])
        return d
    ops = list(getattr(t, "transforms", [t]))
    d = {
        "resize": None,
        "crop": None,
        "interpolation": None,
        "mean": None,
        "std": None,
        "value_range": [0.0, 255.0],
        "channel_order": "RGB",
    }
    for op in ops:
        name = type(op).__name__
        if name == "Resize":
            size = op.size
            d["resize"] = (
                size[0]
                if isinstance(size, (list, tuple)) and len(size) == 1
                else (list(size) if isinstance(size, (list, tuple)) else size)
            )
            d["interpolation"] = interpolation_name(op.interpolation)
        elif name == "CenterCrop":
            size = op.size if isinstance(op.size, (list, tuple)) else (op.size, op.size)
            d["crop"] = list(size) if len(size) == 2 else [size[0], size[0]]
        elif name in ("RandomResizedCrop", "RandomCrop"):
            d["random_crop"] = True
        elif name in ("ToTensor",):
            d["value_range"] = [0.0, 1.0]
        elif name in ("ToDtype", "ConvertImageDtype"):
            if getattr(op, "scale", True) or name == "ConvertImageDtype":
                d["value_range"] = [0.0, 1.0]
        elif name == "Normalize":
            d["mean"], d["std"] = [float(x) for x in op.mean], [float(x) for x in op.std]
        elif name == "ImageClassification":  # torchvision weights.transforms()
            d.update(
                resize=op.resize_size[0],
                crop=list(op.crop_size) * (2 // len(op.crop_size)),
                interpolation=interpolation_name(op.interpolation),
                mean=list(op.mean),
                std=list(op.std),
                value_range=[0.0, 1.0],
            )
    return d


def check_preprocess(p: Pretrained, transform: Any, probe_image=None) -> list[Mismatch]:
    """Name every way ``transform`` differs from the preprocessing the weights expect."""
    want = describe_transform(p.preprocess)
    got = describe_transform(transform)
    out: list[Mismatch] = []

    def close(a, b, tol=2e-3):
        return a is not None and b is not None and len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))

    if want["mean"] is not None or got.get("mean") is not None:
        if got.get("mean") is None:
            out.append(
                Mismatch(
                    "mean/std",
                    (want["mean"], want["std"]),
                    None,
                    "no Normalize: inputs are off by the whole normalisation",
                )
            )
        elif want["mean"] is None:
            out.append(
                Mismatch(
                    "mean/std", None, (got["mean"], got["std"]), "the model normalises inside; do not normalise twice"
                )
            )
        else:
            if not close(want["mean"], got["mean"]):
                out.append(Mismatch("mean", want["mean"], got["mean"], "wrong normalisation mean"))
            if not close(want["std"], got.get("std")):
                out.append(Mismatch("std", want["std"], got.get("std"), "wrong normalisation std"))
    if list(got.get("value_range", [0, 1])) != [0.0, 1.0]:
        out.append(
            Mismatch(
                "value range",
                [0.0, 1.0],
                got.get("value_range"),
                "pixels must be scaled to [0, 1] before normalising (ToTensor / ToDtype(scale=True))",
            )
        )
    if str(got.get("channel_order", "RGB")).upper() != "RGB":
        out.append(Mismatch("channel order", "RGB", got.get("channel_order"), "the weights were trained on RGB"))
    wr, gr = want["resize"], got.get("resize")
    if wr is not None and (
        gr is None
        or (list(gr) if isinstance(gr, (list, tuple)) else gr) != (list(wr) if isinstance(wr, (list, tuple)) else wr)
    ):
        kind = "shorter edge" if isinstance(wr, int) else "exact (squash) size"
        out.append(Mismatch("resize", wr, gr, f"the weights expect a resize to {wr} ({kind})"))
    wc, gc = want["crop"], got.get("crop")
    if (wc and list(wc)) != (gc and list(gc)):
        out.append(Mismatch("crop", wc, gc, "different centre crop: the model sees another field of view / size"))
    wi, gi = want["interpolation"], got.get("interpolation")
    if wr is not None and gi is not None and wi != gi:
        out.append(Mismatch("interpolation", wi, gi, "resampling filter differs (small but real accuracy effect)"))
    if got.get("random_crop"):
        out.append(Mismatch("crop", "center", "random", "a random crop in an eval transform makes predictions noisy"))
    return out


# -- evaluation sets -------------------------------------------------------------------------------
def labelled_images(
    data: str | Path, class_names: Sequence[str] | None, limit: int | None = None
) -> list[tuple[Path, int]]:
    """(image, model class index) pairs. ``data``: a folder with ``labels.csv`` (columns ``file`` and
    ``index``, or ``file`` and ``name``), or a folder of class folders named like the card's classes."""
    root = Path(data)
    items: list[tuple[Path, int]] = []
    csv_path = root / "labels.csv" if root.is_dir() else root
    if csv_path.is_file() and csv_path.suffix == ".csv":
        base = csv_path.parent
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        lookup = {n.lower(): i for i, n in enumerate(class_names or [])}
        for ln, r in enumerate(rows, start=2):
            file = r.get("file") or r.get("path")
            if not file:
                raise DatasetError(f"{csv_path}:{ln}: no 'file' or 'path' column")
            if r.get("index") not in (None, ""):
                idx = int(r["index"])
            elif r.get("name") and r["name"].replace("_", " ").lower() in lookup:
                idx = lookup[r["name"].replace("_", " ").lower()]
            else:
                raise DatasetError(f"{csv_path}:{ln}: needs an 'index' column or a 'name' matching the model's classes")
            items.append((base / file, idx))
    elif root.is_dir():
        if not class_names:
            raise DatasetError(f"{root}: the model has no class names to match the class folders against")
        lookup = {n.lower(): i for i, n in enumerate(class_names)}
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            key = d.name.replace("_", " ").lower()
            if key not in lookup:
                raise DatasetError(f"{d}: folder name is not one of the model's {len(class_names)} classes")
            for img in sorted(d.iterdir()):
                if img.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"}:
                    items.append((img, lookup[key]))
    else:
        raise DatasetError(f"{root}: not a folder or a labels CSV")
    if not items:
        raise DatasetError(f"{root}: no labelled images found")
    return items[:limit] if limit else items


@torch.inference_mode()
def prepare_images(p: Pretrained, items) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode, resize and crop once; normalisation is applied later (cheap to vary)."""
    from visiontune.data import read_image

    xs = [p.preprocess.to_float(read_image(path)) for path, _ in items]
    ys = torch.tensor([y for _, y in items])
    return torch.stack(xs), ys


@torch.inference_mode()
def accuracy(p: Pretrained, x: torch.Tensor, y: torch.Tensor, mean, std, batch_size: int = 50) -> tuple[float, float]:
    """(top-1, top-5) accuracy of ``p`` on prepared images ``x`` / labels ``y`` normalised with ``mean`` / ``std``."""
    top1 = top5 = 0.0
    m = torch.tensor(mean).view(1, -1, 1, 1) if mean is not None else None
    s = torch.tensor(std).view(1, -1, 1, 1) if std is not None else None
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        if m is not None:
            assert s is not None, "mean without std"
            xb = (xb - m) / s
        logits = logits_of(p.model(xb))
        t5 = logits.topk(min(5, logits.shape[-1]), -1).indices
        yb = y[i : i + batch_size]
        top1 += (t5[:, 0] == yb).sum().item()
        top5 += (t5 == yb[:, None]).any(-1).sum().item()
    return top1 / len(x), top5 / len(x)


def evaluate(p: Pretrained, data, limit: int | None = None) -> dict:
    """``{"n", "top1", "top5"}`` of ``p`` on the labelled images of ``data`` (first ``limit``)."""
    items = labelled_images(data, p.card.class_names, limit)
    x, y = prepare_images(p, items)
    t1, t5 = accuracy(p, x, y, p.preprocess.mean, p.preprocess.std)
    return {"n": len(items), "top1": t1, "top5": t5}


def sweep_prepared(
    p: Pretrained, x: torch.Tensor, y: torch.Tensor, scales: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
) -> list[dict]:
    """The sweep on images already resized and cropped (``prepare_images``): only normalisation varies.

    At scale a: mean_a = a·mean, std_a = 1 + a·(std − 1).
    """
    if p.preprocess.mean is None:
        raise VisiontuneError(f"{p.card.model_id} takes un-normalised input: nothing to sweep")
    assert p.preprocess.std is not None, "Preprocess normalises with both mean and std"
    rows = []
    for a in scales:
        mean = [a * m for m in p.preprocess.mean]
        std = [1 + a * (s - 1) for s in p.preprocess.std]
        t1, t5 = accuracy(p, x, y, mean, std)
        rows.append({"scale": a, "mean": mean, "std": std, "top1": t1, "top5": t5, "n": len(x)})
    return rows


def plot_sweep(rows: list[dict], title: str, path: str | Path) -> Path:
    """Plot top-1 / top-5 against the normalisation scale to the PNG ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([r["scale"] for r in rows], [100 * r["top1"] for r in rows], "o-", label="top-1")
    ax.plot([r["scale"] for r in rows], [100 * r["top5"] for r in rows], "s--", label="top-5")
    ax.set_xlabel("normalisation scale (0 = none, 1 = the card's mean/std)")
    ax.set_ylabel(f"accuracy % (n={rows[0]['n']})")
    ax.set_title(title)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def normalization_sweep(
    p: Pretrained,
    data,
    scales: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    limit: int | None = None,
    plot: str | Path | None = None,
) -> list[dict]:
    """Accuracy as the normalisation goes from none (scale 0: mean 0, std 1) to the card's (1)."""
    if p.preprocess.mean is None:
        raise VisiontuneError(f"{p.card.model_id} takes un-normalised input: nothing to sweep")
    x, y = prepare_images(p, labelled_images(data, p.card.class_names, limit))
    rows = sweep_prepared(p, x, y, scales)
    if plot:
        plot_sweep(rows, f"Normalisation sweep: {p.card.model_id}", plot)
    return rows


def compare_models(ids: Sequence[str], image, topk: int = 5, **load_kw) -> dict[str, list]:
    """Each model's top-k on one image, each through its own preprocessing."""
    from visiontune.hub.loader import load

    out = {}
    for mid in ids:
        p = load(mid, **load_kw)
        pred = p.predict([image], topk=topk)[0]
        out[mid] = list(zip(pred.labels, pred.probs))
    return out


__all__ = [
    "Mismatch",
    "check_preprocess",
    "compare_models",
    "describe_transform",
    "evaluate",
    "labelled_images",
    "normalization_sweep",
    "plot_sweep",
    "sweep_prepared",
]
