"""`audit()`: the steps of :mod:`visiontune.audit.steps` in order, each timed and measured, then
the files (tables, index, report, summary.json) and the console summary."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontune._atomic import atomic_path, write_text
from visiontune.audit import steps as st
from visiontune.audit._inputs import resolve_data, resolve_model
from visiontune.audit.compare import compare_versions
from visiontune.audit.cost import CostMeter
from visiontune.audit.embedmap import MAP_POINTS, embedding_map, outlier_scores
from visiontune.audit.features import model_key
from visiontune.audit.page import write_report
from visiontune.audit.report import MapData
from visiontune.audit.result import AuditResult, VersionComparison, print_summary
from visiontune.audit.runs import data_from_run, run_cache_dir, run_split_options
from visiontune.audit.similar import save_index
from visiontune.errors import ConfigError, VisiontuneError
from visiontune.label.audit_tasks import write_issue_tasks

__all__ = ["AuditResult", "VersionComparison", "audit", "compare_versions", "print_summary"]


def audit(
    model_or_run: Any,
    data: Any = None,
    split: str = "val",
    out: str | os.PathLike | None = None,
    *,
    k_folds: int = 5,
    topk: int = 5,
    batch_size: int = 32,
    num_workers: int = 0,
    near_threshold: float | str = "auto",
    hash_distance: int = 4,
    duplicate_splits: str | list[str] = "all",
    label_issues: bool = True,
    label_issue_method: str = "self_confidence",
    cache_dir: str | Path | None = None,
    report_rows: int = 50,
    map_points: int = MAP_POINTS,
    map_method: str = "auto",
    fiftyone: bool = False,
    fiftyone_name: str | None = None,
    launch_app: bool = False,
    compare_with: Any = None,
    quiet: bool = False,
    console: Any = None,
) -> AuditResult:
    """Audit a model on one split of a dataset and write everything to an `audit/` folder.

    model_or_run: a run directory (its `model/` is audited and results go to `<run>/audit/`), a
    saved model directory, a model id, or a loaded `visiontune.Pretrained`.
    data: anything `visiontune.data.load_classification` reads (folder, CSV, manifest JSON, ...)
    or its `Splits`; for a run, defaults to the data in the run's config.yaml.
    out: output folder; default `<run>/audit` for a run, else `./audit`.
    cache_dir: root of the feature store (default `$VISIONTUNE_CACHE`, or the run's cache_dir):
    embeddings are keyed by backbone and file content, so auditing again, auditing a relabelled
    copy, or auditing a `linear` run trained on the same backbone skips the network.
    map_points / map_method: images on the embedding map and "auto" (UMAP if installed) / "umap" / "pca".
    compare_with: another version of the same data (e.g. the manifest written by
    `visiontune.data.apply_fixes`): the model is evaluated on both and `result.comparison` /
    `version_comparison.json` say how much of its error was label noise.

    Files: predictions.csv/.parquet, mistakes.csv, top_losses.csv, confused_pairs.csv,
    per_class.csv, confusion_matrix.png, label_issues.csv, duplicates.csv, outliers.csv,
    index/ (for `similar`), report.html, summary.json (with the cost of every step).
    """
    if near_threshold != "auto" and not (isinstance(near_threshold, (int, float)) and 0 < near_threshold <= 1):
        raise ConfigError(f"near_threshold must be a cosine similarity in (0, 1] or 'auto', not {near_threshold!r}")
    t_start = time.perf_counter()
    meter = CostMeter()
    src = resolve_model(model_or_run)
    if data is None:
        data = data_from_run(src)
    ad = resolve_data(data, **run_split_options(src, data))
    target = ad.get(split)
    out_dir = Path(out) if out is not None else (src.run_dir / "audit" if src.run_dir else Path("audit"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if cache_dir is None:
        cache_dir = run_cache_dir(src)
    warnings: list[str] = []
    if duplicate_splits == "all":
        dup_names = list(ad.splits)
    else:
        dup_names = [duplicate_splits] if isinstance(duplicate_splits, str) else list(duplicate_splits)
        for n in dup_names:
            ad.get(n)
    names = [split] + [n for n in dup_names if n != split]
    files: dict[str, Path] = {}

    with meter.step("features"):
        outs = st.outputs_for(src, ad, names, cache_dir, batch_size, num_workers, quiet)
    o = outs[split]
    skipped = [(p, r) for n in names for p, r in outs[n].skipped]
    warnings += [f"skipped unreadable image {p}: {r}" for p, r in skipped]

    with meter.step("predictions"):
        pred = st.predictions_step(src, o, target, ad.classes, split, topk)
    with meter.step("rankings"):
        rk = st.rankings_step(pred, ad.classes)
        files["mistakes"] = st.write_table(st.csv_view(rk.mistakes), out_dir / "mistakes.csv")
        files["top_losses"] = st.write_table(st.csv_view(rk.losses), out_dir / "top_losses.csv")
        files["confused_pairs"] = st.write_table(rk.pairs, out_dir / "confused_pairs.csv")
        files["per_class"] = st.write_table(rk.per_class, out_dir / "per_class.csv")
        files["confusion_matrix"] = st.rk.plot_confusion_matrix(
            rk.confusion, ad.classes, out_dir / "confusion_matrix.png", title=f"{split} split"
        )
    issues = st.LabelIssues(None, None)
    if label_issues:
        with meter.step("label_issues"):
            issues = st.label_issues_step(
                o, pred, ad.classes, k_folds=k_folds, method=label_issue_method, warnings=warnings
            )
            if issues.table is not None and issues.table["is_issue"].any():  # Label Studio tasks the report links to
                try:
                    tasks = write_issue_tasks(issues.table, pred.table, ad.source, out_dir / "label", src.model_id)
                    issues.table["task"] = issues.table["path"].map(tasks)
                except VisiontuneError as e:
                    warnings.append(f"label tasks for the flagged issues not written: {e}")
            if issues.table is not None:
                files["label_issues"] = st.write_table(issues.table, out_dir / "label_issues.csv")
    with meter.step("duplicates"):
        dups = st.duplicates_step(outs, ad, names, near_threshold=near_threshold, hash_distance=hash_distance)
        files["duplicates"] = st.write_table(dups.table, out_dir / "duplicates.csv")

    table = pred.table
    outliers = None
    map_data = None
    if dups.search is not None:
        with meter.step("outliers_map"):
            table["outlier_score"] = outlier_scores(dups.search, len(table))
            outliers = table.sort_values("outlier_score", ascending=False, kind="stable")
            files["outliers"] = st.write_table(st.csv_view(outliers), out_dir / "outliers.csv")
            map_data = _map(dups, table, issues.table, map_points, map_method)
        with meter.step("index"):
            files["index"] = save_index(
                out_dir,
                dups.search,
                dups.items,
                dups.rows,
                store_key=model_key(src.pretrained),
                cache_dir=cache_dir,
                model_dir=str(src.model_dir.resolve()) if src.model_dir else None,
                model_id=src.model_id,
            )
    files["predictions_csv"] = st.write_table(st.csv_view(table), out_dir / "predictions.csv")
    with atomic_path(out_dir / "predictions.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    files["predictions_parquet"] = out_dir / "predictions.parquet"

    n_dups = dups.table
    metrics = {
        "accuracy": float(table["correct"].mean()) if len(table) else float("nan"),
        "n_images": int(len(table)),
        "n_mistakes": int(len(rk.mistakes)),
        "mean_loss": float(table["loss"].mean()) if len(table) else float("nan"),
        "macro_recall": float(np.nanmean(rk.per_class["recall"])) if len(rk.per_class) else float("nan"),
        "n_label_issues": int(issues.table["is_issue"].sum()) if issues.table is not None else 0,
        "n_duplicate_pairs": int(len(n_dups)),
        "n_leaks": int(n_dups["leak"].sum()) if len(n_dups) else 0,
        "n_skipped": len(skipped),
    }

    fiftyone_dataset = None
    if fiftyone:
        from visiontune.audit.fiftyone_export import FiftyOneUnavailable, export_fiftyone

        try:
            lq = issues.table.set_index("path")["label_quality"] if issues.table is not None else None
            name = fiftyone_name or f"visiontune-audit-{out_dir.resolve().parent.name}-{split}"
            export_fiftyone(table, name, label_quality=lq, launch=launch_app)
            fiftyone_dataset = name
        except FiftyOneUnavailable as e:
            warnings.append(f"FiftyOne export skipped: {e}")

    data_version = ad.version
    run_data = src.run_info.get("data")
    run_data_version = run_data.get("version") if isinstance(run_data, dict) else None
    if run_data_version and data_version and run_data_version != data_version:
        warnings.append(f"the run was trained on data version {run_data_version}, this audit uses {data_version}")
    comparison = None
    if compare_with is not None:
        with meter.step("compare"):
            comparison = compare_versions(
                src.pretrained, ad, compare_with, split=split, cache_dir=cache_dir, batch_size=batch_size, out=out_dir
            )
        files["version_comparison"] = out_dir / "version_comparison.json"
        metrics["error_from_label_noise"] = comparison.error_from_label_noise

    with meter.step("report"):
        files["report"] = write_report(
            out_dir / "report.html",
            src=src,
            data=ad,
            split=split,
            data_version=data_version,
            metrics=metrics,
            mistakes=rk.mistakes,
            losses=rk.losses,
            pairs=rk.pairs,
            per_class=rk.per_class,
            issues=issues.table,
            dups=n_dups,
            confusion_png=files["confusion_matrix"],
            rows=report_rows,
            warnings=warnings,
            folds=issues.folds,
            outliers=outliers,
            embedding_map=map_data,
            cost=meter.to_dict(),
        )
    cost = meter.to_dict()
    timings = {f"{k}_s": v["seconds"] for k, v in cost.items()}
    timings["forward_s"] = timings.get("features_s", 0.0)
    timings["total_s"] = time.perf_counter() - t_start
    timings["images_computed"] = float(sum(outs[n].n_computed for n in names))

    summary = {
        "model_id": src.model_id,
        "model_dir": str(src.model_dir) if src.model_dir else None,
        "run_dir": str(src.run_dir) if src.run_dir else None,
        "weights_sha256": src.weights_sha256,
        "data_source": ad.source,
        "data_version": data_version,
        "run_data_version": run_data_version,
        "split": split,
        "classes": ad.classes,
        "metrics": metrics,
        "k_folds": issues.folds,
        "label_issues_streamed": issues.streamed,
        "near_threshold": dups.threshold,
        "near_threshold_setting": near_threshold,
        "hash_distance": hash_distance,
        "map_method": map_data.method if map_data else None,
        "fiftyone_dataset": fiftyone_dataset,
        "timings": timings,
        "cost": cost,
        "warnings": warnings,
        "files": {k: v.name for k, v in files.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    files["summary"] = write_text(out_dir / "summary.json", json.dumps(summary, indent=2, default=str))

    result = AuditResult(
        out_dir=out_dir,
        split=split,
        classes=ad.classes,
        predictions=table,
        mistakes=rk.mistakes,
        top_losses=rk.losses,
        confused_pairs=rk.pairs,
        per_class=rk.per_class,
        confusion=rk.confusion,
        label_issues=issues.table,
        duplicates=n_dups,
        metrics=metrics,
        files=files,
        data_version=data_version,
        skipped=skipped,
        warnings=warnings,
        timings=timings,
        comparison=comparison,
        cost=cost,
        outliers=outliers,
        model=src.pretrained,
        cache_dir=cache_dir,
    )
    if not quiet:
        print_summary(result, console=console)
    return result


def _map(dups: st.Duplicates, table: pd.DataFrame, issues: pd.DataFrame | None, points: int, method: str) -> MapData:
    """The map of the audited split (the first rows of the index), flagged and coloured."""
    n = len(table)
    paths = table["path"].to_numpy()
    flagged = set(issues.loc[issues["is_issue"], "path"]) if issues is not None else set()
    first = dups.items[0].split if dups.items else None
    in_dup = set()
    for side in ("a", "b"):
        t = dups.table[dups.table[f"split_{side}"] == first]
        in_dup |= set(t[f"path_{side}"])
    issue = np.array([p in flagged for p in paths], dtype=bool)
    dup = np.array([p in in_dup for p in paths], dtype=bool)
    score = table["outlier_score"].to_numpy(dtype=float)
    q = pd.Series(score).rank(pct=True).fillna(0).to_numpy()
    priority = (~table["correct"].to_numpy()) | issue | dup | (q >= 0.99)
    assert dups.search is not None  # the caller maps only when the near-duplicate index exists
    m = embedding_map(dups.search, n, priority, method=method, max_points=points)
    pts = []
    for r, x, y in zip(m.points["row"], m.points["x"], m.points["y"]):
        pts.append(
            {
                "x": round(float(x), 4),
                "y": round(float(y), 4),
                "label": str(table["label"].iat[r]),
                "pred": str(table["pred"].iat[r]),
                "path": str(paths[r]),
                "mistake": bool(not table["correct"].iat[r]),
                "issue": bool(issue[r]),
                "dup": bool(dup[r]),
                "outlier_q": round(float(q[r]), 4),
            }
        )
    shown = f"{len(pts)} of {n} images" if len(pts) < n else f"all {n} images"
    note = (
        f"{'UMAP' if m.method == 'umap' else 'first two principal components'} of the embeddings ({shown}; "
        "mistakes, label issues, duplicates and outliers always shown). Hover for the image, click to find its row."
    )
    return MapData(m.method, pts, note)
