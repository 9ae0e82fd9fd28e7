"""The audit on real data with real ImageNet features: hymenoptera with 10 labels flipped on
purpose and an exact duplicate planted across train and val (slow: one forward pass over 398
images, shared by every test here through the embedding cache)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

N_FLIPS = 10


@pytest.fixture(scope="module")
def hym(assets, effnet_lite0_file, tmp_path_factory):
    import visiontune as vt
    from visiontune.audit.features import compute_outputs
    from visiontune.hub.preprocess import Preprocess

    root = tmp_path_factory.mktemp("hym")
    clean = assets / "hymenoptera"
    noisy = root / "noisy"
    shutil.copytree(clean, noisy)
    rng = np.random.default_rng(0)
    flipped = []
    for src, dst in (("ants", "bees"), ("bees", "ants")):
        files = sorted((noisy / "val" / src).iterdir())
        for i in rng.choice(len(files), N_FLIPS // 2, replace=False):
            target = noisy / "val" / dst / files[i].name
            shutil.move(files[i], target)
            flipped.append(str(target))
    leak_src = sorted((noisy / "train" / "bees").iterdir())[0]
    planted = noisy / "val" / "bees" / "planted_copy.jpg"
    shutil.copy(leak_src, planted)

    p = vt.load(
        "timm:tf_efficientnet_lite0", weights=str(effnet_lite0_file), num_classes=2, class_names=["ants", "bees"]
    )
    # 160 px instead of the card's 224 halves the CPU cost of the one forward pass; the features
    # stay good enough for a linear probe (the saved model keeps this preprocessing)
    p.preprocess = Preprocess(
        resize=182, crop=(160, 160), interpolation="bicubic", mean=p.preprocess.mean, std=p.preprocess.std
    )
    cache_dir = root / "cache"
    # a linear probe on the clean train split gives the model a real head (the "adapt" step)
    from visiontune.data import load_classification

    train = load_classification(str(clean)).train
    o = compute_outputs(p, train.paths, cache_dir=cache_dir, batch_size=32)
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0, max_iter=3000).fit(o.embeddings, train.labels)
    head = p.model.get_classifier()
    with torch.no_grad():
        w = torch.tensor(lr.coef_[0], dtype=torch.float32)
        b = float(lr.intercept_[0])
        head.weight.copy_(torch.stack([-w / 2, w / 2]))
        head.bias.copy_(torch.tensor([-b / 2, b / 2]))
    run = root / "run"
    p.save(run / "model")
    return {
        "p": p,
        "clean": clean,
        "noisy": noisy,
        "flipped": flipped,
        "planted": str(planted),
        "leak_src": str(leak_src),
        "cache": cache_dir,
        "run": run,
        "root": root,
    }


@pytest.fixture(scope="module")
def result(hym):
    from visiontune.audit import audit

    return audit(hym["p"], hym["noisy"], split="val", out=hym["root"] / "audit", cache_dir=hym["cache"], quiet=True)


def test_label_issues_rank_flipped_labels_first(hym, result):
    issues = result.label_issues
    assert len(issues) == 154 and issues["rank"].tolist() == list(range(1, 155))
    top20 = set(issues.head(20)["path"])
    found = top20 & set(hym["flipped"])
    assert len(found) >= 8, f"only {len(found)} of {N_FLIPS} flipped labels in the top 20"
    # the suggested label of a flipped image is the folder it came from
    sug = issues.set_index("path").loc[sorted(found), ["label", "suggested"]]
    assert (sug["label"] != sug["suggested"]).all()
    written = pd.read_csv(result.files["label_issues"])
    assert written["path"].tolist() == issues["path"].tolist()


def test_planted_duplicate_is_reported_as_a_leak(hym, result):
    d = result.duplicates
    exact = d[d["kind"] == "exact"]
    pair = exact[
        ((exact["path_a"] == hym["leak_src"]) & (exact["path_b"] == hym["planted"]))
        | ((exact["path_b"] == hym["leak_src"]) & (exact["path_a"] == hym["planted"]))
    ]
    assert len(pair) == 1 and bool(pair["leak"].iloc[0])
    assert {pair["split_a"].iloc[0], pair["split_b"].iloc[0]} == {"train", "val"}
    assert result.metrics["n_leaks"] >= 1
    assert "planted_copy.jpg" in pd.read_csv(result.files["duplicates"]).to_string()


def test_predictions_rankings_and_files(hym, result):
    t = result.predictions
    assert len(t) == 154 and set(t["split"]) == {"val"}
    # the linear probe is good; the flipped labels are most of its "mistakes"
    assert result.accuracy > 0.85
    flipped_wrong = t.set_index("path").loc[hym["flipped"], "correct"]
    assert (~flipped_wrong).sum() >= 8
    assert result.mistakes["confidence"].is_monotonic_decreasing
    assert (result.top_losses["loss"].diff().dropna() <= 0).all()
    pq = pd.read_parquet(result.files["predictions_parquet"])
    assert list(pq["topk_labels"].iloc[0]) in (["ants", "bees"], ["bees", "ants"])
    csv = pd.read_csv(result.files["predictions_csv"])
    assert {"path", "label", "pred", "confidence", "loss", "topk"} <= set(csv.columns)
    np.testing.assert_allclose(csv["loss"], t["loss"], rtol=1e-6)
    pc = pd.read_csv(result.files["per_class"]).set_index("class")
    assert pc["support"].sum() == 154
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["data_version"] == result.data_version and summary["data_version"]
    for name in ("report.html", "confusion_matrix.png", "mistakes.csv", "confused_pairs.csv"):
        assert (result.out_dir / name).stat().st_size > 0
    # the train embeddings came from the cache the probe filled; the planted copy of a train
    # image is found there by content, so only the 153 original val images ran the network
    assert result.timings["images_computed"] == 153
    html = result.report_path.read_text()
    assert html.count("data:image/jpeg;base64,") >= 20


@pytest.mark.parametrize(("threshold", "bits"), [("auto", 4), (0.6, 14)])
def test_indexed_duplicate_search_equals_the_exhaustive_one(hym, result, threshold, bits):
    """Real embeddings and hashes of train + val, plus planted copies: exact (same bytes),
    visual (hash within a few bits) and near (embedding plus a small edit). The near-linear
    search (multi-index hashing, faiss range search) returns the exhaustive table row for row;
    0.6 / 14 bits make many real near and visual pairs to compare."""
    from visiontune.audit import duplicates as dup
    from visiontune.audit._inputs import resolve_data, resolve_model
    from visiontune.audit.steps import duplicates_step, outputs_for

    ad = resolve_data(str(hym["noisy"]))
    src = resolve_model(hym["p"])
    outs = outputs_for(src, ad, ["val", "train"], hym["cache"], 32, 0, True)
    assert sum(o.n_computed for o in outs.values()) == 0  # all from the store
    real = duplicates_step(outs, ad, ["val", "train"], near_threshold=threshold, hash_distance=bits).items
    rng = np.random.default_rng(1)
    emb = [np.asarray(it.embeddings.take(np.arange(len(it.paths)))) for it in real]
    src_rows = rng.choice(len(real[1].paths), 30, replace=False)
    base = emb[1][src_rows]
    near = (
        base + 0.05 * np.linalg.norm(base, axis=1, keepdims=True) * rng.normal(size=base.shape) / base.shape[1] ** 0.5
    )
    hashes = real[1].dhash[src_rows] ^ (np.uint64(1) << rng.integers(0, 64, size=30).astype(np.uint64))
    planted = dup.Item(
        "test",
        [f"planted/{i}.jpg" for i in range(30)],
        [real[1].labels[r] for r in src_rows],
        [real[1].sha256[r] if i < 10 else f"{i:064x}" for i, r in enumerate(src_rows)],  # 10 exact copies
        np.where(np.arange(30) < 20, hashes, rng.integers(0, 2**63, size=30).astype(np.uint64)),  # 10 visual
        near.astype(np.float32),  # and 10 that only the embedding finds
    )
    items = [dup.Item(it.split, it.paths, it.labels, it.sha256, it.dhash, e) for it, e in zip(real, emb)] + [planted]
    fast = dup.find_duplicates(items, threshold=threshold, hash_distance=bits)
    slow = dup.find_duplicates(items, threshold=threshold, hash_distance=bits, method="exhaustive")
    pd.testing.assert_frame_equal(fast.drop(columns="similarity"), slow.drop(columns="similarity"))
    np.testing.assert_allclose(fast["similarity"], slow["similarity"], rtol=0, atol=1e-5)
    got = fast[(fast["split_b"] == "test") & (fast["split_a"] == "train")]
    assert set(got["kind"]) == {"exact", "visual", "near"} and len(got) >= 30
    if threshold != "auto":
        print(fast["kind"].value_counts().to_dict())
        assert (fast["kind"] == "near").sum() > 40 and (fast["kind"] == "visual").sum() > 40


def test_cli_audits_a_run_dir_and_compares_versions(hym):
    from typer.testing import CliRunner

    from visiontune.cli.main import app
    from visiontune.data import load_classification

    clean_version = load_classification(str(hym["clean"])).version
    (hym["run"] / "run.json").write_text(json.dumps({"status": "completed", "data": {"version": clean_version}}))
    res = CliRunner().invoke(
        app,
        [
            "audit",
            str(hym["run"]),
            "--data",
            str(hym["noisy"]),
            "--cache-dir",
            str(hym["cache"]),
            "--compare-with",
            str(hym["clean"]),
            "--no-label-issues",
        ],
        terminal_width=200,
    )
    assert res.exit_code == 0, res.output
    assert "confident mistakes" in " ".join(res.output.split()) and "report:" in res.output
    out = hym["run"] / "audit"
    assert (out / "report.html").is_file() and (out / "predictions.parquet").is_file()
    cmp = json.loads((out / "version_comparison.json").read_text())
    assert cmp["n_relabelled"] == N_FLIPS
    assert cmp["errors_a_fixed_by_relabel"] >= 8
    assert cmp["error_from_label_noise"] > 0.04
    assert "model errors were label errors" in " ".join(res.output.split())  # rich wraps lines
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_data_version"] == clean_version != summary["data_version"]
    assert any("trained on data version" in w for w in summary["warnings"])
    assert summary["near_threshold_setting"] == "auto" and 0.9 <= summary["near_threshold"] < 1.0
    bad = CliRunner().invoke(app, ["audit", str(hym["run"]), "--near-threshold", "1.5"])
    assert type(bad.exception).__name__ == "ConfigError"  # main() prints it as "error: ..." and exits 2
    assert "--near-threshold takes a number in (0, 1] or 'auto'" in str(bad.exception)


def _fiftyone_database_starts() -> str | None:
    """None when FiftyOne can create datasets here, else why not."""
    try:
        import fiftyone as fo

        fo.list_datasets()
    except Exception as e:  # ImportError, FiftyOneConfigError (no mongod), ServerSelectionTimeoutError ...
        return f"{type(e).__name__}: {e}".splitlines()[0][:200]
    return None


def test_fiftyone_missing_is_reported_and_the_audit_completes(hym):
    from visiontune.audit import audit

    if _fiftyone_database_starts() is None:
        pytest.skip("FiftyOne and its database work here: the export itself is tested instead")
    r = audit(
        hym["p"],
        hym["noisy"],
        out=hym["root"] / "fo",
        cache_dir=hym["cache"],
        fiftyone=True,
        label_issues=False,
        quiet=True,
    )
    assert any(w.startswith("FiftyOne export skipped") for w in r.warnings), r.warnings
    assert "FiftyOne export skipped" in r.report_path.read_text()
    assert (hym["root"] / "fo" / "predictions.csv").is_file()


def test_fiftyone_export_reads_back_through_fiftyone(hym):
    """Runs where FiftyOne's MongoDB can start (see STACK-NOTES for this machine's recipe)."""
    why = _fiftyone_database_starts()
    if why is not None:
        pytest.skip(f"FiftyOne cannot create datasets here ({why})")
    import fiftyone as fo

    from visiontune.audit import audit

    name = "visiontune-test-audit"
    r = audit(
        hym["p"],
        hym["noisy"],
        out=hym["root"] / "fo-real",
        cache_dir=hym["cache"],
        fiftyone=True,
        fiftyone_name=name,
        quiet=True,
    )
    assert json.loads(r.files["summary"].read_text())["fiftyone_dataset"] == name
    assert not any(w.startswith("FiftyOne export skipped") for w in r.warnings), r.warnings
    try:
        ds = fo.load_dataset(name)
        preds = pd.read_csv(r.files["predictions_csv"])
        assert len(ds) == len(preds) == 154  # 153 val images + the planted copy
        by_path = {s.filepath: s for s in ds}
        for row in preds.itertuples():
            s = by_path[os.path.abspath(row.path)]
            assert s.ground_truth.label == row.label and s.predictions.label == row.pred
            assert s.predictions.confidence == pytest.approx(row.confidence, abs=1e-6)
        mistakes = ds.load_saved_view("confident_mistakes")
        assert len(mistakes) == int((~preds["correct"]).sum())
        scores = mistakes.values("mistake_score")
        assert scores == sorted(scores, reverse=True)
        issues = pd.read_csv(hym["root"] / "fo-real" / "label_issues.csv")
        assert len(issues) > 0
        for row in issues.itertuples():
            assert by_path[os.path.abspath(row.path)]["label_quality"] == pytest.approx(row.label_quality, abs=1e-6)
    finally:
        fo.delete_dataset(name)
