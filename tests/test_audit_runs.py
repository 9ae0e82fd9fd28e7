"""Auditing a real run of `visiontune.adapt.train`: the run's model, data and feature cache."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def small_csv(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    rows = ["path,label,split"]
    for cls in ("ants", "bees"):
        files = sorted((assets / "hymenoptera" / "val" / cls).iterdir())[:10]
        rows += [f"{f},{cls},{'train' if i < 6 else 'val'}" for i, f in enumerate(files)]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


def test_audit_of_a_linear_run_reuses_its_disk_feature_cache(small_csv, tmp_path):
    from visiontune.adapt import TrainConfig, train
    from visiontune.audit import audit

    res = train(
        TrainConfig(
            model="timm:mobilenetv3_small_050",
            pretrained=False,
            data=str(small_csv),
            strategy="linear",
            epochs=1,
            batch_size=8,
            image_size=64,
            feature_cache="disk",
            cache_dir=str(tmp_path / "features"),
            precision="32",
            accelerator="cpu",
        ),
        run_root=tmp_path / "runs",
        progress=False,
    )
    assert list((tmp_path / "features" / "features").glob("*/store.json")), "the run cached no features"

    # data comes from the run's config.yaml; embeddings from the run's feature cache
    r = audit(res.run_dir, k_folds=2, quiet=True)
    assert r.out_dir == res.run_dir / "audit" and r.report_path.is_file()
    assert r.timings["images_computed"] == 0
    assert len(r.predictions) == 8 and set(r.duplicates["split_a"]) <= {"train", "val"}

    # the same model audited from its saved directory runs the network: same predictions
    # (an empty store of its own: the shared default store may hold this backbone's rows already)
    fresh = audit(
        res.model_dir, str(small_csv), out=tmp_path / "fresh", k_folds=2, quiet=True, cache_dir=tmp_path / "empty"
    )
    assert fresh.timings["images_computed"] == 20
    a = r.predictions.set_index("path")
    b = fresh.predictions.set_index("path").loc[a.index]
    np.testing.assert_allclose(a["confidence"], b["confidence"], rtol=1e-4, atol=1e-5)
    assert (a["pred"] == b["pred"]).all()
    summary = json.loads((r.out_dir / "summary.json").read_text())
    assert summary["run_data_version"] == summary["data_version"] == r.data_version
    assert summary["run_dir"] == str(res.run_dir)
    # the cost of every step: in the result, summary.json, the report and the console summary
    steps = ["features", "predictions", "rankings", "label_issues", "duplicates", "outliers_map", "index", "report"]
    assert list(summary["cost"]) == steps == list(r.cost)
    assert all(c["seconds"] >= 0 and c["peak_rss_mb"] > 0 for c in r.cost.values())
    import io

    from rich.console import Console

    from visiontune.audit import print_summary

    buf = io.StringIO()
    print_summary(r, console=Console(file=buf, width=200))
    assert "cost per step" in buf.getvalue() and "duplicates" in buf.getvalue()
    html = r.report_path.read_text()
    assert 'id="sec-map"' in html and 'id="sec-outliers"' in html and 'id="sec-cost"' in html
    assert summary["map_method"] in ("umap", "pca") and r.outliers["outlier_score"].notna().all()


def test_second_linear_run_with_another_lr_skips_feature_extraction(small_csv, tmp_path, monkeypatch, capsys):
    """The disk store is the default and is keyed by backbone + file content, not by the run:
    a second run (another learning rate, a fresh process's empty memory cache) reads every
    feature from it, and so does the audit of either run."""
    from visiontune.adapt import TrainConfig, train
    from visiontune.adapt.features import clear_memory_cache
    from visiontune.audit import audit

    monkeypatch.setenv("VISIONTUNE_CACHE", str(tmp_path / "vt-cache"))
    cfg = TrainConfig(
        model="timm:mobilenetv3_small_050",
        pretrained=False,
        data=str(small_csv),
        strategy="linear",
        epochs=2,
        batch_size=8,
        image_size=64,
        precision="32",
        accelerator="cpu",
    )
    assert cfg.feature_cache == "disk"
    clear_memory_cache()
    first = train(cfg.model_copy(update={"name": "lr1", "lr": 1e-3}), run_root=tmp_path / "runs", progress=False)
    clear_memory_cache()
    second = train(cfg.model_copy(update={"name": "lr2", "lr": 3e-2}), run_root=tmp_path / "runs", progress=False)
    t1, t2 = first.timings, second.timings
    print(
        f"features train/val: first run {t1['features_train_s']:.2f}/{t1['features_val_s']:.2f} s, "
        f"second run {t2['features_train_s']:.2f}/{t2['features_val_s']:.2f} s"
    )
    assert t1["features_train_s"] > 0 and t1["features_val_s"] > 0
    assert t2["features_train_s"] == 0.0 and t2["features_val_s"] == 0.0
    stores = list((tmp_path / "vt-cache" / "features").glob("*/store.json"))
    assert len(stores) == 1 and json.loads(stores[0].read_text())["rows"] == 20
    r = audit(second.run_dir, k_folds=2, quiet=True)
    assert r.timings["images_computed"] == 0


def test_similar_images_from_the_saved_index_and_the_cache_cli(small_csv, tmp_path, monkeypatch):
    import torch
    from PIL import Image
    from typer.testing import CliRunner

    import visiontune as vt
    from visiontune.audit import SimilarIndex, audit
    from visiontune.cli.main import app
    from visiontune.errors import ConfigError

    monkeypatch.setenv("VISIONTUNE_CACHE", str(tmp_path / "vt-cache"))
    torch.manual_seed(0)
    p = vt.load("timm:mobilenetv3_small_050", pretrained=False, num_classes=2, class_names=["ants", "bees"])
    r = audit(p, str(small_csv), out=tmp_path / "audit", k_folds=2, quiet=True)
    assert (tmp_path / "audit" / "index" / "index.json").is_file()
    rows = [line.split(",") for line in small_csv.read_text().splitlines()[1:]]
    query = rows[0][0]
    near = r.similar(query, k=3)
    assert list(near.columns) == ["rank", "split", "path", "label", "similarity"] and len(near) == 3
    assert query not in set(near["path"]) and near["similarity"].is_monotonic_decreasing
    # an image the audit never saw goes through the model once; its original comes first
    with Image.open(query) as im:
        im.convert("RGB").resize((im.width - 9, im.height - 7)).save(tmp_path / "edited.jpg", quality=85)
    edited = r.similar(tmp_path / "edited.jpg", k=5)
    assert edited["path"].iloc[0] == query and edited["similarity"].iloc[0] > 0.9
    assert SimilarIndex.load(tmp_path / "audit").similar(query, 3)["path"].tolist() == near["path"].tolist()

    cli = CliRunner()
    res = cli.invoke(app, ["similar", query, "--run", str(tmp_path / "audit"), "-k", "2"], terminal_width=250)
    assert res.exit_code == 0, res.output
    lines = [line.split("\t") for line in res.output.strip().splitlines()]
    assert lines[0] == ["rank", "similarity", "split", "label", "path"] and len(lines) == 3
    assert [row[4] for row in lines[1:]] == near["path"].head(2).tolist()

    info = cli.invoke(app, ["cache", "info"], terminal_width=200)
    assert info.exit_code == 0 and " 21 " in info.output and "1 store," in info.output, info.output  # + edited.jpg
    cleared = cli.invoke(app, ["cache", "clear", "--yes"])
    assert cleared.exit_code == 0 and "freed" in cleared.output
    assert "no feature stores" in cli.invoke(app, ["cache", "info"]).output
    with pytest.raises(ConfigError, match="gone"):
        SimilarIndex.load(tmp_path / "audit").similar(query, 3)


def test_audit_without_a_terminal_prints_progress_lines_and_runs_show_names_best_and_last(small_csv, tmp_path):
    """`visiontune audit` through a pipe prints plain progress lines at most ~10 s apart; `runs
    show` labels best.ckpt as best and last.ckpt as last."""
    import os
    import subprocess
    import sys
    import time

    from typer.testing import CliRunner

    from visiontune.adapt import TrainConfig, train
    from visiontune.cli.main import app

    res = train(
        TrainConfig(
            model="timm:mobilenetv3_small_050",
            pretrained=False,
            data=str(small_csv),
            strategy="partial",
            epochs=2,
            batch_size=8,
            image_size=64,
            precision="32",
            accelerator="cpu",
        ),
        run_root=tmp_path / "runs",
        progress=False,
    )
    shown = CliRunner().invoke(app, ["runs", "show", res.run_dir.name, "--root", str(tmp_path / "runs")])
    assert shown.exit_code == 0, shown.output
    ckpts = [line.split() for line in shown.output.splitlines() if line.startswith("checkpoint ")]
    assert sorted((kind, path) for _, kind, path, *_ in ckpts) == [
        ("best:", "checkpoints/best.ckpt"),
        ("last:", "checkpoints/last.ckpt"),
    ], shown.output

    env = {**os.environ, "VISIONTUNE_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "visiontune", "audit", str(res.run_dir), "--split", "val", "--k-folds", "2"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    stamps, lines = [], []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("[visiontune]"):
            stamps.append((time.time() - t0, line.strip()))
    assert proc.wait(timeout=600) == 0, "".join(lines[-30:])
    assert len(stamps) >= 2, "".join(lines[-30:])
    gaps = [b - a for (a, _), (b, _) in zip(stamps, stamps[1:])]
    assert all(g < 12.0 for g in gaps), (gaps, stamps)
