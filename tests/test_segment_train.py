"""Composed segmenters and their fine-tuning on the engine: YAML -> smp network with encoder
weights only through the trust gate, strategies, a tracked resumable run, the saved model
reloaded by vt.load, and the verbs / CLI dispatching to segmentation."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import visiontune as vt
from _segment_data import CLASSES, TINY_SEGMENTER, make_mask_folder
from visiontune.cli.main import app
from visiontune.errors import ConfigError
from visiontune.segment.compose import composed_segmenter, parse_config
from visiontune.segment.module import SegmentationModule, segmenter_groups
from visiontune.segment.train import train_segmenter

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_mask_folder(tmp_path_factory.mktemp("seg") / "shapes", n=12)


def _cfg(data, **kw):
    return {
        "segmenter": TINY_SEGMENTER,
        "data": str(data),
        "epochs": 2,
        "batch_size": 4,
        "trackers": [],
        "lr": 3e-3,
        **kw,
    }


def test_compose_errors_name_the_key():
    with pytest.raises(ConfigError, match="decoder.type 'nope'"):
        parse_config({**TINY_SEGMENTER, "decoder": {"type": "nope"}})
    with pytest.raises(ConfigError, match="bogus"):
        parse_config({**TINY_SEGMENTER, "bogus": 1})
    for dec in ("unet", "deeplabv3plus", "lraspp"):
        p = composed_segmenter({**TINY_SEGMENTER, "decoder": {"type": dec}, "image": {"size": [40, 52]}})
        assert p.model(torch.zeros(1, 3, 40, 52)).shape == (1, 3, 40, 52)  # any size: padded inside


def test_encoder_weights_come_through_the_trust_gate(effnet_lite0_file, monkeypatch):
    import huggingface_hub
    import segmentation_models_pytorch.encoders as smp_enc

    def no_download(*a, **k):
        raise AssertionError("smp / the hub must not download anything")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.setattr(smp_enc, "hf_hub_download", no_download, raising=False)
    cfg = {
        "encoder": {"source": "timm", "name": "tf_efficientnet_lite0", "weights": str(effnet_lite0_file)},
        "decoder": {"type": "fpn"},
        "image": {"size": [64, 64]},
        "num_classes": 4,
    }
    p = composed_segmenter(cfg)
    ref = vt.load("timm:tf_efficientnet_lite0", weights=str(effnet_lite0_file)).model.state_dict()
    enc = p.model.net.encoder.model.state_dict()
    assert enc and all(torch.equal(v, ref[k]) for k, v in enc.items())
    assert p.card.mean == (0.5, 0.5, 0.5)  # the encoder's own normalisation, from its card
    assert p.card.weights_sha256 and p.card.extra["encoder"] == "timm:tf_efficientnet_lite0"


def test_linear_strategy_freezes_the_encoder():
    p = composed_segmenter(TINY_SEGMENTER)
    groups = segmenter_groups(p.model)
    assert groups.names[-1] == "head" and groups.n_backbone >= 2
    m = SegmentationModule(p.model, groups, {"strategy": "linear", "lr": 1e-3}, CLASSES, 255, 10)
    enc = [q.requires_grad for n, q in p.model.named_parameters() if n.startswith("net.encoder.")]
    head = [q.requires_grad for n, q in p.model.named_parameters() if not n.startswith("net.encoder.")]
    assert enc and not any(enc) and all(head)
    assert m.training_groups == ["head"]


def test_train_save_reload_evaluate_and_resume(data, tmp_path):
    res = train_segmenter(_cfg(data, name="shapes"), run_root=tmp_path / "runs", progress=False)
    rec = json.loads((res.dir / "run.json").read_text())
    assert rec["kind"] == "segment-train" and rec["data"]["version"] and rec["tags"]["ignore_index"] == 255
    assert res.metrics["val/mIoU"] > 0.25 and set(res.metrics["val/iou"]) == set(CLASSES)
    # the saved model reloads through vt.load (recipe builder "segmenter") and predicts the same
    p = vt.load(res.model_dir)
    assert p.task == "segmentation" and p.class_names == CLASSES and p.card.extra["ignore_index"] == 255
    img = next((data / "val" / "images").glob("*.jpg"))
    a = res.pretrained.predict(img)[0].class_map
    assert torch.equal(a, p.predict(img)[0].class_map)
    ev = vt.evaluate(res.dir, data, split="val", progress=False)
    assert ev.metrics["mIoU"] == pytest.approx(res.metrics["val/mIoU"], abs=1e-6)  # same numbers, same matrix
    assert "background" in ev.table()
    # resume: continue the run to 3 epochs as <run>-resumed, with its history
    more = train_segmenter(
        _cfg(data, name="shapes", epochs=3), run_root=tmp_path / "runs", resume=res.dir, progress=False
    )
    assert more.dir.name == "shapes-resumed" and more.metrics["epochs"] == 3
    hist = json.loads((more.dir / "per_class_iou.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]


def test_vt_train_dispatches_a_segmenter_yaml_and_cli_checks_data(data, tmp_path):
    y = tmp_path / "seg.yaml"
    y.write_text(yaml.safe_dump({"segmenter": TINY_SEGMENTER}))
    assert vt.api.task_of(y) == "segmentation"
    res = vt.train(
        y, data, out=tmp_path / "runs", epochs=1, batch_size=6, trackers=[], progress=False, strategy="gradual"
    )
    assert res.dir.is_dir() and "val/mIoU" in res.metrics
    r = CliRunner().invoke(app, ["segment-check", str(data), "--split", "train"])
    assert r.exit_code == 0, r.output
    assert "12 images, 3 classes (semantic)" in r.output and "background" in r.output
    out = tmp_path / "c.json"
    r = CliRunner().invoke(app, ["segment-convert", str(data), str(out), "--to", "coco-rle", "--split", "val"])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert [c["name"] for c in doc["categories"]] == CLASSES and isinstance(doc["annotations"][0]["segmentation"], dict)
    r = CliRunner().invoke(app, ["evaluate", str(res.dir), "--data", str(data), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "mIoU" in r.output and "red" in r.output
