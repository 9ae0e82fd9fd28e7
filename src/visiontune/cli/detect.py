"""Detection commands: ``detect``, ``val``, ``anchors``, ``detect-train``, ``detect-convert``,
``detect-audit`` — thin calls of `visiontune.detect`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visiontune.cli.options import TrustPickle


def _classes(text: str | None):
    if not text:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def _load(model_id: str, weights: str | None, pretrained: bool, device: str | None, trust_pickle: bool = False):
    from visiontune.detect import Detector

    return Detector.load(model_id, weights=weights, pretrained=pretrained, trust_pickle=trust_pickle, device=device)


def register(app: typer.Typer) -> None:
    """Add the detection commands to ``app``: ``detect``, ``val``, ``anchors``, ``detect-train``,
    ``detect-convert`` and ``detect-audit``."""

    @app.command("detect")
    def detect_cmd(
        model: str = typer.Argument(..., help="torchvision:<arch>, hf:<repo>, yolo:<file>, or a saved detector dir"),
        images: list[Path] = typer.Argument(..., help="image files and/or folders (searched recursively)"),
        out: Path = typer.Option(Path("detections"), "--out", "-o", help="output folder"),
        score_threshold: float = typer.Option(0.25, "--conf", "--score-threshold", help="minimum score"),
        nms_iou: float = typer.Option(0.45, "--iou", help="NMS IoU threshold"),
        max_detections: int = typer.Option(100, "--max-det", help="at most this many boxes per image"),
        classes: str | None = typer.Option(None, "--classes", help="comma-separated class names or ids"),
        batch_size: int = typer.Option(8, "--batch-size", "-b"),
        draw: bool = typer.Option(True, "--draw/--no-draw", help="write annotated images"),
        weights: str | None = typer.Option(None, "--weights", help="local weights file"),
        pretrained: bool = typer.Option(
            True, "--pretrained/--random-init", help="--random-init: the architecture with random weights"
        ),
        device: str | None = typer.Option(None, "--device"),
        trust_pickle: bool = TrustPickle,
    ):
        """Detect objects: annotated images and a COCO-format results JSON in --out."""
        from rich.console import Console

        from visiontune.cli.hub import warn_if_random
        from visiontune.detect.io import list_images, write_detections

        console = Console(stderr=True)
        det = _load(model, weights, pretrained, device, trust_pickle)
        warn_if_random(det.pretrained)
        paths = list_images(images)
        results = det(
            paths,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            max_detections=max_detections,
            classes=_classes(classes),
            batch_size=batch_size,
            progress=True,
        )
        write_detections(paths, results, out, class_names=det.class_names, model_id=det.model_id, draw=draw)
        n = sum(len(d) for d in results)
        console.print(
            f"{len(paths)} images, {n} detections -> {out}/predictions.json"
            + (f" and {len(paths)} annotated images" if draw else "")
        )

    @app.command("val")
    def val_cmd(
        model: str = typer.Argument(..., help="detector id or saved detector dir"),
        data: str = typer.Option(..., "--data", help="COCO .json, YOLO data.yaml / folder, or VOC folder"),
        split: str | None = typer.Option(None, "--split", help="YOLO / VOC split (default: train for YOLO)"),
        batch_size: int = typer.Option(8, "--batch-size", "-b"),
        backend: str = typer.Option("pycocotools", "--backend", help="pycocotools | faster-coco-eval"),
        out: Path | None = typer.Option(None, "--out", help="write metrics JSON here"),
        weights: str | None = typer.Option(None, "--weights"),
        pretrained: bool = typer.Option(
            True, "--pretrained/--random-init", help="--random-init: the architecture with random weights"
        ),
        device: str | None = typer.Option(None, "--device"),
        trust_pickle: bool = TrustPickle,
    ):
        """COCO mAP (AP, AP50, AP75, small / medium / large, per class) of a detector on a dataset."""
        from rich.console import Console

        from visiontune.detect import evaluate

        det = _load(model, weights, pretrained, device, trust_pickle)
        res = evaluate(det, data, split=split, batch_size=batch_size, backend=backend, progress=True)
        Console().print(res.table(), highlight=False)
        if out is not None:
            from visiontune._atomic import write_text

            write_text(out, json.dumps(res.to_dict(), indent=2))

    @app.command("anchors")
    def anchors_cmd(
        data: str = typer.Argument(..., help="detection dataset"),
        model: str | None = typer.Option(
            None, "--model", help="compare with this detector's default anchors (torchvision:<arch> or composed YAML)"
        ),
        levels: int = typer.Option(5, "--levels", help="pyramid levels (one size each)"),
        ratios: int = typer.Option(3, "--ratios", help="number of aspect ratios"),
        min_size: int = typer.Option(800, "--min-size"),
        max_size: int = typer.Option(1333, "--max-size"),
        split: str | None = typer.Option(None, "--split"),
    ):
        """Suggest anchor sizes and aspect ratios (k-means on the dataset's boxes)."""
        from rich.console import Console

        from visiontune.detect.anchors import suggest_anchors
        from visiontune.detect.models import build_from_recipe, default_anchors

        dsz = drt = None
        if model:
            if model.endswith((".yaml", ".yml")):
                from visiontune.detect.compose import parse_config

                c = parse_config(model)
                probe = build_from_recipe({"builder": "composed", "config": c.model_dump(mode="json")})
                min_size, max_size = c.image.min_size, c.image.max_size
            else:
                from visiontune.hub import parse_model_id

                probe = build_from_recipe(
                    {"builder": "torchvision", "arch": parse_model_id(model).name, "num_classes": 2}
                )
            da = default_anchors(probe)
            if da:
                dsz, drt = [s for lvl in da[0] for s in lvl], da[1][0]
                levels, ratios = len(da[0]), len(da[1][0])
        s = suggest_anchors(
            data,
            num_levels=levels,
            num_ratios=ratios,
            min_size=min_size,
            max_size=max_size,
            default_sizes=dsz,
            default_ratios=drt,
            split=split,
        )
        con = Console()
        con.print(f"{s.num_boxes} boxes (scaled to min_size={min_size}, max_size={max_size})")
        con.print(s.yaml(), highlight=False)
        con.print(f"fit: mean best IoU {s.fit['mean_best_iou']:.3f}, recall@0.5 {s.fit['recall@0.5']:.3f}")
        if s.default_fit:
            con.print(
                f"default anchors: mean best IoU {s.default_fit['mean_best_iou']:.3f}, "
                f"recall@0.5 {s.default_fit['recall@0.5']:.3f}"
            )

    @app.command("detect-train")
    def train_cmd(
        model: str | None = typer.Argument(None, help="torchvision:<arch>, composed YAML, or saved detector dir"),
        data: str | None = typer.Option(None, "--data"),
        config: Path | None = typer.Option(None, "--config", help="YAML with the DetectTrainConfig fields"),
        epochs: int | None = typer.Option(None, "--epochs"),
        batch_size: int | None = typer.Option(None, "--batch-size", "-b"),
        lr: float | None = typer.Option(None, "--lr"),
        trainable_backbone_layers: int | None = typer.Option(None, "--trainable-backbone-layers"),
        anchors: str | None = typer.Option(None, "--anchors", help="'auto' (k-means) or sizes '32,64,128,256,512'"),
        aspect_ratios: str | None = typer.Option(None, "--aspect-ratios", help="e.g. '0.5,1,2'"),
        classes: str | None = typer.Option(None, "--classes", help="train on these classes only"),
        pretrained: bool = typer.Option(
            True, "--pretrained/--random-init", help="--random-init: the architecture with random weights"
        ),
        weights: str | None = typer.Option(None, "--weights"),
        run_root: Path = typer.Option(Path("runs"), "--out", "-o", "--runs", help="Folder that holds the runs."),
        name: str | None = typer.Option(None, "--name"),
        resume: Path | None = typer.Option(
            None, "--resume", help="an interrupted run's folder (or its last.ckpt): continue it as <run>-resumed"
        ),
        trust_pickle: bool = TrustPickle,
    ):
        """Fine-tune a torchvision or composed detector; records a run and saves the model."""
        from rich.console import Console

        from visiontune._config import read_yaml
        from visiontune.detect.config import parse_config
        from visiontune.detect.train import train_detector

        cfg = read_yaml(config, "detect-train config") if config else {}
        cfg = cfg.get("detect_train", cfg) if isinstance(cfg, dict) else {}
        over = {
            "model": model,
            "data": data,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "trainable_backbone_layers": trainable_backbone_layers,
            "weights": weights,
            "classes": _classes(classes),
        }
        cfg.update({k: v for k, v in over.items() if v is not None})
        if not pretrained:
            cfg["pretrained"] = False
        if anchors:
            cfg["anchor_sizes"] = "auto" if anchors == "auto" else [int(x) for x in anchors.split(",")]
        if aspect_ratios:
            cfg["aspect_ratios"] = [float(x) for x in aspect_ratios.split(",")]
        res = train_detector(
            parse_config(cfg), run_root=run_root, run_name=name, resume=resume, trust_pickle=trust_pickle
        )
        con = Console()
        if res.transfer is not None:
            con.print(f"pretrained weights: {res.transfer.summary()}")
        con.print(f"run: {res.run_dir}\nmodel: {res.model_dir}\nmetrics: {res.metrics}")

    @app.command("detect-convert")
    def convert_cmd(
        source: str = typer.Argument(..., help="COCO .json, YOLO data.yaml / folder, or VOC folder"),
        target: Path = typer.Argument(..., help="output .json (coco) or folder (yolo / voc)"),
        to: str = typer.Option(..., "--to", help="coco | yolo | voc"),
        split: str | None = typer.Option(None, "--split"),
        images: str = typer.Option("copy", "--images", help="yolo / voc: copy | link | none"),
        strict: bool = typer.Option(True, "--strict/--no-strict", help="--no-strict skips bad annotations"),
    ):
        """Validate a detection dataset and convert it between COCO, YOLO and VOC."""
        from rich.console import Console

        from visiontune.detect import load_detection

        ds = load_detection(source, split=split, strict=strict)
        kw = {} if to == "coco" else {"images": images}
        if to in ("yolo", "voc") and split:
            kw["split"] = split
        path = ds.save(target, fmt=to, **kw)
        con = Console()
        con.print(f"{ds.summary()} -> {path}")
        for issue in ds.issues[:20]:
            con.print(f"  skipped: {issue}", highlight=False)

    @app.command("detect-audit")
    def audit_cmd(
        model: str = typer.Argument(...),
        data: str = typer.Option(..., "--data"),
        out: Path = typer.Option(Path("audit"), "--out"),
        score_threshold: float = typer.Option(0.3, "--conf"),
        iou: float = typer.Option(0.5, "--iou"),
        pretrained: bool = typer.Option(
            True, "--pretrained/--random-init", help="--random-init: the architecture with random weights"
        ),
        trust_pickle: bool = TrustPickle,
    ):
        """Rank images by false positives and missed objects (CSV, Parquet, drawn worst images)."""
        from rich.console import Console

        from visiontune.detect.audit import audit_detections

        det = _load(model, None, pretrained, None, trust_pickle)
        a = audit_detections(det, data, out=out, iou=iou, score_threshold=score_threshold, progress=True)
        con = Console()
        con.print(a.table.head(15).to_string(index=False), highlight=False)
        con.print(f"{a.summary}\n-> {out}/detection_audit.csv")
