"""The verbs, top level: ``vt.load``, ``vt.train``, ``vt.evaluate``, ``vt.audit``, ``vt.export``,
``vt.bench`` — one set of argument names (``model``, ``data``, ``config``, ``out``, ``progress``)
and results with ``.dir``, ``.metrics``, ``.to_dict()`` and ``.summary()``, whatever the task.
The CLI is a thin mirror of these functions with the same option names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from visiontune._config import read_yaml
from visiontune.adapt import TrainConfig
from visiontune.adapt import train as train_classifier
from visiontune.adapt.evaluate import ClassifierEvaluation, MultiLabelEvaluation, evaluate_classifier
from visiontune.detect import train_detector
from visiontune.detect.config import DetectTrainConfig
from visiontune.detect.evaluate import EvalResult
from visiontune.detect.evaluate import evaluate as evaluate_detector
from visiontune.errors import ConfigError
from visiontune.hub import Pretrained, describe
from visiontune.hub.detection import DETECTION_TASKS
from visiontune.hub.saved import CARD_FILE, SavedModel, is_saved_model
from visiontune.hub.segmentation import SEGMENTATION_TASKS
from visiontune.segment.config import SegmentTrainConfig
from visiontune.segment.evaluate import SegmentationEvaluation, evaluate_segmenter
from visiontune.segment.export import export_segmenter
from visiontune.segment.train import train_segmenter

__all__ = ["audit", "bench", "evaluate", "export", "task_of", "train"]


def task_of(model: Any, *, trust_pickle: bool = False) -> str:
    """The task of a model (a `Pretrained`, id, saved model, run folder or composed-detector
    YAML) without loading its weights."""
    if isinstance(model, Pretrained):
        return model.task
    if hasattr(model, "pretrained") and isinstance(model.pretrained, Pretrained):  # a Detector
        return model.pretrained.task
    text = str(model)
    if text.endswith((".yaml", ".yml")):
        doc = read_yaml(Path(text), "model config") if Path(text).is_file() else {}
        if isinstance(doc, dict) and ("segmenter" in doc or "encoder" in doc):
            return "segmentation"  # a composed-segmenter config
        return "detection"  # a composed-detector config
    path = Path(text)
    if path.is_dir() and (path / "model" / CARD_FILE).is_file():
        path = path / "model"  # a run folder
    if is_saved_model(path):
        return SavedModel.read(path / CARD_FILE).card.task
    return describe(text, trust_pickle=trust_pickle).task


def _config(config: Any, sections: tuple[str, ...]) -> dict:
    if config is None:
        return {}
    if isinstance(config, (TrainConfig, DetectTrainConfig, SegmentTrainConfig)):
        return config.to_dict()
    doc = dict(config) if isinstance(config, dict) else read_yaml(Path(config), "train config")
    for s in sections:
        if isinstance(doc.get(s), dict):
            return dict(doc[s])
    return doc


def train(
    model: Any = None,
    data: Any = None,
    *,
    config: Any = None,
    out: str | os.PathLike = "runs",
    name: str | None = None,
    resume: Any = None,
    progress: bool = True,
    trust_pickle: bool = False,
    **options: Any,
) -> Any:
    """Fine-tune ``model`` on ``data`` (or what ``config`` — a dict, a YAML file, or its ``train:``
    / ``detect_train:`` section — names); ``options`` are the task config's keys (``epochs``,
    ``lr``, ``strategy``, ``devices``…). Classifiers train with `visiontune.adapt`, detectors
    with `visiontune.detect`, segmenters (a composed-segmenter YAML, ``segmenter:`` or a saved
    one) with `visiontune.segment`; each records a run under ``out/<name>`` and return a result with
    ``.dir``, ``.metrics``, ``.to_dict()``, ``.summary()``."""
    cfg = {**_config(config, ("train", "detect_train", "segment_train")), **options}
    for key, value in (("model", model), ("data", data), ("name", name)):
        if value is not None:
            cfg[key] = str(value) if key != "name" else value
    if "segmenter" in cfg and "data" in cfg:  # an inline composed segmenter
        return train_segmenter(cfg, run_root=out, progress=progress, resume=resume, trust_pickle=trust_pickle)
    if "model" not in cfg or "data" not in cfg:
        raise ConfigError("train needs model= and data= (or a config that names them)")
    if task_of(cfg["model"], trust_pickle=trust_pickle) == "segmentation":
        return train_segmenter(cfg, run_root=out, progress=progress, resume=resume, trust_pickle=trust_pickle)
    is_detection = cfg.get("compose") is not None or task_of(cfg["model"], trust_pickle=trust_pickle) in DETECTION_TASKS
    if is_detection:
        return train_detector(cfg, run_root=out, progress=progress, resume=resume, trust_pickle=trust_pickle)
    return train_classifier(
        TrainConfig.from_dict(cfg, source="train()"),
        run_root=out,
        resume=resume,
        progress=progress,
        trust_pickle=trust_pickle,
    )


def evaluate(
    model: Any,
    data: Any = None,
    *,
    split: str | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
    **options: Any,
) -> ClassifierEvaluation | MultiLabelEvaluation | EvalResult | SegmentationEvaluation:
    """``model`` on a labelled split of ``data``: top-1 / top-5, per-class precision and recall,
    confusion matrix and calibration error for classifiers; COCO mAP (overall and per class) for
    detectors; mIoU, per-class IoU, pixel accuracy and Dice for semantic segmenters, COCO mask
    AP for instance segmenters (``options``: ``ignore_index``, ``classes``, ``per_image``). ``out`` writes ``metrics.json`` (and the confusion matrix / predictions)."""
    task = task_of(model, trust_pickle=trust_pickle)
    if task in SEGMENTATION_TASKS:
        if data is None:
            raise ConfigError("evaluate needs data= for a segmenter (a mask folder, COCO JSON or YOLO-seg data)")
        return evaluate_segmenter(
            model,
            data,
            split=split or "val",
            batch_size=batch_size or 8,
            progress=progress,
            trust_pickle=trust_pickle,
            out=out,
            **options,
        )
    if task in DETECTION_TASKS:
        if data is None:
            raise ConfigError("evaluate needs data= for a detector (COCO JSON, YOLO data.yaml or VOC folder)")
        res = evaluate_detector(
            model,
            data,
            split=split,
            batch_size=batch_size or 8,
            progress=progress,
            trust_pickle=trust_pickle,
            **options,
        )
        if out is not None:
            res.write(out)
        return res
    return evaluate_classifier(
        model,
        data,
        split=split or "val",
        out=out,
        batch_size=batch_size or 32,
        progress=progress,
        trust_pickle=trust_pickle,
        **options,
    )


def audit(model: Any, data: Any = None, *, out: str | os.PathLike | None = None, progress: bool = True, **options: Any):
    """The model's hardest mistakes and the data's label errors (see `visiontune.audit.audit`)."""
    from visiontune.audit import audit as run_audit  # the audit stack (cleanlab, pandas) on first use

    options.setdefault("quiet", not progress)  # the audit's own switch for its progress and console output
    return run_audit(model, data=data, out=out, **options)


def export(
    model: Any,
    format: str = "onnx",
    *,
    out: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    **options: Any,
):
    """An ONNX / TorchScript artifact with its sidecar and a parity check (see `visiontune.export`)."""
    from visiontune.export import export as run_export  # onnx / onnxruntime on first use
    from visiontune.hub import load

    src = load(model, trust_pickle=trust_pickle) if isinstance(model, (str, os.PathLike)) else model
    if isinstance(src, Pretrained) and src.task in SEGMENTATION_TASKS:
        if format != "onnx":
            raise ConfigError(f"segmenters export to onnx; got format={format!r}")
        return export_segmenter(src, out, **options)
    return run_export(src, format, out, **options)


def bench(models: Any, *, out: str | os.PathLike | None = None, progress: bool = True, **options: Any):
    """Measured model cards on this machine (see `visiontune.bench.bench`); ``options`` are
    `BenchOptions` fields and ``trust_pickle``."""
    from visiontune.bench import BenchOptions
    from visiontune.bench import bench as run_bench

    trust = bool(options.pop("trust_pickle", False))
    ids = [models] if isinstance(models, (str, os.PathLike)) else list(models)
    return run_bench([str(m) for m in ids], BenchOptions(**options), out_dir=out, progress=progress, trust_pickle=trust)
