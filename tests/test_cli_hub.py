"""The download commands, through the real Typer app."""

import json

from typer.testing import CliRunner

from visiontune.cli.main import app

runner = CliRunner()


def invoke(*args):
    r = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
    return r


def test_models_info_resnet50_card_offline():
    r = invoke("models", "info", "torchvision:resnet50@IMAGENET1K_V2")
    assert r.exit_code == 0, r.output
    out = r.output
    for needle in ("232", "224", "bilinear", "0.485, 0.456, 0.406", "0.229, 0.224, 0.225", "80.858"):
        assert needle in out, needle


def test_models_info_timm_crop_pct_json():
    r = invoke("models", "info", "timm:convnext_tiny.fb_in22k_ft_in1k", "--json")
    card = json.loads(r.output)
    assert card["crop_pct"] == 0.875 and card["resize_size"] == 256 and card["crop_size"] == 224
    assert card["interpolation"] == "bicubic"


def test_models_list_filters():
    r = invoke("models", "list", "resnet5", "--source", "torchvision", "--json")
    ids = [row["id"] for row in json.loads(r.output)]
    assert "torchvision:resnet50" in ids and all("resnet5" in i for i in ids)


def test_license_explains_agpl():
    r = invoke("license", "yolo:yolo11n.pt")
    assert r.exit_code == 0
    assert "AGPL-3.0" in r.output and "network" in r.output


def test_check_preprocess_exit_code_and_mismatches():
    bad = invoke(
        "check-preprocess",
        "torchvision:resnet50@IMAGENET1K_V2",
        "-t",
        "{resize: 256, crop: 224, interpolation: bilinear, mean: [0.5,0.5,0.5], std: [0.5,0.5,0.5]}",
    )
    assert bad.exit_code == 1
    assert "resize" in bad.output and "mean" in bad.output and "std" in bad.output
    good = invoke(
        "check-preprocess",
        "torchvision:resnet50@IMAGENET1K_V2",
        "-t",
        "{resize: 232, crop: 224, interpolation: bilinear, mean: [0.485,0.456,0.406], std: [0.229,0.224,0.225]}",
    )
    assert good.exit_code == 0 and "OK" in good.output


def test_predict_saved_model_and_typed_error(tmp_path):
    from PIL import Image

    import visiontune as vt

    p = vt.load("timm:resnet18", pretrained=False, num_classes=2, class_names=["ants", "bees"])
    p.save(tmp_path / "m")
    img = tmp_path / "x.png"
    Image.new("RGB", (80, 60), (1, 2, 3)).save(img)
    r = invoke("predict", str(tmp_path / "m"), str(img), "--json", "-k", "2")
    assert r.exit_code == 0, r.output
    top = json.loads(r.output)[0]["top"]
    assert {t["label"] for t in top} == {"ants", "bees"}
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "visiontune.cli.main", "predict", "torchvision:resnet50", str(img)],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "th"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "WeightsNotCachedError" in proc.stderr and "resnet50-11ad3fa6.pth" in proc.stderr


def test_predict_routes_exported_artifacts_to_onnx_runtime(tmp_path):
    from PIL import Image

    import visiontune as vt
    from visiontune.export import export

    p = vt.load("timm:resnet18", pretrained=False, num_classes=2, class_names=["ants", "bees"])
    img = tmp_path / "x.png"
    Image.new("RGB", (80, 60), (10, 200, 30)).save(img)
    res = export(p, "onnx", tmp_path / "m.onnx", parity=False)
    direct = p.predict([str(img)], topk=2)[0]
    r = invoke("predict", str(res.artifact), str(img), "--json", "-k", "2")
    assert r.exit_code == 0, r.output
    top = json.loads(r.output)[0]["top"]
    assert top[0]["label"] == direct.labels[0]
    assert abs(top[0]["prob"] - direct.probs[0]) < 1e-4
