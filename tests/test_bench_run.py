"""visiontune.bench.bench and `visiontune bench`: real model ids, offline, files read back."""

from __future__ import annotations

import csv
import json

from PIL import Image
from typer.testing import CliRunner

from visiontune.bench import BenchOptions, bench
from visiontune.bench._resolve import RANDOM_INIT

FAST = dict(runs=3, warmup=1, batch_size=2, throughput_runs=1, input_size=32, threads=1)


def test_bench_offline_random_init_with_published_top1(tmp_path, isolated_caches):
    res = bench(
        ["timm:resnet18", "torchvision:resnet50", "timm:no_such_arch"],
        BenchOptions(**FAST),
        out_dir=tmp_path,
        progress=False,
    )
    r18, r50, bad = res.rows
    # empty caches: both measured as architectures, and the table says so
    assert r18.weights == RANDOM_INIT and r50.weights == RANDOM_INIT
    assert abs(r18.params_m - 11.689512) < 1e-6 and abs(r50.params_m - 25.557032) < 1e-6
    assert r18.input == "32x32"
    # published top-1 of ResNet50_Weights.IMAGENET1K_V2 (torchvision meta), even with random weights
    assert r50.top1 == 80.858 and r50.top1_metric == "ImageNet-1K/acc@1"
    assert abs(r50.top1_per_mparam - 80.858 / 25.557032) < 1e-9
    assert r18.top1 is None and any("no published top-1" in n for n in r18.notes)
    assert r50.gflops > r18.gflops > 0
    assert bad.error and "no_such_arch" in bad.error

    rows = list(csv.DictReader(open(res.files["csv"], newline="")))
    assert [r["model_id"] for r in rows] == ["timm:resnet18", "torchvision:resnet50", "timm:no_such_arch"]
    assert float(rows[1]["top1"]) == 80.858 and rows[0]["top1"] == ""
    md = res.files["markdown"].read_text()
    assert "| torchvision:resnet50 | random init (weights not cached) | 32x32 | 25.56 |" in md
    assert "| timm:resnet18 |" in md and "n/a" in md
    doc = json.loads(res.files["json"].read_text())
    assert doc["options"]["input_size"] == 32 and len(doc["rows"]) == 3
    with Image.open(res.files["plot"]) as im:
        assert im.format == "PNG" and im.width > 1000


def test_bench_cli_writes_table_and_files(tmp_path, isolated_caches):
    from visiontune.cli.main import app

    out = tmp_path / "b"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "timm:mobilenetv3_small_050",
            "--input-size",
            "32",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--batch-size",
            "2",
            "--throughput-runs",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
            "--no-plot",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mobilenetv3_small_050" in result.output and "random init" in result.output
    assert (out / "bench.csv").is_file() and (out / "bench.md").is_file() and not (out / "bench.png").exists()


def test_bench_cli_all_failed_exit_code(tmp_path):
    from visiontune.cli.main import app

    result = CliRunner().invoke(app, ["bench", "timm:no_such_arch", "--out", str(tmp_path), "--no-plot"])
    assert result.exit_code == 1
    assert "error" in result.output
