"""`audit()`: predictions, rankings, label issues, duplicates, HTML report, FiftyOne; and
`compare_versions()`: the same model on two data versions, to see how much error was label noise."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visiontune._atomic import atomic_path, write_text
from visiontune.audit import duplicates as dup
from visiontune.audit import label_issues as li
from visiontune.audit import rankings as rk
from visiontune.audit._inputs import AuditData, ModelSource, SplitData, class_index_map, resolve_data, resolve_model
from visiontune.audit.features import EmbeddingCache, ImageOutputs, compute_outputs, model_key
from visiontune.audit.report import Column, ReportData, Table, render_report
from visiontune.errors import ConfigError, DatasetError, VisiontuneError
from visiontune.label.audit_tasks import write_issue_tasks


@dataclass
class AuditResult:
    """What an audit found; every table is also a file in `out_dir`."""

    out_dir: Path
    split: str
    classes: list[str]
    predictions: pd.DataFrame
    mistakes: pd.DataFrame
    top_losses: pd.DataFrame
    confused_pairs: pd.DataFrame
    per_class: pd.DataFrame
    confusion: np.ndarray
    label_issues: pd.DataFrame | None
    duplicates: pd.DataFrame
    metrics: dict[str, float]
    files: dict[str, Path]
    data_version: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    comparison: VersionComparison | None = None

    @property
    def report_path(self) -> Path:
        return self.files["report"]

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


def _hashes(paths: list[str]) -> list[str]:
    from visiontune.data.hashing import hash_files

    return [h for h, _ in hash_files(paths)]


def _data_from_run(src: ModelSource) -> str:
    cfg = _run_config(src)
    if not cfg.get("data"):
        raise ConfigError("no data given and no run config.yaml with a 'data' key: pass data=... (--data DIR)")
    return str(cfg["data"])


class _Progress:
    """A rich progress bar over all images of all splits (silent when quiet)."""

    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if not quiet and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.bar.add_task("audit: images", total=total)

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def __call__(self, n: int) -> None:
        if self.bar:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


def _run_split_options(src: ModelSource, data: Any) -> dict:
    """Audit the run's data exactly as it was split for training (val fraction, seed, root)."""
    cfg = _run_config(src)
    if not cfg or not isinstance(data, (str, Path)) or str(data) != str(cfg.get("data")):
        return {}
    return {
        "val_fraction": float(cfg.get("val_fraction", 0.2)),
        "seed": int(cfg.get("split_seed", 0)),
        "root": cfg.get("data_root"),
    }


def _run_config(src: ModelSource) -> dict:
    import yaml

    path = src.run_dir / "config.yaml" if src.run_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({e})") from e
    if isinstance(cfg, dict) and isinstance(cfg.get("train"), dict):
        cfg = cfg["train"]
    return cfg if isinstance(cfg, dict) else {}


def _training_features(src: ModelSource, data: AuditData, split: SplitData) -> np.ndarray | None:
    """The embeddings `visiontune train` cached on disk for this split (`feature_cache: disk`),
    when they match this model's backbone, this data version, these files and this preprocessing."""
    cfg = _run_config(src)
    if cfg.get("feature_cache") != "disk" or not cfg.get("model") or not data.version:
        return None
    from safetensors import safe_open

    from visiontune.adapt.features import cache_key, default_cache_dir, weights_hash
    from visiontune.audit.features import find_head

    model = src.pretrained.model
    head_path, _ = find_head(model)
    key = cache_key(
        cfg["model"],
        weights_hash(model, exclude_prefix=head_path),
        data.version,
        split.name,
        split.paths,
        src.pretrained.preprocess,
    )
    path = Path(cfg.get("cache_dir") or default_cache_dir()) / f"{key}.safetensors"
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
            x = f.get_tensor("features")
    except Exception:  # a truncated or foreign file is not trusted
        return None
    if len(x) != len(split):
        return None
    return x.flatten(1).float().numpy()


def _outputs_for(
    src: ModelSource,
    data: AuditData,
    names: list[str],
    cache: EmbeddingCache,
    batch_size: int,
    num_workers: int,
    quiet: bool,
) -> dict[str, ImageOutputs]:
    splits = [data.get(n) for n in names]
    shas = {s.name: _hashes(s.paths) for s in splits}
    out = {}
    with _Progress(sum(len(s) for s in splits), quiet) as bar:
        for s in splits:
            given = None
            if any(cache.get(h) is None for h in shas[s.name]):
                given = _training_features(src, data, s)
            out[s.name] = compute_outputs(
                src.pretrained,
                s.paths,
                cache=cache,
                sha256=shas[s.name],
                batch_size=batch_size,
                num_workers=num_workers,
                progress=bar,
                given=given,
            )
    return out


def _probs(src: ModelSource, o: ImageOutputs, classes: list[str]) -> np.ndarray:
    perm = class_index_map(src.class_names, o.logits.shape[1], classes)
    return rk.softmax(o.logits[o.ok][:, perm].astype(np.float64))


def _write_table(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _csv_view(table: pd.DataFrame) -> pd.DataFrame:
    t = table.copy()
    t["topk"] = [rk.topk_string(a, b) for a, b in zip(t["topk_labels"], t["topk_probs"])]
    return t.drop(columns=["topk_labels", "topk_probs"])


def audit(
    model_or_run: Any,
    data: Any = None,
    split: str = "val",
    out: str | Path | None = None,
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
    compare_with: another version of the same data (e.g. the manifest written by
    `visiontune.data.apply_fixes`): the model is evaluated on both and `result.comparison` /
    `version_comparison.json` say how much of its error was label noise.

    Files: predictions.csv/.parquet, mistakes.csv, top_losses.csv, confused_pairs.csv,
    per_class.csv, confusion_matrix.png, label_issues.csv, duplicates.csv, report.html,
    summary.json. Embeddings are cached under `cache_dir` (default `<out>/cache`) by model and
    file content, so auditing again, or auditing a relabelled copy, skips the network.
    """
    if near_threshold != "auto" and not (isinstance(near_threshold, (int, float)) and 0 < near_threshold <= 1):
        raise ConfigError(f"near_threshold must be a cosine similarity in (0, 1] or 'auto', not {near_threshold!r}")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    src = resolve_model(model_or_run)
    if data is None:
        data = _data_from_run(src)
    ad = resolve_data(data, **_run_split_options(src, data))
    target = ad.get(split)
    out_dir = Path(out) if out is not None else (src.run_dir / "audit" if src.run_dir else Path("audit"))
    out_dir.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []

    if duplicate_splits == "all":
        dup_names = list(ad.splits)
    else:
        dup_names = [duplicate_splits] if isinstance(duplicate_splits, str) else list(duplicate_splits)
        for n in dup_names:
            ad.get(n)
    names = [split] + [n for n in dup_names if n != split]

    t = time.perf_counter()
    cache = EmbeddingCache(cache_dir if cache_dir is not None else out_dir / "cache", model_key(src.pretrained))
    outs = _outputs_for(src, ad, names, cache, batch_size, num_workers, quiet)
    timings["forward_s"] = time.perf_counter() - t
    o = outs[split]
    skipped = [(p, r) for n in names for p, r in outs[n].skipped]
    for p, r in skipped:
        warnings.append(f"skipped unreadable image {p}: {r}")

    # 1. predictions
    t = time.perf_counter()
    keep = np.flatnonzero(o.ok)
    paths = [o.paths[i] for i in keep]
    labels = target.labels[keep]
    probs = _probs(src, o, ad.classes)
    table = rk.predictions_table(
        paths, labels, probs, ad.classes, topk=topk, split=split, sha256=[o.sha256[i] for i in keep]
    )
    files: dict[str, Path] = {}
    files["predictions_csv"] = _write_table(_csv_view(table), out_dir / "predictions.csv")
    with atomic_path(out_dir / "predictions.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    files["predictions_parquet"] = out_dir / "predictions.parquet"

    # 2. rankings
    cm = rk.confusion(labels, table["pred_idx"].to_numpy(), len(ad.classes))
    mistakes = rk.confident_mistakes(table)
    losses = rk.top_losses(table)
    pairs = rk.confused_pairs(cm, ad.classes)
    per_class = rk.per_class_metrics(cm, ad.classes)
    files["mistakes"] = _write_table(_csv_view(mistakes), out_dir / "mistakes.csv")
    files["top_losses"] = _write_table(_csv_view(losses), out_dir / "top_losses.csv")
    files["confused_pairs"] = _write_table(pairs, out_dir / "confused_pairs.csv")
    files["per_class"] = _write_table(per_class, out_dir / "per_class.csv")
    files["confusion_matrix"] = rk.plot_confusion_matrix(
        cm, ad.classes, out_dir / "confusion_matrix.png", title=f"{split} split"
    )
    timings["rankings_s"] = time.perf_counter() - t

    # 3. label issues
    t = time.perf_counter()
    issues = None
    folds_used = None
    if label_issues:
        try:
            oos, folds_used = li.out_of_sample_probs(o.embeddings[keep], labels, len(ad.classes), k_folds=k_folds)
            issues = li.rank_label_issues(labels, oos, ad.classes, paths, method=label_issue_method)
            files["label_issues"] = _write_table(issues, out_dir / "label_issues.csv")
        except DatasetError as e:
            warnings.append(f"label issues skipped: {e}")
    if issues is not None and issues["is_issue"].any():  # Label Studio tasks the report links to
        try:
            issues["task"] = issues["path"].map(
                write_issue_tasks(issues, table, ad.source, out_dir / "label", src.model_id)
            )
        except VisiontuneError as e:
            warnings.append(f"label tasks for the flagged issues not written: {e}")
    timings["label_issues_s"] = time.perf_counter() - t

    # 4. duplicates and leaks
    t = time.perf_counter()
    items = []
    for n in names:
        on, sd = outs[n], ad.get(n)
        k = np.flatnonzero(on.ok)
        items.append(
            dup.Item(
                split=n,
                paths=[on.paths[i] for i in k],
                labels=[ad.classes[sd.labels[i]] for i in k],
                sha256=[on.sha256[i] for i in k],
                dhash=on.dhash[k],
                embeddings=on.embeddings[k],
            )
        )
    near_used = (
        dup.auto_threshold([it.embeddings for it in items]) if near_threshold == "auto" else float(near_threshold)
    )
    dups = dup.find_duplicates(items, threshold=near_used, hash_distance=hash_distance)
    files["duplicates"] = _write_table(dups, out_dir / "duplicates.csv")
    timings["duplicates_s"] = time.perf_counter() - t

    acc = float(table["correct"].mean()) if len(table) else float("nan")
    metrics = {
        "accuracy": acc,
        "n_images": int(len(table)),
        "n_mistakes": int(len(mistakes)),
        "mean_loss": float(table["loss"].mean()) if len(table) else float("nan"),
        "macro_recall": float(np.nanmean(per_class["recall"])) if len(per_class) else float("nan"),
        "n_label_issues": int(issues["is_issue"].sum()) if issues is not None else 0,
        "n_duplicate_pairs": int(len(dups)),
        "n_leaks": int(dups["leak"].sum()) if len(dups) else 0,
        "n_skipped": len(skipped),
    }

    # 6. FiftyOne (optional, never fatal)
    fiftyone_dataset = None
    if fiftyone:
        from visiontune.audit.fiftyone_export import FiftyOneUnavailable, export_fiftyone

        try:
            lq = issues.set_index("path")["label_quality"] if issues is not None else None
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
        t = time.perf_counter()
        comparison = compare_versions(
            src.pretrained,
            ad,
            compare_with,
            split=split,
            cache_dir=cache.path.parent,
            batch_size=batch_size,
            out=out_dir,
            quiet=quiet,
        )
        files["version_comparison"] = out_dir / "version_comparison.json"
        metrics["error_from_label_noise"] = comparison.error_from_label_noise
        timings["compare_s"] = time.perf_counter() - t

    # 5. report
    t = time.perf_counter()
    files["report"] = write_report(
        out_dir / "report.html",
        src=src,
        data=ad,
        split=split,
        data_version=data_version,
        metrics=metrics,
        mistakes=mistakes,
        losses=losses,
        pairs=pairs,
        per_class=per_class,
        issues=issues,
        dups=dups,
        confusion_png=files["confusion_matrix"],
        rows=report_rows,
        warnings=warnings,
        folds=folds_used,
    )
    timings["report_s"] = time.perf_counter() - t
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
        "k_folds": folds_used,
        "near_threshold": near_used,
        "near_threshold_setting": near_threshold,
        "hash_distance": hash_distance,
        "fiftyone_dataset": fiftyone_dataset,
        "timings": timings,
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
        mistakes=mistakes,
        top_losses=losses,
        confused_pairs=pairs,
        per_class=per_class,
        confusion=cm,
        label_issues=issues,
        duplicates=dups,
        metrics=metrics,
        files=files,
        data_version=data_version,
        skipped=skipped,
        warnings=warnings,
        timings=timings,
        comparison=comparison,
    )
    if not quiet:
        print_summary(result, console=console)
    return result


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
) -> Path:
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
    )
    return write_text(path, render_report(rd))


def print_summary(result: AuditResult, n: int = 10, console: Any = None) -> None:
    """The headline numbers and the top mistakes, as a rich table."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = console or Console()
    m = result.metrics
    console.print(
        f"[bold]audit[/] {result.split}: accuracy {100 * m['accuracy']:.2f}% on {m['n_images']} images, "
        f"{m['n_mistakes']} mistakes, {m['n_label_issues']} label issues, "
        f"{m['n_duplicate_pairs']} duplicate pairs ({m['n_leaks']} across splits)",
        highlight=False,
    )
    if len(result.mistakes):
        t = RichTable(title=f"top {min(n, len(result.mistakes))} confident mistakes")
        for c in ("#", "path", "label", "prediction", "confidence", "loss"):
            t.add_column(c, overflow="fold")
        for i, r in enumerate(result.mistakes.head(n).itertuples(), 1):
            t.add_row(str(i), str(r.path), str(r.label), str(r.pred), f"{r.confidence:.3f}", f"{r.loss:.3f}")
        console.print(t)
    for w in result.warnings:
        console.print("warning: " + w, style="yellow", highlight=False, markup=False)
    console.print(f"report: {result.report_path}", highlight=False)


@dataclass
class VersionComparison:
    """The same model on two versions of the data (e.g. before and after label fixes)."""

    split: str
    accuracy_a: float
    accuracy_b: float
    n_a: int
    n_b: int
    n_relabelled: int  # images (by content) whose label differs between the versions
    errors_a_fixed_by_relabel: int  # model errors on A that are correct under B's label
    errors_b_new_by_relabel: int  # images right on A that became errors on B
    version_a: str | None = None
    version_b: str | None = None

    @property
    def error_a(self) -> float:
        return 1.0 - self.accuracy_a

    @property
    def error_b(self) -> float:
        return 1.0 - self.accuracy_b

    @property
    def error_from_label_noise(self) -> float:
        """Error-rate points that disappear on the fixed version (A minus B)."""
        return self.error_a - self.error_b

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(error_a=self.error_a, error_b=self.error_b, error_from_label_noise=self.error_from_label_noise)
        return d


def compare_versions(
    model: Any,
    data_a: Any,
    data_b: Any,
    split: str = "val",
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    out: str | Path | None = None,
    quiet: bool = True,
) -> VersionComparison:
    """Evaluate `model` on the same split of two data versions and report the error difference.

    Images are matched by content (sha256), so a relabelled copy is compared image by image, and
    the embedding cache makes the second version nearly free. With `out`, writes
    `version_comparison.json` there.
    """
    src = resolve_model(model)
    a, b = resolve_data(data_a), resolve_data(data_b)
    if a.classes != b.classes:
        raise DatasetError(f"the two versions have different classes: {a.classes} vs {b.classes}")
    cache = EmbeddingCache(cache_dir, model_key(src.pretrained))
    res = {}
    for tag, d in (("a", a), ("b", b)):
        o = _outputs_for(src, d, [split], cache, batch_size, 0, quiet)[split]
        probs = _probs(src, o, d.classes)
        keep = np.flatnonzero(o.ok)
        sd: SplitData = d.get(split)
        res[tag] = pd.DataFrame(
            {"sha256": [o.sha256[i] for i in keep], "label": sd.labels[keep], "pred": probs.argmax(1)}
        )
    ra, rb = res["a"], res["b"]
    acc = {k: float((r["label"] == r["pred"]).mean()) if len(r) else float("nan") for k, r in res.items()}
    both = ra.drop_duplicates("sha256").merge(rb.drop_duplicates("sha256"), on="sha256", suffixes=("_a", "_b"))
    changed = both[both["label_a"] != both["label_b"]]
    cmp = VersionComparison(
        split=split,
        accuracy_a=acc["a"],
        accuracy_b=acc["b"],
        n_a=len(ra),
        n_b=len(rb),
        n_relabelled=int(len(changed)),
        errors_a_fixed_by_relabel=int(
            ((changed["pred_a"] != changed["label_a"]) & (changed["pred_b"] == changed["label_b"])).sum()
        ),
        errors_b_new_by_relabel=int(
            ((changed["pred_a"] == changed["label_a"]) & (changed["pred_b"] != changed["label_b"])).sum()
        ),
        version_a=a.version,
        version_b=b.version,
    )
    if out is not None:
        write_text(Path(out) / "version_comparison.json", json.dumps(cmp.to_dict(), indent=2))
    return cmp
