"""Running a segmenter: each source's own pre- and post-processing under one call, one result type.

``Pretrained.predict`` of a segmentation model lands here and returns one `Segmentation` per
image, in the original image size:

* torchvision FCN / DeepLabV3 / LRASPP and composed segmenters: logits upsampled to the image,
  ``class_map`` = argmax (``probabilities=True`` keeps the softmax);
* Hugging Face semantic segmenters (SegFormer, UperNet, DPT…): the image processor and its
  ``post_process_semantic_segmentation``; universal ones (Mask2Former, OneFormer, MaskFormer):
  ``mode="semantic" | "instance" | "panoptic"`` through the processor's post-processing;
* SAM (task ``promptable-segmentation``): ``points=[[x, y], …]`` (``point_labels`` 1 = object,
  0 = background) and/or ``boxes=[[x1, y1, x2, y2], …]`` in pixels, masks out;
* instance segmenters (Mask R-CNN, Ultralytics ``-seg``): the detection adapters, their masks as
  a `Segmentation` (still a `Detections`).

:func:`label_conventions` fills the card's ignore index, background and ``reduce_labels``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from PIL import Image

from visiontune.data.decode import read_image
from visiontune.errors import ConfigError
from visiontune.hub.detection import DEFAULTS, detect
from visiontune.progress import progress as progress_bar
from visiontune.results import Segmentation, boxes_of_masks

if TYPE_CHECKING:  # pragma: no cover
    from visiontune.hub.pretrained import Pretrained

SEGMENTATION_TASKS = ("segmentation", "instance-segmentation", "promptable-segmentation")
BACKGROUND_NAMES = ("background", "__background__", "unlabeled", "_background_")


def _images(images: Any) -> list:
    if isinstance(images, (str, Path, Image.Image)) or (isinstance(images, torch.Tensor) and images.ndim == 3):
        return [images]
    return list(images)


def _pil(item: Any) -> tuple[Image.Image, str | None]:
    if isinstance(item, (str, Path)):
        return read_image(item), str(item)
    if isinstance(item, torch.Tensor):
        from torchvision.transforms.functional import to_pil_image

        return to_pil_image(item if item.dtype == torch.uint8 else item.clamp(0, 1)), None
    return item.convert("RGB"), None


def label_conventions(p: Pretrained) -> dict[str, Any]:
    """``{"ignore_index", "background", "reduce_labels"}`` of a segmenter, from its card."""
    ex = p.card.extra
    names = p.class_names
    return {
        "ignore_index": ex.get("ignore_index", 255),
        "background": ex.get("background", bool(names) and names[0].lower() in BACKGROUND_NAMES),
        "reduce_labels": bool(ex.get("reduce_labels", False)),
    }


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, dict):
        return out["out"]
    if hasattr(out, "logits"):
        return out.logits
    return out


def _semantic(p: Pretrained, im: Image.Image, probabilities: bool, device: torch.device) -> tuple[torch.Tensor, Any]:
    x = p.preprocess(im)[None].to(device)
    with torch.inference_mode():
        lg = _logits(p.model(x)).float()
    lg = F.interpolate(lg, size=(im.height, im.width), mode="bilinear", align_corners=False)[0]
    return lg.argmax(0), (lg.softmax(0) if probabilities else None)


def _hf_semantic(p: Pretrained, ims: list[Image.Image], probabilities: bool, mode: str, threshold: float, device):
    proc = p.native
    kw: dict[str, Any] = {}
    if "OneFormer" in type(proc).__name__:
        kw["task_inputs"] = [mode] * len(ims)
    inputs = proc(images=ims, return_tensors="pt", **kw).to(device)
    with torch.inference_mode():
        out = p.model(**inputs)
    sizes = [(im.height, im.width) for im in ims]
    if hasattr(out, "logits") and not hasattr(out, "class_queries_logits"):  # SegFormer, UperNet, DPT
        maps = proc.post_process_semantic_segmentation(out, target_sizes=sizes)
        probs: list[torch.Tensor | None] = [None] * len(ims)
        if probabilities:
            probs = [
                F.interpolate(lg[None].float(), size=s, mode="bilinear", align_corners=False)[0].softmax(0)
                for lg, s in zip(out.logits, sizes)
            ]
        return [(m, pr, None) for m, pr in zip(maps, probs)]
    if mode == "semantic":
        return [(m, None, None) for m in proc.post_process_semantic_segmentation(out, target_sizes=sizes)]
    post = proc.post_process_panoptic_segmentation if mode == "panoptic" else proc.post_process_instance_segmentation
    res = []
    for r in post(out, threshold=threshold, target_sizes=sizes):
        seg, infos = r["segmentation"], r["segments_info"]
        masks = torch.stack([seg == s["id"] for s in infos]) if infos else torch.zeros(0, *seg.shape, dtype=torch.bool)
        inst = (masks, torch.tensor([s["label_id"] for s in infos]), torch.tensor([s["score"] for s in infos]))
        res.append((None, None, inst))
    return res


def _sam(p: Pretrained, im: Image.Image, points, point_labels, boxes, multimask: bool, device):
    from transformers import SamProcessor

    proc = SamProcessor(image_processor=p.native)
    kw: dict[str, Any] = {}
    if points is not None:
        pts = [[float(x), float(y)] for x, y in points]
        kw["input_points"] = [[[pt] for pt in pts]] if boxes is None else [[pts]]
        labels = point_labels if point_labels is not None else [1] * len(pts)
        kw["input_labels"] = [[[int(v)] for v in labels]] if boxes is None else [[list(map(int, labels))]]
    if boxes is not None:
        kw["input_boxes"] = [[[float(v) for v in b] for b in boxes]]
    if not kw:
        raise ConfigError("a promptable segmenter (SAM) needs points=[[x, y], …] and/or boxes=[[x1, y1, x2, y2], …]")
    inputs = proc(images=im, return_tensors="pt", **kw).to(device)
    with torch.inference_mode():
        out = p.model(**inputs, multimask_output=multimask)
    masks = proc.image_processor.post_process_masks(
        out.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu()
    )[0]  # prompts × masks-per-prompt × H × W
    scores = out.iou_scores[0].cpu().float()
    m = masks.reshape(-1, *masks.shape[-2:]).bool()
    return m, scores.reshape(-1)


def segment(
    p: Pretrained,
    images: Any,
    *,
    probabilities: bool = False,
    mode: str = "semantic",
    score_threshold: float = 0.5,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    multimask: bool = False,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[Segmentation]:
    """Segment ``images`` (paths, PIL images, CHW tensors); one `Segmentation` per image. See
    the module docstring for what each option means for each kind of segmenter."""
    items = _images(images)
    if mode not in ("semantic", "instance", "panoptic"):
        raise ConfigError(f"mode must be semantic, instance or panoptic; got {mode!r}")
    dev = torch.device(device) if device else next(p.model.parameters()).device
    names = p.class_names
    conv = label_conventions(p)
    is_hf = p.card.source == "hf" and p.native is not None
    out: list[Segmentation] = []
    with progress_bar("segmenting", len(items), enabled=progress and len(items) > 1) as bar:
        for start in range(0, len(items), batch_size):
            chunk = [_pil(x) for x in items[start : start + batch_size]]
            ims = [c[0] for c in chunk]
            rows: list[tuple[Any, Any, Any]]  # (class map, probabilities, instances): one set per image
            if p.task == "promptable-segmentation":
                rows = []
                for im in ims:
                    m, s = _sam(p, im, points, point_labels, boxes, multimask, dev)
                    rows.append((None, None, (m, torch.zeros(len(m), dtype=torch.int64), s)))
            elif is_hf:
                rows = _hf_semantic(p, ims, probabilities, mode, score_threshold, dev)
            else:
                rows = [(*_semantic(p, im, probabilities, dev), None) for im in ims]
            for (im, path), (cmap, prob, inst) in zip(chunk, rows):
                size = (im.height, im.width)
                if inst is None:
                    out.append(
                        Segmentation(
                            torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), names, None, size, path,
                            class_map=cmap.cpu(), probabilities=None if prob is None else prob.cpu(),
                            ignore_index=conv["ignore_index"],
                        )
                    )  # fmt: skip
                else:
                    m, lab, sc = inst
                    m = m.cpu().bool()
                    tags = ["object"] if p.task == "promptable-segmentation" else names
                    out.append(Segmentation(boxes_of_masks(m), sc, lab, tags, m, size, path))
            bar.advance(len(chunk))
    return out


def segment_instances(
    p: Pretrained,
    images: Any,
    *,
    score_threshold: float = DEFAULTS["score_threshold"],
    nms_iou: float | None = DEFAULTS["nms_iou"],
    max_detections: int = DEFAULTS["max_detections"],
    classes: Any = None,
    batch_size: int = 8,
    progress: bool = False,
) -> list[Segmentation]:
    """Instance segmenters (Mask R-CNN, YOLO-seg): `detect`'s options, a `Segmentation` (a
    `Detections` with boolean masks) per image."""
    dets = detect(
        p,
        images,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        max_detections=max_detections,
        classes=classes,
        batch_size=batch_size,
        progress=progress,
    )
    return [Segmentation.from_detections(d) for d in dets]


#: task -> predictor, merged into ``Pretrained``'s table
PREDICTORS: dict[str, Callable[..., list]] = {
    "segmentation": segment,
    "promptable-segmentation": segment,
    "instance-segmentation": segment_instances,
}
