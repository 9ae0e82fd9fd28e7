"""`visiontune audit`: a thin call of `visiontune.audit.audit` (and `compare_versions`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command to ``app``."""

    @app.command("audit")
    def audit_cmd(
        run_or_model: str = typer.Argument(
            ..., help="run directory (its model/ is audited), saved model dir or model id"
        ),
        data: str | None = typer.Option(
            None, "--data", "-d", help="image folder, CSV or manifest JSON (default: the run's data)"
        ),
        split: str = typer.Option("val", "--split", "-s", help="split to audit: train, val or test"),
        out: Path | None = typer.Option(None, "--out", "-o", help="output folder (default: <run>/audit or ./audit)"),
        k_folds: int = typer.Option(5, "--k-folds", help="folds for out-of-sample label-issue probabilities"),
        topk: int = typer.Option(5, "--topk", help="top-k predictions kept per image"),
        batch_size: int = typer.Option(32, "--batch-size", "-b"),
        num_workers: int = typer.Option(0, "--num-workers"),
        near_threshold: str = typer.Option(
            "auto", "--near-threshold", help="cosine similarity for near duplicates, or 'auto' (adapted to the data)"
        ),
        hash_distance: int = typer.Option(4, "--hash-distance", help="max differing bits of perceptual hashes"),
        no_label_issues: bool = typer.Option(False, "--no-label-issues", help="skip the K-fold label-issue search"),
        cache_dir: Path | None = typer.Option(
            None, "--cache-dir", help="feature-store root (default: $VISIONTUNE_CACHE, or the run's cache_dir)"
        ),
        rows: int = typer.Option(50, "--rows", help="rows per table in report.html"),
        map_points: int = typer.Option(2000, "--map-points", help="images on the report's embedding map"),
        map_method: str = typer.Option(
            "auto", "--map-method", help="embedding map: auto (UMAP if installed), umap or pca"
        ),
        fiftyone: bool = typer.Option(False, "--fiftyone", help="also export to a FiftyOne dataset (optional extra)"),
        launch: bool = typer.Option(False, "--launch", help="launch the FiftyOne app (with --fiftyone)"),
        compare_with: str | None = typer.Option(
            None,
            "--compare-with",
            help="another version of the data (e.g. the label-fixed manifest): report the model's error on both",
        ),
        multilabel: bool = typer.Option(
            False, "--multilabel", help="multi-label data: missed and wrong labels (cleanlab multi-label ranking)"
        ),
    ) -> None:
        """Audit a model: mistakes, label issues, duplicates/leaks and an HTML report in audit/."""
        from rich.console import Console

        from visiontune.audit import audit

        console = Console()
        if multilabel:
            from visiontune.adapt.multilabel_audit import audit_multilabel, print_audit

            model = Path(run_or_model) / "model" if (Path(run_or_model) / "model").is_dir() else run_or_model
            if data is None:
                raise typer.BadParameter("--multilabel needs --data (a CSV path,labels or a folder of label folders)")
            res = audit_multilabel(model, data, split=split, out=out or Path("audit"), k_folds=k_folds)
            print_audit(res, rows, console)
            return
        result = audit(
            run_or_model,
            data,
            split=split,
            out=out,
            k_folds=k_folds,
            topk=topk,
            batch_size=batch_size,
            num_workers=num_workers,
            near_threshold=near_threshold
            if near_threshold == "auto"
            else _unit_float(near_threshold, "--near-threshold"),
            hash_distance=hash_distance,
            label_issues=not no_label_issues,
            cache_dir=cache_dir,
            report_rows=rows,
            map_points=map_points,
            map_method=map_method,
            fiftyone=fiftyone,
            launch_app=launch,
            compare_with=compare_with,
            console=console,
        )
        cmp = result.comparison
        if cmp is not None:
            console.print(
                f"error on {split}: {100 * cmp.error_a:.2f}% (audited data) vs {100 * cmp.error_b:.2f}% "
                f"({compare_with}); {cmp.n_relabelled} images relabelled, "
                f"{cmp.errors_a_fixed_by_relabel} model errors were label errors "
                f"({100 * cmp.error_from_label_noise:+.2f} points of error)",
                highlight=False,
            )

    @app.command("similar")
    def similar_cmd(
        image: Path = typer.Argument(..., help="an image file (from the data or not)"),
        run: Path = typer.Option(..., "--run", "-r", help="a run directory (its audit/) or an audit folder"),
        k: int = typer.Option(10, "--k", "-k", help="neighbours to list"),
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help="feature-store root (default: the audit's)"),
    ) -> None:
        """The audited images nearest to IMAGE by embedding similarity (from the audit's index).

        One line per neighbour, tab-separated (rank, similarity, split, label, path): easy to pipe."""
        from visiontune.audit import SimilarIndex

        df = SimilarIndex.load(run, cache_dir=cache_dir).similar(image, k)
        typer.echo("rank\tsimilarity\tsplit\tlabel\tpath")
        for r in df.itertuples():
            typer.echo(f"{r.rank}\t{r.similarity:.4f}\t{r.split}\t{r.label}\t{r.path}")


def _unit_float(text: str, option: str) -> float:
    from visiontune.errors import ConfigError

    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{option} takes a number in (0, 1] or 'auto', not {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{option} takes a number in (0, 1] or 'auto', not {text!r}")
    return value
