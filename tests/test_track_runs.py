"""Run records read back by the real readers: TensorBoard's EventAccumulator, MLflow's client."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from visiontune.cli.main import app
from visiontune.track import Run, list_runs, load_run, reproduce
from visiontune.track.selfcheck import run_selfcheck

runner = CliRunner()


def test_tensorboard_reader_reads_back_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_selfcheck({"epochs": 2}, root=tmp_path, name="tb")
    acc = EventAccumulator(str(run.dir / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "val/acc", "val/loss"} <= set(tags)
    assert any(t.startswith("lr") for t in tags)  # learning rate per param group
    csv_val = [r["value"] for r in load_run(run.dir).metric_rows() if r["metric"] == "val/acc"]
    tb_val = [e.value for e in acc.Scalars("val/acc")]
    assert tb_val == pytest.approx(csv_val, abs=1e-6)
    assert acc.Tags()["images"]  # the confusion-matrix image


def test_mlflow_client_finds_run_params_metrics_artifacts(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    run = run_selfcheck({"epochs": 2}, root=tmp_path, name="ml", trackers=["tensorboard", "mlflow"])
    model_dir = tmp_path / "fake_model"
    model_dir.mkdir()
    (model_dir / "visiontune.json").write_text("{}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["visiontune"])
    assert len(df) == 1
    row = df.iloc[0]
    assert row["params.lr"] == "0.05" and row["metrics.val/acc"] == pytest.approx(run.record["summary"]["val/acc"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    rid = row["run_id"]
    history = client.get_metric_history(rid, "train/loss")
    assert len(history) == run.record["summary"]["steps"]
    assert client.get_run(rid).info.status == "FINISHED"
    arts = {a.path for a in client.list_artifacts(rid)}
    assert arts, "run.json / config.yaml are logged as artifacts"


def test_train_run_reproduces_exactly_and_compare_plots(tmp_path):
    """A real `visiontune train` run (tiny model, CPU, deterministic) re-run from its record."""
    from visiontune.adapt import TrainConfig, train
    from visiontune.demo import materialize_digits

    data = materialize_digits(tmp_path / "digits", per_class=6)
    base = dict(model="timm:resnet18", pretrained=False, data=str(data), image_size=32, val_fraction=0.34,
                epochs=2, batch_size=8, seed=0, deterministic=True, trackers=["tensorboard"], progress=None)
    base.pop("progress")
    train(TrainConfig(**base, strategy="linear", lr=0.01, name="head-only"), run_root=tmp_path / "runs", progress=False)
    train(TrainConfig(**base, strategy="full", lr=0.001, head_lr=0.01, name="finetune"), run_root=tmp_path / "runs",
          progress=False)
    rep = reproduce("head-only", tmp_path / "runs")
    assert rep.matches, rep.mismatches
    assert rep.metrics["summary/val/acc"][0] == rep.metrics["summary/val/acc"][1]
    assert json.loads((rep.new.dir / "run.json").read_text())["reproduced_from"]["name"] == "head-only"

    png = tmp_path / "curves.png"
    r = runner.invoke(app, ["runs", "compare", "head-only", "finetune", "--root", str(tmp_path / "runs"),
                            "--plot", str(png)], catch_exceptions=False, env={"COLUMNS": "200"})
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
    r = runner.invoke(app, ["runs", "reproduce", "sc", "--root", str(tmp_path)], catch_exceptions=False,
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "torch" in r.output
    assert "reproduced exactly" in r.output


KILLED_RUN = textwrap.dedent('''
    import sys, time
    from visiontune.track import Run
    run = Run.start(root=sys.argv[1], name="victim", config={"epochs": 100}, model_id="test:mlp",
                    trackers=["tensorboard"], heartbeat_interval=0.2)
    step = 0
    for epoch in range(100):
        for i in range(10):
            step += 1
            run.log_metrics({"train/loss": 1.0 / step}, step=step, epoch=epoch)
            if step == 15:
                print("MID-EPOCH", flush=True)
            time.sleep(0.05)
''')


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_mid_epoch_leaves_consistent_record_marked_interrupted(tmp_path, sig):
    script = tmp_path / "victim.py"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    for line in p.stdout:
        if "MID-EPOCH" in line or time.time() > deadline:
            break
    time.sleep(0.3)
    p.send_signal(sig)
    p.wait(timeout=60)
    rec = load_run(tmp_path / "victim")
    assert rec.status == "interrupted", (rec.status, rec.status_reason)
    rows = [r for r in rec.metric_rows() if r["metric"] == "train/loss"]
    assert len(rows) >= 15 and [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # nothing torn
    assert rec.config == {"epochs": 100}
    json.loads((tmp_path / "victim" / "run.json").read_text())  # valid JSON: written atomically
    listed = {r.name: r.status for r in list_runs(tmp_path)}
    assert listed["victim"] == "interrupted"
    shown = runner.invoke(app, ["runs", "show", "victim", "--root", str(tmp_path)], catch_exceptions=False)
    assert "interrupted" in shown.output


def test_exception_marks_failed_and_never_overwrites(tmp_path):
    with pytest.raises(RuntimeError):
        with Run.start(root=tmp_path, name="boom", config={"a": 1}, trackers=()) as run:
            run.log_metrics({"x": 1.0}, step=1)
            raise RuntimeError("broken")
    rec = load_run(tmp_path / "boom")
    assert rec.status == "failed"
    from visiontune.errors import ConfigError

    with pytest.raises(ConfigError, match="never overwritten"):
        Run.start(root=tmp_path, name="boom", config={}, trackers=())
    assert load_run(tmp_path / "boom").status == "failed"  # the old record is untouched
