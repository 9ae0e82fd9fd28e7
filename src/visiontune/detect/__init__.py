"""visiontune.detect — one detection API over torchvision, Hugging Face, Ultralytics and any
callable detector: `Detections` results, COCO / YOLO / VOC datasets, COCO mAP, fine-tuning,
anchors and detectors composed from YAML.

>>> from visiontune.detect import Detector
>>> det = Detector.load("torchvision:fasterrcnn_resnet50_fpn_v2")
>>> det(["street.jpg"], score_threshold=0.5, classes=["person", "car"])[0].boxes
"""

from visiontune.results import Detections

from .adapt import adapt_detector
from .anchors import suggest_anchors
from .audit import audit_detections, rank_images
from .compose import ComposeConfig, build_composed, composed_detector, parse_config
from .config import DetectTrainConfig
from .datasets import (
    DetectionDataset,
    ImageRecord,
    TorchDetectionDataset,
    convert,
    load_coco,
    load_detection,
    load_voc,
    load_yolo,
)
from .detector import Detector
from .evaluate import EvalResult, coco_map, evaluate
from .models import TransferReport, build_from_recipe, freeze_backbone, transfer_weights

__all__ = [
    "ComposeConfig",
    "DetectionDataset",
    "Detections",
    "Detector",
    "EvalResult",
    "ImageRecord",
    "TorchDetectionDataset",
    "TransferReport",
    "build_composed",
    "build_from_recipe",
    "coco_map",
    "composed_detector",
    "convert",
    "evaluate",
    "freeze_backbone",
    "load_coco",
    "load_detection",
    "load_voc",
    "load_yolo",
    "parse_config",
    "transfer_weights",
    "suggest_anchors",
    "audit_detections",
    "rank_images",
    "DetectTrainConfig",
    "adapt_detector",
    "train_detector",
]


def __getattr__(name: str):
    # training imports Lightning (seconds): loaded on first use, so that detecting does not pay it
    if name == "train_detector":
        from .train import train_detector

        return train_detector
    raise AttributeError(f"module 'visiontune.detect' has no attribute {name!r}")
