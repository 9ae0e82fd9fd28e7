"""Malformed exports — missing image, unknown label, broken JSON / XML, changed image bytes —
raise a DatasetError naming the task id or line, and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visiontune.label as vl
from visiontune.errors import DatasetError


@pytest.fixture()
def cls_export(tmp_path):
    root = tmp_path / "data"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 24), (i * 50, 10, 200 if c == "dog" else 0)).save(root / c / f"{i}.png")
    ex = vl.export_label_studio(root, tmp_path / "ls", progress=False)
    return root, ex


def _ls_export(ex, labels: dict[str, str]) -> list[dict]:
    """What Label Studio's JSON export holds for annotated tasks (as seen from a real server)."""
    tasks = json.loads((ex.dir / "tasks.json").read_text())
    out = []
    for i, t in enumerate(tasks, 1):
        path = t["data"]["vt_path"]
        anns = []
        if path in labels:
            result = [
                {"from_name": "class", "to_name": "image", "type": "choices", "value": {"choices": [labels[path]]}}
            ]
            anns = [
                {
                    "id": i,
                    "result": result,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            ]
        out.append({"id": 100 + i, "data": t["data"], "annotations": anns, "predictions": []})
    return out


def _store_state(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_label_studio_import_works_then_each_malformation_is_named(cls_export, tmp_path):
    root, ex = cls_export
    good = _ls_export(ex, {"cat/0.png": "dog", "dog/1.png": "dog"})
    f = ex.dir / "export.json"
    before = _store_state(root)

    # broken JSON: line and column
    f.write_text(json.dumps(good, indent=1)[:-40])
    with pytest.raises(DatasetError, match=r"export.json: invalid JSON at line \d+ column \d+"):
        vl.import_label_studio(f)
    # not an export at all (JSON_MIN is a list of flat dicts without data)
    f.write_text(json.dumps({"image": "x", "class": "cat"}))
    with pytest.raises(DatasetError, match="export the project as JSON"):
        vl.import_label_studio(f)

    # unknown label and a task whose image is gone: every bad task named, by id
    bad = _ls_export(ex, {"cat/0.png": "wolf", "cat/1.png": "dog", "dog/2.png": "cat"})
    bad[1]["data"]["vt_path"] = "cat/nope.png"
    bad.append({"id": 999, "data": {"image": "http://elsewhere/x.png"}, "annotations": bad[0]["annotations"]})
    f.write_text(json.dumps(bad))
    with pytest.raises(DatasetError) as e:
        vl.import_label_studio(f)
    msg = str(e.value)
    assert "task 101 (cat/0.png): unknown label(s) 'wolf' (classes: cat, dog)" in msg
    assert "task 102 (cat/nope.png): image file not found" in msg
    assert "task 999: no data.vt_path and no local-files image URL" in msg
    assert "3 problem(s)" in msg
    # a malformed region
    bad = _ls_export(ex, {"cat/0.png": "dog"})
    bad[0]["annotations"][0]["result"][0]["value"] = {"nochoices": 1}
    f.write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match=r"task 101 \(cat/0.png\): malformed result \(KeyError"):
        vl.import_label_studio(f)
    assert _store_state(root) == before  # nothing written by any failed import

    # the image changed after the export: refused
    f.write_text(json.dumps(good))
    Image.new("RGB", (32, 24), (1, 2, 3)).save(root / "cat" / "0.png")
    with pytest.raises(DatasetError, match=r"task 101 \(cat/0.png\): image content changed since it was exported"):
        vl.import_label_studio(f)
    (root / "cat" / "0.png").write_bytes(before[str(root / "cat" / "0.png")])

    res = vl.import_label_studio(f)  # the good export still imports
    assert res.diff.relabelled == [("cat/0.png", "cat", "dog")] and res.not_annotated == 4


def test_import_without_a_base_says_what_to_pass(cls_export, tmp_path):
    _, ex = cls_export
    f = tmp_path / "elsewhere.json"
    f.write_text(json.dumps(_ls_export(ex, {})))
    with pytest.raises(DatasetError, match="no base version"):
        vl.import_label_studio(f)
    res = vl.import_label_studio(f, base=ex.meta.base_version)
    assert not res.changed and res.not_annotated == 6


def _cvat_base(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 30, 3), i * 90, np.uint8)).save(root / f"{i}.png")
    from visiontune.label.core import Item, LabelSet, Shape

    ls = LabelSet(
        [Item(f"{i}.png", str(root / f"{i}.png"), labels=[Shape("car", "box", box=(1, 1, 9, 9))]) for i in range(2)],
        ["car", "bus"],
        "detection",
        str(root),
    )
    ex = vl.export_cvat(ls, tmp_path / "cvat")
    return root, ex


def test_cvat_malformations_name_the_line(tmp_path):
    root, ex = _cvat_base(tmp_path)
    xml = ex.dir / "annotations.xml"
    good = xml.read_text()
    before = _store_state(root)
    lines = good.splitlines()
    box_line = next(i for i, line in enumerate(lines, 1) if "<box" in line)

    xml.write_text(good.replace("</annotations>", ""))
    with pytest.raises(DatasetError, match=r"annotations.xml, line \d+ column \d+: not well-formed XML"):
        vl.import_cvat(xml)
    xml.write_text(good.replace('label="car" source', 'label="truck" source', 1))
    with pytest.raises(DatasetError, match=rf"line {box_line}: <box> on image '0.png': unknown label 'truck'"):
        vl.import_cvat(xml)
    xml.write_text(good.replace('name="1.png"', 'name="gone.png"'))
    with pytest.raises(DatasetError, match=r"line \d+: image 'gone.png' \(id 1\) is not in version"):
        vl.import_cvat(xml)
    xml.write_text(good.replace('xtl="1.00"', 'xtl="abc"', 1))
    with pytest.raises(DatasetError, match=rf"line {box_line}: <box> on image '0.png': malformed \(ValueError"):
        vl.import_cvat(xml)
    mask = (
        '<mask label="car" source="manual" occluded="0" rle="3, 4" left="0" top="0" width="3" height="3" z_order="0"/>'
    )
    xml.write_text(good.replace("</image>", mask + "</image>", 1))
    with pytest.raises(DatasetError, match=r"<mask> on image '0.png': malformed \(ValueError: run lengths add up to 7"):
        vl.import_cvat(xml)
    xml.write_text(good.replace("<annotations>", '<!DOCTYPE a [<!ENTITY x "boom">]><annotations>'))
    with pytest.raises(DatasetError, match="entity declarations are not accepted"):
        vl.import_cvat(xml)
    assert _store_state(root) == before


def test_cvat_yolo_and_coco_malformations(tmp_path):
    root, _ = _cvat_base(tmp_path)
    from visiontune.label.versions import find_annotations

    base = next((root / ".visiontune" / "annotations").glob("*.json"))
    ex = vl.export_cvat(find_annotations(base).to_labelset(), tmp_path / "yolo", fmt="yolo")
    txt = ex.dir / "obj_train_data" / "0.txt"
    txt.write_text("0 0.5 0.5 0.2\n7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError) as e:
        vl.import_cvat(ex.dir, base=base)
    assert "obj_train_data/0.txt, line 1: expected 'class cx cy w h'" in str(e.value)
    assert "obj_train_data/0.txt, line 2: class 7 outside 0..1" in str(e.value)
    ex = vl.export_cvat(find_annotations(base).to_labelset(), tmp_path / "coco", fmt="coco")
    f = ex.dir / "annotations" / "instances_default.json"
    doc = json.loads(f.read_text())
    doc["annotations"][0]["category_id"] = 9
    doc["images"][1]["file_name"] = "zzz.png"
    f.write_text(json.dumps(doc))
    with pytest.raises(DatasetError) as e:
        vl.import_cvat(ex.dir, base=base)
    assert "annotation id 1: category id 9 is not a dataset class" in str(e.value)
    assert "image id 2 'zzz.png' is not in version" in str(e.value)
