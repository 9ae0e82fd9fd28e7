"""visiontune.track: run records read back by the real TensorBoard / MLflow readers, reproduce,
compare, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from visiontune.track import compare_runs, list_runs, load_run, plot_comparison, reproduce
from visiontune.track.selfcheck import run_selfcheck


def test_tensorboard_reader_reads_scalars(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    run = run_selfcheck({"epochs": 2}, root=tmp_path, trackers=["tensorboard"])
    ea = event_accumulator.EventAccumulator(str(run.dir / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    tags = ea.Tags()["scalars"]
    assert {"train/loss", "val/acc", "lr/body", "lr/head"} <= set(tags)
    rows = [r for r in load_run(run.dir).metric_rows() if r["metric"] == "train/loss"]
    tb = ea.Scalars("train/loss")
    assert [e.step for e in tb] == [r["step"] for r in rows]
    assert [e.value for e in tb] == pytest.approx([r["value"] for r in rows], rel=1e-6)
    assert ea.Tags()["images"] == ["val/confusion_matrix"]


def test_mlflow_client_finds_run(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    run = run_selfcheck({"epochs": 2}, root=tmp_path, trackers=["mlflow"])
    art = tmp_path / "model"
    art.mkdir()
    (art / "visiontune.json").write_text("{}")
    info = run.record["trackers"]["mlflow"]
    uri = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert info["tracking_uri"] == uri
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    df = (
        mlflow.search_runs(experiment_names=["visiontune"], tracking_uri=uri)
        if "tracking_uri" in mlflow.search_runs.__code__.co_varnames
        else None
    )
    if df is None:
        mlflow.set_tracking_uri(uri)
        df = mlflow.search_runs(experiment_names=["visiontune"])
    assert list(df["run_id"]) == [info["run_id"]]
    r = client.get_run(info["run_id"])
    assert r.info.status == "FINISHED"
    assert r.data.params["epochs"] == "2" and r.data.params["seed"] == "0"
    assert r.data.tags["visiontune.status"] == "completed"
    hist = client.get_metric_history(info["run_id"], "train/loss")
    assert len(hist) == run.record["metrics"]["train/loss"]["count"]
    assert r.data.metrics["val/acc"] == pytest.approx(run.record["summary"]["val/acc"])


def test_reproduce_exact_and_compare_plot(tmp_path):
    a = run_selfcheck({"epochs": 2}, root=tmp_path, name="a", trackers=[])
    b = run_selfcheck({"epochs": 2, "lr": 0.01}, root=tmp_path, name="b", trackers=[])
    rep = reproduce("a", tmp_path)
    assert rep.new.name == "a-repro" and rep.new.data["reproduced_from"]["name"] == "a"
    assert rep.metrics and rep.matches, rep.mismatches
    assert rep.metrics["summary/val/acc"][0] == a.record["summary"]["val/acc"]
    cmp = compare_runs([load_run("a", tmp_path), load_run("b", tmp_path)])
    assert cmp.config_diff == {"lr": [0.05, 0.01]}
    assert cmp.metrics["val/acc"][0]["final"] != cmp.metrics["val/acc"][1]["final"]
    png = plot_comparison([load_run("a", tmp_path), load_run("b", tmp_path)], tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r.name for r in list_runs(tmp_path)] == ["a", "b", "a-repro"]
    assert b.status == "completed"


_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from visiontune.track import Run
    run = Run.start(root=sys.argv[1], name="victim", config={"lr": 0.1}, trackers=["tensorboard"],
                    heartbeat_interval=0.2)
    w = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for step in range(1, 100000):
        loss = ((w - 1) ** 2).sum()
        opt.zero_grad(); loss.backward(); opt.step()
        run.log_metrics({"train/loss": loss}, step=step, epoch=0)
        if step == 5:
            print("ready", flush=True)
        time.sleep(0.02)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_is_interrupted_and_keeps_rows(tmp_path, sig):
    p = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    p.send_signal(sig)
    rc = p.wait(timeout=60)
    rec = load_run(tmp_path / "victim")
    assert rec.status == "interrupted", rec.status_reason
    assert rc == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert rec.data["status"] == "interrupted" and "SIGTERM" in rec.data["status_reason"]
        assert rec.data["end_time"] is not None
    else:
        assert rec.data["status"] == "running"  # as written; the dead pid is detected on read
    rows = rec.metric_rows()
    assert len(rows) >= 5 and [r["step"] for r in rows] == list(range(1, len(rows) + 1))


_LOCKED_SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading
    from visiontune.track import Run
    from visiontune.track.backends import Tracker

    class Locked(Tracker):
        # like TensorBoard's _AsyncWriter: every call takes one non-reentrant lock
        name = "locked"
        def __init__(self):
            self.lock = threading.Lock()
        def log_metrics(self, metrics, step, epoch=None):
            with self.lock:
                os.kill(os.getpid(), signal.SIGTERM)  # the signal lands while the lock is held
                for _ in range(1000):
                    pass
        def finish(self, status, summary):
            with self.lock:
                print("finished", status, flush=True)

    run = Run.start(root=sys.argv[1], name="victim", trackers=[Locked()], heartbeat_interval=0.2)
    run.log_metrics({"train/loss": 1.0}, step=1)
    print("not reached", flush=True)
""")


def test_sigterm_inside_a_backend_call_does_not_deadlock(tmp_path):
    """SIGTERM while the main thread is inside a backend's locked write (TensorBoard's writer
    lock, seen deadlocked in CI): the handler must not close the backends itself; the run ends
    interrupted and the backend is closed after the write unwinds."""
    p = subprocess.run(
        [sys.executable, "-c", _LOCKED_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    assert "finished interrupted" in p.stdout and "not reached" not in p.stdout, p.stdout + p.stderr
    rec = load_run(tmp_path / "victim")
    assert rec.status == "interrupted" and "SIGTERM" in rec.data["status_reason"]
    assert rec.data["end_time"] is not None


def test_failed_run_keeps_traceback_and_cli(tmp_path):
    from typer.testing import CliRunner

    from visiontune.cli.main import app
    from visiontune.track import Run

    with pytest.raises(ZeroDivisionError):
        with Run.start(root=tmp_path, name="boom", config={"x": 1}, trackers=[]) as run:
            run.log_metrics({"train/loss": 1.0}, step=1)
            raise ZeroDivisionError("boom")
    rec = load_run("boom", tmp_path)
    assert rec.status == "failed" and "ZeroDivisionError" in (tmp_path / "boom" / "error.txt").read_text()
    res = CliRunner().invoke(app, ["runs", "list", "--root", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["status"] == "failed"
    res = CliRunner().invoke(app, ["runs", "show", "boom", "--root", str(tmp_path)])
    assert res.exit_code == 0 and "ZeroDivisionError" in res.output
    with pytest.raises(Exception, match="already exists"):
        Run.start(root=tmp_path, name="boom", trackers=[])
