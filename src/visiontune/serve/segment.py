"""Serving segmenters: a `Segmentation` as JSON, and the segmentation task of the `Runner`.

Result (one per image)::

    {"task": "segmentation", "kind": "semantic" | "instance" | "panoptic", "image_size": [h, w],
     "class_names": [...], "ignore_index": 11 | null,
     "class_map": {"encoding": "png", "dtype": "uint8" | "uint16", "data": "<base64 PNG>"} | null,
     "class_areas": {"road": 0.31, ...},  # share of the labelled pixels of each class present
     "instances": [{"box": [x1, y1, x2, y2], "score", "label", "name",
                    "mask": {"size": [h, w], "counts": "<COCO RLE>"}}, ...]}

The class map is a lossless single-channel PNG whose pixel values are the class indices (the
same file a mask folder holds: ``PIL.Image.open(io.BytesIO(base64.b64decode(data)))``);
instance masks are COCO RLE (pycocotools), which ``Segmentation.from_rle`` reads back.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from visiontune.results.segmentation import Segmentation, encode_rle
from visiontune.serve.task import Task


class SegmentOptions(BaseModel):
    """Per-request options of a segmenter."""

    model_config = ConfigDict(extra="forbid")
    score_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Instance segmenters: keep masks scoring at least this."
    )
    max_detections: int = Field(100, ge=1, le=10000, description="Instance segmenters: at most this many masks.")


def class_map_png(class_map: np.ndarray) -> dict:
    """An H×W class map as a lossless index PNG (8-bit when every value fits, else 16-bit)."""
    cm = np.asarray(class_map)
    if cm.size and (cm.min() < 0 or cm.max() > 65535):
        raise ValueError(f"class indices must lie in 0..65535 to travel as a PNG; got {cm.min()}..{cm.max()}")
    small = not cm.size or int(cm.max()) <= 255
    im = Image.fromarray(cm.astype(np.uint8)) if small else Image.fromarray(cm.astype(np.uint16))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return {
        "encoding": "png",
        "dtype": "uint8" if small else "uint16",
        "data": base64.b64encode(buf.getvalue()).decode(),
    }


def read_class_map(encoded: dict) -> np.ndarray:
    """The H×W class map of a served result's ``class_map`` (the inverse of `class_map_png`)."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded["data"])))).astype(np.int64)


def segmentation_json(s: Segmentation) -> dict:
    """A `Segmentation` as the served JSON (see the module docstring)."""
    names = list(s.class_names)
    out: dict[str, Any] = {
        "task": "segmentation",
        "kind": s.kind,
        "image_size": list(s.image_size) if s.image_size else None,
        "class_names": names,
        "ignore_index": s.ignore_index,
        "class_map": None,
        "class_areas": {},
        "instances": [],
    }
    if s.class_map is not None:
        cm = s.class_map.numpy()
        out["class_map"] = class_map_png(cm)
        out["class_areas"] = s.class_areas()
    if s.masks is not None and len(s):
        for box, score, label, mask in zip(s.boxes.tolist(), s.scores.tolist(), s.labels.tolist(), s.masks):
            out["instances"].append(
                {
                    "box": [float(v) for v in box],
                    "score": float(score),
                    "label": int(label),
                    "name": names[label] if 0 <= label < len(names) else f"class_{label}",
                    "mask": encode_rle(mask.numpy()),
                }
            )
    return out


class SegmentTask(Task):
    """A segmenter (``Pretrained.predict`` of a semantic or instance segmenter): its own
    preprocessing and post-processing, results at the image's own size. Promptable segmenters
    (SAM) need prompts with every image and are not served."""

    name = "segmentation"
    options_model = SegmentOptions

    def run(self, items: list[Image.Image], options: BaseModel) -> list[dict]:
        assert isinstance(options, SegmentOptions)
        if self.model.task == "instance-segmentation":
            segs = self.model.predict(
                list(items), score_threshold=options.score_threshold, max_detections=options.max_detections,
                batch_size=len(items),
            )  # fmt: skip
        else:
            segs = self.model.predict(list(items), score_threshold=options.score_threshold, batch_size=len(items))
        return [segmentation_json(s) for s in segs]


class SegmentExportedTask(Task):
    """An exported semantic segmenter (`visiontune.segment.export.SegmentationArtifact`: ONNX
    Runtime and the sidecar's preprocessing), class maps at each image's own size."""

    name = "segmentation"
    options_model = SegmentOptions

    def run(self, items: list[Image.Image], options: BaseModel) -> list[dict]:
        return [segmentation_json(s) for s in self.model.predict(list(items), batch_size=len(items))]
