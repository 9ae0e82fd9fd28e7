"""visiontune.export for classifiers: ONNX / TorchScript / int8, sidecar, parity, errors, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import visiontune as vt
from visiontune.errors import ConfigError, ExportError
from visiontune.export import export, load_artifact, preprocess_array, read_sidecar, sidecar_path
from visiontune.hub.preprocess import Preprocess


@pytest.fixture(scope="module")
def small_model():
    """A real timm architecture at 64 px (random weights: parity does not need trained ones)."""
    torch.manual_seed(0)
    return vt.load(
        "timm:mobilenetv3_small_050", pretrained=False, num_classes=4, class_names=["ant", "bee", "cat", "dog"]
    )


@pytest.fixture(scope="module")
def pre64():
    return Preprocess(
        resize=72, crop=64, interpolation="bicubic", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )


@pytest.fixture(scope="module")
def bees(assets):
    return sorted((assets / "hymenoptera" / "val" / "bees").glob("*.jpg"))[:6]


def test_onnx_export_sidecar_dynamic_batch_and_parity(tmp_path, small_model, pre64, bees):
    res = export(small_model, "onnx", tmp_path / "m.onnx", preprocess=pre64, images=bees)
    assert res.artifact.is_file() and res.sidecar == sidecar_path(res.artifact)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.visiontune.json"]  # no temp left
    doc = read_sidecar(res.artifact)
    assert doc["task"] == "classification" and doc["artifact_format"] == "onnx"
    assert doc["class_names"] == ["ant", "bee", "cat", "dog"]
    assert doc["preprocessing"]["crop"] == [64, 64] and doc["preprocessing"]["interpolation"] == "bicubic"
    assert doc["input"]["shape"] == ["batch", 3, 64, 64] and doc["output"]["type"] == "logits"
    assert doc["source"]["model_id"] == "timm:mobilenetv3_small_050"
    assert doc["parity"]["n_images"] == 6 and doc["parity"]["passed"] is True
    p = res.parity
    assert p.max_abs_diff <= 1e-4 and p.top1_agreement == 1.0
    assert p.end_to_end_top1_agreement == 1.0 and p.preprocess_max_abs_diff < 1e-5

    rt = load_artifact(res.artifact)
    model = small_model.model.eval()
    for batch in (1, 3):  # dynamic batch
        x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64)).astype(np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        assert np.abs(rt.run(x) - ref).max() < 1e-4
    # the deployed path (files → sidecar preprocessing → ONNX Runtime) gives PyTorch's labels
    same = vt.Pretrained(small_model.model, small_model.card, pre64)
    want = [p.label for p in same.predict([str(b) for b in bees])]
    got = rt.predict([str(b) for b in bees], topk=2)
    assert [g.label for g in got] == want and all(len(g.labels) == 2 for g in got)


def test_export_a_saved_finetuned_model_dir(tmp_path, small_model, bees):
    saved = small_model.save(tmp_path / "finetuned")
    res = export(str(saved), "onnx", tmp_path / "ft.onnx", images=bees[:2], input_size=64)
    doc = read_sidecar(res.artifact)
    assert doc["class_names"] == ["ant", "bee", "cat", "dog"]
    # the card's 224 px preprocessing, scaled to the asked input size with the same crop ratio
    assert doc["input"]["shape"] == ["batch", 3, 64, 64] and doc["preprocessing"]["crop"] == [64, 64]
    assert doc["preprocessing"]["resize"] == round(small_model.preprocess.resize * 64 / 224)
    assert res.parity.passed and res.parity.end_to_end_top1_agreement == 1.0


def test_torchscript_export_matches(tmp_path, small_model, pre64, bees):
    res = export(small_model, "torchscript", tmp_path / "m.pt", preprocess=pre64, images=bees[:3])
    assert res.exporter == "torch.jit.trace" and res.parity.passed
    assert res.parity.max_abs_diff <= 1e-5
    rt = load_artifact(res.artifact)
    assert rt.backend == "torchscript"
    assert rt.run(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 4)


def test_int8_quantization_is_smaller_and_reports_agreement(tmp_path, bees, pre64):
    torch.manual_seed(0)
    p = vt.load("timm:resnet18", pretrained=False)
    fp = export(p, "onnx", tmp_path / "fp.onnx", preprocess=pre64, images=bees[:2], parity=False)
    q = export(p, "onnx", tmp_path / "q.onnx", preprocess=pre64, images=bees[:2], quantize="int8")
    assert q.quantized and q.artifact.stat().st_size < 0.35 * fp.artifact.stat().st_size
    assert q.parity.passed is None  # int8 is reported, not judged against the float tolerance
    assert q.parity.max_abs_diff > 0 and 0.0 <= q.parity.top1_agreement <= 1.0
    assert "int8" in read_sidecar(q.artifact)["quantization"]


class _FFTNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.fft.fft2(self.conv(x)).abs().mean((-2, -1)))


def test_auto_falls_back_to_dynamo_and_keeps_external_data(tmp_path, pre64, capfd):
    # aten::fft_fft2 has no TorchScript-based ONNX symbolic; the dynamo exporter decomposes it
    torch.manual_seed(0)
    res = export(_FFTNet().eval(), "onnx", tmp_path / "d.onnx", preprocess=pre64, class_names=["a", "b", "c"])
    assert res.exporter == "dynamo-onnx" and res.parity.passed
    assert res.parity.inputs == "scikit-image sample photos"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.onnx", "d.onnx.data", "d.onnx.visiontune.json"]
    assert read_sidecar(res.artifact)["artifact_files"] == ["d.onnx", "d.onnx.data"]
    rt = load_artifact(res.artifact)
    assert rt.run(np.zeros((5, 3, 64, 64), np.float32)).shape == (5, 3)
    assert "Torch IR graph" not in capfd.readouterr().err  # the exporters' noise is kept off the console


class _Eigh(nn.Module):
    def forward(self, x):
        return torch.linalg.eigh(x @ x.transpose(-1, -2))[0].flatten(1)


def test_unsupported_operator_is_named_and_nothing_is_written(tmp_path, pre64):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="linalg_eigh") as err:
        export(_Eigh(), "onnx", out, preprocess=pre64, exporter="torchscript")
    assert err.value.operator == "aten::linalg_eigh"
    assert list(tmp_path.iterdir()) == []


def test_preprocess_array_equals_the_torch_preprocess(assets):
    imgs = [Image.open(p).convert("RGB") for p in sorted((assets / "hymenoptera" / "val" / "ants").glob("*.jpg"))[:3]]
    imgs.append(Image.new("RGB", (40, 30), (200, 10, 10)))  # smaller than the crop: zero padding
    for pre in (
        Preprocess(resize=256, crop=224, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
        Preprocess(resize=(100, 150), crop=None, interpolation="bilinear"),
        Preprocess(resize=None, crop=64, mean=None, std=None),
    ):
        for im in imgs:
            a = preprocess_array(im, pre.to_dict())
            t = pre(im).numpy()
            assert a.shape == t.shape and np.abs(a - t).max() < 1e-5, (pre, im.size)


def test_bare_module_needs_preprocess(tmp_path):
    with pytest.raises(ConfigError, match="preprocess="):
        export(nn.Linear(3, 3), "onnx", tmp_path / "x.onnx")


def test_bad_options(tmp_path, small_model):
    with pytest.raises(ConfigError, match="format"):
        export(small_model, "tflite", tmp_path / "x.tflite")
    with pytest.raises(ConfigError, match="int8"):
        export(small_model, "torchscript", tmp_path / "x.pt", quantize="int8")


def test_sidecar_errors_name_the_file(tmp_path, small_model, pre64):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"not really onnx")
    with pytest.raises(ConfigError, match="m.onnx.visiontune.json not found"):
        load_artifact(art)
    sidecar_path(art).write_text("{broken")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_artifact(art)
    sidecar_path(art).write_text(json.dumps({"format": "visiontune.export", "task": "classification"}))
    with pytest.raises(ConfigError, match="missing key 'preprocessing'"):
        load_artifact(art)


def test_cli_export_and_export_predict(tmp_path, bees, isolated_caches):
    from visiontune.cli.main import app

    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    r = runner.invoke(
        app,
        [
            "export",
            "timm:mobilenetv3_small_050",
            "--random-init",
            "--input-size",
            "64",
            "-o",
            str(out),
            "--images",
            str(bees[0].parent),
            "--parity-images",
            "2",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["parity"]["passed"] is True and doc["parity"]["n_images"] == 2
    r = runner.invoke(app, ["export-predict", str(out), str(bees[0]), str(bees[1]), "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.output.splitlines()]
    assert [line["image"] for line in lines] == [str(bees[0]), str(bees[1])]
    assert all(len(line["top"]) == 3 for line in lines)
    r = runner.invoke(app, ["export-predict", str(tmp_path / "missing.onnx"), str(bees[0])])
    assert r.exit_code != 0


def test_export_of_a_saved_model_goes_beside_it_and_predict_reads_it(tmp_path, small_model, bees, monkeypatch):
    """`visiontune export runs/x/model` writes runs/x/model.onnx (not into the current folder),
    and `visiontune predict runs/x/model.onnx` routes to the exported artifact."""
    from visiontune.cli.main import app

    saved = small_model.save(tmp_path / "runs" / "x" / "model")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(saved), "--format", "onnx", "--input-size", "64", "--json"])
    assert r.exit_code == 0, r.output
    art = tmp_path / "runs" / "x" / "model.onnx"
    assert art.is_file() and sidecar_path(art).is_file() and not list(elsewhere.iterdir())
    r = runner.invoke(app, ["predict", str(art), str(bees[0]), "--topk", "1", "--json"])
    assert r.exit_code == 0, r.output
    (pred,) = json.loads(r.output)
    assert pred["source"] == str(bees[0]) and len(pred["top"]) == 1
    assert pred["top"][0]["label"] in small_model.card.class_names
