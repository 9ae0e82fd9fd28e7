"""Auditing a semantic segmenter: images ranked by IoU (worst first) with prediction-vs-truth
overlays, the per-class confusion, and likely label errors through cleanlab's segmentation
module — in the shared HTML report (`visiontune.audit.report`), a CSV and a typed record.

Streaming like the evaluation: one confusion matrix, the ``worst`` overlays kept in a bounded heap,
and for cleanlab the class probabilities at ``1 / downsample`` of the label resolution (memory
N × C × H/d × W/d floats; ``label_issues=False`` skips it).
"""

from __future__ import annotations

import base64
import heapq
import io
import json
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from visiontune._atomic import write_text
from visiontune.audit.rankings import plot_confusion_matrix
from visiontune.audit.report import Column, ReportData, Table, render_report
from visiontune.data.decode import read_image
from visiontune.errors import require
from visiontune.records import Record
from visiontune.results import Segmentation, class_color, draw_legend
from visiontune.segment.evaluate import _as_pretrained, evaluate_semantic, labelled_split
from visiontune.segment.metrics import ConfusionMatrix, image_iou


class SegmentationAuditRecord(Record):
    """``audit.json`` of a segmentation audit."""

    KIND: ClassVar[str] = "segment-audit"
    VERSION: ClassVar[int] = 1

    model: str
    data: str
    split: str | None = None
    metrics: dict[str, Any] = {}
    worst: list[dict[str, Any]] = []
    label_issues: list[dict[str, Any]] = []


@dataclass
class SegmentationAudit:
    """What ``audit_segmenter`` found; ``dir`` holds report.html, segmentation_audit.csv, overlays/."""

    dir: Path | None
    metrics: dict[str, Any]
    images: pd.DataFrame
    confusions: pd.DataFrame
    record: SegmentationAuditRecord

    def to_dict(self) -> dict:
        """The audit record as JSON-ready values."""
        return self.record.model_dump(mode="json")

    def summary(self) -> str:
        """One line: mIoU and the worst images."""
        worst = self.images.head(3)
        items = ", ".join(f"{Path(p).name} {v:.3f}" for p, v in zip(worst["path"], worst["iou"]))
        return f"mIoU {self.metrics['mIoU']:.4f} over {len(self.images)} images; worst: {items}"


def overlay_pair(
    image: Image.Image,
    truth: torch.Tensor,
    pred: Segmentation,
    class_names: list[str],
    ignore: int | None,
    width: int = 720,
) -> Image.Image:
    """Truth | prediction side by side (class colours, void left clear) with one legend."""
    none, no_labels = torch.zeros(0), torch.zeros(0, dtype=torch.int64)  # no instances: class maps only
    t = Segmentation(torch.zeros(0, 4), none, no_labels, class_names, class_map=truth, ignore_index=ignore)
    p = Segmentation(torch.zeros(0, 4), none, no_labels, class_names, class_map=pred.semantic(), ignore_index=ignore)
    a, b = t.draw(image, legend=False), p.draw(image, legend=False)
    pair = Image.new("RGB", (a.width * 2 + 6, a.height), (255, 255, 255))
    pair.paste(a, (0, 0))
    pair.paste(b, (a.width + 6, 0))
    scale = width / pair.width
    pair = pair.resize((width, max(1, round(pair.height * scale))), Image.Resampling.BILINEAR)
    assert p.class_map is not None  # set just above
    present = sorted({*np.unique(truth.numpy()).tolist(), *np.unique(p.class_map.numpy()).tolist()} - {ignore})
    entries = [(class_names[c] if 0 <= c < len(class_names) else str(c), class_color(c)) for c in present]
    return draw_legend(pair, entries)


def _label_scores(labels: list[np.ndarray], probs: list[np.ndarray]) -> np.ndarray:
    rank = require("cleanlab.segmentation.rank", "dev", "segmentation label issues")
    scores, _ = rank.get_label_quality_scores(np.stack(labels), np.stack(probs), method="softmin", verbose=False)
    return np.asarray(scores)


def audit_segmenter(
    model: Any,
    data: Any,
    *,
    split: str | None = "val",
    out: str | os.PathLike | None = "segment-audit",
    worst: int = 12,
    label_issues: bool = True,
    downsample: int = 4,
    classes: Any = None,
    ignore_index: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    trust_pickle: bool = False,
) -> SegmentationAudit:
    """Audit ``model`` on a labelled split (see the module docstring); writes ``out`` unless None."""
    p = _as_pretrained(model, trust_pickle)
    ds = labelled_split(p, data, split, classes=classes, ignore_index=ignore_index)
    names, ign = list(ds.classes), ds.ignore_index
    heap: list[tuple[float, int, Segmentation, torch.Tensor]] = []
    small_labels: list[np.ndarray] = []
    small_probs: list[np.ndarray] = []

    def keep(i: int, pred: Segmentation, truth: torch.Tensor) -> None:
        iou = image_iou(ConfusionMatrix.counts(pred.semantic(), truth, len(names), ign))
        item = (-iou if iou == iou else 0.0, i, pred, truth)
        if len(heap) < worst:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
        if label_issues and pred.probabilities is not None:
            h, w = truth.shape
            size = (max(1, h // downsample), max(1, w // downsample))
            pr = F.interpolate(pred.probabilities[None], size=size, mode="bilinear", align_corners=False)[0]
            lab = F.interpolate(truth[None, None].float(), size=size, mode="nearest")[0, 0].long()
            void = lab == ign if ign is not None else torch.zeros_like(lab, dtype=torch.bool)
            lab = torch.where(void | (lab >= len(names)), pr.argmax(0), lab)  # void: never an "issue"
            small_labels.append(lab.numpy().astype(np.int64))
            small_probs.append(pr.numpy().astype(np.float32))
        pred.probabilities = None  # the heap keeps class maps only

    class _Probs:  # ask the predictor for probabilities only when cleanlab needs them
        def __init__(self, inner: Any):
            self.inner = inner

        def predict(self, images: Any, **kw: Any) -> list:
            return self.inner.predict(images, probabilities=label_issues, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    cm, rows = evaluate_semantic(_Probs(p), ds, batch_size=batch_size, per_image=True, progress=progress, on_image=keep)  # type: ignore[arg-type]
    metrics = cm.compute()
    df = pd.DataFrame(
        [
            {
                "path": r["path"],
                "iou": r["iou"],
                "pixel_accuracy": float(np.trace(np.array(r["counts"])) / max(np.sum(r["counts"]), 1)),
                "top_confusion": _top_confusion(np.array(r["counts"]), names),
            }
            for r in rows
        ]
    )
    if label_issues and small_probs:
        df["label_quality"] = _label_scores(small_labels, small_probs)
    df = df.sort_values("iou", kind="stable").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    conf = _confusion_table(cm.matrix.numpy(), names, metrics["iou"])
    worst_rows = sorted(heap, key=lambda x: (-x[0], x[1]))  # lowest IoU first
    record = SegmentationAuditRecord(
        model=p.card.model_id,
        data=str(ds.root or ds.source) if not isinstance(data, (str, os.PathLike)) else str(data),
        split=split,
        metrics={k: v for k, v in metrics.items()},
        worst=[{"path": str(ds.samples[i].image), "iou": -s} for s, i, _, _ in worst_rows],
        label_issues=(
            df.sort_values("label_quality").head(worst)[["path", "label_quality", "iou"]].to_dict("records")
            if "label_quality" in df
            else []
        ),
    )
    res = SegmentationAudit(None, metrics, df, conf, record)
    if out is not None:
        res.dir = _write(Path(out), res, worst_rows, ds, names, ign, cm.matrix.numpy(), p.card.model_id, split)
    return res


def _top_confusion(counts: np.ndarray, names: list[str]) -> str:
    off = counts.copy()
    np.fill_diagonal(off, 0)
    if off.sum() == 0:
        return ""
    t, q = np.unravel_index(int(off.argmax()), off.shape)
    return f"{names[t]} → {names[q]} ({off[t, q] / max(counts.sum(), 1):.1%})"


def _confusion_table(m: np.ndarray, names: list[str], iou: dict) -> pd.DataFrame:
    rows = []
    for t, n in enumerate(names):
        off = m[t].copy()
        off[t] = 0
        total = max(int(m[t].sum()), 1)
        q = int(off.argmax())
        rows.append(
            {
                "class": n,
                "iou": iou.get(n),
                "pixels": int(m[t].sum()),
                "recall": m[t, t] / total,
                "confused_with": names[q] if off[q] else "",
                "confused_share": off[q] / total,
            }
        )
    return pd.DataFrame(rows).sort_values("iou", na_position="last").reset_index(drop=True)


def _write(
    out: Path,
    res: SegmentationAudit,
    worst_rows: list,
    ds: Any,
    names: list[str],
    ign: int | None,
    matrix: np.ndarray,
    model_id: str,
    split: str | None,
) -> Path:
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    shown, gallery = [], []
    for k, (s, i, pred, truth) in enumerate(worst_rows):
        img = read_image(ds.samples[i].image)
        pair = overlay_pair(img, truth, pred, names, ign)
        dst = out / "overlays" / f"{k + 1:03d}-{ds.samples[i].image.stem}.png"
        pair.save(dst)
        shown.append({"rank": k + 1, "overlay": str(dst), "iou": -s, "path": str(ds.samples[i].image)})
        buf = io.BytesIO()
        pair.save(buf, format="JPEG", quality=82)
        uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        caption = escape(f"#{k + 1} IoU {-s:.3f} · {ds.samples[i].image.name}")
        gallery.append(
            f'<figure class="overlay"><img class="cm" alt="{caption}" src="{uri}"><figcaption class="note">{caption}</figcaption></figure>'
        )
    res.images.to_csv(out / "segmentation_audit.csv", index=False)
    res.record.write(out / "audit.json")
    cm_png = plot_confusion_matrix(
        matrix.astype(np.int64), names, out / "confusion_matrix.png", title="pixel confusion", cells="percent",
        unit="pixels",
    )  # fmt: skip
    tables = [
        Table(
            "worst",
            f"Worst {len(shown)} images by IoU: truth (left) vs prediction (right)",
            pd.DataFrame(shown),
            [
                Column("rank", "rank", "num", "{:.0f}"),
                Column("IoU", "iou", "num"),
                Column("image", "path", "path"),
                Column("overlay file", "overlay", "path"),
            ],
            note="mean IoU over the classes present in the image's truth or prediction; void pixels count nowhere",
            extra="".join(gallery),
        ),
        Table(
            "classes",
            "Per-class confusion",
            res.confusions,
            [
                Column("class", "class"),
                Column("IoU", "iou", "num"),
                Column("recall", "recall", "pct"),
                Column("pixels", "pixels", "num", "{:.0f}"),
                Column("most confused with", "confused_with"),
                Column("share", "confused_share", "pct"),
            ],
            class_keys=("class", "confused_with"),
        ),
        Table(
            "images",
            "All images, worst IoU first",
            res.images,
            [
                Column("rank", "rank", "num", "{:.0f}"),
                Column("IoU", "iou", "num"),
                Column("pixel acc", "pixel_accuracy", "pct"),
                Column("top confusion", "top_confusion"),
            ]
            + ([Column("label quality (cleanlab)", "label_quality", "num")] if "label_quality" in res.images else [])
            + [Column("path", "path", "path")],
            note="label quality: cleanlab.segmentation softmin score (lower = more likely mislabelled)",
        ),
    ]
    m = res.metrics
    data = ReportData(
        title=f"Segmentation audit: {model_id}",
        meta={"data": res.record.data, "split": split, "images": len(res.images)},
        cards=[
            ("mIoU", f"{m['mIoU']:.3f}"),
            ("pixel accuracy", f"{m['pixel_accuracy']:.3f}"),
            ("Dice", f"{m['dice']:.3f}"),
        ],
        classes=names,
        tables=tables,
        confusion_png=cm_png,
    )
    write_text(out / "report.html", render_report(data))
    write_text(out / "per_class.json", json.dumps(res.confusions.to_dict("records"), indent=1, default=float))
    return out
