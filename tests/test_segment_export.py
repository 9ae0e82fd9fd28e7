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
