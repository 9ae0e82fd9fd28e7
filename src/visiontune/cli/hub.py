"""download commands: models list / info, predict, license, check-preprocess, diagnose, compare."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from visiontune.cli.options import TrustCode, TrustPickle, WeightsOpt
from visiontune.errors import ImageDecodeError

console = Console()

models_app = typer.Typer(help="Browse models and their cards.", no_args_is_help=True)
diagnose_app = typer.Typer(help="Diagnostic experiments.", no_args_is_help=True)


def _load(model_id: str, weights, trust_pickle: bool, trust_remote_code: bool, no_strict: bool = False):
    import visiontune as vt

    p = vt.load(
        model_id, weights=weights, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code, strict=not no_strict
    )
    if p.load_report is not None:
        console.print(f"[dim]weights: {p.load_report.details()}[/]")
    return p


def warn_if_random(p) -> None:
    """A plain warning line when the model's predictions come from random weights."""
    from visiontune.hub.pretrained import random_weights_warning

    if p.card.extra.get("random_weights"):
        Console(stderr=True).print(f"[yellow]warning:[/] {escape(random_weights_warning(p.card.model_id))}")


def models_list(
    pattern: str | None = typer.Argument(None, help="Substring or glob, e.g. 'resnet*'."),
    source: str | None = typer.Option(
        None, "--source", "-s", help="torchvision, timm, hf or hub (hf, hub: the local cache)."
    ),
    pretrained: bool = typer.Option(False, "--pretrained", help="Only models with published weights."),
    as_json: bool = typer.Option(False, "--json"),
):
    """List model ids offline: torchvision and timm registries, cached Hugging Face and torch.hub models."""
    from visiontune.hub import list_models

    rows = list_models(pattern, source, pretrained)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    t = Table(title=f"{len(rows)} models")
    t.add_column("id")
    t.add_column("task")
    t.add_column("weights")
    t.add_column("cached")
    for r in rows:
        w = r["weights"]
        t.add_row(
            r["id"],
            r["task"],
            ", ".join(w[:4]) + (f" (+{len(w) - 4})" if len(w) > 4 else ""),
            {True: "yes", False: "no", None: "-"}[r["cached"]],
        )
    console.print(t)


def models_info(
    model_id: str,
    weights: Path | None = WeightsOpt,
    as_json: bool = typer.Option(False, "--json"),
    trust_pickle: bool = TrustPickle,
    trust_remote_code: bool = TrustCode,
):
    """Show a model's card: preprocessing, classes, licence, params, published metrics (no download)."""
    from visiontune.hub.loader import describe

    p = describe(model_id, weights=weights, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code)
    if as_json:
        typer.echo(p.card.model_dump_json(indent=1))
        return
    t = Table(title=p.card.model_id, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for k, v in p.card.rows():
        t.add_row(k, v)
    t.add_row("eval transform", p.preprocess.describe())
    if "weights_cached" in p.card.extra:
        t.add_row("weights cached", f"{p.card.extra['weights_cached']} ({p.card.extra['cache_path']})")
    console.print(t)


def predict(
    model_id: str,
    images: list[Path] = typer.Argument(None, help="Image files or folders."),
    topk: int = typer.Option(5, "--topk", "-k", help="Classes per image (classifiers)."),
    score_threshold: float = typer.Option(0.25, "--score-threshold", "--conf", help="Minimum score (detectors)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    weights: Path | None = WeightsOpt,
    trust_pickle: bool = TrustPickle,
    trust_remote_code: bool = TrustCode,
    as_json: bool = typer.Option(False, "--json"),
    server: str | None = typer.Option(
        None, "--server", help="Ask a `visiontune serve` server (MODEL is then an image)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Stream predictions to this Parquet folder (resumable)."),
    devices: int = typer.Option(1, "--devices", help="Data-parallel processes per node (Lightning DDP; with --out)."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes of a DDP run (torchrun / SLURM; with --out)."),
    num_workers: int = typer.Option(2, "--num-workers", help="DataLoader worker processes (with --out)."),
    chunk_size: int = typer.Option(1024, "--chunk-size", help="Images per Parquet part (with --out)."),
    tta: str = typer.Option("none", "--tta", help="Classifiers: test-time augmentation none | flip | crops."),
):
    """The model's predictions for images — top-k classes or detections — each image preprocessed
    as the weights expect (hub ids, saved models of any task, exported artifacts). An image that
    cannot be decoded is named and skipped; the exit code is non-zero only if none could be read.
    With --out: any number of images (folders or a .txt/.csv/.parquet/.json manifest) streamed to
    Parquet, resumed on rerun; with --server: sent to a running server."""
    if server or out is not None or devices > 1 or num_nodes > 1:
        from visiontune.cli.serve import predict_extended

        predict_extended(
            model_id,
            images,
            server,
            out,
            topk,
            batch_size,
            weights,
            trust_pickle,
            as_json,
            devices,
            num_nodes,
            num_workers,
            chunk_size,
        )
        return
    if not images:
        raise typer.BadParameter("give image files or folders after MODEL")
    from visiontune.data import list_images

    files = [str(f) for f in list_images(images)]
    from visiontune.export import is_exported_artifact, is_segmentation_sidecar, load_artifact

    if is_exported_artifact(model_id) and is_segmentation_sidecar(model_id):  # an exported segmenter
        from visiontune.segment.export import SegmentationArtifact

        segs = SegmentationArtifact(model_id).predict(files, batch_size=min(batch_size, 8))
        print_segmentations(segs, as_json)
        return
    if is_exported_artifact(model_id):  # an exported model: ONNX Runtime / TorchScript path
        preds = load_artifact(model_id).predict(files, topk=topk, score_threshold=score_threshold)
        _print_preds(preds, as_json)
        return
    p = _load(model_id, weights, trust_pickle, trust_remote_code)
    warn_if_random(p)
    readable, images_in, bad = decode_each(files)
    for path, reason in bad:
        Console(stderr=True).print(f"[yellow]skipped[/] {escape(path)}: {escape(reason)}", highlight=False)
    if not readable:
        raise ImageDecodeError(f"none of the {len(files)} images could be read")
    if p.task == "classification":
        preds = p.predict(images_in, topk=topk, batch_size=batch_size, tta=tta)
    elif p.task == "multilabel-classification":  # every label's probability, decided at its threshold
        preds = p.predict(images_in, batch_size=batch_size, tta=tta)
    else:
        preds = p.predict(images_in, score_threshold=score_threshold, batch_size=min(batch_size, 8))
    for pred, path in zip(preds, readable):  # decoded here once: say which file each result is for
        if hasattr(pred, "source"):
            pred.source = path
        else:
            pred.path = path
    _print_preds(preds, as_json)


def decode_each(files: list[str]) -> tuple[list[str], list, list[tuple[str, str]]]:
    """(readable paths, their decoded images, [(unreadable path, why)]): one bad file costs only
    its own prediction (the policy training's validation and batch prediction follow too)."""
    from visiontune.data import read_image

    ok, imgs, bad = [], [], []
    for f in files:
        try:
            imgs.append(read_image(f))
            ok.append(f)
        except ImageDecodeError as e:
            msg = str(e)
            bad.append((f, msg[len(f) + 2 :] if msg.startswith(f + ": ") else msg))
    return ok, imgs, bad


def print_segmentations(segs, as_json: bool) -> None:
    """Semantic results: each image's class shares (largest first), or JSON records."""
    if as_json:
        rows = [{"path": s.path, "size": list(s.image_size or ()), "classes": s.class_areas()} for s in segs]
        typer.echo(json.dumps(rows, indent=1))
        return
    for s in segs:
        areas = sorted(s.class_areas().items(), key=lambda kv: -kv[1])
        console.print(f"{s.path}: " + ", ".join(f"{n} {v:.1%}" for n, v in areas[:6]), highlight=False)


def _print_preds(preds, as_json: bool) -> None:
    if preds and not hasattr(preds[0], "probs"):  # detections from an exported detector
        if as_json:
            typer.echo(json.dumps([d.to_records() for d in preds], indent=1, default=str))
        else:
            for d in preds:
                console.print(
                    f"{d.path}: {len(d)} objects "
                    + ", ".join(f"{n} {s:.2f}" for n, s in zip(d.names, d.scores.tolist())),
                    highlight=False,
                )
        return
    if as_json:
        typer.echo(json.dumps([x.to_dict() for x in preds], indent=1))
        return
    if preds and isinstance(preds[0].probs, dict):  # multi-label
        for x in preds:
            on = "  ".join(f"{lab} [bold]{x.probs[lab]:.3f}[/]" for lab in x.labels) or "(no label)"
            console.print(f"{x.source}: {on}", highlight=False)
        return
    for x in preds:
        tops = "  ".join(f"{lab} [bold]{pr:.3f}[/]" for lab, pr in zip(x.labels, x.probs))
        console.print(f"{x.source}: {tops}", highlight=False)


def license_cmd(model_id: str, trust_pickle: bool = TrustPickle, trust_remote_code: bool = TrustCode):
    """Say plainly what the model's code and weights licences allow."""
    from visiontune.hub import describe, parse_model_id
    from visiontune.hub.licenses import explain, is_copyleft

    if parse_model_id(model_id).source == "yolo":
        from visiontune.hub.sources.yolo import AGPL_NOTICE

        console.print(
            f"[bold]{model_id}[/]\ncode: AGPL-3.0\nweights: AGPL-3.0\n\n{explain('agpl-3.0')}\n\n{AGPL_NOTICE}"
        )
        return
    card = describe(model_id, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code).card
    console.print(f"[bold]{card.model_id}[/]")
    for what, lic in (("code", card.license_code), ("weights", card.license_weights)):
        flag = " [red](copyleft)[/]" if is_copyleft(lic) else ""
        console.print(f"[bold]{what}[/]: {lic or 'not stated'}{flag}\n  {explain(lic)}")
    for n in card.license_notes:
        console.print(f"- {n}")


def check_preprocess_cmd(
    model_id: str,
    transform: str = typer.Option(
        ...,
        "--transform",
        "-t",
        help='YAML file or inline YAML, e.g. "{resize: 256, crop: 224, mean: [0.5,0.5,0.5], std: [0.5,0.5,0.5]}"',
    ),
    weights: Path | None = WeightsOpt,
):
    """Compare your preprocessing with the one the weights expect; name every mismatch."""
    import yaml

    from visiontune.hub.check import check_preprocess
    from visiontune.hub.loader import describe

    spec = yaml.safe_load(Path(transform).read_text()) if Path(transform).is_file() else yaml.safe_load(transform)
    if not isinstance(spec, dict):
        raise typer.BadParameter("the transform must be a YAML mapping (resize, crop, interpolation, mean, std, ...)")
    p = describe(model_id, weights=weights)
    found = check_preprocess(p, spec)
    console.print(f"card: {p.preprocess.describe()}  [dim]({p.card.preprocess_source})[/]")
    if not found:
        console.print("[green]OK[/]: the transform matches the card.")
        return
    for m in found:
        console.print(f"[red]✗[/] {m}", highlight=False)
    raise typer.Exit(1)


def normalization_sweep_cmd(
    model_id: str,
    data: Path = typer.Option(..., "--data", "-d", help="Folder with labels.csv (file,index) or class folders."),
    weights: Path | None = WeightsOpt,
    limit: int | None = typer.Option(None, "--limit"),
    plot: Path = typer.Option(Path("normalization_sweep.png"), "--plot"),
    scales: str = typer.Option("0,0.25,0.5,0.75,1", "--scales"),
    trust_pickle: bool = TrustPickle,
):
    """Accuracy as the mean/std normalisation is scaled from 0 (none) to 1 (correct)."""
    from visiontune.hub.check import normalization_sweep

    p = _load(model_id, weights, trust_pickle, False)
    rows = normalization_sweep(p, data, [float(s) for s in scales.split(",")], limit=limit, plot=plot)
    t = Table(title=f"normalisation sweep — {p.card.model_id} (n={rows[0]['n']})")
    for c in ("scale", "mean", "std", "top-1", "top-5"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            f"{r['scale']:.2f}",
            "(" + ", ".join(f"{v:.3f}" for v in r["mean"]) + ")",
            "(" + ", ".join(f"{v:.3f}" for v in r["std"]) + ")",
            f"{100 * r['top1']:.1f}%",
            f"{100 * r['top5']:.1f}%",
        )
    console.print(t)
    console.print(f"plot: {plot}")


def compare_cmd(
    model_ids: list[str] = typer.Argument(..., help="Two or more model ids."),
    image: Path = typer.Option(..., "--image", "-i"),
    topk: int = typer.Option(5, "--topk", "-k"),
    trust_pickle: bool = TrustPickle,
    trust_remote_code: bool = TrustCode,
):
    """Each model's top-k on one image, side by side, each with its own preprocessing."""
    import visiontune as vt

    t = Table(title=f"{image.name}: top-{topk}")
    t.add_column("rank")
    cols = []
    for mid in model_ids:
        p = vt.load(mid, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code)
        pred = p.predict([str(image)], topk=topk)[0]
        cols.append([f"{lab} {pr:.3f}" for lab, pr in zip(pred.labels, pred.probs)])
        t.add_column(f"{mid}\n[dim]{p.preprocess.describe()}[/]")
    for i in range(topk):
        t.add_row(str(i + 1), *[c[i] if i < len(c) else "" for c in cols])
    console.print(t)


def register(app: typer.Typer) -> None:
    """Add ``models list`` / ``models info``, ``predict``, ``license``, the preprocessing checks
    (``check-preprocess``, ``diagnose normalization-sweep``) and ``compare`` to ``app``."""
    models_app.command("list")(models_list)
    models_app.command("info")(models_info)
    app.add_typer(models_app, name="models")
    app.command("predict")(predict)
    app.command("license")(license_cmd)
    app.command("check-preprocess")(check_preprocess_cmd)
    diagnose_app.command("normalization-sweep")(normalization_sweep_cmd)
    app.add_typer(diagnose_app, name="diagnose")
    app.command("compare")(compare_cmd)
