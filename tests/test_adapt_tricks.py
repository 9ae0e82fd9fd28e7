"""Imbalance and recipe tricks: class weights, logit adjustment, the balanced sampler (seeded,
resumable), mixup / cutmix, EMA (evaluated and saved), label smoothing, TTA at train /
evaluate / predict, each recorded in the run; recommend notices imbalance."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from visiontune.adapt import TrainConfig, train
from visiontune.adapt.losses import ClassificationLoss, build_loss, class_weights_from
from visiontune.adapt.sampling import BalancedEpochSampler, train_loader
from visiontune.adapt.tricks import BatchMixer, make_mixer
from visiontune.cli.main import app
from visiontune.errors import ConfigError
from visiontune.hub.tta import tta_logits, tta_views

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = dict(model="timm:test_efficientnet", pretrained=False, image_size=32, batch_size=4, seed=5, trackers=[])


@pytest.fixture(scope="module")
def skewed(tmp_path_factory) -> Path:
    """3 colour classes, 12 / 4 / 2 training images (6:1), 3 val images each."""
    root = tmp_path_factory.mktemp("skewed")
    rng = np.random.default_rng(1)
    for split, counts in (("train", (12, 4, 2)), ("val", (3, 3, 3))):
        for ci, (c, n) in enumerate(zip(("red", "green", "blue"), counts)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 80, (32, 32, 3)).astype(np.uint8)
                a[..., ci] += 160
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def test_class_weights_and_logit_adjustment():
    counts = np.array([30, 10, 0])
    w = class_weights_from("auto", counts)
    assert w == pytest.approx([40 / 90, 40 / 30, 0.0])
    with pytest.raises(ConfigError, match="3 classes"):
        class_weights_from([1.0, 2.0], counts)
    logits, y = torch.zeros(4, 3), torch.tensor([0, 1, 1, 0])
    plain = ClassificationLoss()(logits, y)
    assert plain == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    # logit adjustment: at equal logits the frequent class already "wins" -> larger loss on the rare one
    la = ClassificationLoss(log_prior=np.log([0.75, 0.25, 1e-8]).tolist(), tau=1.0)
    assert la(logits[:1], torch.tensor([1])) > la(logits[:1], torch.tensor([0]))
    # soft one-hot targets give the index loss
    soft = torch.nn.functional.one_hot(y, 3).float()
    assert ClassificationLoss(label_smoothing=0.1)(logits + torch.randn(4, 3), soft) > 0
    assert ClassificationLoss()(logits, soft) == pytest.approx(float(plain))
    cfg = TrainConfig(**BASE, data="x", class_weights="auto", logit_adjustment=1.0)
    loss = build_loss(cfg, counts, 40)
    assert loss.weight.tolist() == pytest.approx(w) and loss.tau == 1.0


def test_balanced_sampler_is_seeded_balanced_and_resumable():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    s = BalancedEpochSampler(labels, seed=3)
    s.set_epoch(4)
    a = [i for _, i in s]
    s2 = BalancedEpochSampler(labels, seed=3)
    s2.set_epoch(4)  # what a resume does
    assert a == [i for _, i in s2] and len(a) == 100
    s.set_epoch(5)
    assert [i for _, i in s] != a
    big = BalancedEpochSampler(np.repeat(labels, 30), seed=0)
    per_class = Counter(int(np.repeat(labels, 30)[i]) for _, i in big)
    assert all(abs(per_class[c] / 3000 - 1 / 3) < 0.04 for c in range(3))
    cfg = TrainConfig(**BASE, data="x", sampler="balanced")
    loader = train_loader(torch.utils.data.TensorDataset(torch.arange(100)), labels, cfg, seeded=False)
    assert isinstance(loader.sampler, BalancedEpochSampler)


def test_mixer_and_tta_units():
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
    xm, ym = BatchMixer(3, cutmix=1.0)(x, y)
    assert xm.shape == x.shape and ym.shape == (4, 3) and torch.allclose(ym.sum(1), torch.ones(4))
    fm, fy = BatchMixer(3, mixup=0.4)(torch.rand(4, 16), y)
    assert fm.shape == (4, 16) and fy.shape == (4, 3)
    with pytest.raises(ConfigError, match="cutmix"):
        make_mixer(TrainConfig(**BASE, data="x", strategy="linear", cutmix=1.0), 3, cached=True)
    assert len(tta_views(x, "flip")) == 2 and len(tta_views(x, "crops")) == 10
    lin = torch.nn.Linear(3 * 8 * 8, 3)
    f = lambda v: lin(v.flatten(1))  # noqa: E731
    got = tta_logits(f, x, "flip").softmax(-1)
    want = (f(x).softmax(-1) + f(x.flip(-1)).softmax(-1)) / 2
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(tta_logits(f, x, "none"), f(x))


@pytest.mark.slow
def test_tricks_train_record_save_and_tta(skewed, tmp_path):
    import visiontune as vt

    cfg = TrainConfig(
        **BASE,
        data=str(skewed),
        strategy="full",
        epochs=3,
        lr=0.02,
        class_weights="auto",
        sampler="balanced",
        cutmix=1.0,
        mixup=0.2,
        label_smoothing=0.1,
        ema=True,
        ema_decay=0.9,
        tta="flip",
    )
    r = train(cfg, run_root=tmp_path / "runs", progress=False)
    m = r.metrics
    run = json.loads((r.run_dir / "run.json").read_text())
    tricks = run["tags"]["tricks"]
    assert tricks == {
        "ema": 0.9,
        "mixup": 0.2,
        "cutmix": 1.0,
        "label_smoothing": 0.1,
        "tta": "flip",
        "class_weights": "auto",
        "sampler": "balanced",
        "logit_adjustment": None,
    }
    # balanced accuracy and per-class recall always reported; EMA weights evaluated and saved
    assert {"val/balanced_acc", "val/per_class_recall", "val_ema/acc", "val_ema/balanced_acc"} <= set(m)
    ema_dir = r.run_dir / "model_ema"
    assert Path(m["ema_model_dir"]) == ema_dir and (ema_dir / "visiontune.json").is_file()
    ema_doc = json.loads((ema_dir / "visiontune.json").read_text())
    assert ema_doc["training"]["ema_weights"] is True and ema_doc["metrics"]["val/acc"] == pytest.approx(
        m["val_ema/acc"]
    )
    # the EMA checkpoint state lets a resume continue the average
    ck = torch.load(r.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert "visiontune-ema" in ck["callbacks"] and ck["callbacks"]["visiontune-ema"]["ema"] is not None
    # TTA: the run's final metrics used flip TTA; evaluate reproduces them; predict takes tta too
    ev = vt.evaluate(str(r.model_dir), str(skewed), progress=False, tta="flip")
    assert ev.metrics["val/acc"] == pytest.approx(m["val/acc"]) and ev.metrics["val/tta"] == "flip"
    ev_crops = vt.evaluate(str(r.model_dir), str(skewed), progress=False, tta="crops")
    assert ev_crops.metrics["val/n"] == 9
    p = vt.load(str(r.model_dir))
    img = sorted((skewed / "val" / "red").iterdir())[0]
    a, b = p.predict(str(img), tta="crops")[0], p.predict(str(img))[0]
    assert a.labels[0] in ("red", "green", "blue") and sum(a.probs) <= 1.0 + 1e-5 and a.probs != b.probs


def test_recommend_cli_prints_imbalance_advice(skewed):
    """`visiontune recommend` on a 6:1 folder prints the imbalance reasoning and the flag."""
    res = CliRunner().invoke(
        app, ["recommend", str(skewed), "--model", "timm:test_efficientnet", "--random-init", "--per-class", "2"]
    )
    assert res.exit_code == 0, res.output
    advice = [line for line in res.output.splitlines() if line.startswith("- imbalance:")]
    assert len(advice) == 1, res.output
    assert "6.0x" in advice[0] and "(12 vs 2" in advice[0] and "balanced accuracy" in advice[0]
    assert "--class-weights auto" in res.output.splitlines()[-1]


@pytest.mark.slow
def test_logit_adjusted_probe_and_recommend_sees_imbalance(skewed, tmp_path):
    from visiontune.adapt import recommend

    r = train(
        TrainConfig(**BASE, data=str(skewed), strategy="linear", epochs=3, logit_adjustment=1.0, mixup=0.2),
        run_root=tmp_path / "runs",
        progress=False,
    )
    assert set(r.metrics["val/per_class_recall"]) == {"red", "green", "blue"}
    rec = recommend(str(skewed), "timm:test_efficientnet", pretrained=False, per_class=2)
    assert rec.options.get("class_weights") == "auto" and rec.measurements["imbalance_ratio"] == pytest.approx(6.0)
    assert any("imbalance" in reason and "balanced accuracy" in reason for reason in rec.reasons)
