"""`visiontune tune` end to end: 8 trials on the real hymenoptera images with a tiny model
(timm's test_efficientnet, random init, 32 px, cached-feature probe), Optuna's median pruner
through the Lightning callback, the SQLite study, the best config, the study plot, and
`visiontune runs compare` over every trial; the one-pass probe sweep against single heads."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_tune_eight_trials_prunes_writes_best_and_compares(assets, tmp_path):
    import optuna

    from visiontune.adapt import TrainConfig
    from visiontune.cli.main import app

    cfg = {
        "train": {
            "model": "timm:test_efficientnet",
            "pretrained": False,
            "data": str(assets / "hymenoptera"),
            "image_size": 32,
            "strategy": "linear",
            "epochs": 4,
            "batch_size": 32,
            "trackers": [],
            "validate_images": False,
            "monitor": "val/loss",
        },
        "search": {"lr": {"low": 1.0e-5, "high": 1.0, "log": True}, "weight_decay": [0.0, 0.01]},
        "tune": {"trials": 8, "startup_trials": 2, "seed": 0},
    }
    path = tmp_path / "hym.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "tune"
    runner = CliRunner()
    res = runner.invoke(app, ["tune", str(path), "--trials", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "tune.json").read_text())
    assert doc["format"] == "visiontune.tune/1" and len(doc["trials"]) == 8
    states = [t["state"] for t in doc["trials"]]
    assert states.count("pruned") >= 1 and states.count("complete") >= 2, states
    pruned = [t for t in doc["trials"] if t["state"] == "pruned"]
    assert all(t["epochs_trained"] < 4 for t in pruned)  # stopped early, and the run still recorded
    # the study lives in SQLite beside the runs and reloads with Optuna itself
    study = optuna.load_study(study_name="hym", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 8 and study.best_trial.number == doc["best"]["number"]
    # the best config trains as it is
    best = TrainConfig.from_yaml(out / "best.yaml")
    assert best.lr == pytest.approx(study.best_params["lr"]) and best.model == "timm:test_efficientnet"
    assert (out / "study.png").read_bytes()[:4] == b"\x89PNG"
    # every trial is a tracked run, tagged with its study and parameters
    names = [f"hym-trial-{i:02d}" for i in range(8)]
    for n, t in zip(names, doc["trials"]):
        rec = json.loads((out / "runs" / n / "run.json").read_text())
        assert rec["status"] == "completed" and rec["tags"]["tune"]["trial"] == t["number"]
        assert rec["summary"]["tune/pruned"] == (t["state"] == "pruned")
    cmp = runner.invoke(app, ["runs", "compare", *names, "--root", str(out / "runs"), "--json"])
    assert cmp.exit_code == 0, cmp.output
    listed = json.loads(cmp.output)["runs"]
    assert sorted(listed) == names
    # a second call adds trials to the same study
    res2 = runner.invoke(app, ["tune", str(path), "--trials", "1", "--out", str(out)])
    assert res2.exit_code == 0, res2.output
    assert len(json.loads((out / "tune.json").read_text())["trials"]) == 9


def test_tune_file_errors(tmp_path):
    from visiontune.adapt.tune import read_tune_file
    from visiontune.errors import ConfigError

    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"train": {"model": "m", "data": "d"}, "search": {"lrr": [1]}}))
    with pytest.raises(ConfigError, match="lrr"):
        read_tune_file(p)
    p.write_text(yaml.safe_dump({"search": {"lr": [1]}}))
    with pytest.raises(ConfigError, match="train:"):
        read_tune_file(p)


def test_one_pass_sweep_matches_single_heads():
    """Each head of the joint sweep is exactly the head trained alone with its setting."""
    from visiontune.adapt.probe_sweep import train_heads

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    settings = [(1e-2, 0.0), (1e-1, 1e-2), (3e-3, 1e-1)]
    w, b = train_heads(x, y, settings, num_classes=3, epochs=3, batch_size=8, seed=1)
    for k, s in enumerate(settings):
        w1, b1 = train_heads(x, y, [s], num_classes=3, epochs=3, batch_size=8, seed=1)
        assert torch.allclose(w[k], w1[0], atol=1e-5) and torch.allclose(b[k], b1[0], atol=1e-5)
    assert not torch.allclose(w[0], w[1])
    # subnormals are flushed (and one thread used) only while the heads train: both are restored
    assert float(torch.tensor([1e-40]) * 1.0) != 0.0
    torch.set_num_threads(2)
    train_heads(x, y, settings[:1], num_classes=3, epochs=1, batch_size=8)
    assert torch.get_num_threads() == 2
