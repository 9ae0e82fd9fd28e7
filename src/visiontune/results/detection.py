"""`Detections`: the one result type every detector in visiontune returns (``Pretrained.predict``
of a detection model, `visiontune.detect.Detector`, exported detectors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torchvision.ops import batched_nms

from visiontune.errors import ConfigError
from visiontune.results.draw import draw_detections


@dataclass
class Detections:
    """Detections of one image.

    boxes: float tensor (N, 4), pixel ``x1, y1, x2, y2`` in the original image.
    scores: float tensor (N,); labels: int64 tensor (N,), indices into ``class_names``.
    masks: optional float/bool tensor (N, H, W) in the original image size.
    image_size: ``(height, width)`` of the original image; path: where it came from, if a file.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    class_names: Sequence[str] = field(default_factory=list)
    masks: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None
    path: str | None = None

    def __post_init__(self):
        self.boxes = torch.as_tensor(self.boxes, dtype=torch.float32).reshape(-1, 4).cpu()
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).reshape(-1).cpu()
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64).reshape(-1).cpu()
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise ValueError(
                f"Detections: boxes ({len(self.boxes)}), scores ({len(self.scores)}) and labels "
                f"({len(self.labels)}) must have the same length"
            )
        if self.masks is not None:
            self.masks = torch.as_tensor(self.masks).cpu()
            if len(self.masks) != len(self.boxes):
                raise ValueError("Detections: one mask per box is required")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def names(self) -> list[str]:
        """Class name of each detection (``str(label)`` where the model has no name for it)."""
        n = len(self.class_names)
        return [self.class_names[i] if 0 <= i < n else str(i) for i in self.labels.tolist()]

    def __getitem__(self, index) -> Detections:
        """Select detections with an index, slice, bool mask or index tensor."""
        if isinstance(index, int):
            index = [index]
        return Detections(
            self.boxes[index],
            self.scores[index],
            self.labels[index],
            self.class_names,
            None if self.masks is None else self.masks[index],
            self.image_size,
            self.path,
        )

    def filter(
        self,
        score_threshold: float = 0.0,
        nms_iou: float | None = None,
        max_detections: int | None = None,
        classes: Iterable[int | str] | None = None,
    ) -> Detections:
        """Keep detections of the given classes (ids or names), scoring at least
        ``score_threshold``; per-class NMS at ``nms_iou`` (None: none); best ``max_detections``."""
        keep = self.scores >= score_threshold
        if classes is not None:
            ids = class_ids(classes, self.class_names)
            keep &= torch.isin(self.labels, torch.tensor(sorted(ids), dtype=torch.int64))
        out = self[keep.nonzero().flatten()]
        if nms_iou is not None and len(out):
            out = out[batched_nms(out.boxes, out.scores, out.labels, nms_iou)]
        order = torch.argsort(out.scores, descending=True, stable=True)
        if max_detections is not None:
            order = order[:max_detections]
        return out[order]

    def to_coco(self, image_id: int, category_ids: Sequence[int] | dict[int, int] | None = None) -> list[dict]:
        """COCO results-format dicts (``bbox`` as x, y, w, h). ``category_ids[label]`` gives the
        category id written for each label (default: the label itself)."""
        out = []
        for (x1, y1, x2, y2), s, lab in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            cid = category_ids[lab] if category_ids is not None else lab
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(cid),
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(float(s), 5),
                }
            )
        return out

    def to_records(self) -> list[dict]:
        """One plain dict per detection (JSON-ready)."""
        return [
            {"box": [round(v, 2) for v in b], "score": round(s, 4), "label": lab, "name": n}
            for b, s, lab, n in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist(), self.names)
        ]

    def draw(self, image, line_width: int | None = None, font_size: int | None = None):
        """Return a copy of ``image`` (PIL / path) with boxes, names and scores drawn on it."""
        return draw_detections(image, self, line_width=line_width, font_size=font_size)

    def __repr__(self) -> str:
        items = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.names[:5], self.scores.tolist()[:5]))
        more = f", … {len(self) - 5} more" if len(self) > 5 else ""
        where = f" {self.path}" if self.path else ""
        return f"Detections({len(self)}{where}: [{items}{more}])"


def class_ids(classes: Iterable[int | str], class_names: Sequence[str]) -> set[int]:
    """Turn a class filter of ids and/or names into ids; unknown names raise a ConfigError."""
    index = {n: i for i, n in enumerate(class_names)}
    ids: set[int] = set()
    for c in classes:
        if isinstance(c, str) and not c.lstrip("-").isdigit():
            if c not in index:
                known = ", ".join(n for n in class_names if n and n not in ("N/A", "__background__"))
                raise ConfigError(f"unknown class name {c!r} in classes=; known: {known}")
            ids.add(index[c])
        else:
            ids.add(int(c))
    return ids
