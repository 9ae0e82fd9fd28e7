"""`runs reproduce` / `runs compare` on real `visiontune train` runs (the record itself, its
backends and kill handling are tested in test_track_run.py)."""

import json

from typer.testing import CliRunner

from visiontune.cli.main import app
from visiontune.track import reproduce
from visiontune.track.selfcheck import run_selfcheck

runner = CliRunner()


def test_train_run_reproduces_exactly_and_compare_plots(tmp_path):
    """A real `visiontune train` run (tiny model, CPU, deterministic) re-run from its record."""
    from visiontune.adapt import TrainConfig, train
    from visiontune.demo import materialize_digits

    data = materialize_digits(tmp_path / "digits", per_class=6)
    base = dict(
        model="timm:resnet18",
        pretrained=False,
        data=str(data),
        image_size=32,
        val_fraction=0.34,
        epochs=2,
        batch_size=8,
        seed=0,
        deterministic=True,
        trackers=["tensorboard"],
        progress=None,
    )
    base.pop("progress")
    train(TrainConfig(**base, strategy="linear", lr=0.01, name="head-only"), run_root=tmp_path / "runs", progress=False)
    train(
        TrainConfig(**base, strategy="full", lr=0.001, head_lr=0.01, name="finetune"),
        run_root=tmp_path / "runs",
        progress=False,
    )
    rep = reproduce("head-only", tmp_path / "runs")
    assert rep.matches, rep.mismatches
    assert rep.metrics["summary/val/acc"][0] == rep.metrics["summary/val/acc"][1]
    assert json.loads((rep.new.dir / "run.json").read_text())["reproduced_from"]["name"] == "head-only"

    png = tmp_path / "curves.png"
    r = runner.invoke(
        app,
        ["runs", "compare", "head-only", "finetune", "--root", str(tmp_path / "runs"), "--plot", str(png)],
        catch_exceptions=False,
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    assert "strategy" in r.output and "linear" in r.output and "full" in r.output  # the config diff
    assert png.stat().st_size > 10_000
    lst = runner.invoke(app, ["runs", "list", "--root", str(tmp_path / "runs"), "--json"], catch_exceptions=False)
    names = {x["name"] for x in json.loads(lst.output)}
    assert {"head-only", "finetune", "head-only-repro"} <= names


def test_reproduce_cli_warns_on_data_change_and_compares(tmp_path):
    run_selfcheck({"epochs": 1}, root=tmp_path, name="sc")
    rj = tmp_path / "sc" / "run.json"
    rec = json.loads(rj.read_text())
    rec["env"]["packages"]["torch"] = "0.0.1"  # pretend it was recorded under another torch
    rj.write_text(json.dumps(rec))
    r = runner.invoke(
        app, ["runs", "reproduce", "sc", "--root", str(tmp_path)], catch_exceptions=False, env={"COLUMNS": "200"}
    )
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "torch" in r.output
    assert "reproduced exactly" in r.output
