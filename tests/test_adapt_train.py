"""visiontune.adapt.train end to end on a tiny real image folder (3 colour classes, 32 px,
timm's 100k-parameter test_efficientnet from random init): cached linear probe, gradual
unfreezing inside Lightning, exact resume after SIGKILL, distillation, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visiontune.adapt import TrainConfig, train
from visiontune.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = "timm:test_efficientnet"
BASE = dict(model=MODEL, pretrained=False, image_size=32, batch_size=4, seed=7, trackers=[], lr=0.02)


def make_folder(root: Path, n_train: int = 4, n_val: int = 2, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for ci, c in enumerate(("red", "green", "blue")):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
                a[..., ci] += 160
                Image.fromarray(a).save(d / f"{c}_{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("colours"))


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_linear_probe_caches_features_and_saves_model(folder, tmp_path):
    from visiontune.hub import load

    cfg = TrainConfig(
        **BASE,
        data=str(folder),
        strategy="linear",
        epochs=4,
        feature_cache="disk",
        cache_dir=str(tmp_path / "cache"),
        name="probe",
    )
    r = train(cfg, run_root=tmp_path / "runs", progress=False)
    m = r.metrics
    assert r.run_dir == tmp_path / "runs" / "probe"
    assert set(m["val/per_class_acc"]) == {"blue", "green", "red"} and m["val/n"] == 6
    assert m["val/acc"] >= 2 / 3  # colour is trivially separable even for random features
    assert r.timings["features_train_s"] > 0 and r.timings["fit_s"] > 0
    assert len(list((tmp_path / "cache" / "features").glob("*/store.json"))) == 1  # one store: train + val
    ck = r.run_dir / "checkpoints"
    assert (ck / "best.ckpt").is_file() and (ck / "last.ckpt").is_file() and not list(ck.glob(".*"))
    assert (r.run_dir / "plots" / "confusion_matrix_val.png").read_bytes()[:4] == b"\x89PNG"
    rec = json.loads((r.run_dir / "run.json").read_text())
    assert rec["status"] == "completed" and rec["summary"]["val/acc"] == pytest.approx(m["val/acc"])
    # the saved model restores weights, preprocessing, class names, metrics and training config
    p = load(str(r.model_dir))
    assert p.class_names == ["blue", "green", "red"] and p.preprocess.input_size == (32, 32)
    doc = json.loads((r.model_dir / "visiontune.json").read_text())
    assert doc["training"]["strategy"] == "linear" and doc["metrics"]["val/acc"] == pytest.approx(m["val/acc"])
    pred = p.predict([str(folder / "val" / "red" / "red_0.png")], topk=3)[0]
    assert pred.labels[0] in p.class_names
    # a second run (same seed: same backbone weights) reads both splits from the disk cache, and
    # its backbone equals the first run's after 1 vs 4 epochs: only the head trains
    from visiontune.adapt.features import clear_memory_cache

    clear_memory_cache()
    r2 = train(cfg.model_copy(update={"name": "probe2", "epochs": 1}), run_root=tmp_path / "runs", progress=False)
    assert r2.timings["features_train_s"] == 0.0 and r2.timings["features_val_s"] == 0.0
    a, b = _tensors(r.model_dir / "model.safetensors"), _tensors(r2.model_dir / "model.safetensors")
    backbone = [k for k in a if not k.startswith("classifier")]
    assert backbone and all(torch.equal(a[k], b[k]) for k in backbone)


class Recorder:
    """Records, at the first batch of each epoch, which parameters train, the optimizer's lr per
    layer group, and whether frozen BatchNorm layers are in eval mode."""

    def __init__(self):
        import lightning as L

        outer = self

        class _CB(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx:
                    return
                model = pl_module.model
                frozen_bn = [
                    m.training
                    for n, m in model.named_modules()
                    if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.requires_grad
                ]
                outer.epochs.append(
                    {
                        "trainable": {n for n, p in model.named_parameters() if p.requires_grad},
                        "lrs": {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups},
                        "frozen_bn_training": any(frozen_bn),
                        "groups": list(pl_module.trainable_groups),
                    }
                )

        self.epochs: list[dict] = []
        self.callback = _CB()


def test_gradual_unfreezing_and_group_lrs_inside_lightning(folder, tmp_path):
    rec = Recorder()
    cfg = TrainConfig(
        **BASE,
        data=str(folder),
        strategy="gradual",
        epochs=3,
        milestones=[1, 2],
        lr_decay=0.5,
        schedule="constant",
        augment="light",
        monitor="val/loss",
    )
    r = train(cfg, run_root=tmp_path, callbacks=[rec.callback], progress=False)
    from visiontune.adapt import layer_groups

    lg = layer_groups(r.pretrained.model)
    names = lg.names
    assert [e["groups"] for e in rec.epochs] == [["head"], [names[-2], "head"], [names[-3], names[-2], "head"]]
    for e in rec.epochs:
        want = {p for g, ps in zip(lg.names, lg.params) if g in e["groups"] for p in ps}
        assert e["trainable"] == want
        assert not e["frozen_bn_training"]
        # constant schedule: lr = 0.02 * 0.5 ** distance from the head, for every group
        for gname, lr in e["lrs"].items():
            i = lg.names.index(gname.split("/")[0])
            assert lr == pytest.approx(0.02 * 0.5 ** (len(lg.names) - 1 - i)), gname
    # groups that never trained are bit-identical to the start (a model built with the same seed)
    final = r.pretrained.model.state_dict()
    never = [p for g, ps in zip(lg.names, lg.params) if g in lg.names[:-3] for p in ps]
    import lightning as L

    from visiontune.hub import load

    L.seed_everything(cfg.seed, verbose=False)
    fresh = load(MODEL, num_classes=3, pretrained=False).model.state_dict()
    assert never and all(torch.equal(final[k], fresh[k]) for k in never)
    trained = lg.params[-2][0]
    assert not torch.equal(final[trained], fresh[trained])


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import lightning as L
    from visiontune.adapt import TrainConfig, train

    class Kill(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = TrainConfig.model_validate_json(sys.argv[1])
    train(cfg, run_root=sys.argv[2], callbacks=[Kill()], progress=False)
""")


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(folder, tmp_path):
    cfg = TrainConfig(
        **{**BASE, "lr": 0.005},
        data=str(folder),
        strategy="full",
        epochs=4,
        augment="default",
        warmup_epochs=1,
        head_dropout=0.2,
    )
    ref = train(cfg.model_copy(update={"name": "ref"}), run_root=tmp_path, progress=False)

    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    killed = cfg.model_copy(update={"name": "killed"})
    proc = subprocess.run(
        [sys.executable, str(script), killed.model_dump_json(), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    ck = tmp_path / "killed" / "checkpoints"
    assert (ck / "last.ckpt").is_file() and not list(ck.glob(".*tmp*"))
    assert torch.load(ck / "last.ckpt", weights_only=False)["epoch"] == 1  # epochs 0, 1 done; 2 was cut

    res = train(killed, run_root=tmp_path, resume=tmp_path / "killed", progress=False)
    assert res.run_dir.name == "killed-resumed"
    assert res.metrics["val/acc"] == ref.metrics["val/acc"]
    a = _tensors(ref.model_dir / "model.safetensors")
    b = _tensors(res.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rec = json.loads((res.run_dir / "run.json").read_text())
    assert rec["tags"]["resumed_from"] == str(tmp_path / "killed")


def test_distillation_from_saved_teacher(folder, tmp_path):
    teacher = train(
        TrainConfig(**BASE, data=str(folder), strategy="linear", epochs=3, name="teacher"),
        run_root=tmp_path,
        progress=False,
    )
    cfg = TrainConfig(
        **{**BASE, "model": "timm:test_convnext2", "trackers": ["tensorboard"]},
        data=str(folder),
        strategy="full",
        epochs=1,
        teacher=str(teacher.model_dir),
        kd_alpha=0.7,
        kd_temperature=2.0,
        name="student",
    )
    r = train(cfg, run_root=tmp_path, progress=False)
    import csv

    rows = list(csv.DictReader(open(r.run_dir / "metrics.csv")))
    kd = [float(row["value"]) for row in rows if row["metric"] == "train/kd"]
    assert kd and all(v >= 0 for v in kd)
    assert r.metrics["val/n"] == 6
    # a teacher for other classes is refused with the key named
    other = make_folder(tmp_path / "two")
    import shutil

    for split in ("train", "val"):
        shutil.rmtree(other / split / "blue")
    with pytest.raises(ConfigError, match="teacher"):
        train(cfg.model_copy(update={"data": str(other), "name": "bad"}), run_root=tmp_path, progress=False)


def test_cli_train_yaml_lr_find_recommend(folder, tmp_path):
    from typer.testing import CliRunner

    from visiontune.cli.main import app

    runner = CliRunner()
    yaml_cfg = tmp_path / "cfg.yaml"
    yaml_cfg.write_text(
        f"model: {MODEL}\ndata: {folder}\nstrategy: linear\nepochs: 2\npretrained: false\n"
        f"image_size: 32\nbatch_size: 4\ntrackers: []\n"
    )
    res = runner.invoke(
        app, ["train", "--config", str(yaml_cfg), "--runs", str(tmp_path / "runs"), "--name", "cli", "--lr", "0.05"]
    )
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # rich wraps lines at the console width
    assert "val: top-1" in out and "trainable parameters" in out and "epoch" in out
    saved = json.loads((tmp_path / "runs" / "cli" / "model" / "visiontune.json").read_text())
    assert saved["training"]["lr"] == 0.05

    png = tmp_path / "lr.png"
    res = runner.invoke(app, ["lr-find", "--config", str(yaml_cfg), "--out", str(png), "--steps", "30"])
    assert res.exit_code == 0, res.output
    assert "plot:" in res.output and png.read_bytes()[:4] == b"\x89PNG"

    res = runner.invoke(
        app, ["recommend", str(folder), "--model", MODEL, "--random-init", "--per-class", "4", "--json"]
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert rec["measurements"]["median_per_class"] == 4 and rec["measurements"]["size_band"] == "small"
    assert rec["strategy"] in ("linear", "partial", "gradual") and len(rec["reasons"]) == 3

    res = runner.invoke(app, ["train", "--config", str(yaml_cfg), "--strategy", "frozen"])
    assert isinstance(res.exception, ConfigError) and "strategy" in str(res.exception)


def test_linear_probe_trains_whole_mlp_head(folder, tmp_path):
    """With an MLP head the cached features are the input of the whole new head: its hidden layer
    trains too, and the saved model rebuilds the same head."""
    import lightning as L

    from visiontune.hub import load

    cfg = TrainConfig(**BASE, data=str(folder), strategy="linear", epochs=2, head_hidden=16, head_dropout=0.2)
    r = train(cfg, run_root=tmp_path, progress=False)
    L.seed_everything(cfg.seed, verbose=False)
    fresh = load(MODEL, num_classes=3, pretrained=False, head={"dropout": 0.2, "hidden": 16}).model.state_dict()
    final = r.pretrained.model.state_dict()
    assert not torch.equal(final["classifier.0.weight"], fresh["classifier.0.weight"])  # hidden layer trained
    assert not torch.equal(final["classifier.3.weight"], fresh["classifier.3.weight"])
    assert all(torch.equal(final[k], fresh[k]) for k in final if not k.startswith("classifier"))
    assert r.pretrained.card.head["hidden"] == 16
    p = load(str(r.model_dir))
    assert torch.equal(p.model.state_dict()["classifier.0.weight"], final["classifier.0.weight"])


def test_an_undecodable_image_is_dropped_before_training_and_listed_in_the_run(tmp_path):
    from visiontune.adapt import TrainConfig, train
    from visiontune.track import load_run

    data = make_folder(tmp_path / "data", n_train=3, n_val=2)
    bad = data / "val" / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    cfg = TrainConfig(**BASE, data=str(data), strategy="linear", epochs=1, feature_cache="off")
    r = train(cfg, run_root=tmp_path / "runs", progress=False)
    assert r.metrics["val/n"] == 6  # the broken file is not counted (nor replaced by a substitute)
    skipped = load_run(r.dir).data["tags"]["skipped_files"]
    assert [s["path"] for s in skipped] == [str(bad)] and skipped[0]["split"] == "val" and skipped[0]["reason"]
