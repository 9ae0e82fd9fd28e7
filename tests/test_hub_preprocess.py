"""The card's preprocessing reproduces each source's own transform, pixel for pixel."""

import numpy as np
import pytest
import torch
from PIL import Image

import visiontune as vt
from visiontune.hub.loader import describe
from visiontune.hub.preprocess import Preprocess


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return Image.fromarray(data.chelsea())  # a real 451x300 photo


def test_torchvision_matches_weights_transforms(photo):
    from torchvision.models import ResNet50_Weights

    p = describe("torchvision:resnet50@IMAGENET1K_V2")
    assert (p.card.resize_size, p.card.crop_size, p.card.interpolation) == (232, 224, "bilinear")
    ref = ResNet50_Weights.IMAGENET1K_V2.transforms()(photo)
    torch.testing.assert_close(p.preprocess(photo), ref)
    t = torch.from_numpy(np.array(photo)).permute(2, 0, 1)  # uint8 tensor path
    torch.testing.assert_close(
        p.preprocess(t), ResNet50_Weights.IMAGENET1K_V2.transforms()(t), atol=1.01 / 255 / 0.224, rtol=0
    )  # ±1 grey level


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "convnext_tiny.fb_in22k_ft_in1k", "resnet18.a1_in1k"])
def test_timm_matches_create_transform(photo, name):
    import timm
    from timm.data import create_transform, resolve_model_data_config

    p = describe(f"timm:{name}")
    ref = create_transform(**resolve_model_data_config(timm.create_model(name, pretrained=False)))(photo)
    torch.testing.assert_close(p.preprocess(photo), ref)
    # crop_pct-derived resize is on the card
    assert p.card.resize_size == int(p.card.input_size[1] / p.card.crop_pct)


def test_train_transform_keeps_size_and_normalisation(photo):
    p = vt.load("timm:resnet18", pretrained=False)
    x = p.train_transform()(photo)
    assert x.shape == (3, 224, 224)
    assert x.mean().abs() < 3  # normalised, not 0..255
    with pytest.raises(ValueError):
        p.train_transform("extreme")


def test_train_transform_without_a_size_is_a_config_error():
    """No resize and no crop: a typed error naming the fields, not a TypeError from list(None)."""
    from visiontune.errors import ConfigError

    with pytest.raises(ConfigError, match="resize or crop"):
        Preprocess(resize=None, crop=None).train_transform()


def test_preprocess_roundtrip_dict():
    pre = Preprocess(resize=(240, 320), crop=None, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
    again = Preprocess.from_dict(pre.to_dict())
    assert again == pre
    assert again.input_size == (240, 320)
