"""visiontune.audit building blocks on arrays and on a tiny real model (fast)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from visiontune.audit import duplicates as dup
from visiontune.audit import rankings as rk
from visiontune.audit.features import compute_outputs, dhash, model_key
from visiontune.audit.label_issues import out_of_sample_probs, rank_label_issues
from visiontune.audit.report import Column, ReportData, Table, render_report
from visiontune.audit.store import FeatureStore


def test_predictions_table_and_rankings():
    classes = ["cat", "dog", "fox"]
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # cat, right
            [0.1, 0.8, 0.1],  # labelled cat, predicted dog (confident mistake)
            [0.3, 0.2, 0.5],  # labelled dog, predicted fox
            [0.2, 0.7, 0.1],  # dog, right
            [0.6, 0.3, 0.1],  # labelled fox, predicted cat
        ]
    )
    labels = np.array([0, 0, 1, 1, 2])
    t = rk.predictions_table([f"{i}.jpg" for i in range(5)], labels, probs, classes, topk=2, split="val")
    assert list(t["pred"]) == ["cat", "dog", "fox", "dog", "cat"]
    assert t["correct"].tolist() == [True, False, False, True, False]
    np.testing.assert_allclose(t["loss"], -np.log([0.9, 0.1, 0.2, 0.7, 0.1]))
    assert t.loc[1, "topk_labels"] == ["dog", "cat"] and t.loc[1, "topk_probs"] == pytest.approx([0.8, 0.1])
    assert rk.topk_string(t.loc[1, "topk_labels"], t.loc[1, "topk_probs"]) == "dog:0.8000|cat:0.1000"

    m = rk.confident_mistakes(t)
    assert list(m["path"]) == ["1.jpg", "4.jpg", "2.jpg"]  # confidence 0.8, 0.6, 0.5
    assert list(rk.top_losses(t, 2)["path"]) == ["1.jpg", "4.jpg"]  # loss -log .1 twice; stable order

    cm = rk.confusion(labels, t["pred_idx"], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 0]]
    pairs = rk.confused_pairs(cm, classes)
    assert len(pairs) == 3 and set(pairs["count"]) == {1}
    row = pairs[(pairs["label"] == "cat") & (pairs["pred"] == "dog")].iloc[0]
    assert row["fraction_of_label"] == 0.5 and row["pair_total"] == 1
    pc = rk.per_class_metrics(cm, classes).set_index("class")
    assert pc.loc["cat", "precision"] == pytest.approx(0.5) and pc.loc["cat", "recall"] == pytest.approx(0.5)
    assert pc.loc["fox", "recall"] == 0 and pc.loc["fox", "precision"] == 0 and pc.loc["fox", "support"] == 1


def test_confusion_matrix_png(tmp_path):
    cm = np.array([[5, 1], [2, 7]])
    p = rk.plot_confusion_matrix(cm, ["ants", "bees"], tmp_path / "cm.png")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.width > 200
        assert len(set(im.convert("L").getdata())) > 10  # not blank
    assert not list(tmp_path.glob(".*tmp"))


def test_label_issues_find_flipped_labels_on_separable_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 32)) * 4
    labels = np.repeat(np.arange(3), 60)
    x = centers[labels] + rng.normal(size=(180, 32))
    noisy = labels.copy()
    flipped = rng.choice(180, 9, replace=False)
    noisy[flipped] = (noisy[flipped] + 1) % 3
    probs, folds = out_of_sample_probs(x, noisy, 3, k_folds=5)
    assert folds == 5 and probs.shape == (180, 3)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    df = rank_label_issues(noisy, probs, ["a", "b", "c"], [f"{i}" for i in range(180)])
    top = set(df.head(12)["path"].astype(int))
    assert len(top & set(flipped)) >= 8
    flagged = set(df[df["is_issue"]]["path"].astype(int))
    assert set(flipped) <= flagged | top
    # the suggested label of a flipped image is its true class
    sug = df.set_index("path").loc[[str(i) for i in flipped], "suggested"]
    assert (sug.to_numpy() == np.array(["a", "b", "c"])[labels[flipped]]).mean() >= 0.8


def test_label_issues_folds_follow_smallest_class():
    x = np.random.default_rng(1).normal(size=(20, 4))
    y = np.array([0] * 17 + [1] * 3)
    _, folds = out_of_sample_probs(x, y, 2, k_folds=5)
    assert folds == 3


def _jpeg(path: Path, seed: int, size=(120, 90)) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    Image.fromarray(base).resize(size, Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def test_dhash_survives_resize_and_recompression(tmp_path):
    a = _jpeg(tmp_path / "a.jpg", 0)
    with Image.open(a) as im:
        im.resize((64, 48)).save(tmp_path / "a_small.jpg", quality=60)
    _jpeg(tmp_path / "b.jpg", 1)
    ha, hs, hb = (dhash(Image.open(tmp_path / n)) for n in ("a.jpg", "a_small.jpg", "b.jpg"))
    assert bin(ha ^ hs).count("1") <= 4
    assert bin(ha ^ hb).count("1") > 12


def test_find_duplicates_exact_visual_near_and_leaks():
    e = np.eye(6, 8, dtype=np.float32)
    h = np.random.default_rng(5).integers(0, 2**63, size=6, dtype=np.uint64)  # ~32 bits apart
    h[4] = h[1] ^ np.uint64(0b101)  # v1 is a visual copy of t1 (2 bits differ)
    train = dup.Item("train", ["t0", "t1", "t2"], ["ants", "bees", "ants"], ["h0", "h1", "h2"], h[:3], e[:3])
    near_t1 = e[1] + 0.01 * e[5]
    val = dup.Item(
        "val",
        ["v0", "v1", "v2"],
        ["bees", "bees", "bees"],
        ["h0", "hv1", "hv2"],
        h[3:],
        np.stack([e[3], near_t1, e[4]]),
    )
    df = dup.find_duplicates([train, val], threshold=0.95, hash_distance=4)
    got = {(r.kind, r.path_a, r.path_b): r for r in df.itertuples()}
    exact = got[("exact", "t0", "v0")]
    assert exact.leak and exact.label_conflict and exact.similarity == 1.0
    # t1/v1 is caught by the perceptual hash (stronger than embeddings) and reported once
    assert ("visual", "t1", "v1") in got and not any(k[1:] == ("t1", "v1") for k in got if k[0] == "near")
    assert len(df) == 2
    assert list(df.columns) == dup.COLUMNS
    # with the hash off the same pair is found by embedding similarity
    df2 = dup.find_duplicates([train, val], threshold=0.95, visual=False)
    assert set(zip(df2["kind"], df2["path_a"], df2["path_b"])) == {("exact", "t0", "v0"), ("near", "t1", "v1")}


def test_auto_near_threshold_adapts_to_how_close_images_usually_are():
    rng = np.random.default_rng(0)
    # "digits": 300 images that all sit within cosine ~0.98 of a few class prototypes
    protos = rng.normal(size=(10, 64))
    tight = np.repeat(protos, 30, axis=0) + 0.15 * rng.normal(size=(300, 64))
    # "photos": 300 unrelated images, plus one planted near copy (a light edit) of image 7
    loose = rng.normal(size=(300, 64))
    loose = np.vstack([loose, loose[7] + 0.02 * rng.normal(size=64)])

    def item(x):
        return dup.Item(
            "train",
            [f"i{k}" for k in range(len(x))],
            ["c"] * len(x),  # noqa: E731
            [f"h{k}" for k in range(len(x))],
            np.zeros(len(x), np.uint64),
            x,
        )

    t_tight, t_loose = dup.auto_threshold([tight]), dup.auto_threshold([loose])
    assert t_tight > 0.99 and dup.AUTO_FLOOR <= t_loose < 0.95
    # a fixed 0.97 calls hundreds of distinct "digits" duplicates; auto calls none of them
    assert len(dup.find_duplicates([item(tight)], threshold=0.97, visual=False)) > 100
    assert len(dup.find_duplicates([item(tight)], visual=False)) == 0
    # ... and still finds the planted copy among the photos, and only it
    found = dup.find_duplicates([item(loose)], visual=False)
    assert list(zip(found["kind"], found["path_a"], found["path_b"])) == [("near", "i7", "i300")]


def test_similar_pairs_blocks_agree_with_brute_force():
    x = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    x[30] = x[3] * 2 + 0.01
    x[41] = x[7]
    pairs = {(i, j) for i, j, _ in dup.similar_pairs(x, None, 0.99, block=7)}
    n = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = n @ n.T
    brute = {(i, j) for i in range(50) for j in range(i + 1, 50) if s[i, j] >= 0.99}
    assert pairs == brute and {(3, 30), (7, 41)} <= pairs


def test_report_escapes_everything_and_has_strict_csp(tmp_path):
    evil = "<script>alert(1)</script>"
    img = _jpeg(tmp_path / "x.jpg", 3)
    df = pd.DataFrame({"path": [str(img)], "label": [evil], "pred": ["ok"], "confidence": [0.9]})
    html = render_report(
        ReportData(
            title=f"audit {evil}",
            meta={"data": evil},
            cards=[("images", "1")],
            classes=[evil, "ok"],
            tables=[
                Table(
                    "mistakes",
                    "Mistakes",
                    df,
                    [
                        Column("image", "path", "img"),
                        Column("label", "label"),
                        Column("pred", "pred"),
                        Column("conf", "confidence", "pct"),
                    ],
                    class_keys=("label", "pred"),
                )
            ],
        )
    )
    assert evil not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
    assert html.count("<script>") == 1
    import html as html_mod
    import re

    csp = html_mod.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1))
    assert "default-src 'none'" in csp and "img-src data:" in csp and "'unsafe-inline'" not in csp
    assert "data:image/jpeg;base64," in html
    assert "http://" not in html and "https://" not in html


def test_feature_store_roundtrip_lookup_and_damage(tmp_path):
    shas = [f"{i:064x}" for i in range(5)]
    s = FeatureStore.open("k", root=tmp_path, dim=3)
    rows = s.append(shas[:3], np.arange(9, dtype=np.float32).reshape(3, 3), np.array([7, 8, 9], np.uint64))
    assert rows.tolist() == [0, 1, 2] and s.rows == 3
    # the same content again is not written twice; new content is appended
    rows = s.append([shas[1], shas[3], shas[3]], np.ones((3, 3), np.float32), np.zeros(3, np.uint64))
    assert rows.tolist() == [1, 3, 3] and s.rows == 4
    again = FeatureStore.open("k", root=tmp_path)
    assert again.lookup([shas[3], shas[4], shas[0]]).tolist() == [3, -1, 0]
    np.testing.assert_array_equal(again.read([2, 0]), [[6, 7, 8], [0, 1, 2]])
    assert again.dhash([0, 2]).tolist() == [7, 9]
    assert [len(c) for _, c in again.iter_chunks(chunk=3)] == [3, 1]
    # an uncommitted tail (a writer killed mid-chunk) is ignored and overwritten
    with open(tmp_path / "features" / "k" / "emb.f32", "ab") as f:
        f.write(b"\x00" * 7)
    assert FeatureStore.open("k", root=tmp_path).rows == 4
    # damage: a store whose files are shorter than store.json says is started over, never trusted
    (tmp_path / "features" / "k" / "emb.f32").write_bytes(b"short")
    assert FeatureStore.open("k", root=tmp_path) is None
    assert FeatureStore.open("k", root=tmp_path, dim=3).rows == 0


@pytest.fixture(scope="module")
def tiny():
    import visiontune as vt

    torch.manual_seed(0)
    return vt.load("timm:mobilenetv3_small_050", pretrained=False, num_classes=3, class_names=["a", "b", "c"])


def test_compute_outputs_matches_model_and_cache_skips_network(tiny, tmp_path):
    paths = [str(_jpeg(tmp_path / f"{i}.jpg", i)) for i in range(5)]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    paths.insert(2, str(tmp_path / "broken.jpg"))
    o = compute_outputs(tiny, paths, cache_dir=tmp_path / "cache", batch_size=4)
    assert o.n_computed == 6 and o.ok.tolist() == [True, True, False, True, True, True]
    assert o.skipped[0][0].endswith("broken.jpg") and np.isnan(o.logits[2]).all()
    x = torch.stack([tiny.preprocess(Image.open(p).convert("RGB")) for p in paths if "broken" not in p])
    with torch.inference_mode():
        ref = tiny.model.eval()(x).numpy()
    np.testing.assert_allclose(o.logits[o.ok], ref, rtol=1e-4, atol=1e-4)
    assert o.embeddings.shape[0] == 6 and o.embeddings.shape[1] == tiny.model.get_classifier().in_features

    # a renamed copy of an image hits the cache by content
    shutil.copy(paths[0], tmp_path / "renamed.jpg")
    o2 = compute_outputs(tiny, [paths[0], str(tmp_path / "renamed.jpg")], cache_dir=tmp_path / "cache")
    assert o2.n_computed == 0
    np.testing.assert_allclose(o2.logits, ref[[0, 0]], rtol=1e-4, atol=1e-4)
    assert o2.dhash[0] == o.dhash[0] == o2.dhash[1]


def test_model_key_follows_backbone_not_head(tiny):
    k = model_key(tiny)
    head = tiny.model.get_classifier()
    first = next(p for n, p in tiny.model.named_parameters() if not n.startswith("classifier"))
    with torch.no_grad():
        head.bias.add_(1.0)
        assert model_key(tiny) == k  # a new head reuses the cached embeddings
        first.add_(1.0)
    try:
        assert model_key(tiny) != k
    finally:
        with torch.no_grad():
            head.bias.sub_(1.0)
            first.sub_(1.0)


def test_class_order_is_matched_by_name_and_mismatches_are_clear_errors():
    from visiontune.audit._inputs import class_index_map
    from visiontune.errors import ConfigError

    perm = class_index_map(["bees", "ants"], 2, ["ants", "bees"])
    logits = np.array([[0.1, 0.9]])  # model order: bees, ants
    assert logits[:, perm].tolist() == [[0.9, 0.1]]
    with pytest.raises(ConfigError, match="'wasps'"):
        class_index_map(["ants", "bees"], 2, ["ants", "wasps"])
    with pytest.raises(ConfigError, match="1000 outputs"):
        class_index_map(None, 1000, ["ants", "bees"])


def test_audit_refuses_a_folder_that_is_no_model(tmp_path):
    from visiontune.audit import audit
    from visiontune.errors import ConfigError

    with pytest.raises(ConfigError, match="neither a run directory"):
        audit(tmp_path, "unused", quiet=True)


def test_top_level_audit_takes_progress(tmp_path):
    """``vt.audit(..., progress=False)`` reaches the audit (it passed ``progress`` through as an
    unknown keyword: a TypeError on every call)."""
    import visiontune as vt
    from visiontune.errors import ConfigError

    with pytest.raises(ConfigError, match="neither a run directory"):
        vt.audit(tmp_path, "unused", progress=False)


def test_tiny_images_are_not_perceptual_duplicates():
    """8x8 scans of the same digit are different images: only identical pixels may match."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from visiontune.audit.features import dhash

    d = load_digits()
    zeros = [Image.fromarray((img / 16 * 255).astype(np.uint8)) for img, y in zip(d.images, d.target) if y == 0][:20]
    hashes = [dhash(z) for z in zeros]
    distances = [bin(a ^ b).count("1") for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) > 4
    assert dhash(zeros[0]) == dhash(zeros[0].copy())
    big = zeros[0].resize((64, 64))
    assert bin(dhash(big) ^ dhash(big.resize((60, 60)))).count("1") <= 4  # real perceptual hash above the size
