"""The result types of every task, below every package that produces or consumes them:
`Prediction` (classification), `Detections` (detection and instance masks)."""

from visiontune.results.classification import Prediction
from visiontune.results.detection import Detections, class_ids
from visiontune.results.draw import class_color, draw_detections

__all__ = ["Detections", "Prediction", "class_color", "class_ids", "draw_detections"]
