"""The shared foundations: typed records and the one progress reporter."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from typing import ClassVar

import pytest

from visiontune.errors import ConfigError
from visiontune.progress import progress
from visiontune.records import Record, parse_format


class Sample(Record):
    KIND: ClassVar[str] = "sample"
    VERSION: ClassVar[int] = 2
    count: int = 0

    @classmethod
    def upgrade(cls, doc):
        if doc.get("format") == "visiontune.sample/1":  # v1 called it n
            doc = {**doc, "format": cls.format_id(), "count": doc.pop("n", 0)}
        return doc


def test_record_round_trip_upgrade_and_errors(tmp_path):
    path = Sample(count=3).write(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "visiontune.sample/2" and list(doc)[0] == "format"
    assert Sample.read(path).count == 3
    (tmp_path / "old.json").write_text(json.dumps({"format": "visiontune.sample/1", "n": 7}))
    assert Sample.read(tmp_path / "old.json").count == 7
    (tmp_path / "bad.json").write_text(json.dumps({"format": "visiontune.sample/2", "count": "x"}))
    with pytest.raises(ConfigError, match=r"bad\.json.*count"):
        Sample.read(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "visiontune.run/1"}))
    with pytest.raises(ConfigError, match="expected 'visiontune.sample/2'"):
        Sample.read(tmp_path / "other.json")
    (tmp_path / "newer.json").write_text(json.dumps({"format": "visiontune.sample/9"}))
    with pytest.raises(ConfigError, match="newer"):
        Sample.read(tmp_path / "newer.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not readable JSON"):
        Sample.read(tmp_path / "broken.json")
    assert parse_format("visiontune.model/1") == ("model", 1) and parse_format("visiontune-detector/1") is None


def test_progress_without_a_terminal_prints_plain_lines_while_a_step_is_slow():
    out = io.StringIO()
    with progress("features (val)", 10, every=0.2, stream=out) as bar:
        bar.advance(4)
        time.sleep(0.7)  # one slow step: the background thread still reports
        bar.update(10)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[visiontune] features (val): 0/10") and "started" in lines[0]
    assert any("4/10 (40.0%)" in line and "ETA" in line for line in lines[1:-1])
    assert lines[-1].startswith("[visiontune] features (val): 10/10 (100.0%)") and "done in" in lines[-1]


def test_progress_through_a_pipe_in_a_subprocess():
    code = (
        "import time\nfrom visiontune.progress import progress\n"
        "with progress('work', 3, every=0.2) as p:\n"
        "    for _ in range(3):\n        time.sleep(0.3); p.advance()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("[visiontune] work")]
    assert len(lines) >= 4 and "3/3" in lines[-1]


def test_progress_disabled_prints_nothing():
    out = io.StringIO()
    with progress("quiet", 2, enabled=False, stream=out) as p:
        p.advance(2)
    assert out.getvalue() == ""


def test_bench_without_a_terminal_prints_progress_lines_at_least_every_10_seconds(tmp_path):
    """`visiontune bench` through a pipe (no terminal): plain progress lines while it works."""
    cmd = [
        sys.executable, "-m", "visiontune", "bench", "timm:test_resnet", "timm:test_efficientnet",
        "--input-size", "32", "--repeats", "3", "--warmup", "0", "--throughput-runs", "1", "--batch-size", "2",
        "--threads", "1", "--no-plot", "--out", str(tmp_path / "b"),
    ]  # fmt: skip
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stamps = []
    for line in proc.stdout:
        if line.startswith("[visiontune] bench"):
            stamps.append((time.time() - t0, line.strip()))
    assert proc.wait(timeout=600) == 0
    assert stamps and "started" in stamps[0][1] and "done in" in stamps[-1][1]
    assert any("measuring timm:test_efficientnet" in s for _, s in stamps) or len(stamps) >= 2
    gaps = [b - a for (a, _), (b, _) in zip(stamps, stamps[1:])]
    assert all(g < 12.0 for g in gaps), gaps  # 10 s apart at most (plus scheduling slack)
