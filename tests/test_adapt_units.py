"""visiontune.adapt building blocks: config, layer groups, per-group learning rates, freezing
milestones, sampler determinism, KD loss, feature cache, LR finder, recommendation grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from visiontune.adapt import (
    TrainConfig,
    default_milestones,
    kd_loss,
    layer_groups,
    n_trainable_backbone,
    param_groups,
    set_trainable,
)
from visiontune.engine import EpochSampler, SeededDataset
from visiontune.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- config ------------------------------------------------------------------------------------------
def test_config_unknown_key_names_key_and_allowed():
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"model": "timm:resnet18", "data": "x", "lr_decayy": 0.2})
    msg = str(e.value)
    assert "lr_decayy" in msg and "allowed keys" in msg and "lr_decay" in msg


def test_config_bad_literal_names_allowed_values():
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"model": "m", "data": "d", "strategy": "frozen"})
    assert "strategy" in str(e.value) and "'linear'" in str(e.value) and "frozen" in str(e.value)


def test_config_yaml_line_and_train_section(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: timm:resnet18\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d"):
        TrainConfig.from_yaml(bad)
    good = tmp_path / "run.yaml"
    good.write_text(
        "train:\n  model: timm:resnet18\n  data: d\n  strategy: gradual\n  epochs: 6\n  milestones: [2, 4]\n"
    )
    cfg = TrainConfig.from_yaml(good, {"epochs": 8})
    assert cfg.strategy == "gradual" and cfg.milestones == [2, 4] and cfg.epochs == 8
    with pytest.raises(ConfigError, match="milestones"):
        TrainConfig.from_dict({"model": "m", "data": "d", "epochs": 3, "milestones": [1, 5]})


# -- layer groups --------------------------------------------------------------------------------
def _names(lg):
    return list(zip(lg.names, [len(p) for p in lg.params]))


def _covers_all(model, lg):
    flat = [p for ps in lg.params for p in ps]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())
    assert len(flat) == len(set(flat))


def test_groups_timm_resnet():
    import timm

    m = timm.create_model("test_resnet", num_classes=3)
    lg = layer_groups(m)
    assert lg.source == "timm.group_matcher"
    assert lg.names == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert lg.params[-1] == ["fc.weight", "fc.bias"]
    assert all(p.startswith("layer4.") for p in lg.params[-2])
    _covers_all(m, lg)


def test_groups_torchvision_families():
    import torchvision

    r = torchvision.models.resnet18(num_classes=3)
    lg = layer_groups(r)
    assert lg.names == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    _covers_all(r, lg)
    mb = torchvision.models.mobilenet_v2(num_classes=3)
    lg = layer_groups(mb)
    assert lg.source == "torchvision.features" and lg.names[0] == "features.0" and lg.names[-2] == "features.18"
    assert lg.head_path == "classifier.1"
    _covers_all(mb, lg)
    vit = torchvision.models.VisionTransformer(32, 8, 3, 2, 32, 64, num_classes=3)
    lg = layer_groups(vit)
    assert lg.names == [
        "stem",
        "encoder.layers.encoder_layer_0",
        "encoder.layers.encoder_layer_1",
        "encoder.layers.encoder_layer_2",
        "head",
    ]
    assert "class_token" in lg.params[0] and "encoder.pos_embedding" in lg.params[0]
    assert "encoder.ln.weight" in lg.params[-2]  # the final norm goes with the last block
    _covers_all(vit, lg)


def test_groups_huggingface():
    from transformers import ConvNextConfig, ConvNextForImageClassification, ViTConfig, ViTForImageClassification

    vit = ViTForImageClassification(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
            num_labels=3,
        )
    )
    lg = layer_groups(vit)
    assert lg.source == "hf.blocks" and len(lg.names) == 5 and lg.names[0] == "stem"
    assert lg.params[-1] == ["classifier.weight", "classifier.bias"]
    assert any("layernorm" in p and "layers" not in p for p in lg.params[-2])
    _covers_all(vit, lg)
    cn = ConvNextForImageClassification(ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_labels=3))
    lg = layer_groups(cn)
    assert len(lg.names) == 6  # stem, 4 stages, head
    _covers_all(cn, lg)


def test_groups_generic_fallback_by_param_count():
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3),
        nn.Conv2d(16, 32, 3),
        nn.Conv2d(32, 32, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 3),
    )
    lg = layer_groups(m, n_generic=3)
    assert lg.source == "generic" and lg.names[-1] == "head" and lg.params[-1] == ["7.weight", "7.bias"]
    assert 2 <= lg.n_backbone <= 3
    _covers_all(m, lg)


# -- discriminative learning rates ------------------------------------------------------------------
def test_param_group_lrs_decay_toward_input():
    import timm

    m = timm.create_model("test_resnet", num_classes=3)
    lg = layer_groups(m)
    groups = param_groups(m, lg, lr=1e-2, decay=0.1, weight_decay=0.05)
    by = {}
    for g in groups:
        by.setdefault(lg.names[g["layer_group"]], set()).add(g["lr"])
        # no weight decay on biases / norm parameters
        assert g["weight_decay"] == (0.0 if g["name"].endswith("/no_decay") else 0.05)
    expect = {"head": 1e-2, "stage4": 1e-3, "stage3": 1e-4, "stage2": 1e-5, "stage1": 1e-6, "stem": 1e-7}
    for name, lr in expect.items():
        assert len(by[name]) == 1 and by[name].pop() == pytest.approx(lr), name
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    # head_lr overrides only the head
    groups = param_groups(m, lg, lr=1e-3, decay=0.5, head_lr=0.1)
    lrs = {lg.names[g["layer_group"]]: g["lr"] for g in groups}
    assert lrs["head"] == 0.1 and lrs["stage4"] == pytest.approx(5e-4) and lrs["stem"] == pytest.approx(1e-3 * 0.5**5)


def test_optimizer_lrs_follow_schedule_per_group():
    """The Lightning module's optimizer keeps the group ratios under warmup + cosine."""
    import timm

    from visiontune.engine import warmup_cosine

    f = warmup_cosine(total_steps=10, warmup_steps=2, schedule="cosine")
    assert [round(f(s), 3) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert f(10) == pytest.approx(0.0, abs=1e-9) and 0 < f(6) < 1
    assert warmup_cosine(10, 0, "constant")(7) == 1.0
    m = timm.create_model("test_resnet", num_classes=3)
    lg = layer_groups(m)
    opt = torch.optim.AdamW(param_groups(m, lg, lr=1e-2, decay=0.1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
    for _ in range(5):
        opt.step()
        sched.step()
    head = [g["lr"] for g in opt.param_groups if g["name"] == "head"][0]
    s4 = [g["lr"] for g in opt.param_groups if g["name"] == "stage4"][0]
    assert head == pytest.approx(1e-2 * f(5)) and s4 == pytest.approx(head * 0.1)


# -- strategies and milestones ------------------------------------------------------------------------
def test_gradual_unfreezing_milestones_and_trainable_params():
    import timm

    m = timm.create_model("test_resnet", num_classes=3)
    lg = layer_groups(m)
    ms = [1, 3, 5]
    expected = {
        0: ["head"],
        1: ["stage4", "head"],
        2: ["stage4", "head"],
        3: ["stage3", "stage4", "head"],
        5: ["stage2", "stage3", "stage4", "head"],
        9: ["stage2", "stage3", "stage4", "head"],
    }
    for epoch, groups in expected.items():
        n = n_trainable_backbone("gradual", lg.n_backbone, epoch, milestones=ms)
        assert set_trainable(m, lg, n) == groups
        trainable = {k for k, p in m.named_parameters() if p.requires_grad}
        want = {p for name, ps in zip(lg.names, lg.params) if name in groups for p in ps}
        assert trainable == want
    assert n_trainable_backbone("linear", 5) == 0
    assert n_trainable_backbone("partial", 5, n_stages=2) == 2
    assert n_trainable_backbone("full", 5) == 5
    assert default_milestones(10, 5) == [2, 3, 5, 7, 8]
    assert default_milestones(3, 5) == [1, 2]
    assert default_milestones(1, 5) == []


def test_frozen_batchnorm_stays_in_eval_mode():
    from visiontune.adapt.strategies import freeze_frozen_norms

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    for p in list(m[0].parameters()) + list(m[1].parameters()):
        p.requires_grad_(False)
    m.train()
    assert freeze_frozen_norms(m) == 1
    assert not m[1].training and m[3].training
    before = m[1].running_mean.clone()
    m(torch.randn(2, 3, 8, 8))
    assert torch.equal(before, m[1].running_mean)


# -- data order -------------------------------------------------------------------------------------
class _Noise(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.rand(3), i


def test_epoch_sampler_and_seeded_dataset_are_deterministic():
    s = EpochSampler(10, seed=3)
    s.set_epoch(2)
    a = list(s)
    s.set_epoch(3)
    b = list(s)
    s.set_epoch(2)
    assert list(s) == a and [i for _, i in a] != [i for _, i in b]
    assert sorted(i for _, i in a) == list(range(10)) and all(e == 2 for e, _ in a)
    ds = SeededDataset(_Noise(), seed=1)
    g = torch.get_rng_state()
    x1, x2, x3 = ds[(2, 4)][0], ds[(2, 4)][0], ds[(3, 4)][0]
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    assert torch.equal(g, torch.get_rng_state())  # the global RNG is untouched


# -- distillation -----------------------------------------------------------------------------------
def test_kd_loss_matches_definition():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    T = 3.0
    p_t = (t / T).softmax(-1)
    ref = (p_t * (p_t.log() - (s / T).log_softmax(-1))).sum(-1).mean() * T * T
    assert kd_loss(s, t, T).item() == pytest.approx(ref.item(), rel=1e-5)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same classes"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 4))


def test_teacher_input_adapter_renormalises_and_resizes():
    from visiontune.adapt.distill import input_adapter
    from visiontune.hub import Preprocess

    s = Preprocess(resize=36, crop=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    t = Preprocess(resize=18, crop=(16, 16))
    f = input_adapter(s, t)
    raw = torch.rand(2, 3, 32, 32)
    out = f((raw - 0.5) / 0.5)
    assert out.shape == (2, 3, 16, 16)
    back = out * torch.tensor(t.std).view(1, 3, 1, 1) + torch.tensor(t.mean).view(1, 3, 1, 1)
    assert back.min() > -0.05 and back.max() < 1.05
    assert input_adapter(s, s) is None


# -- feature cache -----------------------------------------------------------------------------------
def test_feature_extraction_hook_and_disk_cache(tmp_path):
    import timm

    from visiontune.adapt.features import cache_key, cached_features, clear_memory_cache, weights_hash

    m = timm.create_model("test_efficientnet", num_classes=3).eval()
    data = torch.utils.data.TensorDataset(torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2]))
    h = weights_hash(m, exclude_prefix="classifier")
    key = cache_key("timm:test_efficientnet", h, "v1", "train", [str(i) for i in range(6)], "pre")
    f = cached_features(m, "classifier", data, key, mode="disk", cache_dir=tmp_path, batch_size=4)
    assert not f.cached and f.x.shape == (6, m.num_features)
    with torch.no_grad():
        ref = m.forward_head(m.forward_features(data.tensors[0]), pre_logits=True)
    torch.testing.assert_close(f.x, ref)
    stores = list((tmp_path / "features").glob("*/store.json"))  # the shared feature store
    assert len(stores) == 1 and not list(stores[0].parent.glob(".*tmp*"))
    clear_memory_cache()
    g = cached_features(m, "classifier", data, key, mode="disk", cache_dir=tmp_path)
    assert g.cached and torch.equal(g.x, f.x) and torch.equal(g.y, f.y)
    # a damaged store is recomputed, not trusted
    clear_memory_cache()
    (stores[0].parent / "emb.f32").write_bytes(b"garbage")
    assert not cached_features(m, "classifier", data, key, mode="disk", cache_dir=tmp_path).cached
    # the key changes with the backbone weights and ignores the head
    m.classifier.weight.data.add_(1.0)
    assert weights_hash(m, exclude_prefix="classifier") == h
    m.conv_stem.weight.data.add_(1.0)
    assert weights_hash(m, exclude_prefix="classifier") != h


# -- LR finder -------------------------------------------------------------------------------------
def test_lr_find_on_separable_data_restores_model(tmp_path):
    from visiontune.adapt import lr_find

    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] + x[:, 1] > 0).long()
    m = nn.Linear(8, 2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    res = lr_find(m, loader, optimizer="sgd", num_steps=80, plot=tmp_path / "lr.png")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert res.lrs[0] == pytest.approx(1e-7) and res.lrs == sorted(res.lrs)
    assert res.suggestion is not None and 1e-4 < res.suggestion < 1.0
    assert min(res.losses) < res.losses[0] - 0.1
    assert (tmp_path / "lr.png").stat().st_size > 5000


# -- recommendation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "per_class,sep,strategy",
    [
        (30, 0.95, "linear"),
        (30, 0.6, "partial"),
        (30, 0.2, "gradual"),
        (400, 0.9, "partial"),
        (400, 0.6, "gradual"),
        (400, 0.3, "full"),
        (5000, 0.9, "gradual"),
        (5000, 0.1, "full"),
    ],
)
def test_recommend_grid(per_class, sep, strategy):
    from visiontune.adapt.recommend import decide

    assert decide(per_class, sep)[0] == strategy


def test_separability_signal_separates_from_noise():
    from visiontune.adapt.recommend import separability

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    sep_feats = rng.normal(size=(60, 16)) + np.eye(3, 16)[y] * 4
    noise = rng.normal(size=(60, 16))
    assert separability(sep_feats, y)[1] > 0.9
    assert separability(noise, y)[1] < 0.3


# -- report -------------------------------------------------------------------------------------------
def test_classification_metrics_and_confusion_png(tmp_path):
    from visiontune.adapt.report import classification_metrics, plot_confusion_matrix

    logits = torch.tensor([[3.0, 1, 0], [0, 3, 1], [0, 1, 3], [3, 0, 1], [1, 0, 3]])
    y = torch.tensor([0, 1, 2, 1, 2])
    m, cm = classification_metrics(logits, y, ["a", "b", "c"])
    assert m["val/acc"] == pytest.approx(0.8) and "val/top5" not in m  # top-5 of 3 classes is always 1
    assert m["val/per_class_acc"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["val/per_class_recall"] == m["val/per_class_acc"]
    assert m["val/per_class_precision"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    probs = logits.softmax(-1)
    conf = probs.max(-1).values
    # every row is a permutation of (3, 1, 0): one confidence, one bin: ECE = |accuracy - confidence|
    assert torch.allclose(conf, conf[0])
    assert m["val/ece"] == pytest.approx(abs(0.8 - float(conf[0])), abs=1e-6)
    m7, _ = classification_metrics(torch.eye(7)[[0, 1, 2, 3, 4, 5, 6]] * 5, torch.arange(7), list("abcdefg"))
    assert m7["val/top5"] == 1.0 and m7["val/acc"] == 1.0
    assert m["val/balanced_acc"] == pytest.approx(2.5 / 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 2]]
    png = plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert math.isfinite(m["val/acc"])
