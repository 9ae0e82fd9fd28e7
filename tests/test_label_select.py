"""Which images to label next: the strategies on arrays, and `select` / `visiontune select` with
a real (tiny, untrained) model on real images, near duplicates of labelled images excluded."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from visiontune.errors import ConfigError
from visiontune.label.select import entropy, kcenter_greedy, margin_uncertainty, rank

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_uncertainty_scores_order_ambiguous_images_first():
    probs = np.array([[0.98, 0.01, 0.01], [0.55, 0.44, 0.01], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1]])
    assert np.argsort(-margin_uncertainty(probs)).tolist()[:2] == [2, 1]
    assert np.argmax(entropy(probs)) == 2
    chosen, _, _ = rank("margin", 2, probs=probs)
    assert chosen == [2, 1]
    chosen, _, _ = rank("entropy", 1, probs=probs)
    assert chosen == [2]


def test_kcenter_covers_clusters_and_skips_what_is_labelled():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16) * 10
    emb = np.concatenate([c + rng.normal(0, 0.1, (25, 16)) for c in centres])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cluster = np.repeat(np.arange(4), 25)
    chosen = kcenter_greedy(emb, 4, labelled=None, seed=0)
    assert sorted(cluster[chosen]) == [0, 1, 2, 3]  # one per cluster
    chosen = kcenter_greedy(emb, 2, labelled=np.r_[emb[:2], emb[25:27]])
    assert set(cluster[chosen]) == {2, 3}  # the labelled clusters are already covered


def test_near_duplicates_of_labelled_images_and_within_the_batch_are_excluded():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(20, 8))
    labelled = emb[:3] + 1e-4  # pool rows 0-2 are (near) copies of labelled images
    emb[10] = emb[11] * 1.0001  # two pool rows that are copies of each other
    probs = np.full((20, 2), 0.5)
    for strategy in ("margin", "kcenter", "hybrid", "random"):
        chosen, _, excluded = rank(strategy, 17, probs=probs, embeddings=emb, labelled=labelled, seed=3)
        assert excluded == 3 and not {0, 1, 2} & set(chosen), strategy
        assert not {10, 11} <= set(chosen), strategy  # at most one of the duplicate pair
    a, _, _ = rank("random", 5, probs=probs, embeddings=emb, seed=7)
    b, _, _ = rank("random", 5, probs=probs, embeddings=emb, seed=7)
    assert a == b
    with pytest.raises(ConfigError, match="unknown selection strategy"):
        rank("coreset", 3, probs=probs)
    with pytest.raises(ConfigError, match="needs embeddings"):
        rank("kcenter", 3, probs=probs)


def test_hybrid_picks_uncertain_and_diverse():
    rng = np.random.default_rng(2)
    emb = np.concatenate(
        [np.eye(2, 8)[0] + rng.normal(0, 0.01, (10, 8)), np.eye(2, 8)[1] + rng.normal(0, 0.01, (10, 8))]
    )
    unc = np.r_[np.linspace(0.9, 0.8, 10), np.linspace(0.7, 0.6, 10)]  # cluster 0 is the more uncertain
    probs = np.stack([0.5 + (1 - unc) / 2, 0.5 - (1 - unc) / 2], 1)
    margin, _, _ = rank("margin", 2, probs=probs, embeddings=emb, near_duplicate=1.01)
    hybrid, _, _ = rank("hybrid", 2, probs=probs, embeddings=emb, hybrid_factor=10, near_duplicate=1.01)
    assert all(i < 10 for i in margin)  # uncertainty alone takes two near-identical images
    assert {i // 10 for i in hybrid} == {0, 1}  # the hybrid spreads them


def test_select_with_a_real_model_writes_the_batch_and_skips_copies(assets, tmp_path):
    import visiontune as vt
    from visiontune.cli.main import app
    from visiontune.label.select import select

    labelled = tmp_path / "labelled"
    for c in ("ants", "bees"):
        (labelled / c).mkdir(parents=True)
        for f in sorted((assets / "hymenoptera" / "train" / c).iterdir())[:3]:
            shutil.copy(f, labelled / c / f.name)
    pool = tmp_path / "pool"
    pool.mkdir()
    for c in ("ants", "bees"):
        for f in sorted((assets / "hymenoptera" / "val" / c).iterdir())[:5]:
            shutil.copy(f, pool / f.name)
    dup = next((labelled / "ants").iterdir())
    shutil.copy(dup, pool / "copy-of-labelled.jpg")
    (pool / "broken.jpg").write_bytes(b"not a jpeg")

    import torch

    torch.manual_seed(0)
    model = vt.load("timm:mobilenetv3_small_050", pretrained=False, class_names=["ants", "bees"])
    # an untrained network maps many photos close together: only exact copies count as duplicates here
    res = select(
        model,
        pool,
        4,
        strategy="hybrid",
        labelled=labelled,
        near_duplicate=0.9999,
        out=tmp_path / "batch",
        progress=False,
    )
    assert len(res.paths) == 4 and res.pool_size == 12
    assert "copy-of-labelled.jpg" not in res.paths and res.excluded_duplicates >= 1
    assert "broken.jpg" not in res.paths and res.skipped == [str(pool / "broken.jpg")]
    tasks = json.loads((tmp_path / "batch" / "tasks.json").read_text())
    assert [t["data"]["vt_path"] for t in tasks] == [str((pool / p).resolve()) for p in res.paths]
    assert all(t["predictions"][0]["result"][0]["value"]["choices"][0] in ("ants", "bees") for t in tasks)
    assert (tmp_path / "batch" / "selection.csv").read_text().count("\n") == 5

    # the annotator labels two of the batch in Label Studio: they join the labelled dataset's version
    import visiontune.label as vl

    export = [
        {
            "id": k,
            "data": t["data"],
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["bees"]}}], "was_cancelled": False}],
        }
        for k, t in enumerate(tasks[:2])
    ]
    (tmp_path / "batch" / "export.json").write_text(json.dumps(export))
    imp = vl.import_label_studio(tmp_path / "batch" / "export.json")
    assert sorted((e.path, e.label) for e in imp.diff.added) == sorted((str(pool / p), "bees") for p in res.paths[:2])
    assert imp.base == vl.from_classification(labelled).base_version and not imp.diff.relabelled

    model.save(tmp_path / "saved")
    r = CliRunner().invoke(
        app,
        [
            "select",
            str(tmp_path / "saved"),
            str(pool),
            "-n",
            "3",
            "--strategy",
            "margin",
            "--near-duplicate",
            "0.9999",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{") :])
    assert out["strategy"] == "margin" and len(out["selected"]) == 3
