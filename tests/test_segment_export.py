"""A composed segmenter exported to ONNX with its typed sidecar; the artifact predicts the same
class maps as the PyTorch model, without it."""

from __future__ import annotations

import json

import pytest
import torch

import visiontune as vt
from _segment_data import TINY_SEGMENTER, make_mask_folder
from visiontune.errors import ConfigError
from visiontune.segment.compose import composed_segmenter
from visiontune.segment.export import SegmentationArtifact, SegmentationSidecar

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore")]


def test_onnx_export_with_sidecar_and_parity(tmp_path):
    data = make_mask_folder(tmp_path / "d", n=3)
    p = composed_segmenter({**TINY_SEGMENTER, "ignore_index": 255})
    imgs = sorted((data / "val" / "images").glob("*.jpg"))
    res = vt.export(p, out=tmp_path / "seg.onnx", parity_images=imgs)
    assert res.path.is_file() and res.sidecar.name == "seg.onnx.visiontune.json"
    doc = json.loads(res.sidecar.read_text())
    assert doc["format"] == "visiontune.segment-export/1" and doc["ignore_index"] == 255
    side = SegmentationSidecar.read(res.sidecar)
    assert side.class_names == p.class_names and side.preprocessing["resize"] == [48, 64]
    assert res.parity["real_images"] and res.parity["max_abs_diff"] < 1e-3 and res.parity["pixel_agreement"] > 0.999
    art = SegmentationArtifact(res.path)
    ours, ref = art.predict(imgs, probabilities=True), p.predict(imgs)
    for a, b in zip(ours, ref):
        assert a.class_map.shape == b.class_map.shape == (48, 64)
        assert (a.class_map == b.class_map).float().mean() > 0.999
        assert a.probabilities.shape == (3, 48, 64)
    with pytest.raises(ConfigError, match="format=.*torchscript"):
        vt.export(p, "torchscript", out=tmp_path / "x.pt")


def test_torchvision_segmenter_needs_an_input_size(tmp_path):
    p = vt.load("torchvision:lraspp_mobilenet_v3_large", pretrained=False)
    with pytest.raises(ConfigError, match="input_size"):
        vt.export(p, out=tmp_path / "l.onnx")
    res = vt.export(p, out=tmp_path / "l.onnx", input_size=(64, 96))
    from PIL import Image

    seg = SegmentationArtifact(res.path).predict(Image.new("RGB", (70, 50)))
    assert seg[0].class_map.shape == (50, 70) and res.parity["max_abs_diff"] < 1e-3
    assert seg[0].class_names[0] == "__background__" and not torch.is_floating_point(seg[0].class_map)


def test_predict_and_segment_commands_run_the_onnx_export(tmp_path):
    from typer.testing import CliRunner

    from visiontune.cli.main import app
    from visiontune.export import load_artifact

    data = make_mask_folder(tmp_path / "d", n=3)
    img = sorted((data / "val" / "images").glob("*.jpg"))[0]
    p = composed_segmenter(TINY_SEGMENTER)
    saved = p.save(tmp_path / "model")
    onnx = tmp_path / "seg.onnx"
    run = CliRunner().invoke(app, ["export", str(saved), "--out", str(onnx), "--images", str(img), "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["parity"]["pixel_agreement"] > 0.999
    res = SegmentationArtifact(onnx)
    want = p.predict([img])[0].class_areas()
    run = CliRunner().invoke(app, ["predict", str(res.path), str(img), "--json"], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    rows = json.loads(run.output)
    assert rows[0]["path"] == str(img) and rows[0]["size"] == [48, 64]
    assert rows[0]["classes"].keys() == want.keys()
    assert all(abs(rows[0]["classes"][k] - v) < 0.01 for k, v in want.items())
    for cmd in ("predict", "export-predict"):
        text = CliRunner().invoke(app, [cmd, str(res.path), str(img)], env={"COLUMNS": "300"}, catch_exceptions=False)
        assert text.exit_code == 0 and f"{img}: " in text.output and "%" in text.output, (cmd, text.output)
    seg = CliRunner().invoke(app, ["segment", str(res.path), str(img), "-o", str(tmp_path / "out")])
    assert seg.exit_code == 0, seg.output
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert doc["model"] == p.card.model_id and doc["classes"] == p.class_names
    assert (tmp_path / "out" / f"{img.stem}.overlay.png").is_file()
    # the classification / detection reader names the reader that opens it
    with pytest.raises(ConfigError, match="segmentation export.*SegmentationArtifact"):
        load_artifact(res.path)
