"""Segmentation metrics: a streaming confusion matrix (memory flat over any number of images) for
mIoU, per-class IoU, pixel accuracy and Dice; COCO mask AP through pycocotools' ``segm``.

The accumulator holds one C×C int64 matrix and nothing per image, so evaluating a split of a
million images needs the same memory as one of ten (unlike metric objects that keep every
prediction; huggingface/evaluate #559). Pixels labelled ``ignore_index`` count nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from visiontune.errors import require


class ConfusionMatrix:
    """``update(pred, target)`` with class-index tensors of any shape; ``compute()`` -> metrics.
    ``matrix[t, p]`` counts pixels of true class ``t`` predicted as ``p``."""

    def __init__(self, num_classes: int, ignore_index: int | None = None, class_names: Sequence[str] | None = None):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self.matrix.zero_()

    @staticmethod
    def counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
        """The C×C confusion counts of one batch (on the tensors' device)."""
        t = target.reshape(-1).long()
        p = pred.reshape(-1).long()
        keep = (t >= 0) & (t < num_classes)
        if ignore_index is not None:
            keep &= t != ignore_index
        t, p = t[keep], p[keep].clamp(0, num_classes - 1)
        return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Add a batch; returns its own counts (the per-image IoU of an audit reads them)."""
        c = self.counts(pred, target, self.num_classes, self.ignore_index).cpu()
        self.matrix += c
        return c

    def merge(self, other: ConfusionMatrix | torch.Tensor) -> None:
        """Add another accumulator's counts (e.g. gathered from DDP ranks)."""
        self.matrix += other.matrix if isinstance(other, ConfusionMatrix) else other.cpu().long()

    def compute(self) -> dict[str, Any]:
        """``mIoU``, ``pixel_accuracy``, ``mean_accuracy``, ``dice`` (mean F1), ``fwIoU`` and
        per-class ``iou`` / ``dice`` / ``accuracy`` dicts. Classes absent from both truth and
        prediction are left out of the means (their IoU is NaN)."""
        return metrics_from_matrix(self.matrix, self.class_names)


def metrics_from_matrix(matrix: torch.Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """The metrics of :meth:`ConfusionMatrix.compute` from a C×C count matrix."""
    m = matrix.double()
    tp = m.diag()
    gt = m.sum(1)
    pr = m.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    dice = torch.where(gt + pr > 0, 2 * tp / (gt + pr).clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = gt.sum()
    present = ~torch.isnan(iou)
    freq = gt / total.clamp(min=1)

    def mean(x: torch.Tensor) -> float:
        v = x[~torch.isnan(x)]
        return float(v.mean()) if len(v) else float("nan")

    names = list(class_names)
    return {
        "mIoU": mean(iou),
        "pixel_accuracy": float(tp.sum() / total.clamp(min=1)),
        "mean_accuracy": mean(acc),
        "dice": mean(dice),
        "fwIoU": float((freq[present] * iou[present]).sum()),
        "pixels": int(total),
        "iou": {n: (None if np.isnan(v) else round(v, 5)) for n, v in zip(names, iou.tolist())},
        "dice_per_class": {n: (None if np.isnan(v) else round(v, 5)) for n, v in zip(names, dice.tolist())},
        "accuracy": {n: (None if np.isnan(v) else round(v, 5)) for n, v in zip(names, acc.tolist())},
    }


def image_iou(counts: torch.Tensor) -> float:
    """Mean IoU over the classes present in one image's truth or prediction (audit ranking)."""
    m = counts.double()
    tp, gt, pr = m.diag(), m.sum(1), m.sum(0)
    union = gt + pr - tp
    ok = union > 0
    return float((tp[ok] / union[ok]).mean()) if ok.any() else float("nan")


def mask_ap(
    truth: dict, predictions: Sequence[dict], *, iou_type: str = "segm", per_class: bool = False
) -> dict[str, Any]:
    """COCO AP of instance masks: ``truth`` a COCO instances dict (polygon / RLE segmentations),
    ``predictions`` COCO results (``segmentation`` RLE, ``score``, ``category_id``, ``image_id``).
    Runs pycocotools' ``COCOeval(iouType="segm")`` itself, so the numbers are pycocotools'."""
    coco_mod = require("pycocotools.coco", "dev", "mask AP")
    eval_mod = require("pycocotools.cocoeval", "dev", "mask AP")
    import contextlib
    import io

    gt = coco_mod.COCO()
    doc = dict(truth)
    doc.setdefault("info", {})
    anns = []
    for k, a in enumerate(doc["annotations"]):
        a = dict(a)
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        if "area" not in a or "bbox" not in a:
            mask_util = require("pycocotools.mask", "dev", "mask AP")
            im = next(i for i in doc["images"] if i["id"] == a["image_id"])
            seg = a["segmentation"]
            rle = (
                mask_util.merge(mask_util.frPyObjects(seg, im["height"], im["width"])) if isinstance(seg, list) else seg
            )
            rle = mask_util.frPyObjects(rle, im["height"], im["width"]) if isinstance(rle.get("counts"), list) else rle
            a.setdefault("area", float(mask_util.area(rle)))
            a.setdefault("bbox", mask_util.toBbox(rle).tolist())
        anns.append(a)
    doc["annotations"] = anns
    gt.dataset = doc
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not predictions:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
        dt = gt.loadRes([dict(p) for p in predictions])
        ev = eval_mod.COCOeval(gt, dt, iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    out: dict[str, Any] = {
        "AP": float(s[0]),
        "AP50": float(s[1]),
        "AP75": float(s[2]),
        "AP_small": float(s[3]),
        "AP_medium": float(s[4]),
        "AP_large": float(s[5]),
        "AR100": float(s[8]),
    }
    if per_class:
        prec = ev.eval["precision"]  # T×R×K×A×M
        names = {c["id"]: c["name"] for c in doc["categories"]}
        rows = {}
        for k, cid in enumerate(ev.params.catIds):
            p = prec[:, :, k, 0, -1]
            p = p[p > -1]
            rows[names.get(cid, str(cid))] = float(p.mean()) if p.size else None
        out["per_class"] = rows
    return out
