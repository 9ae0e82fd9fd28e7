"""Every source, offline, from a local file or a pre-filled cache; misses fail fast and say where."""

import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import visiontune as vt
from visiontune.errors import UnsafeCheckpointError, VisiontuneError, WeightsNotCachedError


def fill_hf_cache(hf_home: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> Path:
    """Lay files out exactly as huggingface_hub's cache does (snapshots/<commit>, refs/main)."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def assert_fast_error(fn, *needles):
    t = time.perf_counter()
    with pytest.raises(WeightsNotCachedError) as e:
        fn()
    elapsed = time.perf_counter() - t
    assert elapsed < 2.0, f"took {elapsed:.2f}s"
    for n in needles:
        assert n in str(e.value), (n, str(e.value))
    return e.value


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- torchvision -----------------------------------------------------------------------------------
def test_torchvision_from_prefilled_torch_home(isolated_caches):
    import torchvision

    torch_home, _ = isolated_caches
    ref = torchvision.models.resnet18()
    ck = torch_home / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    torch.save(ref.state_dict(), ck / "resnet18-f37072fd.pth")
    p = vt.load("torchvision:resnet18")
    assert same_weights(p.model, ref)
    assert not p.model.training
    assert p.card.weights == "IMAGENET1K_V1" and p.card.metrics["ImageNet-1K/acc@1"] == pytest.approx(69.758)
    assert len(p.card.class_names) == 1000 and p.card.class_names[281] == "tabby"
    assert p.card.weights_file.endswith("resnet18-f37072fd.pth")


def test_torchvision_uncached_fails_fast(isolated_caches):
    torch_home, _ = isolated_caches
    e = assert_fast_error(
        lambda: vt.load("torchvision:resnet50@IMAGENET1K_V2"),
        "resnet50-11ad3fa6.pth",
        str(torch_home / "hub" / "checkpoints"),
        "weights=PATH",
    )
    assert e.weights_file == "resnet50-11ad3fa6.pth"


def test_torchvision_unknown_tag_lists_available():
    with pytest.raises(VisiontuneError, match="IMAGENET1K_V1"):
        vt.load("torchvision:resnet50@NOPE")


def test_torchvision_head_swap_and_detector_card():
    p = vt.load("torchvision:vit_b_16", pretrained=False, num_classes=7)
    assert p.card.head["path"] == "heads.head" and p.model.heads.head.out_features == 7
    d = vt.load("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=False)
    assert d.card.task == "detection" and d.preprocess.mean is None


# -- timm ------------------------------------------------------------------------------------------
def test_timm_from_prefilled_hf_cache(isolated_caches, tmp_path):
    import timm
    from safetensors.torch import save_file

    _, hf_home = isolated_caches
    ref = timm.create_model("resnet18", pretrained=False)
    src = tmp_path / "src"
    src.mkdir()
    save_file(ref.state_dict(), src / "model.safetensors")
    fill_hf_cache(hf_home, "timm/resnet18.a1_in1k", src)
    p = vt.load("timm:resnet18.a1_in1k", num_classes=None)
    assert same_weights(p.model, ref)
    assert p.card.weights == "a1_in1k" and p.card.license_weights == "apache-2.0"
    assert p.card.crop_pct == 0.95 and p.card.resize_size == 235 and p.card.interpolation == "bicubic"
    assert p.card.class_names[0] == "tench"
    # a new head keeps the backbone
    q = vt.load("timm:resnet18.a1_in1k", num_classes=3, head={"dropout": 0.1, "hidden": 64})
    assert torch.equal(q.model.conv1.weight, ref.conv1.weight)
    assert q.card.head == {"path": "fc", "in_features": 512, "num_classes": 3, "dropout": 0.1, "hidden": 64}


def test_timm_uncached_fails_fast(isolated_caches):
    assert_fast_error(
        lambda: vt.load("timm:convnext_tiny.fb_in22k_ft_in1k"),
        "timm/convnext_tiny.fb_in22k_ft_in1k",
        "model.safetensors",
        "weights=PATH",
    )


def test_timm_unknown_model():
    with pytest.raises(VisiontuneError, match="resnet"):
        vt.load("timm:resnet_nonexistent_42")


# -- Hugging Face ----------------------------------------------------------------------------------
def _tiny_hf_classifier(folder: Path, license_: str | None = "apache-2.0"):
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=3,
        id2label={0: "cat", 1: "dog", 2: "bird"},
        label2id={"cat": 0, "dog": 1, "bird": 2},
        architectures=["ResNetForImageClassification"],
    )
    model = ResNetForImageClassification(cfg).eval()
    model.save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875, resample=3).save_pretrained(folder)
    if license_:
        (folder / "README.md").write_text(f"---\nlicense: {license_}\ntags: [vision]\n---\n# tiny\n")
    return model


def test_hf_from_prefilled_cache(isolated_caches, tmp_path):
    _, hf_home = isolated_caches
    src = tmp_path / "src"
    ref = _tiny_hf_classifier(src)
    fill_hf_cache(hf_home, "acme/tiny-resnet", src)
    p = vt.load("hf:acme/tiny-resnet")
    assert same_weights(p.model, ref)
    c = p.card
    assert c.task == "classification" and c.class_names == ["cat", "dog", "bird"]
    assert c.license_weights == "apache-2.0"
    assert (c.resize_size, c.crop_size, c.interpolation) == (73, 64, "bicubic")  # ConvNeXt-style crop_pct
    img = Image.new("RGB", (90, 70), (200, 10, 10))
    x = p.preprocess(img)
    ref_x = torch.as_tensor(p.native(img, return_tensors="pt")["pixel_values"][0])
    torch.testing.assert_close(x, ref_x, atol=0.05, rtol=0)  # PIL vs torchvision resampling
    preds = p.predict([img, img], topk=2)
    assert [len(x.labels) for x in preds] == [2, 2] and set(preds[0].labels) <= {"cat", "dog", "bird"}
    assert preds[0].labels == preds[1].labels and preds[0].probs == sorted(preds[0].probs, reverse=True)
    probs = p.model(x[None]).logits.softmax(-1)[0]  # the card's preprocessing, then softmax
    top = probs.topk(2)
    assert preds[0].indices == top.indices.tolist() and preds[0].probs == pytest.approx(top.values.tolist(), abs=1e-5)
    assert 0 < sum(preds[0].probs) < 1  # two of three classes
    q = vt.load("hf:acme/tiny-resnet", num_classes=5)
    assert q.model.config.num_labels == 5 and q.model(torch.zeros(1, 3, 64, 64)).logits.shape == (1, 5)


def test_hf_local_folder_and_missing_license(tmp_path):
    src = tmp_path / "m"
    _tiny_hf_classifier(src, license_=None)
    p = vt.load(f"hf:{src}")
    assert p.card.license_weights is None and any("no licence" in n for n in p.card.license_notes)


def test_hf_uncached_fails_fast(isolated_caches):
    assert_fast_error(lambda: vt.load("hf:microsoft/resnet-50"), "microsoft/resnet-50", "HF_HOME")


# -- torch.hub -------------------------------------------------------------------------------------
HUBCONF = '''
dependencies = ["torch"]
import torch


def tinynet(pretrained=False, num_classes=10):
    """A tiny CNN."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                            torch.nn.Linear(4, num_classes))
    if pretrained:
        m[3].bias.data.fill_(1.0)
    return m
'''


def test_torchhub_from_prefilled_cache_needs_trust(isolated_caches):
    torch_home, _ = isolated_caches
    repo = torch_home / "hub" / "acme_tiny_main"
    repo.mkdir(parents=True)
    (repo / "hubconf.py").write_text(HUBCONF)
    (repo / "LICENSE").write_text("MIT License\n\nCopyright ...")
    with pytest.raises(VisiontuneError, match="trust_remote_code=True"):
        vt.load("hub:acme/tiny:tinynet")
    p = vt.load("hub:acme/tiny:tinynet", trust_remote_code=True)
    assert p.card.license_code == "MIT" and p.card.num_classes == 10
    assert torch.all(p.model[3].bias == 1.0)
    assert "assumed ImageNet defaults" in p.card.preprocess_source
    q = vt.load("hub:acme/tiny:tinynet", trust_remote_code=True, num_classes=2)
    assert q.model(torch.zeros(1, 3, 32, 32)).shape == (1, 2)


def test_torchhub_uncached_fails_fast(isolated_caches):
    assert_fast_error(lambda: vt.load("hub:pytorch/vision:resnet18", trust_remote_code=True), "pytorch_vision_main")


def test_models_list_reads_hf_and_torchhub_caches_without_running_code(isolated_caches, tmp_path):
    import json

    from typer.testing import CliRunner

    from visiontune.cli.main import app
    from visiontune.errors import ModelIdError
    from visiontune.hub import list_models

    torch_home, hf_home = isolated_caches
    src = tmp_path / "src"
    _tiny_hf_classifier(src)
    fill_hf_cache(hf_home, "acme/tiny-resnet", src)
    fill_hf_cache(hf_home, "timm/resnet18.a1_in1k", src)  # timm's weight repos are timm: ids, not hf:
    repo = torch_home / "hub" / "acme_tiny_nets_v2"
    repo.mkdir(parents=True)
    marker = tmp_path / "hubconf-ran"
    (repo / "hubconf.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n" + HUBCONF + "\n\ndef _helper():\n    pass\n"
    )

    assert list_models("tiny", source="hf") == [
        {"id": "hf:acme/tiny-resnet", "task": "classification", "weights": ["main"], "cached": True}
    ]
    hub = list_models(source="hub")
    assert [r["id"] for r in hub] == ["hub:acme/tiny_nets:tinynet@v2"]  # public functions only
    assert not marker.exists()  # the repository's code was read, never run
    assert vt.load(hub[0]["id"], trust_remote_code=True).card.num_classes == 10  # the listed id loads
    with pytest.raises(ModelIdError, match="listable sources are torchvision, timm, hf, hub"):
        list_models(source="yolo")
    r = CliRunner().invoke(app, ["models", "list", "resnet", "--source", "hf", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert [row["id"] for row in json.loads(r.output)] == ["hf:acme/tiny-resnet"]


# -- Ultralytics -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_yolo_local_file_needs_trust_pickle(tmp_path, monkeypatch):
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    from ultralytics import YOLO

    f = tmp_path / "tiny.pt"
    YOLO("yolov8n.yaml").save(str(f))
    with pytest.raises(UnsafeCheckpointError, match="trust_pickle"):
        vt.load(f"yolo:{f}")
    p = vt.load(f"yolo:{f}", trust_pickle=True)
    assert p.card.license_code == "AGPL-3.0" and p.card.task == "detection" and len(p.card.class_names) == 80
    assert_fast_error(lambda: vt.load("yolo:yolo11n.pt"), "yolo11n.pt")


# -- saved models ----------------------------------------------------------------------------------
def test_saved_model_roundtrip(tmp_path):
    p = vt.load(
        "timm:resnet18",
        pretrained=False,
        num_classes=3,
        class_names=["a", "b", "c"],
        head={"dropout": 0.2, "hidden": 32},
    )
    out = p.save(tmp_path / "model", metrics={"val/acc": 0.5}, training={"epochs": 1})
    assert {f.name for f in out.iterdir()} == {"model.safetensors", "visiontune.json"}
    q = vt.load(str(out))
    assert q.card.class_names == ["a", "b", "c"] and q.card.metrics["val/acc"] == 0.5
    assert q.preprocess == p.preprocess
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(q.model(x), p.model.eval()(x))
    assert q.card.extra["saved"]["training"] == {"epochs": 1}
    assert vt.load(f"file:{out}").card.head == p.card.head


def test_saved_hf_model_roundtrip(tmp_path):
    src = tmp_path / "src"
    _tiny_hf_classifier(src)
    p = vt.load(f"hf:{src}", num_classes=2, class_names=["x", "y"])
    out = p.save(tmp_path / "saved")
    q = vt.load(out)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(q.model(x).logits, p.model(x).logits)
    assert q.card.class_names == ["x", "y"]


def test_save_is_atomic(tmp_path, monkeypatch):
    import safetensors.torch

    p = vt.load("timm:resnet18", pretrained=False, num_classes=2)
    good = p.save(tmp_path / "model")
    before = (good / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(safetensors.torch, "save_model", boom)
    with pytest.raises(KeyboardInterrupt):
        vt.load("timm:resnet18", pretrained=False, num_classes=2).save(tmp_path / "model")
    assert (good / "model.safetensors").read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["model"]


def test_bare_weights_file_is_explained(tmp_path):
    f = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, f)
    with pytest.raises(VisiontuneError, match="weights="):
        vt.load(f"file:{f}")


def test_compare_across_hubs_each_with_its_own_preprocessing(isolated_caches, tmp_path):
    import timm
    import torchvision
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from visiontune.cli.main import app

    torch_home, hf_home = isolated_caches
    ck = torch_home / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), ck / "resnet18-f37072fd.pth")
    src = tmp_path / "timm"
    src.mkdir()
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), src / "model.safetensors")
    fill_hf_cache(hf_home, "timm/resnet18.a1_in1k", src)
    img = tmp_path / "cat.png"
    Image.new("RGB", (120, 90), (120, 60, 30)).save(img)
    r = CliRunner().invoke(
        app,
        ["compare", "torchvision:resnet18", "timm:resnet18.a1_in1k", "--image", str(img), "-k", "3"],
        catch_exceptions=False,
        env={"COLUMNS": "250"},
    )
    assert r.exit_code == 0, r.output
    assert "resize 256 (bilinear)" in r.output and "resize 235 (bicubic)" in r.output
    assert r.output.count("\n") >= 5
