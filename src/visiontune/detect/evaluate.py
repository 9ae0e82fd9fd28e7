"""COCO mAP (AP, AP50, AP75, small / medium / large, recall, per class) with pycocotools
(default) or faster-coco-eval, for any detector on any visiontune detection dataset."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visiontune._atomic import write_text
from visiontune.errors import ConfigError, require
from visiontune.results import Detections

from .datasets import DetectionDataset, load_detection
from .detector import Detector

STAT_NAMES = [
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
]


@dataclass
class EvalResult:
    """COCO metrics, per-class AP and the evaluator backend used."""

    metrics: dict[str, float]
    per_class: list[dict] = field(default_factory=list)  # {"class", "AP", "AP50", "AP75", "gt", "dets"}
    backend: str = "pycocotools"
    num_images: int = 0
    dropped_classes: list[str] = field(default_factory=list)  # detector classes not in the dataset
    dir: Path | None = None  # where write() put metrics.json

    def summary(self) -> str:
        """One line with the headline numbers."""
        m = self.metrics
        return (
            f"AP {m['AP']:.4f}, AP50 {m['AP50']:.4f}, AP75 {m['AP75']:.4f} ({self.num_images} images, {self.backend})"
        )

    def write(self, out: str | os.PathLike) -> Path:
        """``out/metrics.json`` (atomic); sets ``dir``."""
        self.dir = Path(out)
        write_text(self.dir / "metrics.json", json.dumps({"task": "detection", **self.to_dict()}, indent=1))
        return self.dir / "metrics.json"

    def table(self) -> str:
        """The headline metrics and the per-class AP as a text table."""
        lines = [" ".join(f"{k}={v:.4f}" for k, v in self.metrics.items() if k in STAT_NAMES[:6])]
        lines.append(f"{'class':<24}{'AP':>8}{'AP50':>8}{'AP75':>8}{'gt':>7}{'dets':>7}")
        for r in self.per_class:
            if not r["gt"] and not r["dets"]:
                continue
            lines.append(
                f"{r['class'][:23]:<24}{_f(r['AP']):>8}{_f(r['AP50']):>8}{_f(r['AP75']):>8}{r['gt']:>7}{r['dets']:>7}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Metrics and per-class rows as JSON-ready values."""
        return {
            "metrics": self.metrics,
            "per_class": self.per_class,
            "backend": self.backend,
            "num_images": self.num_images,
            "dropped_classes": self.dropped_classes,
            "dir": str(self.dir) if self.dir else None,
        }


def _f(v: float) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def label_mapping(detector_names: Sequence[str], classes: Sequence[str]) -> tuple[dict[int, int], list[str]]:
    """Detector label -> dataset class index, by class name; names the dataset lacks are dropped."""
    index = {c: i for i, c in enumerate(classes)}
    mapping = {j: index[n] for j, n in enumerate(detector_names) if n in index}
    dropped = [n for n in detector_names if n not in index and n not in ("__background__", "N/A", "")]
    if not mapping:
        raise ConfigError(
            f"no class of the detector ({', '.join(list(detector_names)[:8])}…) is a class of the dataset "
            f"({', '.join(list(classes)[:8])}…); fine-tune the detector on this dataset first"
        )
    return mapping, dropped


def coco_ground_truth(ds: DetectionDataset) -> dict:
    """``ds`` as an in-memory COCO ground-truth dict (category ids = class index + 1)."""
    images, anns = [], []
    aid = 1
    for i, r in enumerate(ds.images):
        images.append({"id": i + 1, "width": r.width, "height": r.height, "file_name": str(r.path)})
        for b, lab, crowd in zip(r.boxes.tolist(), r.labels.tolist(), r.crowd.tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": aid,
                    "image_id": i + 1,
                    "category_id": lab + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                }
            )
            aid += 1
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(ds.classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_results(ds: DetectionDataset, predictions: Sequence[Detections], mapping: dict[int, int]) -> list[dict]:
    """COCO results list (image ids 1..N in dataset order; category id = class index + 1)."""
    if len(predictions) != len(ds):
        raise ConfigError(f"{len(predictions)} predictions for {len(ds)} images")
    out = []
    for i, d in enumerate(predictions):
        keep = [k for k, lab in enumerate(d.labels.tolist()) if lab in mapping]
        sub = d[keep] if keep else d[[]]
        cats = {lab: mapping[lab] + 1 for lab in set(sub.labels.tolist())}
        out += sub.to_coco(i + 1, category_ids=cats)
    return out


def coco_map(
    ds: DetectionDataset,
    predictions: Sequence[Detections],
    mapping: dict[int, int] | None = None,
    backend: str = "pycocotools",
    max_detections: int = 100,
) -> EvalResult:
    """COCO box mAP of ``predictions`` (one `Detections` per image of ``ds``, in order)."""
    if mapping is None:
        mapping, dropped = label_mapping(predictions[0].class_names if predictions else ds.classes, ds.classes)
    else:
        dropped = []
    gt = coco_ground_truth(ds)
    dts = coco_results(ds, predictions, mapping)
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif backend in ("faster-coco-eval", "faster_coco_eval"):
        fce = require("faster_coco_eval", "dev", "the faster-coco-eval backend")
        COCO, COCOeval = fce.COCO, fce.COCOeval_faster
        backend = "faster-coco-eval"
    else:
        raise ConfigError(f"backend must be pycocotools or faster-coco-eval, not {backend!r}")
    per_gt = np.bincount([a["category_id"] - 1 for a in gt["annotations"]], minlength=len(ds.classes))
    per_dt = np.bincount([a["category_id"] - 1 for a in dts], minlength=len(ds.classes))
    if not dts or not gt["annotations"]:
        metrics = {k: 0.0 for k in STAT_NAMES}
        per_class = [
            {"class": c, "AP": 0.0, "AP50": 0.0, "AP75": 0.0, "gt": int(per_gt[k]), "dets": int(per_dt[k])}
            for k, c in enumerate(ds.classes)
        ]
        return EvalResult(metrics, per_class, backend, len(ds), dropped)
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO()
        cgt.dataset = gt
        cgt.createIndex()
        cdt = cgt.loadRes(dts)
        ev = COCOeval(cgt, cdt, "bbox")
        ev.params.maxDets = [1, 10, max(100, max_detections)]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(x) for x in ev.stats[:12]]
    metrics = {k: max(v, 0.0) if v != -1 else float("nan") for k, v in zip(STAT_NAMES, stats)}
    prec = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    cat_ids = list(ev.params.catIds)
    per_class = []
    for k, c in enumerate(ds.classes):
        if k + 1 not in cat_ids:
            continue
        kk = cat_ids.index(k + 1)

        def ap(p):
            p = p[p > -1]
            return float(p.mean()) if p.size else float("nan")

        per_class.append(
            {
                "class": c,
                "AP": ap(prec[:, :, kk, 0, -1]),
                "AP50": ap(prec[0, :, kk, 0, -1]),
                "AP75": ap(prec[5, :, kk, 0, -1]),
                "gt": int(per_gt[k]),
                "dets": int(per_dt[k]),
            }
        )
    return EvalResult(metrics, per_class, backend, len(ds), dropped)


def evaluate(
    detector,
    data,
    split: str | None = None,
    batch_size: int = 8,
    score_threshold: float = 0.001,
    nms_iou: float | None = 0.5,
    max_detections: int = 100,
    backend: str = "pycocotools",
    progress: bool = False,
    *,
    trust_pickle: bool = False,
) -> EvalResult:
    """Run ``detector`` (a `Detector` or model id) on ``data`` and compute COCO mAP.
    A low ``score_threshold`` (the COCO convention) gives the full precision-recall curve."""
    det = Detector.load(detector, trust_pickle=trust_pickle) if not isinstance(detector, Detector) else detector
    ds = load_detection(data, split=split)
    mapping, dropped = label_mapping(det.class_names, ds.classes)
    preds = det(
        [r.path for r in ds.images],
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        max_detections=max_detections,
        batch_size=batch_size,
        progress=progress,
    )
    res = coco_map(ds, preds, mapping, backend=backend, max_detections=max_detections)
    res.dropped_classes = dropped
    return res
