"""The report's content: which tables, columns and cards `report.html` shows, and the map."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from visiontune._atomic import write_text
from visiontune.audit._inputs import AuditData, ModelSource
from visiontune.audit.report import Column, MapData, ReportData, Table, render_report


def write_report(
    path: Path,
    *,
    src: ModelSource,
    data: AuditData,
    split: str,
    data_version: str | None,
    metrics: dict,
    mistakes: pd.DataFrame,
    losses: pd.DataFrame,
    pairs: pd.DataFrame,
    per_class: pd.DataFrame,
    issues: pd.DataFrame | None,
    dups: pd.DataFrame,
    confusion_png: Path | None,
    rows: int,
    warnings: list[str],
    folds: int | None,
    outliers: pd.DataFrame | None = None,
    embedding_map: MapData | None = None,
    cost: dict | None = None,
) -> Path:
    """Render every table, the map and the cost per step into one self-contained HTML file."""
    img = Column("image", "path", "img")
    pred_cols = [
        img,
        Column("path", "path", "path"),
        Column("label", "label"),
        Column("prediction", "pred"),
        Column("confidence", "confidence", "pct"),
        Column("p(label)", "p_label", "pct"),
        Column("loss", "loss", "num"),
    ]
    tables = [
        Table(
            "mistakes",
            "Confident mistakes",
            mistakes.head(rows),
            pred_cols,
            class_keys=("label", "pred"),
            note=f"wrong predictions, most confident first ({len(mistakes)} in all; mistakes.csv has every one)",
            empty="no mistakes on this split",
        ),
        Table(
            "losses",
            "Top losses",
            losses.head(rows),
            pred_cols,
            class_keys=("label", "pred"),
            note="highest cross-entropy of the given label first (top_losses.csv)",
        ),
        Table(
            "pairs",
            "Most confused class pairs",
            pairs.head(rows),
            [
                Column("true label", "label"),
                Column("predicted as", "pred"),
                Column("count", "count", "num", "{:.0f}"),
                Column("% of true label", "fraction_of_label", "pct"),
                Column("both directions", "pair_total", "num", "{:.0f}"),
            ],
            class_keys=("label", "pred"),
            empty="no confusions",
        ),
        Table(
            "perclass",
            "Per-class metrics",
            per_class,
            [
                Column("class", "class"),
                Column("precision", "precision", "pct"),
                Column("recall (class accuracy)", "recall", "pct"),
                Column("F1", "f1", "num"),
                Column("support", "support", "num", "{:.0f}"),
                Column("predicted", "predicted", "num", "{:.0f}"),
                Column("errors", "errors", "num", "{:.0f}"),
            ],
            class_keys=("class",),
        ),
    ]
    if issues is not None:
        flagged = int(issues["is_issue"].sum())
        tables.append(
            Table(
                "issues",
                "Label issues",
                issues.head(rows),
                [
                    Column("rank", "rank", "num", "{:.0f}"),
                    img,
                    Column("path", "path", "path"),
                    Column("given label", "label"),
                    Column("suggested", "suggested"),
                    Column("label quality", "label_quality", "num"),
                    Column("p(given)", "p_label", "pct"),
                    Column("flagged", "is_issue", "bool"),
                    *([Column("task", "task", "link")] if "task" in issues else []),
                ],
                class_keys=("label", "suggested"),
                note=f"out-of-sample probabilities from {folds}-fold logistic regression on the model's embeddings, "
                f"ranked by confident learning (cleanlab); {flagged} flagged; lowest label quality first",
            )
        )
    tables.append(
        Table(
            "dups",
            "Duplicates and leaks",
            dups.head(rows),
            [
                Column("kind", "kind"),
                Column("similarity", "similarity", "num"),
                Column("leak", "leak", "bool"),
                Column("image A", "path_a", "img"),
                Column("split A", "split_a"),
                Column("path A", "path_a", "path"),
                Column("label A", "label_a"),
                Column("image B", "path_b", "img"),
                Column("split B", "split_b"),
                Column("path B", "path_b", "path"),
                Column("label B", "label_b"),
                Column("label conflict", "label_conflict", "bool"),
            ],
            class_keys=("label_a", "label_b"),
            note="exact = same bytes; visual = perceptual hash; near = embedding cosine similarity. "
            "A pair across splits is a leak.",
            empty="no duplicates found",
        )
    )
    if outliers is not None:
        tables.append(
            Table(
                "outliers",
                "Outliers",
                outliers.head(rows),
                [
                    img,
                    Column("path", "path", "path"),
                    Column("label", "label"),
                    Column("prediction", "pred"),
                    Column("outlier score", "outlier_score", "num"),
                ],
                class_keys=("label", "pred"),
                note="images far from every other one: mean distance to their 5 nearest neighbours in the "
                "embedding index, highest first (predictions.csv has every score)",
            )
        )
    if cost:
        tables.append(
            Table(
                "cost",
                "Cost per step",
                pd.DataFrame([{"step": k, **v} for k, v in cost.items()]),
                [
                    Column("step", "step"),
                    Column("seconds", "seconds", "num", "{:.2f}"),
                    Column("peak RSS (MB)", "peak_rss_mb", "num", "{:.0f}"),
                ],
                note="wall time and peak resident memory of each step of this audit (summary.json: cost)",
            )
        )
    cards = [
        ("accuracy", f"{100 * metrics['accuracy']:.1f}%"),
        ("images", str(metrics["n_images"])),
        ("mistakes", str(metrics["n_mistakes"])),
        ("macro recall", f"{100 * metrics['macro_recall']:.1f}%"),
        ("label issues", str(metrics["n_label_issues"])),
        ("duplicate pairs", str(metrics["n_duplicate_pairs"])),
        ("leaks", str(metrics["n_leaks"])),
    ]
    if "error_from_label_noise" in metrics:
        cards.append(("error from label noise", f"{100 * metrics['error_from_label_noise']:+.1f} pts"))
    rd = ReportData(
        title=f"visiontune audit: {src.model_id or 'model'} on {split}",
        meta={
            "model": src.model_id,
            "model dir": src.model_dir,
            "run": src.run_dir,
            "data": data.source,
            "data version": data_version,
            "split": split,
            "classes": len(data.classes),
            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        cards=cards,
        classes=data.classes,
        tables=tables,
        confusion_png=confusion_png,
        warnings=warnings,
        embedding_map=embedding_map,
    )
    return write_text(path, render_report(rd))
