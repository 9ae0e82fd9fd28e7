"""Batch prediction to Parquet: rows equal direct predictions, corrupt images become named error
rows, a SIGKILLed run resumed gives the same Parquet as an uninterrupted one, and two gloo
processes (Lightning DDP on CPU) give the same predictions as one."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from visiontune.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory) -> Path:
    """A small timm classifier with fixed random weights, saved so every process loads the same."""
    import torch

    import visiontune as vt

    torch.manual_seed(0)
    p = vt.load("timm:mobilenetv3_small_050", pretrained=False)
    return p.save(tmp_path_factory.mktemp("model") / "mnv3")


@pytest.fixture(scope="module")
def manifest(assets, tmp_path_factory) -> tuple[Path, list[str]]:
    """A .txt manifest: hymenoptera images (relative paths resolve against its folder), one
    truncated JPEG and one missing file."""
    d = tmp_path_factory.mktemp("manifest")
    files = sorted((assets / "hymenoptera" / "val").rglob("*.jpg"))[:58]
    truncated = d / "truncated.jpg"
    truncated.write_bytes(files[0].read_bytes()[:2000])
    lines = [str(f) for f in files[:30]] + ["truncated.jpg"] + [str(f) for f in files[30:]] + ["missing.jpg"]
    (d / "images.txt").write_text("# images to predict\n" + "\n".join(lines) + "\n")
    return d / "images.txt", [str(d / x) if not os.path.isabs(x) else x for x in lines]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "visiontune.cli.main", "predict", *args]


@pytest.mark.slow
def test_rows_match_direct_predict_and_corrupt_images_are_named(saved_classifier, manifest, tmp_path):
    import visiontune as vt
    from visiontune.serve import predict_batch, read_predictions

    path, listed = manifest
    res = predict_batch(saved_classifier, path, tmp_path / "out", batch_size=8, chunk_size=16, num_workers=1, topk=3)
    assert res.metrics["images"] == len(listed) == 60
    assert res.metrics["predicted"] == 58 and res.metrics["failed"] == 2 and res.metrics["chunks"] == 4
    assert {Path(p).name for p, _ in res.failed} == {"truncated.jpg", "missing.jpg"}
    assert "truncated" in dict(res.failed)[listed[30]]
    assert "truncated.jpg" in res.summary() and "missing.jpg" in res.summary()
    table = read_predictions(tmp_path / "out")
    assert table.column("path").to_pylist() == listed and table.column("index").to_pylist() == list(range(60))
    good = [p for p in listed if not p.endswith(("truncated.jpg", "missing.jpg"))]
    direct = vt.load(saved_classifier).predict(good, topk=3)
    rows = [r for r in table.to_pylist() if r["ok"]]
    for row, d in zip(rows, direct):
        assert row["top_index"] == d.indices and row["label"] == d.labels[0]
        assert row["top_prob"] == pytest.approx(d.probs, abs=1e-5)
    # pandas reads the folder as one table (the plan file starts with "_" and is skipped)
    assert len(pq.read_table(tmp_path / "out")) == 60
    # a rerun finds every chunk done and predicts nothing
    again = predict_batch(saved_classifier, path, tmp_path / "out", batch_size=8, chunk_size=16, num_workers=1, topk=3)
    assert again.metrics["skipped_chunks"] == 4 and again.metrics["processed"] == 0
    # other options or inputs into the same folder are refused, not mixed in
    with pytest.raises(ConfigError, match="another run"):
        predict_batch(saved_classifier, path, tmp_path / "out", batch_size=8, chunk_size=16, topk=5)
    with pytest.raises(ConfigError, match="not a batch-prediction folder"):
        predict_batch(saved_classifier, good[:3], path.parent, topk=3)


def test_manifests_and_nothing_readable(saved_classifier, manifest, tmp_path):
    from visiontune.serve.sources import list_inputs

    path, listed = manifest
    with (tmp_path / "m.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "path"])
        w.writerows([["x", p] for p in listed[:5]])
    assert list_inputs(tmp_path / "m.csv") == listed[:5]
    with pytest.raises(DatasetError, match="no 'path' column"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        list_inputs(tmp_path / "bad.csv")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    proc = subprocess.run(
        _cli(str(saved_classifier), str(tmp_path / "broken.jpg"), "--out", str(tmp_path / "o"), "--num-workers", "0"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode != 0
    assert "none of the 1 images could be read" in proc.stderr and "broken.jpg" in proc.stderr


def _uninterrupted(saved_classifier, path, out):
    from visiontune.serve import predict_batch

    return predict_batch(saved_classifier, path, out, batch_size=4, chunk_size=6, num_workers=1, progress=False, topk=3)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_same_parquet(saved_classifier, manifest, tmp_path):
    from visiontune.serve import read_predictions

    path, _ = manifest
    out = tmp_path / "killed"
    args = [str(saved_classifier), str(path), "--out", str(out), "--batch-size", "4", "--chunk-size", "6"]
    args += ["--num-workers", "1", "--topk", "3"]
    proc = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(out.glob("part-*.parquet"))) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    parts_before = len(list(out.glob("part-*.parquet")))
    assert 3 <= parts_before < 10, parts_before
    rerun = subprocess.run(_cli(*args, "--json"), env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f'"skipped_chunks": {parts_before}' in rerun.stdout
    ref = _uninterrupted(saved_classifier, path, tmp_path / "reference")
    assert ref.metrics["chunks"] == 10
    resumed, reference = read_predictions(out), read_predictions(tmp_path / "reference")
    assert resumed.equals(reference)
    parts = sorted(p.name for p in (tmp_path / "reference").glob("part-*"))
    assert sorted(p.name for p in out.glob("part-*")) == parts
    for name in parts:  # byte for byte: the parts written before the kill and after the rerun alike
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert not list(out.glob(".*tmp*")), "a temporary file of the killed run was left behind"


@pytest.mark.slow
def test_two_gloo_processes_equal_one(saved_classifier, manifest, tmp_path):
    from visiontune.serve import read_predictions

    path, _ = manifest
    args = [str(saved_classifier), str(path), "--out", str(tmp_path / "ddp"), "--batch-size", "4", "--chunk-size", "6"]
    proc = subprocess.run(
        _cli(*args, "--num-workers", "1", "--topk", "3", "--devices", "2"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    assert "58 of 60 images predicted" in " ".join(proc.stdout.split())
    _uninterrupted(saved_classifier, path, tmp_path / "single")
    assert read_predictions(tmp_path / "ddp").equals(read_predictions(tmp_path / "single"))
