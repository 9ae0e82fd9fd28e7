"""Evaluating segmenters: mIoU, per-class IoU, pixel accuracy and Dice over a labelled split
(streaming: one confusion matrix, memory flat over any split size), and COCO mask AP of
instance segmenters through pycocotools' ``segm``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from visiontune._atomic import write_text
from visiontune.errors import ConfigError, require
from visiontune.hub import Pretrained, load
from visiontune.hub.segmentation import label_conventions
from visiontune.progress import progress as progress_bar
from visiontune.results.segmentation import encode_rle
from visiontune.segment.data import SegmentationDataset
from visiontune.segment.formats import detect_format, load_segmentation
from visiontune.segment.metrics import ConfusionMatrix, image_iou, mask_ap


@dataclass
class SegmentationEvaluation:
    """Metrics of a segmenter on a split; ``per_image`` (path, IoU, counts) when asked for."""

    model_id: str
    data: str
    split: str | None
    metrics: dict[str, Any]
    confusion: list[list[int]] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    per_image: list[dict] = field(default_factory=list)
    dir: Path | None = None

    def to_dict(self) -> dict:
        """Task, model, data and metrics as JSON-ready values."""
        return {
            "task": "segmentation",
            "model": self.model_id,
            "data": self.data,
            "split": self.split,
            "metrics": self.metrics,
            "class_names": self.class_names,
            "confusion": self.confusion,
        }

    def summary(self) -> str:
        """One line: the model's mIoU, pixel accuracy, Dice (and AP) on the data."""
        m = self.metrics
        keys = ("mIoU", "pixel_accuracy", "dice", "AP", "AP50")
        return f"{self.model_id} on {self.data}: " + ", ".join(
            f"{k} {m[k]:.4f}" for k in keys if isinstance(m.get(k), float)
        )

    def table(self) -> str:
        """Per-class IoU / Dice / accuracy as a text table."""
        iou, dice, acc = (self.metrics.get(k) or {} for k in ("iou", "dice_per_class", "accuracy"))
        rows = [f"{'class':20s} {'IoU':>7s} {'Dice':>7s} {'acc':>7s}"]
        for n in self.class_names:
            cells = [
                f"{v:7.4f}" if isinstance(v, float) else f"{'-':>7s}" for v in (iou.get(n), dice.get(n), acc.get(n))
            ]
            rows.append(f"{n[:20]:20s} " + " ".join(cells))
        return "\n".join(rows)

    def write(self, out: str | os.PathLike) -> Path:
        """``out/metrics.json`` (+ ``per_image.json`` when computed)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "metrics.json", json.dumps(self.to_dict(), indent=1))
        if self.per_image:
            write_text(out / "per_image.json", json.dumps(self.per_image))
        self.dir = out
        return out


def _as_pretrained(model: Any, trust_pickle: bool) -> Pretrained:
    if isinstance(model, Pretrained):
        return model
    path = Path(str(model))
    if path.is_dir() and (path / "model").is_dir() and (path / "run.json").is_file():
        path = path / "model"  # a run folder
    return load(str(path) if path.exists() else str(model), trust_pickle=trust_pickle)


def labelled_split(
    p: Pretrained, data: Any, split: str | None, *, classes: Any = None, ignore_index: int | None = None
) -> SegmentationDataset:
    """The split ``p`` is scored on. A mask folder says nothing about its void label, so without
    an explicit ``ignore_index`` the model's own convention (its card's ``ignore_index``, e.g. 11
    for a CamVid-trained run) is used, else the folder default (255)."""
    if ignore_index is None and not isinstance(data, SegmentationDataset) and detect_format(data) == "masks":
        card_ignore = p.card.extra.get("ignore_index")
        if card_ignore is not None:
            ignore_index = int(card_ignore)
    ds = load_segmentation(data, split, classes=classes, ignore_index=ignore_index)
    if ds.ignore_index is None and ds.kind == "semantic":
        ds.ignore_index = label_conventions(p)["ignore_index"]
    return ds


def _check_classes(p: Pretrained, ds: SegmentationDataset) -> None:
    if p.card.num_classes and p.card.num_classes != len(ds.classes):
        raise ConfigError(
            f"{p.card.model_id} predicts {p.card.num_classes} classes but {ds.root or ds.source} has {len(ds.classes)} "
            f"({', '.join(ds.classes[:6])}…): evaluate a model trained on these classes"
        )


def evaluate_semantic(
    p: Pretrained,
    ds: SegmentationDataset,
    *,
    batch_size: int = 8,
    per_image: bool = False,
    progress: bool = True,
    on_image: Callable[[int, Any, torch.Tensor], None] | None = None,
) -> tuple[ConfusionMatrix, list[dict]]:
    """Stream ``ds`` through ``p``: one confusion matrix (``per_image``: each image's IoU and
    counts too; ``on_image(i, prediction, truth)`` sees every prediction and may keep what it
    needs — the audit keeps the worst overlays)."""
    _check_classes(p, ds)
    cm = ConfusionMatrix(len(ds.classes), ds.ignore_index, ds.classes)
    rows: list[dict] = []
    with progress_bar("evaluating", len(ds), enabled=progress) as bar:
        for start in range(0, len(ds), batch_size):
            idx = list(range(start, min(start + batch_size, len(ds))))
            preds = p.predict([ds.samples[i].image for i in idx], batch_size=batch_size)
            for i, pred in zip(idx, preds):
                truth = torch.from_numpy(ds.class_map(i))
                pm = pred.semantic()
                if pm.shape != truth.shape:
                    raise ConfigError(
                        f"{ds.samples[i].mask}: mask {tuple(truth.shape)} vs prediction {tuple(pm.shape)}"
                    )
                counts = cm.update(pm, truth)
                if per_image:
                    rows.append(
                        {
                            "index": i,
                            "path": str(ds.samples[i].image),
                            "iou": image_iou(counts),
                            "counts": counts.tolist(),
                        }
                    )
                if on_image is not None:
                    on_image(i, pred, truth)
            bar.advance(len(idx))
    return cm, rows


def coco_truth(ds: SegmentationDataset) -> dict:
    """``ds`` as an in-memory COCO instances dict (RLE masks), category ids = class index + 1."""
    mask_util = require("pycocotools.mask", "dev", "COCO masks")
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(len(ds)):
        h, w = ds.size(i)
        images.append({"id": i + 1, "file_name": str(ds.samples[i].image), "height": h, "width": w})
        masks, labels, crowd = ds.instance_masks(i)
        for m, c, cr in zip(masks, labels.tolist(), crowd.tolist()):
            rle = encode_rle(m)
            raw = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "segmentation": rle,
                    "area": float(mask_util.area(raw)),
                    "bbox": [float(v) for v in mask_util.toBbox(raw)],
                    "iscrowd": cr,
                }
            )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(ds.classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def evaluate_instances(
    p: Pretrained,
    ds: SegmentationDataset,
    *,
    batch_size: int = 8,
    progress: bool = True,
    score_threshold: float = 0.001,
) -> dict[str, Any]:
    """COCO mask AP of an instance segmenter on ``ds`` (classes matched by name)."""
    by_name = {n: k for k, n in enumerate(ds.classes)}
    names = p.class_names
    mapping = {i: by_name[n] + 1 for i, n in enumerate(names) if n in by_name}
    if not mapping:
        raise ConfigError(
            f"{p.card.model_id}: none of its class names are classes of the data ({', '.join(ds.classes[:6])}…)"
        )
    preds: list[dict] = []
    with progress_bar("evaluating", len(ds), enabled=progress) as bar:
        for start in range(0, len(ds), batch_size):
            idx = list(range(start, min(start + batch_size, len(ds))))
            for i, seg in zip(idx, p.predict([ds.samples[k].image for k in idx], score_threshold=score_threshold)):
                keep = torch.tensor([int(lab) in mapping for lab in seg.labels.tolist()], dtype=torch.bool)
                seg = seg[keep.nonzero().flatten()]
                preds += seg.to_coco(i + 1, mapping)
            bar.advance(len(idx))
    return mask_ap(coco_truth(ds), preds, per_class=True)


def evaluate_segmenter(
    model: Any,
    data: Any,
    *,
    split: str | None = "val",
    batch_size: int = 8,
    classes: Any = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    progress: bool = True,
    trust_pickle: bool = False,
    out: str | os.PathLike | None = None,
) -> SegmentationEvaluation:
    """Evaluate a segmenter on a labelled split: semantic metrics for semantic segmenters, COCO
    mask AP (+ the semantic metrics of the painted masks) for instance segmenters."""
    p = _as_pretrained(model, trust_pickle)
    ds = labelled_split(p, data, split, classes=classes, ignore_index=ignore_index)
    if p.task == "instance-segmentation":
        metrics = evaluate_instances(p, ds, batch_size=batch_size, progress=progress)
        res = SegmentationEvaluation(p.card.model_id, str(data), split, metrics, [], list(ds.classes))
    else:
        cm, rows = evaluate_semantic(p, ds, batch_size=batch_size, per_image=per_image, progress=progress)
        metrics = cm.compute()
        metrics["images"] = len(ds)
        res = SegmentationEvaluation(
            p.card.model_id, str(data), split, metrics, cm.matrix.tolist(), list(ds.classes), rows
        )
    if out is not None:
        res.write(out)
    return res
