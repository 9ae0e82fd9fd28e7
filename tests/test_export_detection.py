"""Detector export (torchvision Faster R-CNN / SSDlite) with box parity on COCO8 images."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn, ssdlite320_mobilenet_v3_large

from visiontune.errors import ConfigError
from visiontune.export import export, load_artifact, read_sidecar

NAMES = ["background", "person", "bus", "tie", "car", "dog"]  # a fine-tuned 5-class detector


@pytest.fixture(scope="module")
def coco8(assets):
    return sorted(str(p) for p in (assets / "coco8" / "images").rglob("*.jpg"))


def _untie(model: nn.Module, heads: list[nn.Module], images: list[str]) -> nn.Module:
    """Random detector weights give near-identical scores for every box (ties make any parity
    check meaningless). Spread the head weights and set BatchNorm statistics from real images,
    so that scores and boxes differ like a trained model's do."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for head in heads:
            for mod in head.modules():
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    mod.weight.normal_(0, 1.5 / math.sqrt(mod.weight[0].numel()), generator=g)
                    if mod.bias is not None:
                        mod.bias.normal_(0, 0.5, generator=g)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None
        model.train()
        batch, _ = model.transform([TF.to_tensor(Image.open(p).convert("RGB")) for p in images])
        model.backbone(batch.tensors)
    return model.eval()


@pytest.mark.slow
def test_fasterrcnn_onnx_box_parity_on_coco8(tmp_path, coco8):
    torch.manual_seed(0)
    m = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=6, box_detections_per_img=20
    )
    m = _untie(m, [m.rpn.head, m.roi_heads.box_head, m.roi_heads.box_predictor], coco8[:1])
    res = export(
        m,
        "onnx",
        tmp_path / "frcnn.onnx",
        images=coco8[4:6],
        class_names=NAMES,
        model_id="torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
    )
    p = res.parity
    assert p.passed and p.n_images == 2
    assert p.matched == 40 and p.unmatched_reference == 0 and p.unmatched_artifact == 0
    assert p.box_max_abs_diff <= 0.25 and p.score_max_abs_diff <= 1e-3
    doc = read_sidecar(res.artifact)
    assert doc["task"] == "detection" and doc["output"]["names"] == ["boxes", "labels", "scores"]
    assert doc["input"]["shape"] == [3, "height", "width"] and doc["preprocessing"]["resize"] == 320

    # the deployed path maps boxes back to the original image: compare with PyTorch run on the
    # same resized pixels, boxes scaled by the same factors
    rt = load_artifact(res.artifact)
    det = rt.predict([coco8[4]], score_threshold=0.3)[0]
    img = Image.open(coco8[4]).convert("RGB")
    x = rt.preprocess(img)
    with torch.inference_mode():
        ref = m([torch.from_numpy(x)])[0]
    keep = ref["scores"] >= 0.3
    scale = torch.tensor([img.width / x.shape[2], img.height / x.shape[1]] * 2)
    assert det.image_size == (img.height, img.width) and len(det) == int(keep.sum()) > 0
    assert torch.allclose(det.boxes, ref["boxes"][keep] * scale, atol=0.5)
    assert det.names == [NAMES[i] for i in ref["labels"][keep].tolist()]
    assert float(det.boxes[:, 2].max()) <= img.width + 1e-3


def test_ssdlite_torchscript_exact_parity(tmp_path, coco8):
    torch.manual_seed(0)
    m = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=6, detections_per_img=20)
    m = _untie(m, [m.head], coco8[:2])
    res = export(m, "torchscript", tmp_path / "ssd.pt", images=coco8[6:7], class_names=NAMES)
    assert res.exporter == "torch.jit.script"
    p = res.parity
    assert p.passed and p.matched == 20 and p.box_max_abs_diff == 0.0
    doc = read_sidecar(res.artifact)
    assert doc["output"]["names"] == ["boxes", "scores", "labels"]  # SSD's own dict order, kept
    assert doc["preprocessing"]["resize"] == [320, 320]
    dets = load_artifact(res.artifact).predict(coco8[6:7], score_threshold=0.0)
    assert len(dets[0]) == 20


def test_detector_dynamo_is_refused(tmp_path):
    m = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=6)
    with pytest.raises(ConfigError, match="TorchScript-based ONNX exporter"):
        export(m, "onnx", tmp_path / "x.onnx", exporter="dynamo")
    assert list(tmp_path.iterdir()) == []
