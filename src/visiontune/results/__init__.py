"""The result types of every task, below every package that produces or consumes them:
`Prediction` (classification), `Detections` (detection), `Segmentation` (semantic, instance and
promptable segmentation; a `Detections` with a class map)."""

from visiontune.results.classification import Prediction
from visiontune.results.detection import Detections, class_ids
from visiontune.results.draw import class_color, draw_detections, draw_legend, draw_segmentation
from visiontune.results.segmentation import Segmentation, boxes_of_masks, decode_rle, encode_rle

__all__ = [
    "Detections",
    "Prediction",
    "Segmentation",
    "boxes_of_masks",
    "class_color",
    "class_ids",
    "decode_rle",
    "draw_detections",
    "draw_legend",
    "draw_segmentation",
    "encode_rle",
]
