"""The one place that calls models for serving and batch prediction.

A :class:`Runner` loads a model — a hub id, a saved model directory or an exported artifact with
its sidecar — and turns decoded PIL images into JSON-able results, one dict per image, for the
model's task. Everything else in ``visiontune.serve`` (HTTP servers, batcher, batch predict)
calls only :meth:`Runner.prepare` (per image, any thread) and :meth:`Runner.run` (per batch).

Results::

    classification: {"task": "classification", "top": [{"index", "label", "prob"}, ...]}
    detection:      {"task": "detection", "image_size": [h, w],
                     "detections": [{"box": [x1, y1, x2, y2], "score", "label", "name"}, ...]}

    segmentation:   {"task": "segmentation", "kind", "image_size", "class_map" (an index PNG),
                     "class_areas", "instances": [{"box", "score", "label", "name", "mask" (RLE)}]}
                     (see `visiontune.serve.segment`)

A new task adds a `visiontune.serve.task.Task` subclass and one line in :data:`TASKS`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from visiontune.errors import ConfigError
from visiontune.export.preprocess import preprocess_array
from visiontune.export.runtime import load_artifact
from visiontune.export.sidecar import is_segmentation_sidecar, sidecar_path
from visiontune.hub.classification import logits_of
from visiontune.hub.loader import load as load_pretrained
from visiontune.results import Prediction
from visiontune.segment.export import SegmentationArtifact
from visiontune.serve.segment import SegmentExportedTask, SegmentOptions, SegmentTask
from visiontune.serve.task import Task


class ClassifyOptions(BaseModel):
    """Per-request options of a classifier."""

    model_config = ConfigDict(extra="forbid")
    topk: int = Field(5, ge=1, le=1000, description="How many classes to return, best first.")


class DetectOptions(BaseModel):
    """Per-request options of a detector."""

    model_config = ConfigDict(extra="forbid")
    score_threshold: float = Field(0.25, ge=0.0, le=1.0)
    nms_iou: float | None = Field(0.45, gt=0.0, le=1.0)
    max_detections: int = Field(100, ge=1, le=10000)
    classes: list[int | str] | None = Field(None, description="Keep only these class ids or names.")


def _key(options: BaseModel) -> str:
    return options.model_dump_json()


class _Classify(Task):
    """A ``visiontune.Pretrained`` classifier: its own preprocessing, softmax, top-k."""

    name = "classification"
    options_model = ClassifyOptions

    def __init__(self, model: Any, class_names: Sequence[str]):
        super().__init__(model, class_names)
        # channels-last convolutions: about 2x faster on this project's CPUs (oneDNN), at batch 1
        # and 16 alike; the model is this runner's own copy
        self.channels_last = any(isinstance(m, torch.nn.Conv2d) for m in model.model.modules())
        if self.channels_last:
            model.model.to(memory_format=torch.channels_last)

    def prepare(self, image):
        return self.model.preprocess(image)

    def preparer(self):
        return self.model.preprocess  # a Preprocess dataclass: picklable

    @torch.inference_mode()
    def run(self, items, options):
        device = next(self.model.model.parameters()).device
        x = (items if isinstance(items, torch.Tensor) else torch.stack(items)).to(device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        probs = logits_of(self.model.model(x)).float().softmax(-1)
        return _top(probs.cpu().numpy(), options.topk, self.class_names)


class _ClassifyExported(Task):
    """An exported classifier (ONNX Runtime / TorchScript) with the sidecar's preprocessing."""

    name = "classification"
    options_model = ClassifyOptions

    def prepare(self, image):
        return self.model.preprocess(image)

    def preparer(self):
        return functools.partial(preprocess_array, pre=self.model.sidecar.preprocessing)

    def run(self, items, options):
        if self.model.sidecar.output.batch == 1:  # exported with a fixed batch of one
            logits = np.concatenate([self.model.run(x[None]) for x in items])
        else:
            logits = self.model.run(np.stack(items))
        z = logits.astype(np.float64)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return _top(e / e.sum(axis=-1, keepdims=True), options.topk, self.class_names)


def _top(probs: np.ndarray, topk: int, names: list[str]) -> list[dict]:
    k = min(int(topk), probs.shape[-1])
    idx = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    out = []
    for j in range(len(probs)):
        ii = [int(i) for i in idx[j]]
        pred = Prediction(
            ii, [names[i] if i < len(names) else f"class_{i}" for i in ii], [float(probs[j, i]) for i in ii]
        )
        out.append({"task": "classification", "top": pred.to_dict()["top"]})
    return out


class _Detect(Task):
    """A detection model (``Pretrained.predict`` of a detector): the source's own pre/post-processing
    underneath.

    Images of one batch run together only when they have the same size, so that padding inside
    the detector (R-CNN pads a batch to its largest image) never changes a result."""

    name = "detection"
    options_model = DetectOptions

    def run(self, items, options):
        out: list[dict | None] = [None] * len(items)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(items):
            groups.setdefault(im.size, []).append(i)
        for idx in groups.values():
            dets = self.model.predict(
                [items[i] for i in idx],
                score_threshold=options.score_threshold,
                nms_iou=options.nms_iou,
                max_detections=options.max_detections,
                classes=options.classes,
                batch_size=len(idx),
            )
            for i, d in zip(idx, dets):
                out[i] = detections_json(d)
        return out  # type: ignore[return-value]


class _DetectExported(Task):
    """An exported detector (one image per call, as the artifact was exported)."""

    name = "detection"
    options_model = DetectOptions

    def run(self, items, options):
        out = []
        for im in items:
            d = self.model.predict([im], score_threshold=options.score_threshold)[0]
            d = d.filter(options.score_threshold, options.nms_iou, options.max_detections, options.classes)
            out.append(detections_json(d))
        return out


def detections_json(d: Any) -> dict:
    """A ``Detections`` as the served JSON (full precision floats)."""
    return {
        "task": "detection",
        "image_size": list(d.image_size) if d.image_size else None,
        "detections": [
            {"box": [float(v) for v in b], "score": float(s), "label": int(lab), "name": n}
            for b, s, lab, n in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), d.names)
        ],
    }


class Runner:
    """A loaded model ready to serve: ``prepare(image)`` then ``run(prepared, options)``.

    ``options`` is a dict of per-request settings (``topk`` for classifiers; ``score_threshold``,
    ``nms_iou``, ``max_detections``, ``classes`` for detectors) validated by
    :meth:`parse_options`. Not thread-safe for ``run``: call it from one thread at a time.
    """

    def __init__(self, task: Task, model_id: str, info: dict | None = None):
        self._task = task
        self.model_id = model_id
        self.info = info or {}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        *,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        trust_pickle: bool = False,
        trust_remote_code: bool = False,
        device: str | None = None,
        threads: int | None = None,
    ) -> Runner:
        """Load ``model``: an exported ``.onnx`` / TorchScript file with its sidecar, a saved
        model or detector directory, or any ``visiontune.load`` id."""
        if threads:
            torch.set_num_threads(int(threads))
        text = os.fspath(model)
        path = Path(text)
        if path.is_file():
            if not sidecar_path(path).is_file():
                raise ConfigError(
                    f"{path} is a file without the sidecar {sidecar_path(path).name}: serve an exported model "
                    "with its sidecar beside it, a saved model directory or a model id"
                )
            if is_segmentation_sidecar(path):
                seg = SegmentationArtifact(path)
                info = {"source": "exported", "backend": "onnxruntime", "artifact": str(path)}
                return cls(SegmentExportedTask(seg, seg.class_names), str(path), info)
            exported = load_artifact(path, threads=threads)
            kind = {"classification": _ClassifyExported, "detection": _DetectExported}.get(exported.task)
            if kind is None:
                raise ConfigError(f"{path}: task {exported.task!r} cannot be served yet ({', '.join(TASKS)} can)")
            info = {"source": "exported", "backend": exported.backend, "artifact": str(path)}
            return cls(kind(exported, exported.class_names), str(path), info)
        p = load_pretrained(
            text, weights=weights, pretrained=pretrained, trust_pickle=trust_pickle, trust_remote_code=trust_remote_code
        )
        if device:
            p.to(device)
        task = p.task  # one model object for every task: a saved detector loads like any model
        if task == "detection":
            return cls(_Detect(p, p.class_names), p.card.model_id, {"source": p.card.source})
        if task == "classification":
            return cls(_Classify(p, p.class_names), p.card.model_id, {"source": p.card.source})
        if task in ("segmentation", "instance-segmentation"):
            return cls(SegmentTask(p, p.class_names), p.card.model_id, {"source": p.card.source})
        if task == "promptable-segmentation":
            raise ConfigError(
                f"{text} is a promptable segmenter (SAM): it needs points or boxes with every image, which "
                "the server does not take; call visiontune.load(...).predict(image, points=..., boxes=...)"
            )
        raise ConfigError(f"{text} is a {task} model; serving supports {', '.join(TASKS)} for now")

    # -- properties --------------------------------------------------------------------------
    @property
    def task(self) -> str:
        """``classification`` or ``detection``."""
        return self._task.name

    @property
    def class_names(self) -> list[str]:
        """The class names of the model."""
        return self._task.class_names

    @property
    def options_model(self) -> type[BaseModel]:
        """The pydantic model of the task's request options."""
        return self._task.options_model

    def to(self, device: Any) -> Runner:
        """Move the model to ``device`` (exported models stay where their runtime put them)."""
        m = self._task.model
        if hasattr(m, "sidecar"):
            return self
        if hasattr(m, "to"):  # a Pretrained (model and the source's own object)
            m.to(device)
        return self

    def describe(self) -> dict:
        """JSON-able model facts for ``/info`` and Parquet metadata."""
        return {
            "model": self.model_id,
            "task": self.task,
            "num_classes": len(self.class_names),
            "options": self.options_model.model_json_schema()["properties"],
            **self.info,
        }

    # -- work --------------------------------------------------------------------------------
    def parse_options(self, options: dict | None) -> BaseModel:
        """Validate per-request options (pydantic raises ``ValidationError`` naming the field)."""
        return self.options_model.model_validate(options or {})

    def prepare(self, image: Image.Image) -> Any:
        """Per-image preprocessing (thread-safe: run it in request threads or data workers)."""
        return self._task.prepare(image)

    def preparer(self) -> Any:
        """``prepare`` as a picklable callable without the model, for DataLoader workers."""
        return self._task.preparer()

    def run(self, items: list[Any], options: Sequence[BaseModel | dict | None] | BaseModel | None = None) -> list[dict]:
        """Results for prepared images, one dict each; items with equal options run as one batch."""
        if len(items) == 0:
            return []
        if options is None or isinstance(options, (BaseModel, dict)):  # one batch, one call
            one = options if isinstance(options, BaseModel) else self.parse_options(options)
            return self._run_parts(items, one)
        parsed = [o if isinstance(o, BaseModel) else self.parse_options(o) for o in options]
        groups: dict[str, list[int]] = {}
        for i, o in enumerate(parsed):
            groups.setdefault(_key(o), []).append(i)
        out: list[dict | None] = [None] * len(items)
        for idx in groups.values():
            for i, r in zip(idx, self._run_parts([items[i] for i in idx], parsed[idx[0]])):
                out[i] = r
        return out  # type: ignore[return-value]

    def _run_parts(self, items: Any, options: BaseModel) -> list[dict]:
        """Run in sub-batches whose sizes are powers of two (11 → 8 + 2 + 1): a model then sees
        at most log2(max batch) + 1 input shapes, and oneDNN / ONNX Runtime keep one compiled
        kernel set per shape instead of recompiling for every batch size dynamic batching makes."""
        out: list[dict] = []
        start = 0
        for size in pow2_parts(len(items)):
            out += self._task.run(items[start : start + size], options)
            start += size
        return out


def pow2_parts(n: int) -> list[int]:
    """``n`` as a sum of distinct powers of two, largest first (``11 → [8, 2, 1]``)."""
    return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


#: Tasks that can be served; each maps to its options model.
TASKS: dict[str, type[BaseModel]] = {
    "classification": ClassifyOptions,
    "detection": DetectOptions,
    "segmentation": SegmentOptions,
}
