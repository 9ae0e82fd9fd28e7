"""Detections / Detector / composed detectors / anchors / weight transfer."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from visiontune.detect import Detections, Detector, adapt_detector, composed_detector, parse_config
from visiontune.detect.anchors import anchor_fit, suggest_anchors
from visiontune.detect.datasets import DetectionDataset, ImageRecord
from visiontune.detect.models import backbone_stages, build_from_recipe, default_anchors
from visiontune.errors import ConfigError

TINY = {
    "backbone": {"source": "timm", "name": "mobilenetv3_small_100"},
    "neck": {"channels": 64},
    "image": {"min_size": 64, "max_size": 64},
    "classes": ["cat", "dog", "bird"],
    "head": {"kwargs": {"rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100}},
}


def _dets():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.0]])
    return Detections(
        boxes,
        torch.tensor([0.9, 0.8, 0.3, 0.7]),
        torch.tensor([1, 1, 2, 3]),
        ["bg", "cat", "dog", "bird"],
        image_size=(80, 100),
    )


def test_filter_threshold_nms_max_and_classes():
    d = _dets()
    assert d.filter(0.5).names == ["cat", "cat", "bird"]
    nms = d.filter(0.0, nms_iou=0.5)  # the two cat boxes overlap (IoU 0.68); bird is another class
    assert nms.names == ["cat", "bird", "dog"] and nms.scores.tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert len(d.filter(0.0, max_detections=2)) == 2
    assert d.filter(0.0, classes=["dog", 3]).names == ["bird", "dog"]
    with pytest.raises(ConfigError, match="unknown class name 'zebra'"):
        d.filter(classes=["zebra"])


def test_to_coco_and_draw():
    d = _dets()
    rec = d.to_coco(7, category_ids={1: 17, 2: 18, 3: 16})
    assert rec[0] == {"image_id": 7, "category_id": 17, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.9}
    img = d.draw(Image.new("RGB", (100, 80)))
    assert img.size == (100, 80)
    px = img.getpixel((5, 0))  # the top edge of the first box is drawn in a class colour
    assert px != (0, 0, 0)


def test_detector_applies_limits_for_any_source():
    calls = []

    def fake_model(images):  # a callable detector returning dicts
        calls.append(len(images))
        return [
            {
                "boxes": torch.tensor([[0, 0, 5, 5], [10, 10, 20, 20], [0, 0, 5, 6.0]]),
                "scores": torch.tensor([0.9, 0.2, 0.6]),
                "labels": torch.tensor([0, 1, 0]),
            }
            for _ in images
        ]

    det = Detector.from_callable(fake_model, ["a", "b"])
    out = det([Image.new("RGB", (32, 32))] * 3, score_threshold=0.1, nms_iou=0.5, batch_size=2)
    assert calls == [2, 1] and len(out) == 3
    assert out[0].names == ["a", "b"] and out[0].image_size == (32, 32)
    assert det(Image.new("RGB", (32, 32)), score_threshold=0.1, nms_iou=None, classes=["a"])[0].names == ["a", "a"]
    with pytest.raises(ConfigError):
        det([Image.new("RGB", (8, 8))], score_threshold=2.0)


def test_composed_heads_build_and_run():
    for head in ("faster_rcnn", "retinanet", "fcos"):
        det = composed_detector({**TINY, "head": {"type": head}})
        assert det.class_names == ["__background__", "cat", "dog", "bird"]
        out = det([torch.rand(3, 70, 90)], score_threshold=0.0, max_detections=7)[0]
        assert len(out) <= 7 and out.image_size == (70, 90)
        assert (out.boxes[:, 2] <= 90).all() and (out.boxes[:, 3] <= 70).all()
        model = det.model.train()
        losses = model(
            [torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[4.0, 4, 40, 50]]), "labels": torch.tensor([2])}]
        )
        assert all(torch.isfinite(v) for v in losses.values())


def test_compose_config_errors_name_the_key(tmp_path):
    p = tmp_path / "det.yaml"
    p.write_text("backbone: {name: resnet18, depth: 3}\nhead: {type: yolo}\nclasses: [a]\n")
    with pytest.raises(ConfigError) as e:
        parse_config(p)
    assert "backbone.depth" in str(e.value) and "head.type" in str(e.value) and str(p) in str(e.value)
    with pytest.raises(ConfigError, match="4 size levels"):
        composed_detector({**TINY, "anchors": {"sizes": [16, 32, 64, 128]}})


def test_trainable_layers_freeze_backbone_stages():
    det = composed_detector({**TINY, "backbone": {**TINY["backbone"], "trainable_layers": 2}})
    stages = backbone_stages(det.model)
    assert all(not p.requires_grad for st in stages[:-2] for p in st.parameters())
    assert all(p.requires_grad for st in stages[-2:] for p in st.parameters())
    assert all(p.requires_grad for p in det.model.rpn.parameters())


def test_pretrained_backbones_train_their_last_three_stages_by_default(mobilenetv2_backbone_file):
    """torchvision's default for pretrained backbones; a random backbone trains every stage."""
    tv = {
        "backbone": {"source": "torchvision", "name": "mobilenet_v2", "out_indices": [2, 3, 4]},
        "neck": {"channels": 32},
        "image": {"min_size": 64, "max_size": 64},
        "num_classes": 2,
    }

    def trained(backbone):
        stages = backbone_stages(composed_detector({**tv, "backbone": {**tv["backbone"], **backbone}}).model)
        return [all(p.requires_grad for p in st.parameters()) for st in stages]

    pre = {"weights": str(mobilenetv2_backbone_file)}
    flags = trained(pre)
    assert flags[-3:] == [True] * 3 and not any(flags[:-3])
    assert all(trained({})) and all(trained({**pre, "trainable_layers": "all"}))
    assert sum(trained({**pre, "trainable_layers": 1})) == 1


def test_custom_anchors_keep_pretrained_rpn_conv(tmp_path):
    from safetensors.torch import save_file

    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    base = build_from_recipe({"builder": "torchvision", "arch": arch, "num_classes": 91})
    sd = {k: v.contiguous() for k, v in base.state_dict().items()}
    save_file(sd, tmp_path / "coco.safetensors")
    sizes, ratios = default_anchors(base)
    assert len(ratios[0]) == 3
    new_sizes = [[24, 48, 96, 192, 384]] * len(sizes)
    det, rep = adapt_detector(
        f"torchvision:{arch}",
        ["cat", "dog"],
        weights=str(tmp_path / "coco.safetensors"),
        anchor_sizes=new_sizes,
        aspect_ratios=[0.33, 0.5, 1.0, 2.0, 3.0],
        trainable_backbone_layers=2,
    )
    new = det.model.state_dict()
    conv = [k for k in sd if k.startswith("rpn.head.conv")]
    assert conv, "the RPN has a shared conv"
    for k in conv:
        assert torch.equal(new[k], sd[k]), k  # pretrained RPN conv kept bit for bit
    changed = {k for k, *_ in rep.reinitialised}
    assert {
        "rpn.head.cls_logits.weight",
        "rpn.head.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.weight",
    } <= changed
    assert torch.equal(new["backbone.body.0.0.weight"], sd["backbone.body.0.0.weight"])
    assert det.model.rpn.anchor_generator.num_anchors_per_location() == [25] * len(sizes)
    assert "kept" in rep.summary() and len(rep.kept) > 200
    out = det([torch.rand(3, 64, 64)], score_threshold=0.0)[0]
    assert set(out.labels.tolist()) <= {1, 2}


def test_kmeans_anchor_suggestion_fits_the_boxes(tmp_path):
    # boxes of two shapes: 20x40 (tall) and 80x40 (wide), at a 1:1 transform scale
    recs = []
    for i in range(20):
        b = [[5, 5, 25, 45]] if i % 2 else [[10, 10, 90, 50]]
        recs.append(ImageRecord(tmp_path / f"{i}.jpg", 100, 100, b, [0]))
    ds = DetectionDataset(recs, ["x"])
    s = suggest_anchors(
        ds,
        num_levels=2,
        num_ratios=2,
        min_size=100,
        max_size=100,
        default_sizes=[256, 512],
        default_ratios=[0.5, 1.0, 2.0],
    )
    assert s.aspect_ratios == pytest.approx([0.5, 2.0], rel=1e-3)
    assert s.sizes == [28, 57]  # sqrt(20*40), sqrt(80*40)
    assert s.fit["mean_best_iou"] > 0.95 and s.fit["recall@0.5"] == 1.0
    assert s.default_fit["mean_best_iou"] < 0.2
    assert anchor_fit(torch.tensor([[10.0, 10.0]]).numpy(), [10], [1.0])["mean_best_iou"] == pytest.approx(1.0)


def test_hugging_face_detector_through_detections(tiny_detr):
    det = Detector.from_hf(*tiny_detr)
    assert det.class_names == ["a", "b", "c"] and det.source == "hf"
    out = det([Image.new("RGB", (120, 80)), torch.rand(3, 50, 60)], score_threshold=0.0, nms_iou=None, max_detections=4)
    assert [o.image_size for o in out] == [(80, 120), (50, 60)]
    for o in out:  # boxes come back in each original image's pixels
        assert 0 < len(o) <= 4 and set(o.labels.tolist()) <= {0, 1, 2}
        h, w = o.image_size
        assert (o.boxes[:, 2] <= w + 1e-3).all() and (o.boxes[:, 3] <= h + 1e-3).all()


def test_detection_example_builds(mobilenetv2_backbone_file):
    from pathlib import Path

    from visiontune.detect.compose import composed_detector

    det = composed_detector(Path(__file__).resolve().parents[1] / "examples" / "detector-mobilenetv2.yaml")
    assert det.class_names[-3:] == ["person", "car", "dog"]


def test_write_detections_reads_the_size_of_a_result_built_without_one(tmp_path):
    """A `Detections` made by hand (no ``image_size``) still writes: the size comes from the header."""
    import json

    from visiontune.detect.io import write_detections

    img = tmp_path / "wide.png"
    Image.new("RGB", (48, 32)).save(img)
    d = Detections(torch.tensor([[1.0, 2.0, 10.0, 12.0]]), torch.tensor([0.9]), torch.tensor([0]), ["cat"])
    assert d.image_size is None
    files = write_detections([img], [d], tmp_path / "out", class_names=["cat"], draw=False)
    (entry,) = json.loads(files["images"].read_text())["images"]
    assert (entry["width"], entry["height"]) == (48, 32)
