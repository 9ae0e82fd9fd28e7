"""Every on-disk format is a typed record; files written by visiontune 0.1 still load (issue #13)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from visiontune.errors import ConfigError
from visiontune.hub.saved import SavedModel
from visiontune.records import parse_format
from visiontune.track import load_run
from visiontune.track.schema import RunDoc, read_record, write_record

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_a_run_folder_written_by_0_1_reads_through_the_typed_record(tmp_path):
    run = tmp_path / "runs" / "old-run"
    shutil.copytree(FIXTURES / "run-v0.1", run)
    rec = load_run("old-run", tmp_path / "runs")
    assert rec.status == "completed" and rec.model_id == "timm:resnet18" and rec.data_version == "0123456789ab"
    assert rec.final_metrics()["val/acc"]["final"] == pytest.approx(0.7)
    doc = RunDoc.read(run / "run.json")
    assert doc.format == "visiontune.run/1" and doc.model.weights_sha256 == "ab" * 32
    assert doc.monitor.metric is None and doc.summary["val/acc"] == pytest.approx(0.7)


def test_run_records_are_validated_on_write_and_read(tmp_path):
    good = json.loads((FIXTURES / "run-v0.1" / "run.json").read_text())
    write_record(tmp_path / "run.json", {**good, "future_key": {"kept": True}})
    assert read_record(tmp_path / "run.json")["future_key"] == {"kept": True}  # a newer writer's key survives
    with pytest.raises(ConfigError, match=r"bad\.json is not a valid visiontune.run/1 record: status"):
        write_record(tmp_path / "bad.json", {**good, "status": "exploded"})
    assert not (tmp_path / "bad.json").exists()  # nothing half-written
    (tmp_path / "bad2.json").write_text(json.dumps({**good, "seed": "zero"}))
    with pytest.raises(ConfigError, match="seed"):
        read_record(tmp_path / "bad2.json")


@pytest.mark.parametrize("kind", ["classifier", "detector"])
def test_saved_models_of_0_1_upgrade_to_the_current_format(kind):
    rec = SavedModel.read(FIXTURES / "saved-v0.1" / kind / "visiontune.json")
    assert parse_format(rec.format) == ("model", 2)
    assert (rec.recipe is not None) == (kind == "detector") and (rec.base_id is not None) == (kind == "classifier")


def test_a_completed_run_under_an_ignored_sigint_stays_completed(tmp_path):
    """A background job ignores SIGINT (SIG_IGN): a SIGINT sent to it must not mark its run."""
    code = textwrap.dedent(
        f"""
        import os, signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from visiontune.track import Run
        run = Run.start(root={str(tmp_path)!r}, name="bg", config={{}}, trackers=[])
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        run.log_metrics({{"val/acc": 1.0}}, step=0)
        run.finish("completed")
        print("finished")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "finished" in res.stdout, res.stderr[-2000:]
    assert load_run(tmp_path / "bg").status == "completed"


def test_sigint_that_is_not_ignored_still_marks_the_run_interrupted(tmp_path):
    code = textwrap.dedent(
        f"""
        import os, signal, time
        from visiontune.track import Run
        run = Run.start(root={str(tmp_path)!r}, name="fg", config={{}}, trackers=[])
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert load_run(tmp_path / "fg").status == "interrupted"
