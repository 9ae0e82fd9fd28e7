"""`visiontune run`: one config, three deliverables, and a model that reproduces its numbers."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import visiontune as vt
from visiontune.cli.main import app
from visiontune.demo import materialize_digits
from visiontune.errors import ConfigError
from visiontune.pipeline import load_config


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return materialize_digits(tmp_path_factory.mktemp("data") / "digits", per_class=12)


def test_run_end_to_end_three_deliverables(tmp_path, digits):
    cfg = {
        "name": "tiny",
        "root": str(tmp_path / "runs"),
        "train": {
            "model": "timm:resnet18",
            "pretrained": False,
            "data": str(digits),
            "image_size": 64,
            "val_fraction": 0.25,
            "strategy": "linear",
            "epochs": 3,
            "batch_size": 16,
            "lr": 0.01,
            "seed": 0,
            "deterministic": True,
            "trackers": ["tensorboard"],
        },
        "audit": {"k_folds": 3},
    }
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["run", str(cfg_file)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "runs" / "tiny"
    # 1. the fine-tuned model
    assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "model" / "visiontune.json").is_file()
    # 2. the run record
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.csv").is_file()
    assert record["data"]  # the data version is recorded
    # 3. the audit: ranked mistakes and the report
    assert (run_dir / "audit" / "mistakes.csv").is_file() and (run_dir / "audit" / "report.html").is_file()
    assert "audit report" in " ".join(r.output.split())  # rich wraps long paths
    summary = json.loads((run_dir / "audit" / "summary.json").read_text())
    assert summary["timings"]["images_computed"] == 0  # the audit reused the probe's cached features
    assert summary["metrics"]["n_images"] == 30  # the run's own val split (25% of 120), not a new one

    # the saved model reloads with its own preprocessing and reproduces the recorded val accuracy
    recorded = record["summary"]["val/acc"]
    p = vt.load(run_dir / "model")
    assert p.preprocess.input_size == (64, 64)
    from visiontune.data import load_classification

    splits = load_classification(str(digits), val_fraction=0.25, seed=0)
    preds = p.predict(list(splits.val.paths), topk=1)
    acc = float(np.mean([pr.indices[0] == y for pr, y in zip(preds, splits.val.labels)]))
    assert acc == pytest.approx(recorded, abs=1e-6)

    # resumable: running again skips the finished training
    r2 = CliRunner().invoke(app, ["run", str(cfg_file)], catch_exceptions=False)
    assert r2.exit_code == 0 and "skipping to the audit" in " ".join(r2.output.split())  # rich wraps


def test_config_errors_name_key_and_allowed_values(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"model": "timm:resnet18", "data": "x", "strategy": "half"}, "audti": {}}))
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert "audti" in str(e.value) and "allowed keys" in str(e.value)
    bad.write_text(yaml.safe_dump({"train": {"model": "timm:resnet18", "data": "x", "strategy": "half"}}))
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "strategy" in msg and "linear" in msg and "gradual" in msg
    bad.write_text(yaml.safe_dump({"train": {"model": "timm:resnet18", "data": "x"}, "audit": {"split": "dev"}}))
    with pytest.raises(ConfigError, match="audit.split"):
        load_config(bad)


@pytest.mark.parametrize(
    "example", sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_validate(example):
    text = example.read_text()
    if text.lstrip("#").find("backbone:") >= 0 and "train:" not in text:
        pytest.skip("detection example: validated by the detect tests")
    if "segment_train:" in text:  # a `visiontune segment-train --config` file
        from visiontune.segment.config import parse_config

        cfg = parse_config(example)
        assert cfg.data and cfg.segmenter and cfg.ignore_index == 11
        return
    rc, tc = load_config(example)
    assert tc.model and tc.data and rc.name


def test_bad_option_values_are_one_line_errors_not_tracebacks():
    import subprocess
    import sys

    for args, needle in (
        (["demo", "--dataset", "nope"], "dataset must be one of"),
        (["models", "list", "--source", "yolo"], "listable sources are"),
    ):
        r = subprocess.run(
            [sys.executable, "-c", "from visiontune.cli.main import main; main()", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr
