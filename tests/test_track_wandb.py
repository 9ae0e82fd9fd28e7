"""The W&B backend for real: wandb's own offline mode (no key, no network), read back from the
``.wandb`` transaction log it writes, decoded with wandb's own protobuf schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visiontune.track import Run, load_run
from visiontune.track.selfcheck import run_selfcheck

wandb = pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def _no_key(tmp_path, monkeypatch):
    """No API key anywhere: the backend must choose offline mode by itself."""
    for k in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_SILENT", "true")


def _records(run_dir: Path) -> list:
    """Every record of the run's ``.wandb`` file: LevelDB-style log blocks (32 KiB, 7-byte chunk
    headers: checksum, length, type) after the ``:W&B`` file header, each a wandb ``Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, block, pos, buf, out = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


def _items(items) -> dict:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def test_offline_run_holds_the_metrics_lrs_and_image(tmp_path):
    run = run_selfcheck({"epochs": 2}, root=tmp_path / "runs", trackers=["wandb"])
    info = run.record["trackers"]["wandb"]
    assert info["mode"] == "offline" and info["sync"].startswith("wandb sync ")
    recs = _records(run.dir)
    kinds = [r.WhichOneof("record_type") for r in recs]
    assert kinds[0] == "header" and "run" in kinds and kinds[-1] in ("exit", "final", "footer")

    history = [_items(r.history.item) for r in recs if r.WhichOneof("record_type") == "history"]
    logged = {}
    for h in history:
        for k, v in h.items():
            logged.setdefault(k, []).append((h["_step"], v))
    csv_rows = load_run(run.dir).metric_rows()
    for metric in ("train/loss", "val/acc", "lr/body", "lr/head"):
        expect = [(r["step"], r["value"]) for r in csv_rows if r["metric"] == metric]
        assert expect, metric
        assert [s for s, _ in logged[metric]] == [s for s, _ in expect], metric
        assert [v for _, v in logged[metric]] == pytest.approx([v for _, v in expect], rel=1e-6), metric
    (img,) = [h for h in history if h.get("val/confusion_matrix/_type") == "image-file"]
    png = next(run.dir.glob("wandb/offline-run-*/files")) / img["val/confusion_matrix/path"]
    assert png.read_bytes()[:4] == b"\x89PNG" and img["val/confusion_matrix/width"] == 4 * 16

    (run_rec,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
    assert run_rec.run_id == info["run_id"] and run_rec.project == "visiontune"
    assert _items(run_rec.config.update)["epochs"] == 2
    summary = {}
    for r in recs:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r.summary.update))
    assert summary["status"] == "completed"
    assert summary["val/acc"] == pytest.approx(run.record["summary"]["val/acc"])
    (exit_rec,) = [r.exit for r in recs if r.WhichOneof("record_type") == "exit"]
    assert exit_rec.exit_code == 0


def test_a_failed_run_exits_nonzero_in_wandb_too(tmp_path):
    with pytest.raises(RuntimeError):
        with Run.start(
            root=tmp_path / "runs", name="boom", config={"lr": 0.1}, model_id="m", trackers=("wandb",)
        ) as run:
            run.log_metrics({"train/loss": 1.0}, step=0)
            raise RuntimeError("diverged")
    assert load_run(run.dir).status == "failed"
    recs = _records(run.dir)
    (exit_rec,) = [r.exit for r in recs if r.WhichOneof("record_type") == "exit"]
    assert exit_rec.exit_code == 1
    summary = {}
    for r in recs:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r.summary.update))
    assert summary["status"] == "failed"
