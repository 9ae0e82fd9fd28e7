"""visiontune.segment — semantic, instance and promptable segmentation through the same verbs:
datasets (mask folders, COCO polygons / RLE, YOLO-seg) with validation and conversion, image and
mask augmented together, segmenters composed from YAML (segmentation-models-pytorch decoders
over timm / torchvision encoders), fine-tuning on the engine, streaming mIoU and COCO mask AP,
the audit and ONNX export.

>>> import visiontune as vt
>>> seg = vt.load("torchvision:deeplabv3_mobilenet_v3_large").predict("street.jpg")[0]
>>> seg.class_map.shape, seg.draw("street.jpg").save("overlay.png")
"""

import importlib
from typing import Any

# Lightning and smp take seconds to import: names load on first use.
_LAZY = {
    "SegmentationDataset": "visiontune.segment.data",
    "SegSample": "visiontune.segment.data",
    "Instance": "visiontune.segment.data",
    "mask_to_polygons": "visiontune.segment.data",
    "load_segmentation": "visiontune.segment.formats",
    "load_mask_folder": "visiontune.segment.formats",
    "load_coco_seg": "visiontune.segment.formats",
    "load_yolo_seg": "visiontune.segment.formats",
    "write_coco_seg": "visiontune.segment.formats",
    "write_yolo_seg": "visiontune.segment.formats",
    "write_mask_folder": "visiontune.segment.formats",
    "convert": "visiontune.segment.formats",
    "joint_transform": "visiontune.segment.transforms",
    "SegTorchDataset": "visiontune.segment.transforms",
    "SegmenterConfig": "visiontune.segment.compose",
    "composed_segmenter": "visiontune.segment.compose",
    "build_segmenter": "visiontune.segment.compose",
    "ConfusionMatrix": "visiontune.segment.metrics",
    "mask_ap": "visiontune.segment.metrics",
    "SegmentTrainConfig": "visiontune.segment.config",
    "train_segmenter": "visiontune.segment.train",
    "SegmentTrainResult": "visiontune.segment.train",
    "evaluate_segmenter": "visiontune.segment.evaluate",
    "SegmentationEvaluation": "visiontune.segment.evaluate",
    "audit_segmenter": "visiontune.segment.audit",
    "export_segmenter": "visiontune.segment.export",
    "SegmentationArtifact": "visiontune.segment.export",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'visiontune.segment' has no attribute {name!r}")
