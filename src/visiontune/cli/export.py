"""`visiontune export MODEL` (ONNX / TorchScript + sidecar + parity) and
`visiontune export-predict ARTIFACT IMAGES` (run an exported artifact on its own)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from visiontune.cli.options import TrustPickle

console = Console()


def export_cmd(
    model: str = typer.Argument(..., help="Model id (timm:resnet18, torchvision:...), or a saved model directory."),
    format_: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    output: Path | None = typer.Option(None, "--out", "-o", "--output", help="Artifact path (.onnx / .pt)."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Local weights file for the model id."),
    random_init: bool = typer.Option(
        False,
        "--random-init",
        help="Export the architecture with random weights (no weights needed; for testing a deployment path).",
    ),
    int8: bool = typer.Option(False, "--int8", help="ONNX Runtime dynamic int8 quantization (CPU)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    exporter: str = typer.Option("auto", "--exporter", help="auto, torchscript or dynamo (ONNX only)."),
    static_batch: bool = typer.Option(False, "--static-batch", help="Fix the batch size to 1 (default: dynamic)."),
    input_size: int | None = typer.Option(None, "--input-size", help="Square input size instead of the card's."),
    images: Path | None = typer.Option(None, "--images", help="Image file or folder for the parity check."),
    parity_images: int = typer.Option(16, "--parity-images", help="How many images the parity check uses."),
    parity: bool = typer.Option(True, "--parity/--no-parity", help="Compare the artifact with PyTorch."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Fail (and write nothing) if parity fails."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    trust_pickle: bool = TrustPickle,
):
    """Export a classifier or a torchvision detector to ONNX or TorchScript, with a sidecar JSON
    (preprocessing, class names, input/output format, licence) and a parity check on real images."""
    import visiontune as vt
    from visiontune.export import default_output, export

    if output is None:  # beside a saved model directory, else in the current folder
        output = default_output(model, format_, "int8" if int8 else None, model)
    src = vt.load(model, weights=weights, pretrained=not random_init, trust_pickle=trust_pickle)
    if src.task == "segmentation":  # segmenters have their own exporter and sidecar record
        _export_segmenter(src, format_, output, opset, input_size, images if parity else None, parity_images, as_json)
        return
    with console.status(f"exporting {model} to {format_}…", spinner="dots") if not as_json else _null():
        res = export(
            src,
            format_,
            output,
            quantize="int8" if int8 else None,
            opset=opset,
            exporter=exporter,
            dynamic_batch=not static_batch,
            input_size=input_size,
            images=images,
            parity=parity,
            parity_limit=parity_images,
            strict=strict,
            model_id=model,
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "artifact": str(res.artifact),
                    "sidecar": str(res.sidecar),
                    "files": [str(f) for f in res.files],
                    "exporter": res.exporter,
                    "quantized": res.quantized,
                    "seconds": round(res.seconds, 2),
                    "parity": res.parity.to_dict() if res.parity else None,
                },
                indent=1,
            )
        )
        return
    console.print(f"[green]exported[/] {res.summary()}", highlight=False)
    if res.parity is not None:
        for note in res.parity.notes:
            console.print(f"[yellow]· {note}[/]", highlight=False)
        if res.parity.passed is False:
            raise typer.Exit(1)


def _export_segmenter(src, format_, output, opset, input_size, images, parity_limit, as_json) -> None:
    from visiontune.errors import ConfigError
    from visiontune.segment.export import export_segmenter

    if format_ != "onnx":
        raise ConfigError(f"segmenters export to onnx; got --format {format_}")
    res = export_segmenter(
        src, output, input_size=input_size, opset=opset, parity_images=images, parity_limit=parity_limit
    )
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=1, default=str))
    else:
        note = "" if res.parity.get("real_images") else " (a synthetic image: pass --images for real ones)"
        console.print(f"[green]exported[/] {res.summary()}{note}", highlight=False)


def predict_cmd(
    artifact: Path = typer.Argument(..., help="An exported .onnx / .pt with its .visiontune.json sidecar."),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    topk: int = typer.Option(5, "--topk", "-k", help="Classes per image (classification)."),
    score_threshold: float = typer.Option(0.25, "--score-threshold", help="Minimum score (detection)."),
    threads: int | None = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
):
    """Predict with an exported artifact alone (ONNX Runtime or TorchScript), using the sidecar's
    preprocessing, to check that the deployed path gives the same labels as the PyTorch model."""
    from visiontune.cli.hub import print_segmentations
    from visiontune.export import is_segmentation_sidecar, load_artifact
    from visiontune.segment.export import SegmentationArtifact

    if is_segmentation_sidecar(artifact):
        print_segmentations(SegmentationArtifact(artifact).predict([str(p) for p in images]), as_json)
        return
    rt = load_artifact(artifact, threads=threads)
    preds = rt.predict([str(p) for p in images], topk=topk, score_threshold=score_threshold)
    if rt.task == "detection":
        rows = [
            {
                "image": d.path,
                "detections": [
                    {"label": n, "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
                    for n, s, b in zip(d.names, d.scores, d.boxes)
                ],
            }
            for d in preds
        ]
    else:
        rows = [
            {
                "image": p.source,
                "top": [
                    {"label": lab, "prob": round(pr, 4), "index": i} for i, lab, pr in zip(p.indices, p.labels, p.probs)
                ],
            }
            for p in preds
        ]
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r))
        return
    t = Table(title=f"{artifact.name} ({rt.backend})")
    t.add_column("image", overflow="fold")
    t.add_column("top prediction" if rt.task == "classification" else "detections", overflow="fold")
    for r in rows:
        if rt.task == "detection":
            cell = "; ".join(f"{d['label']} {d['score']:.2f} {d['box']}" for d in r["detections"]) or "-"
        else:
            cell = ", ".join(f"{d['label']} {d['prob']:.3f}" for d in r["top"])
        t.add_row(str(r["image"]), cell)
    console.print(t)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def register(app: typer.Typer) -> None:
    """Add the ``export`` and ``export-predict`` commands to ``app``."""
    app.command("export")(export_cmd)
    app.command("export-predict")(predict_cmd)
