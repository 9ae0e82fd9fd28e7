"""Running a detection model: each source's own pre- and post-processing under one call.

``Pretrained.predict`` of a detection model lands in :func:`detect`: the adapter for the model's
source (torchvision, Hugging Face, Ultralytics, or any callable) is handed the user's score
threshold, NMS IoU and max detections where the source has such settings, then a final
:meth:`Detections.filter <visiontune.results.Detections.filter>` applies the class filter and
guarantees the limits hold for every source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn

from visiontune.data.decode import read_image
from visiontune.errors import ConfigError
from visiontune.progress import progress as progress_bar
from visiontune.results import Detections, class_ids

if TYPE_CHECKING:  # pragma: no cover
    from visiontune.hub.pretrained import Pretrained

DEFAULTS: dict[str, Any] = {"score_threshold": 0.25, "nms_iou": 0.45, "max_detections": 100}
DETECTION_TASKS = ("detection", "instance-segmentation")


def _to_image(item: Any) -> tuple[Image.Image | torch.Tensor, str | None]:
    if isinstance(item, (str, Path)):
        return read_image(item), str(item)
    return item, None


def to_float_tensor(im: Image.Image | torch.Tensor) -> torch.Tensor:
    """PIL / uint8 tensor / float tensor -> float CHW in [0, 1]."""
    if isinstance(im, torch.Tensor):
        return im.float() / 255.0 if im.dtype == torch.uint8 else im.float()
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(im.convert("RGB")).float().div_(255.0)


def _size_of(im: Image.Image | torch.Tensor) -> tuple[int, int]:
    if isinstance(im, torch.Tensor):
        return int(im.shape[-2]), int(im.shape[-1])
    return im.size[1], im.size[0]


def _to_pil(t: Image.Image | torch.Tensor) -> Image.Image:
    if isinstance(t, Image.Image):
        return t
    from torchvision.transforms.functional import to_pil_image

    return to_pil_image(t if t.dtype == torch.uint8 else t.clamp(0, 1))


Raw = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


class DetectionAdapter:
    """Runs one source's pre/post-processing; ``run`` returns (boxes, scores, labels, masks) per image."""

    source = "generic"

    def __init__(self, model: Any):
        self.model = model

    def run(
        self, images: list, score_threshold: float, nms_iou: float | None, max_detections: int, classes: set[int] | None
    ) -> list[Raw]:
        raise NotImplementedError


class TorchvisionAdapter(DetectionAdapter):
    """torchvision detection models (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD, composed)."""

    source = "torchvision"

    def _post_owner(self) -> Any:
        m = self.model
        if hasattr(m, "roi_heads") and hasattr(m.roi_heads, "score_thresh"):
            return m.roi_heads
        if hasattr(m, "score_thresh"):
            return m
        return None

    def run(self, images, score_threshold, nms_iou, max_detections, classes):
        owner = self._post_owner()
        if owner is not None:
            owner.score_thresh = float(score_threshold)
            if nms_iou is not None:
                owner.nms_thresh = float(nms_iou)
            # with a class filter, keep more candidates so that max_detections holds after it
            owner.detections_per_img = int(max_detections if classes is None else max(max_detections * 10, 1000))
        device = next(self.model.parameters()).device
        batch = [to_float_tensor(im).to(device) for im in images]
        self.model.eval()
        with torch.inference_mode():
            outs = self.model(batch)
        return [(o["boxes"], o["scores"], o["labels"], o["masks"][:, 0] if "masks" in o else None) for o in outs]


class HFAdapter(DetectionAdapter):
    """Hugging Face object detectors (DETR, RT-DETR, YOLOS, ...) with their own image processor."""

    source = "hf"

    def __init__(self, model: nn.Module, processor: Any):
        super().__init__(model)
        self.processor = processor

    def run(self, images, score_threshold, nms_iou, max_detections, classes):
        device = next(self.model.parameters()).device
        sizes = [_size_of(im) for im in images]
        inputs = self.processor(images=[_to_pil(im) for im in images], return_tensors="pt").to(device)
        self.model.eval()
        with torch.inference_mode():
            outputs = self.model(**inputs)
        post = self.processor.post_process_object_detection(
            outputs, threshold=float(score_threshold), target_sizes=torch.tensor(sizes)
        )
        return [(p["boxes"], p["scores"], p["labels"], None) for p in post]


class UltralyticsAdapter(DetectionAdapter):
    """Ultralytics YOLO (v5u/v8/11/...): its letterbox, NMS and mask upsampling run underneath."""

    source = "ultralytics"

    def run(self, images, score_threshold, nms_iou, max_detections, classes):
        import numpy as np

        arrays = [np.asarray(_to_pil(im).convert("RGB"))[:, :, ::-1] for im in images]  # ultralytics wants BGR
        kw: dict[str, Any] = {"conf": float(score_threshold), "max_det": int(max_detections), "verbose": False}
        if nms_iou is not None:
            kw["iou"] = float(nms_iou)
        if classes is not None:
            kw["classes"] = sorted(classes)
        out = []
        for r in self.model.predict(arrays, **kw):
            masks = None
            if getattr(r, "masks", None) is not None:
                from ultralytics.utils.ops import scale_masks

                masks = scale_masks(r.masks.data[None].float(), r.orig_shape)[0] > 0.5
            out.append((r.boxes.xyxy, r.boxes.conf, r.boxes.cls.long(), masks))
        return out


class CallableAdapter(DetectionAdapter):
    """Any callable taking a list of PIL images and returning, per image, an (N, 6) array
    ``x1, y1, x2, y2, score, class`` — or a result object with ``.xyxy`` (YOLOv5 AutoShape) —
    or a dict with ``boxes`` / ``scores`` / ``labels``. Threshold attributes the callable exposes
    (``conf``, ``iou``, ``max_det``, ``classes``, as YOLOv5's AutoShape does) are set before the
    call, so its own post-processing runs with the asked values."""

    source = "callable"

    def run(self, images, score_threshold, nms_iou, max_detections, classes):
        fn = self.model
        for attr, value in (
            ("conf", score_threshold),
            ("iou", nms_iou),
            ("max_det", max_detections),
            ("classes", None if classes is None else sorted(classes)),
        ):
            if hasattr(fn, attr) and (value is not None or attr == "classes"):
                setattr(fn, attr, value)
        with torch.inference_mode():
            result = fn([_to_pil(im) for im in images])
        per_image = result.xyxy if hasattr(result, "xyxy") else result
        if isinstance(per_image, torch.Tensor) and per_image.ndim == 2:
            per_image = [per_image]
        out: list[Raw] = []
        for r in per_image:
            if isinstance(r, dict):
                out.append((r["boxes"], r["scores"], r["labels"], r.get("masks")))
            else:
                t = torch.as_tensor(r).float().reshape(-1, 6)
                out.append((t[:, :4], t[:, 4], t[:, 5].round().long(), None))
        if len(out) != len(images):
            raise ConfigError(f"the detector callable returned {len(out)} results for {len(images)} images")
        return out


class CallableModule(nn.Module):
    """Holds a callable detector as a module (``Pretrained.model``); ``native`` is the callable."""

    def __init__(self, fn: Callable):
        super().__init__()
        if isinstance(fn, nn.Module):
            self.inner = fn
        else:
            self._fn = fn

    def forward(self, images: list) -> Any:  # pragma: no cover - the adapter calls the callable directly
        return (self.inner if hasattr(self, "inner") else self._fn)(images)


def detector_num_classes(model: nn.Module) -> int:
    """Number of class outputs (background included) of a torchvision detector; 0 if unknown."""
    pred = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if pred is not None and hasattr(pred, "cls_score"):
        return int(pred.cls_score.out_features)
    head = getattr(getattr(model, "head", None), "classification_head", None)
    return int(getattr(head, "num_classes", 0) or getattr(head, "num_columns", 0) or 0)


def adapter_for(p: Pretrained) -> DetectionAdapter:
    """The adapter that runs ``p`` (from its source and native object)."""
    source = p.card.source
    if source == "yolo":
        return UltralyticsAdapter(p.native)
    if source == "callable":
        return CallableAdapter(p.native)
    if source == "hf" and p.native is not None and hasattr(p.native, "post_process_object_detection"):
        return HFAdapter(p.model, p.native)
    return TorchvisionAdapter(p.model)


def check_options(score_threshold: float, nms_iou: float | None, max_detections: int) -> None:
    """Raise ConfigError for thresholds out of range."""
    if not 0.0 <= score_threshold <= 1.0:
        raise ConfigError(f"score_threshold must be in [0, 1], got {score_threshold}")
    if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
        raise ConfigError(f"nms_iou must be in (0, 1] or None, got {nms_iou}")
    if max_detections < 1:
        raise ConfigError(f"max_detections must be >= 1, got {max_detections}")


def detect(
    p: Pretrained,
    images: Any,
    *,
    score_threshold: float = DEFAULTS["score_threshold"],
    nms_iou: float | None = DEFAULTS["nms_iou"],
    max_detections: int = DEFAULTS["max_detections"],
    classes: Iterable[int | str] | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> list[Detections]:
    """Detect objects in ``images`` (paths, PIL images, CHW tensors); one `Detections` per image."""
    if isinstance(images, (str, Path, Image.Image)) or (isinstance(images, torch.Tensor) and images.ndim == 3):
        images = [images]
    images = list(images)
    check_options(score_threshold, nms_iou, int(max_detections))
    names: Sequence[str] = p.class_names
    ids = class_ids(classes, names) if classes is not None else None
    adapter = adapter_for(p)
    results: list[Detections] = []
    with progress_bar("detecting", len(images), enabled=progress and len(images) > 1) as bar:
        for start in range(0, len(images), batch_size):
            chunk = [_to_image(x) for x in images[start : start + batch_size]]
            raw = adapter.run([c[0] for c in chunk], score_threshold, nms_iou, int(max_detections), ids)
            for (im, path), (boxes, scores, labels, masks) in zip(chunk, raw):
                d = Detections(boxes, scores, labels, names, masks, _size_of(im), path)
                results.append(d.filter(score_threshold, nms_iou, int(max_detections), ids))
            bar.advance(len(chunk))
    return results
