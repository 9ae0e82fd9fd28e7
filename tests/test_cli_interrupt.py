"""Ctrl-C during `visiontune train` says so and how to resume; `--resume RUN` alone continues from
the run's own config and keeps best-checkpoint tracking (issue #19)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_adapt_train import make_folder
from visiontune.track import load_run

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "visiontune", *args]


def test_ctrl_c_prints_interrupted_and_resume_run_alone_continues_with_best_tracking(tmp_path):
    data = make_folder(tmp_path / "data", n_train=4, n_val=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    train = _cli(
        "train", "--model", "timm:test_resnet", "--random-init", "--data", str(data), "--image-size", "32",
        "--epochs", "40", "--batch-size", "4", "--lr", "0.05", "--strategy", "full", "--trackers", "",
        "--name", "x", "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    proc = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    last = tmp_path / "runs" / "x" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.is_file(), "no epoch finished in time"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out + err)[-3000:]
    said = " ".join((out + err).split())
    assert "interrupted: run" in said and "marked interrupted" in said
    assert f"visiontune train --resume {tmp_path / 'runs' / 'x'}" in said
    rec = load_run(tmp_path / "runs" / "x")
    assert rec.status == "interrupted"
    done_before = torch.load(last, weights_only=True)["epoch"] + 1
    assert 1 <= done_before < 40

    # --resume RUN alone: the run's own config; a new run x-resumed continues to epoch 40
    res = subprocess.run(
        _cli("train", "--resume", str(tmp_path / "runs" / "x")),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "won't be reloaded" not in res.stderr  # Lightning keeps the best-checkpoint state
    new = load_run(tmp_path / "runs" / "x-resumed")
    assert new.status == "completed" and new.data["tags"]["resumed_from"] == str(tmp_path / "runs" / "x")
    assert new.config["epochs"] == 40 and new.config["model"] == "timm:test_resnet"
    ckpt = torch.load(tmp_path / "runs" / "x-resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 39
    # best tracking spans both runs: the best epoch's score is the best of every epoch's val/acc
    state = next(v for k, v in ckpt["callbacks"].items() if "val/acc" in k)
    best_score = float(state["best_model_score"])
    accs = [r["value"] for r in new.metric_rows() if r["metric"] == "val/acc"]
    old_accs = [r["value"] for r in rec.metric_rows() if r["metric"] == "val/acc"]
    assert best_score == pytest.approx(max(accs + old_accs[:done_before]), abs=1e-6)
    assert Path(state["best_model_path"]).parent == (tmp_path / "runs" / "x-resumed" / "checkpoints").resolve()
    kinds = {c["path"]: c["kind"] for c in new.data["checkpoints"]}
    assert kinds.get("checkpoints/best.ckpt") == "best" and kinds.get("checkpoints/last.ckpt") == "last"
