"""Detection audit: images ranked by false positives and missed objects.

`rank_images` matches predictions to ground truth per image (greedy by score, IoU >= ``iou``,
same class) and counts true positives, false positives (of which: wrong class = overlapping a
ground-truth box of another class, and duplicates = overlapping an already matched box of the
same class) and missed objects. `audit_detections` writes the table (CSV + Parquet), drawn
images of the worst ones, and `html_section` gives an escaped HTML fragment for the audit report.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torchvision.ops import box_iou

from visiontune.results import Detections

from .datasets import DetectionDataset, load_detection
from .detector import Detector
from .evaluate import label_mapping

if TYPE_CHECKING:
    import pandas as pd


def match_image(
    gt_boxes, gt_labels, pred: Detections, mapping: dict[int, int], iou: float = 0.5, score_threshold: float = 0.3
) -> dict:
    """Counts for one image (predictions below ``score_threshold`` are ignored)."""
    keep = [
        i
        for i, (s, lab) in enumerate(zip(pred.scores.tolist(), pred.labels.tolist()))
        if s >= score_threshold and lab in mapping
    ]
    p = pred[keep] if keep else pred[[]]
    pl = torch.tensor([mapping[x] for x in p.labels.tolist()], dtype=torch.int64)
    gb = torch.as_tensor(np.asarray(gt_boxes), dtype=torch.float32).reshape(-1, 4)
    gl = torch.as_tensor(np.asarray(gt_labels), dtype=torch.int64).reshape(-1)
    ious = box_iou(p.boxes, gb) if len(p) and len(gb) else torch.zeros(len(p), len(gb))
    matched = torch.zeros(len(gb), dtype=torch.bool)
    tp = fp = wrong = dup = 0
    for i in torch.argsort(p.scores, descending=True).tolist():
        same = gl == pl[i]
        cand = ious[i].clone()
        cand[~same | matched] = -1
        if len(gb) and cand.max() >= iou:
            matched[int(cand.argmax())] = True
            tp += 1
            continue
        fp += 1
        if len(gb) and ((ious[i] >= iou) & ~same).any():
            wrong += 1
        elif len(gb) and ((ious[i] >= iou) & same & matched).any():
            dup += 1
    return {
        "gt": len(gb),
        "predictions": len(p),
        "tp": tp,
        "fp": fp,
        "missed": int((~matched).sum()),
        "wrong_class": wrong,
        "duplicates": dup,
    }


def rank_images(
    data,
    predictions: Sequence[Detections],
    iou: float = 0.5,
    score_threshold: float = 0.3,
    mapping: dict[int, int] | None = None,
):
    """A pandas DataFrame, one row per image, worst first (false positives + missed objects)."""
    import pandas as pd

    ds = load_detection(data)
    if mapping is None:
        mapping, _ = label_mapping(predictions[0].class_names if predictions else ds.classes, ds.classes)
    rows = []
    for r, d in zip(ds.images, predictions):
        c = match_image(r.boxes[~r.crowd], r.labels[~r.crowd], d, mapping, iou, score_threshold)
        missed_names = _missed_names(r, d, mapping, iou, score_threshold, ds.classes)
        rows.append(
            {
                "path": str(r.path),
                **c,
                "errors": c["fp"] + c["missed"],
                "precision": c["tp"] / c["predictions"] if c["predictions"] else float("nan"),
                "recall": c["tp"] / c["gt"] if c["gt"] else float("nan"),
                "missed_classes": ", ".join(missed_names),
            }
        )
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(
            ["errors", "missed", "fp", "path"], ascending=[False, False, False, True], kind="stable"
        ).reset_index(drop=True)
        df.insert(0, "rank", range(1, len(df) + 1))
    return df


def _missed_names(r, d, mapping, iou, thr, classes) -> list[str]:
    keep = [i for i, (s, lab) in enumerate(zip(d.scores.tolist(), d.labels.tolist())) if s >= thr and lab in mapping]
    p = d[keep] if keep else d[[]]
    pl = torch.tensor([mapping[x] for x in p.labels.tolist()], dtype=torch.int64)
    gb = torch.as_tensor(r.boxes[~r.crowd], dtype=torch.float32).reshape(-1, 4)
    gl = r.labels[~r.crowd]
    if not len(gb):
        return []
    ious = box_iou(gb, p.boxes) if len(p) else torch.zeros(len(gb), 0)
    out = []
    for j in range(len(gb)):
        ok = (ious[j] >= iou) & (pl == int(gl[j])) if len(p) else torch.zeros(0, dtype=torch.bool)
        if not ok.any():
            out.append(classes[int(gl[j])])
    return sorted(set(out))


@dataclass
class DetectionAudit:
    """The per-image detection audit table, its summary and the folder it was written to."""

    table: pd.DataFrame
    summary: dict
    out: Path | None

    def html_section(self, limit: int = 50, image_links: bool = True) -> str:
        """The audit as an HTML section (the worst ``limit`` images) for the audit report."""
        return html_section(
            self.table,
            self.summary,
            limit=limit,
            images_dir=(self.out / "detection_mistakes") if (self.out and image_links) else None,
        )


def audit_detections(
    detector,
    data,
    out=None,
    iou: float = 0.5,
    score_threshold: float = 0.3,
    draw_worst: int = 12,
    batch_size: int = 8,
    progress: bool = False,
    *,
    trust_pickle: bool = False,
) -> DetectionAudit:
    """Run ``detector`` on ``data``; rank images by mistakes; write ``detection_audit.csv`` /
    ``.parquet`` and drawn images of the ``draw_worst`` worst to ``out`` (an audit folder)."""
    det = Detector.load(detector, trust_pickle=trust_pickle) if not isinstance(detector, Detector) else detector
    ds: DetectionDataset = load_detection(data)
    mapping, _ = label_mapping(det.class_names, ds.classes)
    preds = det(
        [r.path for r in ds.images],
        score_threshold=min(score_threshold, 0.05),
        batch_size=batch_size,
        progress=progress,
    )
    df = rank_images(ds, preds, iou=iou, score_threshold=score_threshold, mapping=mapping)
    tot = (
        df[["gt", "predictions", "tp", "fp", "missed", "wrong_class", "duplicates"]].sum().astype(int).to_dict()
        if len(df)
        else {}
    )
    summary = {
        "images": len(df),
        "iou": iou,
        "score_threshold": score_threshold,
        **tot,
        "images_with_errors": int((df["errors"] > 0).sum()) if len(df) else 0,
    }
    outp = None
    if out is not None:
        from visiontune._atomic import atomic_path, write_text

        outp = Path(out)
        outp.mkdir(parents=True, exist_ok=True)
        write_text(outp / "detection_audit.csv", df.to_csv(index=False))
        with atomic_path(outp / "detection_audit.parquet") as tmp:
            df.to_parquet(tmp, index=False)
        mdir = outp / "detection_mistakes"
        mdir.mkdir(exist_ok=True)
        by_path = {str(r.path): (r, p) for r, p in zip(ds.images, preds)}
        for _, row in df.head(draw_worst).iterrows():
            if row["errors"] == 0:
                break
            r, p = by_path[row["path"]]
            img = _draw_with_gt(r, p.filter(score_threshold), ds.classes)
            img.save(mdir / f"{int(row['rank']):03d}_{Path(row['path']).stem}.png")
        write_report(
            outp / "report.html",
            df,
            summary,
            ds.classes,
            mdir,
            title=f"visiontune detection audit: {getattr(det, 'model_id', None) or 'detector'}",
        )
    return DetectionAudit(df, summary, outp)


def write_report(path: Path, table, summary: dict, classes: list[str], drawn_dir: Path | None, title: str) -> Path:
    """The detection audit as the same self-contained, escaped, sortable HTML report as the
    classification audit: totals as cards, the ranked images with thumbnails (predictions and
    ground truth drawn for the worst ones)."""
    from visiontune._atomic import write_text
    from visiontune.audit.report import Column, ReportData, Table, render_report

    df = table.copy()

    def picture(row) -> str:
        if drawn_dir is not None:
            drawn = drawn_dir / f"{int(row['rank']):03d}_{Path(str(row['path'])).stem}.png"
            if drawn.exists():
                return str(drawn)
        return str(row["path"])

    df["image"] = [picture(r) for _, r in df.iterrows()] if len(df) else []
    cols = [Column("image", "image", "img"), Column("rank", "rank", "num", "{:.0f}"), Column("path", "path", "path")]
    cols += [
        Column(c, c, "num", "{:.0f}") for c in ("gt", "predictions", "tp", "fp", "missed", "wrong_class", "duplicates")
    ]
    cols.append(Column("missed classes", "missed_classes"))
    rd = ReportData(
        title=title,
        meta={
            "IoU": summary.get("iou"),
            "score threshold": summary.get("score_threshold"),
            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        cards=[
            (k.replace("_", " "), str(summary[k]))
            for k in ("images", "images_with_errors", "tp", "fp", "missed", "wrong_class")
            if k in summary
        ],
        classes=list(classes),
        tables=[
            Table(
                "detections",
                "Images ranked by false positives and missed objects",
                df,
                cols,
                note="Drawn: predictions in colour, ground truth in white.",
                empty="no images",
            )
        ],
    )
    return write_text(path, render_report(rd))


def _draw_with_gt(r, pred: Detections, classes):
    """Predictions in class colours, ground truth as thin white dashed-looking boxes."""
    from PIL import ImageDraw

    from .io import read_image

    img = pred.draw(read_image(r.path))
    d = ImageDraw.Draw(img)
    for b, lab in zip(r.boxes.tolist(), r.labels.tolist()):
        d.rectangle(b, outline=(255, 255, 255), width=1)
        d.text((b[0] + 2, b[3] - 12), f"GT {classes[lab]}", fill=(255, 255, 255))
    return img


def html_section(table, summary: dict, limit: int = 50, images_dir: Path | None = None) -> str:
    """An escaped HTML fragment (``<section>``) for the audit report: totals and the ranked table."""
    esc = html.escape
    cols = ["rank", "path", "gt", "predictions", "tp", "fp", "missed", "wrong_class", "duplicates", "missed_classes"]
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for _, row in table.head(limit).iterrows():
        cells = []
        for c in cols:
            v = row[c]
            text = esc(str(v))
            if c == "path" and images_dir is not None:
                img = images_dir / f"{int(row['rank']):03d}_{Path(str(v)).stem}.png"
                if img.exists():
                    text = f'<a href="{esc(img.as_posix(), quote=True)}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    totals = ", ".join(f"{esc(str(k))}: {esc(str(v))}" for k, v in summary.items())
    return (
        f'<section class="detection-audit"><h2>Detection mistakes</h2><p>{totals}</p>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></section>"
    )
