"""Real detections offline: the COCO-pretrained YOLOv5n through `Detections` on COCO8.

The YOLOv5 helper package (PyPI ``yolov5==7.0.14``, GPL) is used here only, to unpickle this one
trusted checkpoint; the product wraps the model through its generic callable adapter."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def yolov5n(assets):
    if importlib.util.find_spec("yolov5") is None:
        pytest.skip(
            'needs the test-only GPL helper: pip install "setuptools<81" seaborn && '
            "pip install yolov5==7.0.14 --no-deps"
        )
    ckpt_path = assets / "yolov5n-coco" / "yolov5n.pt"
    if not ckpt_path.is_file():
        pytest.skip("shared/assets/yolov5n-coco/yolov5n.pt is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import yolov5
        import yolov5.models.common

        sys.path.insert(0, os.path.dirname(yolov5.__file__))  # the pickle names top-level 'models.*'
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # trusted test asset
        finally:
            sys.path.remove(os.path.dirname(yolov5.__file__))
        return yolov5.models.common.AutoShape(ckpt["model"].float().fuse().eval())


@pytest.fixture(scope="module")
def coco8(assets, tmp_path_factory, yolov5n):
    d = tmp_path_factory.mktemp("coco8")
    (d / "data.yaml").write_text(
        yaml.safe_dump(
            {
                "path": str(assets / "coco8"),
                "train": "images/train",
                "val": "images/val",
                "names": dict(enumerate(yolov5n.names)),
            }
        )
    )
    return d / "data.yaml"


def test_detections_equal_direct_call(yolov5n, assets):
    from visiontune.detect import Detector

    det = Detector.from_callable(yolov5n, model_id="yolov5n")
    assert det.class_names[0] == "person" and len(det.class_names) == 80
    paths = sorted((assets / "coco8" / "images").rglob("*.jpg"))
    ours = det(paths, score_threshold=0.25, nms_iou=0.45, max_detections=300, batch_size=1)
    total = 0
    for p, d in zip(paths, ours):
        ref = yolov5n(str(p)).xyxy[0]  # conf / iou / max_det were set on the model by the adapter
        assert len(d) == len(ref)
        order = torch.argsort(ref[:, 4], descending=True, stable=True)
        torch.testing.assert_close(d.boxes, ref[order, :4], atol=1e-3, rtol=0)
        torch.testing.assert_close(d.scores, ref[order, 4], atol=1e-5, rtol=0)
        assert d.labels.tolist() == ref[order, 5].long().tolist()
        total += len(d)
    assert total >= 15  # 19 boxes at conf 0.25 were seen on these 8 images


def test_coco_map_on_coco8(yolov5n, coco8, capsys):
    from visiontune.detect import Detector, coco_map, load_yolo

    det = Detector.from_callable(yolov5n, model_id="yolov5n")
    ds = load_yolo(coco8, split="train")
    ds.images += load_yolo(coco8, split="val").images
    preds = det([r.path for r in ds.images], score_threshold=0.001, nms_iou=0.6, max_detections=300, batch_size=1)
    res = coco_map(ds, preds)
    fast = coco_map(ds, preds, backend="faster-coco-eval")
    with capsys.disabled():
        print("\nYOLOv5n on COCO8 (8 images, 30 boxes): " + " ".join(f"{k}={v:.3f}" for k, v in res.metrics.items()))
    assert 0.3 < res.metrics["AP50"] <= 1.0 and 0.1 < res.metrics["AP"] < res.metrics["AP50"]
    assert fast.metrics["AP"] == pytest.approx(res.metrics["AP"], abs=1e-3)
    person = next(r for r in res.per_class if r["class"] == "person")
    assert person["gt"] > 0 and person["AP50"] > 0.3
