"""`Segmentation`: the one result type of every segmenter — semantic, instance and promptable.

A semantic segmenter fills ``class_map`` (H×W class indices, optionally ``probabilities`` C×H×W);
an instance segmenter (Mask R-CNN, YOLO-seg, Mask2Former instance, SAM) fills the `Detections`
fields it inherits — ``boxes``, ``scores``, ``labels``, ``masks`` (N×H×W) — so everything that
reads detections (COCO results, label pre-annotations, drawing) reads instance masks too.
``from_detections`` / ``to_detections`` convert, ``to_rle`` / ``from_rle`` go through
pycocotools' mask API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from visiontune.errors import require
from visiontune.results.detection import Detections
from visiontune.results.draw import draw_segmentation


def encode_rle(mask: np.ndarray | torch.Tensor) -> dict:
    """One binary H×W mask -> COCO RLE ``{"size": [h, w], "counts": str}`` (pycocotools)."""
    mask_util = require("pycocotools.mask", "dev", "RLE masks")
    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    rle = mask_util.encode(m)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict, height: int | None = None, width: int | None = None) -> np.ndarray:
    """COCO RLE (compressed ``counts`` string/bytes, or uncompressed list) or polygons -> bool H×W."""
    mask_util = require("pycocotools.mask", "dev", "RLE masks")
    if isinstance(rle, list):  # polygons
        if height is None or width is None:
            raise ValueError("decoding polygons needs the image height and width")
        rles = mask_util.frPyObjects([list(map(float, p)) for p in rle], height, width)
        return mask_util.decode(mask_util.merge(rles)).astype(bool)
    counts = rle["counts"]
    h, w = rle["size"]
    if isinstance(counts, list):
        r = mask_util.frPyObjects(rle, h, w)
    else:
        r = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_util.decode(r).astype(bool)


def boxes_of_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight pixel boxes ``x1, y1, x2, y2`` (exclusive end) of N×H×W masks; zeros for empty ones."""
    m = torch.as_tensor(masks).bool()
    out = torch.zeros(len(m), 4)
    for i, mi in enumerate(m):
        ys, xs = torch.where(mi)
        if len(xs):
            out[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    return out


@dataclass(repr=False)
class Segmentation(Detections):
    """Segmentation of one image (see the module docstring). ``len()`` counts instances.

    class_map: int64 H×W class indices (semantic / panoptic), or None.
    probabilities: float C×H×W per-class probabilities, when asked for.
    ignore_index: the label of "no class" pixels in ``class_map`` (void), or None.
    """

    class_map: torch.Tensor | None = None
    probabilities: torch.Tensor | None = None
    ignore_index: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.masks is not None:
            self.masks = self.masks.bool() if self.masks.dtype != torch.bool else self.masks
        if self.class_map is not None:
            self.class_map = torch.as_tensor(self.class_map).to(torch.int64).cpu()
            if self.class_map.ndim != 2:
                raise ValueError(f"Segmentation: class_map must be H×W, got shape {tuple(self.class_map.shape)}")
            if self.image_size is None:
                self.image_size = (int(self.class_map.shape[0]), int(self.class_map.shape[1]))
        if self.probabilities is not None:
            self.probabilities = torch.as_tensor(self.probabilities).float().cpu()
        if self.image_size is None and self.masks is not None and self.masks.ndim == 3:
            self.image_size = (int(self.masks.shape[1]), int(self.masks.shape[2]))

    @property
    def kind(self) -> str:
        """``semantic`` (a class map), ``instance`` (masks), or ``panoptic`` (both)."""
        if self.class_map is not None:
            return "panoptic" if self.masks is not None and len(self) else "semantic"
        return "instance"

    # -- conversions ---------------------------------------------------------------------------
    @classmethod
    def from_detections(cls, d: Detections, **extra: Any) -> Segmentation:
        """Instance masks of a `Detections` (Mask R-CNN, YOLO-seg) as a `Segmentation`."""
        masks = d.masks
        if masks is not None:
            masks = torch.as_tensor(masks)
            masks = masks > 0.5 if masks.dtype != torch.bool else masks
        return cls(d.boxes, d.scores, d.labels, d.class_names, masks, d.image_size, d.path, **extra)

    def to_detections(self) -> Detections:
        """The instances as a plain `Detections` (boxes, scores, labels, masks)."""
        return Detections(
            self.boxes, self.scores, self.labels, self.class_names, self.masks, self.image_size, self.path
        )

    def __getitem__(self, index) -> Segmentation:
        d = super().__getitem__(index)
        return Segmentation.from_detections(
            d, class_map=self.class_map, probabilities=self.probabilities, ignore_index=self.ignore_index
        )

    def to_rle(self) -> list[dict]:
        """One COCO RLE per instance mask."""
        if self.masks is None:
            return []
        return [encode_rle(m.numpy()) for m in self.masks]

    @classmethod
    def from_rle(
        cls,
        rles: Sequence[dict],
        labels: Sequence[int],
        scores: Sequence[float] | None = None,
        class_names: Sequence[str] = (),
        path: str | None = None,
    ) -> Segmentation:
        """Instances from COCO RLEs (boxes derived from the masks)."""
        masks = torch.from_numpy(np.stack([decode_rle(r) for r in rles])) if len(rles) else None
        size = (int(rles[0]["size"][0]), int(rles[0]["size"][1])) if len(rles) else None
        boxes = boxes_of_masks(masks) if masks is not None else torch.zeros(0, 4)
        sc = torch.ones(len(rles)) if scores is None else torch.as_tensor(scores, dtype=torch.float32)
        return cls(boxes, sc, torch.as_tensor(list(labels), dtype=torch.int64), class_names, masks, size, path)

    def to_coco(self, image_id: int, category_ids: Sequence[int] | dict[int, int] | None = None) -> list[dict]:
        """COCO results with ``bbox`` and, for instance masks, ``segmentation`` (RLE)."""
        rows = super().to_coco(image_id, category_ids)
        for row, rle in zip(rows, self.to_rle()):
            row["segmentation"] = rle
        return rows

    def semantic(self, background: int = 0) -> torch.Tensor:
        """The class map (instances painted in ascending score order when there is none)."""
        if self.class_map is not None:
            return self.class_map
        h, w = self.image_size or (0, 0)
        out = torch.full((h, w), background, dtype=torch.int64)
        if self.masks is not None:
            for i in torch.argsort(self.scores).tolist():
                out[self.masks[i]] = int(self.labels[i])
        return out

    def class_areas(self) -> dict[str, float]:
        """Share of the image's labelled pixels per class name (semantic map)."""
        cm = self.semantic()
        valid = cm != self.ignore_index if self.ignore_index is not None else torch.ones_like(cm, dtype=torch.bool)
        total = max(int(valid.sum()), 1)
        ids, counts = torch.unique(cm[valid], return_counts=True)
        n = len(self.class_names)
        return {
            (self.class_names[i] if 0 <= i < n else str(i)): round(c / total, 5)
            for i, c in zip(ids.tolist(), counts.tolist())
        }

    def to_records(self) -> list[dict]:
        """Instances as plain dicts (with RLE masks); a semantic result: one row per class present."""
        if self.class_map is not None and not len(self):
            return [{"name": k, "area": v} for k, v in self.class_areas().items()]
        rows = super().to_records()
        for row, rle in zip(rows, self.to_rle()):
            row["rle"] = rle
        return rows

    def draw(
        self,
        image,
        line_width: int | None = None,
        font_size: int | None = None,
        *,
        legend: bool = True,
        alpha: float = 0.5,
    ):
        """Copy of ``image`` with the class map / instance masks overlaid in class colours, boxes
        and scores for instances, and a legend of the classes present."""
        return draw_segmentation(image, self, alpha=alpha, legend=legend, line_width=line_width, font_size=font_size)

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path else ""
        if self.kind == "semantic":
            assert self.class_map is not None  # what makes it semantic
            top = sorted(self.class_areas().items(), key=lambda kv: -kv[1])[:4]
            items = ", ".join(f"{k} {v:.0%}" for k, v in top)
            return f"Segmentation(semantic{where} {tuple(self.class_map.shape)}: [{items}])"
        items = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.names[:5], self.scores.tolist()[:5]))
        return f"Segmentation({self.kind}, {len(self)} instances{where}: [{items}])"
