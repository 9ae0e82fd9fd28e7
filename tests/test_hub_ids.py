import pytest

from visiontune.errors import ModelIdError
from visiontune.hub.ids import ModelId, parse_model_id


@pytest.mark.parametrize(
    "text,expected",
    [
        ("torchvision:resnet50@IMAGENET1K_V2", ModelId("torchvision", "resnet50", "IMAGENET1K_V2")),
        ("torchvision:resnet50@DEFAULT", ModelId("torchvision", "resnet50", "DEFAULT")),
        ("timm:convnext_tiny.fb_in22k_ft_in1k", ModelId("timm", "convnext_tiny.fb_in22k_ft_in1k")),
        ("hf:microsoft/resnet-50", ModelId("hf", "microsoft/resnet-50")),
        ("hf:microsoft/resnet-50@refs/pr/1", ModelId("hf", "microsoft/resnet-50", "refs/pr/1")),
        ("hub:pytorch/vision:resnet18", ModelId("hub", "pytorch/vision:resnet18")),
        ("yolo:yolo11n.pt", ModelId("yolo", "yolo11n.pt")),
        ("file:runs/x/model", ModelId("file", "runs/x/model")),
        ("TV:resnet18", ModelId("torchvision", "resnet18")),
    ],
)
def test_parse(text, expected):
    assert parse_model_id(text) == expected
    assert str(parse_model_id(text)).split(":", 1)[1] == text.split(":", 1)[1]


def test_existing_path_is_file(tmp_path):
    assert parse_model_id(str(tmp_path)) == ModelId("file", str(tmp_path))


@pytest.mark.parametrize(
    "bad", ["", "resnet50", "nosuch:thing", "timm:", "torchvision:resnet50@", "hub:pytorch/vision"]
)
def test_bad_ids_name_the_grammar(bad):
    with pytest.raises(ModelIdError) as e:
        parse_model_id(bad)
    assert "source" in str(e.value) or "name" in str(e.value) or "hub:" in str(e.value) or "@" in str(e.value)


def test_bare_name_suggests_sources():
    with pytest.raises(ModelIdError, match="timm:resnet50"):
        parse_model_id("resnet50")
