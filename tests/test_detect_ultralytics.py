"""Ultralytics YOLO through `Detections` (untrained model built offline from its YAML)."""

from __future__ import annotations

import logging

import pytest
import torch

import visiontune as vt


def test_yolo_yaml_predictions_through_detections(assets, tmp_path, monkeypatch, caplog):
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    from visiontune.detect import Detector

    with caplog.at_level(logging.WARNING, logger="visiontune"):
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


@pytest.mark.slow
def test_train_yolo_hands_a_visiontune_dataset_to_ultralytics_and_records_the_run(assets, tmp_path, monkeypatch):
    """One real Ultralytics epoch (yolov8n built from its YAML: no download) on COCO8, converted
    by visiontune to Ultralytics' layout, recorded in visiontune's tracker."""
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    monkeypatch.chdir(tmp_path)
    import json

    import yaml

    from visiontune.detect.yolo import train_yolo
    from visiontune.track import load_run

    data = tmp_path / "coco8.yaml"  # the shared copy ships without one
    data.write_text(
        yaml.safe_dump(
            {
                "path": str(assets / "coco8"),
                "train": "images/train",
                "val": "images/val",
                "names": {i: f"class{i}" for i in range(80)},
            }
        )
    )
    res = train_yolo(
        "yolo:yolov8n.yaml",
        data,
        val_data=data,
        epochs=1,
        imgsz=64,
        batch=4,
        workers=0,
        run_root=tmp_path / "runs",
        run_name="y",
        trackers=(),
        device="cpu",
    )
    rec = json.loads((res.run_dir / "run.json").read_text())
    assert rec["status"] == "completed" and rec["kind"] == "yolo-train"
    assert rec["tags"]["license"].startswith("AGPL-3.0")
    rows = load_run(res.run_dir).metric_rows()
    assert {"val/mAP50", "val/mAP50-95"} <= {r["metric"] for r in rows}
    assert 0.0 <= res.metrics["val/mAP50-95"] <= 1.0
    assert res.weights is not None and res.weights.is_file()
    assert (res.run_dir / "data").is_dir()  # the converted dataset Ultralytics read
    # Ultralytics' own MLflow / W&B callbacks were switched off: no mlruns folder appeared
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "wandb").exists()


def test_a_yolo_load_leaves_pil_image_open_alone(tmp_path, monkeypatch):
    """Ultralytics patches PIL.Image.open at import (an unidentified file triggers `pip install
    pi-heif`); after a yolo: load an undecodable file is still PIL's UnidentifiedImageError."""
    pytest.importorskip("ultralytics")
    from PIL import Image, UnidentifiedImageError

    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "cfg"))
    vt.load("yolo:yolov8n.yaml")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    assert Image.open.__module__.startswith("PIL")
    with pytest.raises(UnidentifiedImageError):
        Image.open(bad)
