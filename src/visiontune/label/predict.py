"""Model predictions as pre-annotations: the one place the label loop calls a model.

``model`` may be a model id or saved-model folder (``vt.load``), a run folder (its ``model/``;
the run's name becomes the ``model_version``), a loaded ``Pretrained``, a
``visiontune.detect.Detector``, or any callable ``f(list_of_files) -> list`` whose items are
``Prediction``, ``Detections``, an ``(H, W)`` class-index array (semantic segmentation) or a list
of :class:`~visiontune.label.core.Shape`. Segmentation models plug in through the last two
until visiontune has its own segmentation models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visiontune.detect.detector import Detector
from visiontune.hub import Pretrained, load
from visiontune.label import masks as mk
from visiontune.label.core import LabelSet, Shape
from visiontune.progress import progress as progress_bar
from visiontune.results import Detections, Prediction


def model_version_of(model: Any) -> str:
    """The name a model's predictions carry: a run's name, else the model id."""
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        run_json = p / "run.json" if (p / "run.json").is_file() else p.parent / "run.json"
        if run_json.is_file():
            try:
                return str(json.loads(run_json.read_text(encoding="utf-8")).get("name") or run_json.parent.name)
            except (OSError, ValueError):
                return run_json.parent.name
        return str(model)
    card = getattr(model, "card", None)
    if card is not None and getattr(card, "model_id", None):
        return str(card.model_id)
    return str(getattr(model, "model_id", None) or getattr(model, "__name__", None) or type(model).__name__)


def resolve_model(model: Any) -> Callable[[list[str]], list[Any]]:
    """A function ``files -> outputs`` for any accepted ``model`` (see the module docstring)."""
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        model = load(str(p / "model")) if (p / "run.json").is_file() and (p / "model").is_dir() else load(str(model))
    if isinstance(model, Detector):
        model = model.pretrained
    if isinstance(model, Pretrained):  # the task decides the result type (Prediction, Detections)
        pretrained = model
        options = {"topk": 1} if pretrained.task == "classification" else {}
        return lambda files: pretrained.predict(files, **options)
    if callable(model):
        return model
    raise TypeError(f"cannot predict with {type(model).__name__}: pass a model id, run folder, Pretrained or callable")


def output_to_shapes(
    out: Any, classes: Sequence[str], height: int | None = None, width: int | None = None
) -> list[Shape]:
    """Shapes (with scores) from one image's model output; labels outside ``classes`` are dropped."""
    known = set(classes)
    if isinstance(out, Prediction):
        return [Shape(out.label, "tag", score=float(out.prob))] if out.label in known else []
    if isinstance(out, Detections):
        shapes = []
        masks = out.masks.numpy() > 0.5 if out.masks is not None else None
        for k, (box, score, name) in enumerate(zip(out.boxes.tolist(), out.scores.tolist(), out.names)):
            if name not in known:
                continue
            if masks is not None:
                shapes.append(Shape(name, "mask", mask=masks[k], score=float(score)))
            else:
                shapes.append(Shape(name, "box", box=tuple(box), score=float(score)))
        return shapes
    if isinstance(out, np.ndarray) and out.ndim == 2:
        return [
            Shape(classes[c], "mask", mask=m)
            for c, m in sorted(mk.class_map_to_masks(out).items())
            if 0 <= c < len(classes)
        ]
    if isinstance(out, (list, tuple)) and all(isinstance(s, Shape) for s in out):
        return [s for s in out if s.label in known]
    raise TypeError(f"cannot turn a {type(out).__name__} model output into shapes")


def add_predictions(
    ls: LabelSet,
    model: Any,
    *,
    batch_size: int = 32,
    model_version: str | None = None,
    progress: bool = True,
) -> LabelSet:
    """Run ``model`` on every item of ``ls`` and store its outputs as ``item.predictions``;
    ``ls.model_version`` becomes the run / model name. Returns ``ls``."""
    fn = resolve_model(model)
    ls.model_version = model_version or model_version_of(model)
    with progress_bar(f"pre-annotating with {ls.model_version}", len(ls.items), enabled=progress) as bar:
        for start in range(0, len(ls.items), batch_size):
            chunk = ls.items[start : start + batch_size]
            outs = fn([it.file for it in chunk])
            if len(outs) != len(chunk):
                raise ValueError(f"the model returned {len(outs)} outputs for {len(chunk)} images")
            for it, out in zip(chunk, outs):
                it.predictions = output_to_shapes(out, ls.classes, it.height, it.width)
            bar.advance(len(chunk))
    return ls
