"""Segmenters through vt.load, offline, each returning the one result type `Segmentation`:
torchvision DeepLabV3 / Mask R-CNN, Hugging Face SegFormer and SAM from local configs,
Ultralytics yolo11n-seg from its YAML (random init where no weights are cached)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import visiontune as vt
from _segment_data import save_tiny_sam
from visiontune.results import Detections, Segmentation

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def street(assets):
    return next((assets / "camvid" / "val" / "images").glob("*.jpg"))


def test_torchvision_deeplabv3_semantic(street):
    p = vt.load("torchvision:deeplabv3_mobilenet_v3_large", pretrained=False)
    assert p.task == "segmentation" and p.card.num_classes == 21
    assert p.card.extra["ignore_index"] == 255 and p.card.extra["background"] is True
    assert p.class_names[0] == "__background__"  # VOC label space of the architecture
    seg = p.predict(street, probabilities=True)[0]
    assert isinstance(seg, Segmentation) and seg.kind == "semantic" and len(seg) == 0
    assert seg.class_map.shape == (360, 480) and seg.probabilities.shape == (21, 360, 480)
    assert torch.equal(seg.probabilities.argmax(0), seg.class_map)
    drawn = seg.draw(street)
    assert drawn.height == 360 and drawn.width > 480  # the legend strip on the right


@pytest.mark.slow
def test_torchvision_maskrcnn_instances_are_detections(street):
    p = vt.load("torchvision:maskrcnn_resnet50_fpn", pretrained=False)
    assert p.task == "instance-segmentation"
    seg = p.predict(street, score_threshold=0.0, max_detections=5)[0]
    assert isinstance(seg, Segmentation) and isinstance(seg, Detections) and seg.kind == "instance"
    assert seg.masks.dtype == torch.bool and seg.masks.shape[1:] == (360, 480) and len(seg) <= 5
    d = seg.to_detections()
    assert type(d) is Detections and torch.equal(Segmentation.from_detections(d).masks, seg.masks)
    back = Segmentation.from_rle(seg.to_rle(), seg.labels.tolist(), seg.scores.tolist())
    assert torch.equal(back.masks, seg.masks)
    assert all("segmentation" in r for r in seg.to_coco(1))


def test_huggingface_segformer_from_a_local_config(tmp_path, street):
    import transformers as T

    labels = {0: "background", 1: "road", 2: "car"}
    cfg = T.SegformerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], decoder_hidden_size=32, num_labels=3,
        id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    T.SegformerForSemanticSegmentation(cfg).save_pretrained(tmp_path / "sf")
    T.SegformerImageProcessor(size={"height": 64, "width": 64}, do_reduce_labels=True).save_pretrained(tmp_path / "sf")
    p = vt.load(f"hf:{tmp_path / 'sf'}")
    assert p.task == "segmentation" and p.class_names == ["background", "road", "car"]
    assert p.card.extra["reduce_labels"] is True and p.card.extra["ignore_index"] == 255  # stated, not guessed
    seg = p.predict([street, Image.open(street).resize((100, 80))], probabilities=True)
    assert [s.class_map.shape for s in seg] == [(360, 480), (80, 100)]
    assert seg[0].probabilities.shape == (3, 360, 480)


def test_huggingface_sam_promptable(tmp_path, street):
    pytest.importorskip("transformers")
    save_tiny_sam(tmp_path / "sam")
    p = vt.load(f"hf:{tmp_path / 'sam'}")
    assert p.task == "promptable-segmentation"
    pts = p.predict(street, points=[[100, 200], [300, 150]])[0]
    assert isinstance(pts, Segmentation) and pts.masks.shape == (2, 360, 480) and pts.names == ["object"] * 2
    box = p.predict(street, boxes=[[10, 10, 200, 200]], multimask=True)[0]
    assert box.masks.shape == (3, 360, 480) and len(box.scores) == 3
    with pytest.raises(vt.errors.ConfigError, match="needs points"):
        p.predict(street)


def test_ultralytics_seg_yaml(street):
    p = vt.load("yolo:yolo11n-seg.yaml")
    assert p.task == "instance-segmentation"
    seg = p.predict(street, score_threshold=0.0, max_detections=3)[0]
    assert isinstance(seg, Segmentation) and seg.kind == "instance" and len(seg) <= 3
    if len(seg):
        assert seg.masks.shape[1:] == (360, 480) and seg.masks.dtype == torch.bool
