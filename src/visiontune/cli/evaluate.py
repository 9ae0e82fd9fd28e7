"""`visiontune evaluate MODEL --data DATA`: a thin call of `visiontune.evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from visiontune.cli.options import TrustPickle


def evaluate_cmd(
    model: str = typer.Argument(..., help="A model id, a saved model directory or a run folder."),
    data: str | None = typer.Option(
        None,
        "--data",
        "-d",
        help="Labelled data (classification source, or COCO / YOLO / VOC); a run's own if omitted.",
    ),
    split: str | None = typer.Option(None, "--split", help="Which split (classification default: val)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for metrics.json (+ confusion matrix, predictions)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    tta: str = typer.Option("none", "--tta", help="Classifiers: test-time augmentation none | flip | crops."),
    trust_pickle: bool = TrustPickle,
):
    """Metrics of a model on a labelled split: top-1 / top-5, per-class precision and recall,
    confusion matrix and calibration error (classifiers); COCO mAP per class (detectors)."""
    import visiontune as vt

    res = vt.evaluate(
        model,
        data,
        split=split,
        out=out,
        batch_size=batch_size,
        progress=progress and not as_json,
        trust_pickle=trust_pickle,
        **({"tta": tta} if tta != "none" else {}),
    )
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=1, default=str))
        return
    console = Console()
    console.print(res.summary(), highlight=False)
    if hasattr(res, "table"):
        console.print(res.table(), highlight=False)
    elif hasattr(res, "per_class_table"):
        console.print(res.per_class_table())
    if out is not None:
        console.print(f"wrote {out}/metrics.json", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate_cmd)
