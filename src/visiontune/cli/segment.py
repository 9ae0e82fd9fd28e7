"""Segmentation commands: ``segment``, ``segment-train``, ``segment-check``, ``segment-convert``,
``segment-audit`` — thin calls of `visiontune.segment` (``visiontune evaluate`` covers
segmenters through `visiontune.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visiontune.cli.options import TrustPickle


def _floats(text: str | None) -> list[list[float]] | None:
    """``"x,y;x,y"`` -> [[x, y], [x, y]]."""
    if not text:
        return None
    return [[float(v) for v in part.split(",")] for part in text.split(";") if part.strip()]


def _classes(text: str | None):
    if not text:
        return None
    return text if Path(text).is_file() else [c.strip() for c in text.split(",") if c.strip()]


def register(app: typer.Typer) -> None:
    """Add the segmentation commands to ``app``: ``segment``, ``segment-train``, ``segment-check``,
    ``segment-convert`` and ``segment-audit``."""

    @app.command("segment")
    def segment_cmd(
        model: str = typer.Argument(
            ..., help="a segmenter id (torchvision:, hf:, yolo:), saved dir, run folder or .onnx export"
        ),
        images: list[Path] = typer.Argument(..., help="image files and/or folders"),
        out: Path = typer.Option(Path("segmentations"), "--out", "-o"),
        mode: str = typer.Option("semantic", "--mode", help="HF universal segmenters: semantic | instance | panoptic"),
        points: str | None = typer.Option(None, "--points", help="SAM: 'x,y;x,y' pixel prompts"),
        boxes: str | None = typer.Option(None, "--boxes", help="SAM: 'x1,y1,x2,y2;…' box prompts"),
        pretrained: bool = typer.Option(True, "--pretrained/--random-init"),
        trust_pickle: bool = TrustPickle,
    ):
        """Segment images: overlays with a legend, class-index PNGs and predictions.json in --out."""
        import numpy as np
        from PIL import Image
        from rich.console import Console

        import visiontune as vt
        from visiontune._atomic import write_text
        from visiontune.cli.hub import warn_if_random
        from visiontune.data import list_images
        from visiontune.export import is_exported_artifact, is_segmentation_sidecar
        from visiontune.segment.export import SegmentationArtifact

        paths = list_images(images)
        results: list
        if is_exported_artifact(model) and is_segmentation_sidecar(model):  # an ONNX export + its sidecar
            art = SegmentationArtifact(model)
            model_id, class_names = art.sidecar.model_id, art.class_names
            results = art.predict(paths)
        else:
            p = vt.load(model, pretrained=pretrained, trust_pickle=trust_pickle)
            warn_if_random(p)
            model_id, class_names = p.card.model_id, p.class_names
            kw: dict = {}
            if p.task == "promptable-segmentation":
                kw = {"points": _floats(points), "boxes": _floats(boxes)}
            elif p.task == "segmentation" and p.card.source == "hf":
                kw = {"mode": mode}
            results = p.predict(paths, progress=True, **kw)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for path, seg in zip(paths, results):
            seg.draw(path).save(out / f"{Path(path).stem}.overlay.png")
            if seg.class_map is not None:
                Image.fromarray(seg.class_map.numpy().astype(np.uint8)).save(out / f"{Path(path).stem}.mask.png")
            rows.append({"image": str(path), "kind": seg.kind, "instances": seg.to_records()})
        write_text(out / "predictions.json", json.dumps({"model": model_id, "classes": class_names, "images": rows}))
        Console().print(f"{len(paths)} images -> {out}/ (overlays, masks, predictions.json)", highlight=False)

    @app.command("segment-train")
    def train_cmd(
        model: str | None = typer.Argument(None, help="a composed-segmenter YAML or a saved segmenter dir"),
        data: str | None = typer.Option(None, "--data", help="a mask folder, COCO .json or YOLO-seg data"),
        config: Path | None = typer.Option(None, "--config", help="YAML with the SegmentTrainConfig fields"),
        epochs: int | None = typer.Option(None, "--epochs"),
        batch_size: int | None = typer.Option(None, "--batch-size", "-b"),
        lr: float | None = typer.Option(None, "--lr"),
        strategy: str | None = typer.Option(None, "--strategy", help="linear | partial | full | gradual"),
        ignore_index: int | None = typer.Option(None, "--ignore-index", help="the data's void label"),
        classes: str | None = typer.Option(None, "--classes", help="names (comma-separated) or a names file"),
        image_size: str | None = typer.Option(None, "--image-size", help="H,W"),
        run_root: Path = typer.Option(Path("runs"), "--out", "-o", "--runs", help="Folder that holds the runs."),
        name: str | None = typer.Option(None, "--name"),
        resume: Path | None = typer.Option(None, "--resume", help="an interrupted run's folder: continue it"),
        trust_pickle: bool = TrustPickle,
    ):
        """Fine-tune a composed semantic segmenter; records a run and saves the model."""
        from rich.console import Console

        from visiontune._config import read_yaml
        from visiontune.segment.config import parse_config
        from visiontune.segment.train import train_segmenter

        cfg: dict = {}
        if resume is not None and config is None and (resume / "config.yaml").is_file():
            cfg = read_yaml(resume / "config.yaml", "run config") or {}
        elif config:
            doc = read_yaml(config, "segment-train config") or {}
            cfg = dict(doc.get("segment_train", doc))
        over = {
            "model": model,
            "data": data,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "strategy": strategy,
            "ignore_index": ignore_index,
            "classes": _classes(classes),
            "image_size": [int(v) for v in image_size.split(",")] if image_size else None,
        }
        cfg.update({k: v for k, v in over.items() if v is not None})
        res = train_segmenter(
            parse_config(cfg), run_root=run_root, run_name=name, resume=resume, trust_pickle=trust_pickle
        )
        Console().print(res.summary() + f"\nmodel: {res.model_dir}", highlight=False)

    @app.command("segment-check")
    def check_cmd(
        data: str = typer.Argument(..., help="a mask folder, COCO .json or YOLO-seg data.yaml / folder"),
        split: str | None = typer.Option(None, "--split"),
        classes: str | None = typer.Option(None, "--classes"),
        ignore_index: int | None = typer.Option(None, "--ignore-index"),
    ):
        """Validate segmentation data: sizes, class values, polygons; prints per-class counts."""
        from rich.console import Console

        from visiontune.segment.formats import load_segmentation

        ds = load_segmentation(data, split, classes=_classes(classes), ignore_index=ignore_index)
        stats = ds.validate(progress=True)
        con = Console()
        con.print(f"ok: {ds.summary()}, version {ds.version}", highlight=False)
        total = max(sum(stats["per_class"].values()), 1)
        for n, c in stats["per_class"].items():
            con.print(f"  {n:24s} {c:>12,d} {stats['unit']} ({c / total:.2%})", highlight=False)

    @app.command("segment-convert")
    def convert_cmd(
        source: str = typer.Argument(..., help="a mask folder, COCO .json or YOLO-seg data"),
        out: Path = typer.Argument(..., help="output .json (coco, coco-rle) or folder (yolo, masks)"),
        to: str = typer.Option(..., "--to", help="coco | coco-rle | yolo | masks"),
        split: str | None = typer.Option(None, "--split"),
        classes: str | None = typer.Option(None, "--classes"),
        ignore_index: int | None = typer.Option(None, "--ignore-index"),
    ):
        """Convert segmentation data between mask folders, COCO polygons / RLE and YOLO-seg."""
        from rich.console import Console

        from visiontune.segment.formats import convert

        path = convert(source, out, to, split=split, classes=_classes(classes), ignore_index=ignore_index)
        Console().print(f"{source} -> {path}", highlight=False)

    @app.command("segment-audit")
    def audit_cmd(
        model: str = typer.Argument(..., help="a segmenter id, saved dir or run folder"),
        data: str = typer.Option(..., "--data"),
        split: str | None = typer.Option("val", "--split"),
        out: Path = typer.Option(Path("segment-audit"), "--out", "-o"),
        worst: int = typer.Option(12, "--worst", help="overlays of this many worst images"),
        ignore_index: int | None = typer.Option(None, "--ignore-index"),
        label_issues: bool = typer.Option(True, "--label-issues/--no-label-issues", help="cleanlab label quality"),
        trust_pickle: bool = TrustPickle,
    ):
        """Images ranked by IoU with overlays, per-class confusion, likely label errors: report.html."""
        from rich.console import Console

        from visiontune.segment.audit import audit_segmenter

        a = audit_segmenter(
            model, data, split=split, out=out, worst=worst, ignore_index=ignore_index, label_issues=label_issues,
            trust_pickle=trust_pickle,
        )  # fmt: skip
        Console().print(f"{a.summary()}\n-> {out}/report.html", highlight=False)
