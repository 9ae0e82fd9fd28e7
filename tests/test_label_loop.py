"""The loop in one place: the audit report links each flagged label issue to its exported Label
Studio task; `runs compare` says which data version each run trained on; detection
pre-annotations come from a Detector; segmentation masks from files go to both tools."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import visiontune.label as vl
from visiontune.cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_audit_report_links_flagged_label_issues_to_exported_tasks(assets, effnet_lite0_file, tmp_path):
    import visiontune as vt
    from visiontune.audit import audit

    root = tmp_path / "hym"
    flipped = []
    for cls, other in (("ants", "bees"), ("bees", "ants")):
        files = sorted((assets / "hymenoptera" / "val" / cls).iterdir())[:14]
        (root / "val" / cls).mkdir(parents=True, exist_ok=True)
        (root / "val" / other).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            dst = root / "val" / (other if i < 2 else cls) / f.name  # two wrong labels per class
            shutil.copy(f, dst)
            if i < 2:
                flipped.append(str(dst))
    import torch
    from sklearn.linear_model import LogisticRegression

    from visiontune.audit.features import compute_outputs
    from visiontune.hub.preprocess import Preprocess

    p = vt.load("timm:tf_efficientnet_lite0", weights=str(effnet_lite0_file), class_names=["ants", "bees"])
    p.preprocess = Preprocess(
        resize=146, crop=(128, 128), interpolation="bicubic", mean=p.preprocess.mean, std=p.preprocess.std
    )
    train = [f for c in ("ants", "bees") for f in sorted((assets / "hymenoptera" / "train" / c).iterdir())[:10]]
    o = compute_outputs(p, [str(f) for f in train], batch_size=20)
    lr = LogisticRegression(max_iter=3000).fit(o.embeddings, [0] * 10 + [1] * 10)  # a real head: the adapt step
    with torch.no_grad():
        w, b = torch.tensor(lr.coef_[0], dtype=torch.float32), float(lr.intercept_[0])
        p.model.get_classifier().weight.copy_(torch.stack([-w / 2, w / 2]))
        p.model.get_classifier().bias.copy_(torch.tensor([-b / 2, b / 2]))
    r = audit(p, str(root / "val"), split="val", out=tmp_path / "audit", k_folds=2, quiet=True)
    flagged = r.label_issues[r.label_issues["is_issue"]]
    assert len(flagged) >= 1
    tasks = json.loads((tmp_path / "audit" / "label" / "tasks.json").read_text())
    assert len(tasks) == len(flagged)
    html = (tmp_path / "audit" / "report.html").read_text()
    links = re.findall(r'<a href="label/tasks.json#task-(\d+)">task (\d+)</a>', html)
    assert len(links) == min(len(flagged), 50) and all(a == b for a, b in links)
    for k, row in enumerate(flagged.itertuples()):
        assert row.task == f"label/tasks.json#task-{k}"
        assert tasks[k]["data"]["vt_label"] == row.label  # the current label is shown to the annotator
    assert (tmp_path / "audit" / "label" / "config.xml").is_file()


def test_runs_compare_shows_each_runs_data_version(tmp_path):
    from visiontune.track.selfcheck import run_selfcheck

    run_selfcheck({"epochs": 1, "seed": 0}, root=tmp_path, name="on-v1")
    run_selfcheck({"epochs": 1, "seed": 1}, root=tmp_path, name="on-v2")
    runner = CliRunner()
    r = runner.invoke(app, ["runs", "compare", "on-v1", "on-v2", "--root", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    versions = [json.loads((tmp_path / n / "run.json").read_text())["data"]["version"] for n in ("on-v1", "on-v2")]
    assert f"trained on data version: on-v1 {versions[0]}, on-v2 {versions[1]}" in " ".join(r.output.split())
    j = runner.invoke(app, ["runs", "compare", "on-v1", "on-v2", "--root", str(tmp_path), "--json"])
    assert json.loads(j.output)["data_versions"] == {"on-v1": versions[0], "on-v2": versions[1]}


def test_detector_pre_annotations_and_cli_export_import(assets, tmp_path):
    from visiontune.detect import Detector

    data = tmp_path / "coco8"
    for split in ("train",):
        shutil.copytree(assets / "coco8" / "images" / split, data / "images" / split)
        shutil.copytree(assets / "coco8" / "labels" / split, data / "labels" / split)
    names = [f"class{i}" for i in range(80)]
    (data / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/train\nnames: {names}\n")

    def fn(images):
        return [np.array([[2, 3, im.width / 2, im.height / 2, 0.6, 5], [1, 1, 9, 9, 0.9, 79]]) for im in images]

    det = Detector.from_callable(fn, names, model_id="toy")
    ex = vl.export_cvat(data / "data.yaml", tmp_path / "cvat", model=det, preannotate="model", progress=False)
    xml = (ex.dir / "annotations.xml").read_text()
    assert (
        xml.count('source="auto"') == 8
        and 'label="class79"' in xml
        and '<attribute name="score">0.9000</attribute>' in xml
    )
    ls_ex = vl.export_label_studio(data / "data.yaml", tmp_path / "ls", model=det, progress=False)
    task = json.loads((ls_ex.dir / "tasks.json").read_text())[0]
    pred = next(p for p in task["predictions"] if p["model_version"] == "toy")
    assert sorted(r["value"]["rectanglelabels"][0] for r in pred["result"]) == ["class5", "class79"]
    assert pred["result"][0]["original_width"] > 0 and pred["score"] == pytest.approx(0.75)

    # CLI: re-import the CVAT XML after an annotator deleted the model's class79 boxes
    (ex.dir / "annotations.xml").write_text(
        re.sub(r'<box label="class79"[^>]*>\s*<attribute[^<]*</attribute>\s*</box>', "", xml)
    )
    runner = CliRunner()
    r = runner.invoke(app, ["label", "import", str(ex.dir / "annotations.xml"), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["base"] == ex.meta.base_version and out["version"] != out["base"]
    # the labels were replaced by the reviewed model boxes: every image changed
    assert out["metrics"]["reviewed"] == 4 and out["metrics"]["added"] >= 4


def test_camvid_masks_to_label_studio_brush_and_cvat_masks(assets, tmp_path):
    camvid = assets / "camvid"
    classes = (camvid / "classes.txt").read_text().split()
    ls = vl.from_masks(camvid / "val" / "images", camvid / "val" / "masks", classes, ignore_index=11, limit=2)
    assert ls.task == "segmentation" and all(s.kind == "mask" for s in ls.items[0].labels)
    ex = vl.export_label_studio(ls, tmp_path / "ls", progress=False)
    task = json.loads((ex.dir / "tasks.json").read_text())[0]
    brush = [r for p in task["predictions"] for r in p["result"] if r["type"] == "brushlabels"]
    assert {r["value"]["brushlabels"][0] for r in brush} == {s.label for s in ls.items[0].labels}
    from visiontune.label.masks import brush_to_mask

    first = ls.items[0].labels[0]
    assert (brush_to_mask(brush[0]["value"]["rle"], 360, 480) == first.mask).all()
    cv = vl.export_cvat(ls, tmp_path / "cvat", preannotate="labels")
    res = vl.import_cvat(cv.dir / "annotations.xml")
    assert not res.changed, str(res.diff)  # every mask survives CVAT's RLE exactly
