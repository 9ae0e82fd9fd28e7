"""Ultralytics YOLO through `Detections` (untrained model built offline from its YAML)."""

from __future__ import annotations

import logging

import pytest
import torch


def test_yolo_yaml_predictions_through_detections(assets, tmp_path, monkeypatch, caplog):
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    from visiontune.detect import Detector

    with caplog.at_level(logging.WARNING, logger="visiontune.detect"):
        det = Detector.load("yolo:yolov8n.yaml")
    assert "AGPL-3.0" in caplog.text
    assert det.source == "ultralytics" and len(det.class_names) == 80
    paths = sorted((assets / "coco8" / "images" / "val").glob("*.jpg"))[:2]
    out = det(paths, score_threshold=0.0, max_detections=5, classes=[0, 1, 2, 3, 4, 5])
    assert len(out) == 2
    for p, d in zip(paths, out):
        from PIL import Image

        w, h = Image.open(p).size
        assert d.image_size == (h, w) and len(d) <= 5
        assert set(d.labels.tolist()) <= {0, 1, 2, 3, 4, 5}
        assert (d.boxes[:, 2] <= w + 1).all() and (d.boxes[:, 3] <= h + 1).all()
        assert d.scores.dtype == torch.float32


def test_yolo_missing_weights_fail_with_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    monkeypatch.chdir(tmp_path)
    from visiontune.detect import Detector
    from visiontune.errors import WeightsNotCachedError

    with pytest.raises(WeightsNotCachedError, match="local .pt file"):
        Detector.load(f"yolo:{tmp_path / 'nope.pt'}")
