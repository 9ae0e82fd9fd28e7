"""`Detector`: one call over torchvision, Hugging Face, Ultralytics and any callable detector.

Each source's own preprocessing and post-processing runs underneath; the user's score threshold,
NMS IoU and max detections are handed to it where the source has such settings, then a final
`Detections.filter` applies the class filter and guarantees the limits hold for every source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from visiontune.errors import ConfigError, ModelIdError

from .io import read_image
from .results import Detections

DEFAULTS = {"score_threshold": 0.25, "nms_iou": 0.45, "max_detections": 100}


def _to_pil(item) -> tuple[Image.Image | torch.Tensor, str | None]:
    if isinstance(item, (str, Path)):
        return read_image(item), str(item)
    return item, None


def _pil_to_tensor(im) -> torch.Tensor:
    """PIL / uint8 tensor / float tensor -> float CHW in [0, 1]."""
    if isinstance(im, torch.Tensor):
        return im.float() / 255.0 if im.dtype == torch.uint8 else im.float()
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(im.convert("RGB")).float().div_(255.0)


def _size_of(im) -> tuple[int, int]:
    if isinstance(im, torch.Tensor):
        return int(im.shape[-2]), int(im.shape[-1])
    return im.size[1], im.size[0]


class _Adapter:
    """Runs one source's pre/post-processing. `run` returns (boxes, scores, labels, masks) per image."""

    source = "generic"

    def __init__(self, model):
        self.model = model

    def run(
        self, images: list, score_threshold: float, nms_iou: float | None, max_detections: int, classes: set[int] | None
    ) -> list[tuple]:
        raise NotImplementedError

    def to(self, device):
        if isinstance(self.model, torch.nn.Module):
            self.model.to(device)
        return self


class TorchvisionAdapter(_Adapter):
    """torchvision detection models (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD, composed)."""

    source = "torchvision"

    def _post_owner(self):
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
        batch = [_pil_to_tensor(im).to(device) for im in images]
        self.model.eval()
        with torch.inference_mode():
            outs = self.model(batch)
        return [(o["boxes"], o["scores"], o["labels"], o["masks"][:, 0] if "masks" in o else None) for o in outs]


class HFAdapter(_Adapter):
    """Hugging Face object detectors (DETR, RT-DETR, YOLOS, ...) with their own image processor."""

    source = "hf"

    def __init__(self, model, processor):
        super().__init__(model)
        self.processor = processor

    def run(self, images, score_threshold, nms_iou, max_detections, classes):
        device = next(self.model.parameters()).device
        sizes = [_size_of(im) for im in images]
        pil = [im if isinstance(im, Image.Image) else _tensor_to_pil(im) for im in images]
        inputs = self.processor(images=pil, return_tensors="pt").to(device)
        self.model.eval()
        with torch.inference_mode():
            outputs = self.model(**inputs)
        post = self.processor.post_process_object_detection(
            outputs, threshold=float(score_threshold), target_sizes=torch.tensor(sizes)
        )
        return [(p["boxes"], p["scores"], p["labels"], None) for p in post]


def _tensor_to_pil(t: torch.Tensor) -> Image.Image:
    from torchvision.transforms.functional import to_pil_image

    return to_pil_image(t if t.dtype == torch.uint8 else t.clamp(0, 1))


class UltralyticsAdapter(_Adapter):
    """Ultralytics YOLO (v5u/v8/11/...): its letterbox, NMS and mask upsampling run underneath."""

    source = "ultralytics"

    def run(self, images, score_threshold, nms_iou, max_detections, classes):
        import numpy as np

        arrays = [
            np.asarray(im.convert("RGB"))[:, :, ::-1]
            if isinstance(im, Image.Image)
            else np.asarray(_tensor_to_pil(im))[:, :, ::-1]
            for im in images
        ]  # ultralytics wants BGR
        kw = {"conf": float(score_threshold), "max_det": int(max_detections), "verbose": False}
        if nms_iou is not None:
            kw["iou"] = float(nms_iou)
        if classes is not None:
            kw["classes"] = sorted(classes)
        results = self.model.predict(arrays, **kw)
        out = []
        for r in results:
            b = r.boxes
            masks = None
            if getattr(r, "masks", None) is not None:
                from ultralytics.utils.ops import scale_masks

                masks = scale_masks(r.masks.data[None].float(), r.orig_shape)[0] > 0.5
            out.append((b.xyxy, b.conf, b.cls.long(), masks))
        return out

    def to(self, device):
        self.model.to(device)
        return self


class CallableAdapter(_Adapter):
    """Any callable taking a list of PIL images and returning, per image, an (N, 6) array
    ``x1, y1, x2, y2, score, class`` — or a result object with ``.xyxy`` (YOLOv5 AutoShape) —
    or a dict with ``boxes`` / ``scores`` / ``labels``. Threshold attributes the callable exposes
    (``conf``, ``iou``, ``max_det``, ``classes``, as YOLOv5's AutoShape does) are set before the call,
    so its own post-processing runs with the asked values."""

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
        pil = [im if isinstance(im, Image.Image) else _tensor_to_pil(im) for im in images]
        with torch.inference_mode():
            result = fn(pil)
        per_image = result.xyxy if hasattr(result, "xyxy") else result
        if isinstance(per_image, (torch.Tensor,)) and per_image.ndim == 2:
            per_image = [per_image]
        out = []
        for r in per_image:
            if isinstance(r, dict):
                out.append((r["boxes"], r["scores"], r["labels"], r.get("masks")))
            else:
                r = torch.as_tensor(r).float().reshape(-1, 6)
                out.append((r[:, :4], r[:, 4], r[:, 5].round().long(), None))
        if len(out) != len(images):
            raise ConfigError(f"the detector callable returned {len(out)} results for {len(images)} images")
        return out


class Detector:
    """One detector, whatever its source. Call it on images (paths, PIL, CHW tensors):

    >>> det = Detector.load("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    >>> dets = det(["bus.jpg"], score_threshold=0.5, classes=["person"])
    """

    def __init__(
        self,
        adapter: _Adapter,
        class_names: Sequence[str],
        model_id: str = "",
        card: Any = None,
        config: dict | None = None,
    ):
        self.adapter = adapter
        self.class_names = list(class_names)
        self.model_id = model_id
        self.card = card
        self.config = config  # composed / fine-tuned detector recipe (rebuilds it), if any

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, id_or_pretrained, **load_kwargs) -> Detector:
        """From a model id (``torchvision:…``, ``hf:…``, ``yolo:…``, a saved detector directory)
        or a `visiontune.Pretrained` / bare model object."""
        from .models import load_detector

        return load_detector(id_or_pretrained, **load_kwargs)

    @classmethod
    def from_torchvision(
        cls,
        model: torch.nn.Module,
        class_names: Sequence[str],
        model_id: str = "",
        config: dict | None = None,
        card=None,
    ) -> Detector:
        return cls(
            TorchvisionAdapter(model.eval()), class_names, model_id or type(model).__name__, card=card, config=config
        )

    @classmethod
    def from_hf(cls, model, processor, model_id: str = "hf") -> Detector:
        """Wrap a Hugging Face object-detection model and its image processor."""
        return cls(HFAdapter(model.eval(), processor), _names_list(model.config.id2label), model_id)

    @classmethod
    def from_callable(
        cls, fn: Callable, class_names: Sequence[str] | dict | None = None, model_id: str = "callable"
    ) -> Detector:
        """Wrap a callable detector (see `CallableAdapter`); class names default to ``fn.names``."""
        names = class_names if class_names is not None else getattr(fn, "names", None)
        if names is None:
            raise ConfigError("from_callable needs class_names= (the callable has no .names)")
        return cls(CallableAdapter(fn), _names_list(names), model_id)

    @property
    def model(self):
        return self.adapter.model

    @property
    def source(self) -> str:
        return self.adapter.source

    def to(self, device) -> Detector:
        self.adapter.to(device)
        return self

    # ------------------------------------------------------------------ prediction
    def __call__(
        self,
        images,
        score_threshold: float = DEFAULTS["score_threshold"],
        nms_iou: float | None = DEFAULTS["nms_iou"],
        max_detections: int = DEFAULTS["max_detections"],
        classes: Iterable[int | str] | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Detections]:
        """Detect objects; returns one `Detections` per image, in order."""
        if isinstance(images, (str, Path, Image.Image)) or (isinstance(images, torch.Tensor) and images.ndim == 3):
            images = [images]
        images = list(images)
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
            raise ConfigError(f"nms_iou must be in (0, 1] or None, got {nms_iou}")
        if max_detections < 1:
            raise ConfigError(f"max_detections must be >= 1, got {max_detections}")
        from .results import class_ids

        ids = class_ids(classes, self.class_names) if classes is not None else None
        results: list[Detections] = []
        task = None
        bar = _progress(progress, len(images))
        if bar is not None:
            bar.start()
            task = bar.add_task("detecting", total=len(images))
        try:
            for start in range(0, len(images), batch_size):
                chunk = [_to_pil(x) for x in images[start : start + batch_size]]
                loaded = [c[0] for c in chunk]
                raw = self.adapter.run(loaded, score_threshold, nms_iou, max_detections, ids)
                for (im, path), (boxes, scores, labels, masks) in zip(chunk, raw):
                    d = Detections(boxes, scores, labels, self.class_names, masks, _size_of(im), path)
                    results.append(d.filter(score_threshold, nms_iou, max_detections, ids))
                if bar is not None:
                    bar.update(task, advance=len(chunk))
        finally:
            if bar is not None:
                bar.stop()
        return results

    predict = __call__

    def __repr__(self) -> str:
        return f"Detector({self.model_id!r}, source={self.source}, classes={len(self.class_names)})"

    def save(self, directory, metrics: dict | None = None, training: dict | None = None) -> Path:
        """Save a torchvision / composed detector as ``model.safetensors`` + ``visiontune.json``."""
        from .models import save_detector

        return save_detector(self, directory, metrics=metrics, training=training)


def _names_list(names) -> list[str]:
    if isinstance(names, dict):
        n = max(int(k) for k in names) + 1 if names else 0
        return [str(names.get(i, names.get(str(i), str(i)))) for i in range(n)]
    return [str(x) for x in names]


def _progress(enabled: bool, total: int):
    if not enabled or total <= 1:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    )


def check_id(model_id: str) -> tuple[str, str]:
    if ":" not in model_id:
        raise ModelIdError(
            f"model id {model_id!r} has no source; use e.g. torchvision:fasterrcnn_resnet50_fpn_v2, "
            "hf:facebook/detr-resnet-50, yolo:yolo11n.pt or a saved detector directory"
        )
    src, name = model_id.split(":", 1)
    return src, name
