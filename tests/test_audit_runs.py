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
    assert list((tmp_path / "features").glob("*.safetensors")), "the run cached no features"

    # data comes from the run's config.yaml; embeddings from the run's feature cache
    r = audit(res.run_dir, k_folds=2, quiet=True)
    assert r.out_dir == res.run_dir / "audit" and r.report_path.is_file()
    assert r.timings["images_computed"] == 0
    assert len(r.predictions) == 8 and set(r.duplicates["split_a"]) <= {"train", "val"}

    # the same model audited from its saved directory runs the network: same predictions
    fresh = audit(res.model_dir, str(small_csv), out=tmp_path / "fresh", k_folds=2, quiet=True)
    assert fresh.timings["images_computed"] == 20
    a = r.predictions.set_index("path")
    b = fresh.predictions.set_index("path").loc[a.index]
    np.testing.assert_allclose(a["confidence"], b["confidence"], rtol=1e-4, atol=1e-5)
    assert (a["pred"] == b["pred"]).all()
    summary = json.loads((r.out_dir / "summary.json").read_text())
    assert summary["run_data_version"] == summary["data_version"] == r.data_version
    assert summary["run_dir"] == str(res.run_dir)
