"""The sidecar as a typed record: sidecars written before it still load and predict the same,
new ones are ``visiontune.export-sidecar/2``; backends behind one registry; artifact routing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from visiontune.errors import ConfigError
from visiontune.export import (
    BACKENDS,
    Sidecar,
    export,
    get_backend,
    is_exported_artifact,
    load_artifact,
    read_sidecar,
    sidecar_path,
)
from visiontune.hub.preprocess import Preprocess

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "export-sidecar-v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
IMAGES = [str(FIXTURE / "images" / n) for n in EXPECTED["images"]]


@pytest.mark.parametrize("name", sorted(EXPECTED["artifacts"]))
def test_sidecars_written_by_0_1_load_and_predict_the_same(name, tmp_path):
    art = FIXTURE / name
    old = json.loads(sidecar_path(art).read_text())
    assert old["format"] == "visiontune.export" and old["format_version"] == 1  # the fixture is the old kind
    sc = Sidecar.for_artifact(art)
    assert sc.format == "visiontune.export-sidecar/2" and sc.task == "classification"
    assert sc.class_names == ["ant", "bee", "wasp"] and sc.input.shape == ["batch", 3, 32, 32]
    assert sc.source.model_id == "fixture:tiny-cnn" and sc.parity["passed"] is True
    rt = load_artifact(art)
    assert rt.backend == get_backend(EXPECTED["artifacts"][name]["format"]).runtime
    preds = rt.predict(IMAGES, topk=3)
    for got, want in zip(preds, EXPECTED["artifacts"][name]["predictions"], strict=True):
        assert got.labels == want["labels"] and got.indices == want["indices"]
        np.testing.assert_allclose(got.probs, want["probs"], rtol=0, atol=1e-6)
    # written back through the record: the new convention, nothing of the old one lost
    copy = tmp_path / name
    shutil.copy(art, copy)
    sc.write_for(copy)
    new = json.loads(sidecar_path(copy).read_text())
    assert new["format"] == "visiontune.export-sidecar/2" and "format_version" not in new
    assert {k: v for k, v in new.items() if k != "format"} == {
        k: v for k, v in old.items() if k not in ("format", "format_version")
    }
    assert [p.labels for p in load_artifact(copy).predict(IMAGES, topk=3)] == [p.labels for p in preds]


def test_new_sidecars_are_export_sidecar_2_and_round_trip(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    pre = Preprocess(resize=36, crop=32, mean=None, std=None)
    res = export(net, "torchscript", tmp_path / "n.pt", preprocess=pre, class_names=["a", "b"], images=IMAGES[:1])
    doc = json.loads(res.sidecar.read_text())
    assert doc["format"] == "visiontune.export-sidecar/2" and "format_version" not in doc
    assert doc == read_sidecar(res.artifact) == Sidecar.for_artifact(res.artifact).to_dict()
    assert doc["artifact_format"] == "torchscript" and doc["opset"] is None and doc["output"]["names"] == ["logits"]


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d.pop("format"), "no key 'format'"),
        (lambda d: d.update(format="visiontune.model/2"), "expected 'visiontune.export-sidecar/2'"),
        (lambda d: d.update(format="visiontune.export-sidecar/3"), "newer"),
        (lambda d: d.update(format_version=3), "newer"),
        (lambda d: d.update(task="segmentation"), "key 'task'"),
        (lambda d: d["preprocessing"].update(interpolation="cubic"), "interpolation 'cubic'"),
        (lambda d: d["preprocessing"].update(mean=[0.5]), "mean must be a list of 3"),
        (lambda d: d.pop("output"), "missing key 'output'"),
    ],
)
def test_bad_sidecars_name_the_file_and_the_key(tmp_path, edit, needle):
    art = tmp_path / "tiny.onnx"
    shutil.copy(FIXTURE / "tiny.onnx", art)
    doc = json.loads(sidecar_path(FIXTURE / "tiny.onnx").read_text())
    edit(doc)
    sidecar_path(art).write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        load_artifact(art)
    assert str(sidecar_path(art)) in str(e.value) and needle in str(e.value)


def test_backends_registry_and_artifact_routing(tmp_path):
    assert set(BACKENDS) == {"onnx", "torchscript"}
    assert get_backend("ONNX") is BACKENDS["onnx"]
    with pytest.raises(ConfigError, match="did you mean 'onnx'"):
        get_backend("onnnx")
    assert is_exported_artifact(FIXTURE / "tiny.onnx") and is_exported_artifact(str(FIXTURE / "tiny.pt"))
    lone = tmp_path / "lone.onnx"
    shutil.copy(FIXTURE / "tiny.onnx", lone)
    assert not is_exported_artifact(lone)  # no sidecar beside it
    assert not is_exported_artifact(tmp_path / "missing.onnx") and not is_exported_artifact("timm:resnet18")
    other = tmp_path / "weights.safetensors"
    other.write_bytes(b"x")
    shutil.copy(sidecar_path(FIXTURE / "tiny.onnx"), sidecar_path(other))
    assert not is_exported_artifact(other)  # not a suffix any backend writes
