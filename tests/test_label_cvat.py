"""CVAT for images 1.1 XML, COCO 1.0 and YOLO 1.1: what visiontune writes is read by a CVAT-side
reader (datumaro's importers, run in their own venv: datumaro pins pandas / pillow / opencv
versions that clash with visiontune's) with tags, boxes, polygons and masks unchanged; a CVAT
export built by hand from CVAT's documented format imports as the right corrections."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visiontune.label as vl
from visiontune.label.core import Item, LabelSet, Shape

DATUMARO_PY = Path(os.environ.get("VISIONTUNE_DATUMARO_PYTHON", "/work/venvs/datumaro/bin/python"))
needs_datumaro = pytest.mark.skipif(
    not DATUMARO_PY.is_file(),
    reason="datumaro is not installed: python3 -m venv /work/venvs/datumaro && /work/venvs/datumaro/bin/pip install "
    "datumaro (or set VISIONTUNE_DATUMARO_PYTHON; .ci/run does)",
)

READER = r"""
import json, sys
import numpy as np
from datumaro.components.annotation import AnnotationType
from datumaro.components.dataset import Dataset
ds = Dataset.import_from(sys.argv[1], sys.argv[2])
names = [c.name for c in ds.categories()[AnnotationType.label]]
out = {}
for item in ds:
    anns = []
    for a in item.annotations:
        t = a.type.name
        d = {"type": t, "label": names[a.label], "attributes": {k: v for k, v in a.attributes.items() if k == "score"}}
        if t == "bbox":
            d["box"] = [a.x, a.y, a.x + a.w, a.y + a.h]
        elif t == "polygon":
            d["points"] = list(map(float, a.points))
        elif t == "mask":
            m = np.asarray(a.image).astype(bool)
            d["pixels"] = np.flatnonzero(m.reshape(-1)).tolist()
            d["shape"] = list(m.shape)
        anns.append(d)
    out[item.id] = anns
print(json.dumps(out))
"""


def datumaro_read(path: Path, fmt: str) -> dict:
    r = subprocess.run([str(DATUMARO_PY), "-c", READER, str(path), fmt], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _images(tmp: Path, n: int = 3) -> Path:
    root = tmp / "data"
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / "sub").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "sub" / f"im{i}.png")
    return root


def _mixed(root: Path) -> LabelSet:
    files = sorted((root / "sub").glob("*.png"))
    m = np.zeros((48, 64), bool)
    m[10:20, 5:30] = True
    m[30:33, 40:41] = True
    items = [
        Item("sub/im0.png", str(files[0]), 64, 48, labels=[Shape("cat", "box", box=(1.5, 2.25, 30.75, 40.0))]),
        Item(
            "sub/im1.png",
            str(files[1]),
            64,
            48,
            labels=[Shape("dog", "polygon", points=[[3, 4], [50.5, 6.25], [40, 44]]), Shape("cat", "mask", mask=m)],
        ),
        Item(
            "sub/im2.png",
            str(files[2]),
            64,
            48,
            labels=None,
            predictions=[Shape("dog", "box", box=(5, 6, 20, 30), score=0.875)],
        ),
    ]
    return LabelSet(items, ["cat", "dog"], "segmentation", str(root))


@needs_datumaro
def test_cvat_xml_written_by_visiontune_reads_back_unchanged_in_datumaro(tmp_path):
    root = _images(tmp_path)
    ls = _mixed(root)
    out = tmp_path / "cvat"
    from visiontune.label.cvat import write_export

    write_export(ls, out)
    got = datumaro_read(out, "cvat")
    assert set(got) == {"sub/im0", "sub/im1", "sub/im2"}
    (box,) = got["sub/im0"]
    assert box["type"] == "bbox" and box["label"] == "cat"
    np.testing.assert_allclose(box["box"], [1.5, 2.25, 30.75, 40.0], atol=0.005)
    poly, mask = sorted(got["sub/im1"], key=lambda a: a["type"])[::-1]
    assert poly["type"] == "polygon" and poly["label"] == "dog"
    np.testing.assert_allclose(poly["points"], [3, 4, 50.5, 6.25, 40, 44], atol=0.005)
    assert mask["type"] == "mask" and mask["label"] == "cat" and mask["shape"] == [48, 64]
    assert mask["pixels"] == np.flatnonzero(ls.items[1].labels[1].mask.reshape(-1)).tolist()
    (pred,) = got["sub/im2"]  # an unlabelled image carries the model's box, with its score
    assert pred["label"] == "dog" and float(pred["attributes"]["score"]) == pytest.approx(0.875)


@needs_datumaro
def test_cvat_tags_round_trip_through_datumaro(tmp_path):
    root = _images(tmp_path, 2)
    files = sorted((root / "sub").glob("*.png"))
    ls = LabelSet(
        [Item(f"sub/{f.name}", str(f), labels=[Shape(c)]) for f, c in zip(files, ["cat", "dog"])],
        ["cat", "dog"],
        "classification",
        str(root),
    )
    from visiontune.label.cvat import write_export

    write_export(ls, tmp_path / "tags")
    got = datumaro_read(tmp_path / "tags", "cvat")
    assert {k: [a["label"] for a in v] for k, v in got.items()} == {"sub/im0": ["cat"], "sub/im1": ["dog"]}
    assert all(a["type"] == "label" for v in got.values() for a in v)


@needs_datumaro
def test_cvat_coco_and_yolo_exports_read_in_datumaro(tmp_path):
    from visiontune.label.cvat_formats import write_export

    root = _images(tmp_path)
    ls = _mixed(root)
    write_export(ls, tmp_path / "coco", "coco", images="copy")  # datumaro refuses symlinks leaving the folder
    got = datumaro_read(tmp_path / "coco", "coco_instances")
    ann = {k.split("/")[-1]: v for k, v in got.items()}
    assert [a["label"] for a in ann["im0"]] == ["cat"]
    np.testing.assert_allclose(ann["im0"][0]["box"], [1.5, 2.25, 30.75, 40.0], atol=1e-6)
    segs = sorted((a["type"], a["label"]) for a in ann["im1"] if a["type"] != "bbox")  # datumaro adds their boxes
    assert segs == [("mask", "cat"), ("polygon", "dog")]
    poly = next(a for a in ann["im1"] if a["type"] == "polygon")
    np.testing.assert_allclose(poly["points"], [3, 4, 50.5, 6.25, 40, 44], atol=1e-6)
    mask = next(a for a in ann["im1"] if a["type"] == "mask")
    assert mask["pixels"] == np.flatnonzero(ls.items[1].labels[1].mask.reshape(-1)).tolist()

    det = LabelSet(
        [
            Item(
                it.path,
                it.file,
                64,
                48,
                labels=None if it.labels is None else [s for s in it.labels if s.kind == "box"],
                predictions=it.predictions,
            )
            for it in ls.items
        ],
        ["cat", "dog"],
        "detection",
        str(root),
    )
    write_export(det, tmp_path / "yolo", "yolo", images="copy")
    got = datumaro_read(tmp_path / "yolo", "yolo")
    boxes = {k.split("/")[-1]: [(a["label"], a["box"]) for a in v] for k, v in got.items()}
    assert boxes["im1"] == []
    assert boxes["im0"][0][0] == "cat"
    np.testing.assert_allclose(boxes["im0"][0][1], [1.5, 2.25, 30.75, 40.0], atol=0.01)
    assert boxes["im2"][0][0] == "dog"  # the model's box pre-annotates the unlabelled image


def _hand_written(root: Path) -> str:
    """A CVAT for images 1.1 export as CVAT documents it (meta, segments, owner, dumped)."""
    return """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>4</id>
      <name>review</name>
      <size>3</size>
      <mode>annotation</mode>
      <overlap>0</overlap>
      <bugtracker></bugtracker>
      <flipped>False</flipped>
      <created>2018-09-25 11:34:24.617558+03:00</created>
      <updated>2018-09-25 11:38:27.301183+03:00</updated>
      <labels>
        <label><name>cat</name><attributes></attributes></label>
        <label><name>dog</name><attributes></attributes></label>
      </labels>
      <segments><segment><id>4</id><start>0</start><stop>2</stop><url>http://localhost:8080/?id=4</url></segment></segments>
      <owner><username>admin</username><email></email></owner>
    </task>
    <dumped>2018-09-25 11:38:28.799808+03:00</dumped>
  </meta>
  <image id="0" name="sub/im0.png" width="64" height="48">
    <box label="dog" xtl="1.50" ytl="2.25" xbr="30.75" ybr="40.00" occluded="0" z_order="4">
    </box>
  </image>
  <image id="1" name="sub/im1.png" width="64" height="48">
    <polygon label="dog" points="3.00,4.00;50.50,6.25;40.00,44.00" occluded="0" z_order="1">
    </polygon>
    <polyline label="cat" points="1.00,0.00;12.80,12.00" occluded="0" z_order="3">
    </polyline>
    <mask label="cat" source="manual" occluded="0" rle="3, 5, 7, 7, 5, 9, 3, 11, 2, 11, 2, 12, 1, 12, 1, 26, 1, 12, 1, 12, 2, 11, 3, 9, 5, 7, 7, 5, 3" left="7" top="8" width="13" height="15" z_order="0">
    </mask>
  </image>
  <image id="2" name="sub/im2.png" width="64" height="48">
    <box label="dog" xtl="5.00" ytl="6.00" xbr="20.00" ybr="30.00" occluded="0" z_order="0"></box>
    <box label="cat" xtl="40.00" ytl="10.00" xbr="60.00" ybr="20.00" occluded="0" z_order="0"></box>
  </image>
</annotations>
"""


def test_hand_built_cvat_export_imports_as_a_new_version(tmp_path):
    root = _images(tmp_path)
    base = _mixed(root)
    v0 = vl.snapshot_annotations(base)
    xml = tmp_path / "annotations.xml"
    xml.write_text(_hand_written(root))
    res = vl.import_cvat(xml, base=root / ".visiontune" / "annotations" / f"{v0.version}.json")
    d = res.diff
    assert res.reviewed == 3 and res.changed
    # im0: the box was relabelled cat -> dog; im1: polygon unchanged, the mask replaced by the
    # documented 13x15 one (different geometry: removed + added), polyline ignored with a warning;
    # im2 (not labelled before, found under the dataset root): two new boxes
    assert [(o["path"], o["change"]) for o in d.objects if o["change"] == "relabelled"] == [
        ("sub/im0.png", "relabelled")
    ]
    assert d.added_images == ["sub/im2.png"]
    assert any("polyline" in w for w in res.warnings)
    new = vl.AnnotationVersion.read(res.file)
    assert new.parent == v0.version
    im1 = new.by_path()["sub/im1.png"]
    mask_doc = next(o for o in im1.objects if o.kind == "mask")
    from visiontune.label.masks import coco_rle_to_mask

    m = coco_rle_to_mask(mask_doc.rle)
    assert m.sum() == sum([5, 7, 9, 11, 11, 12, 12, 26, 12, 12, 11, 9, 7, 5]) and m[8:23, 7:20].sum() == m.sum()
    assert [o.label for o in new.by_path()["sub/im2.png"].objects] == ["dog", "cat"]


def test_cvat_xml_round_trip_in_visiontune_is_exact(tmp_path):
    root = _images(tmp_path)
    ls = _mixed(root)
    ls.items[2].labels = []  # labelled, no objects: written without shapes
    v0 = vl.snapshot_annotations(ls)
    ex = vl.export_cvat(ls, tmp_path / "out", preannotate="labels")
    res = vl.import_cvat(ex.dir / "annotations.xml")
    assert res.base == v0.version and not res.changed, str(res.diff)


def test_cvat_zip_export_of_coco_imports(tmp_path):
    root = _images(tmp_path)
    ls = _mixed(root)
    ls.task = "detection"
    for it in ls.items:
        it.labels = [s for s in it.labels or [] if s.kind == "box"]
    vl.snapshot_annotations(ls)
    ex = vl.export_cvat(ls, tmp_path / "coco", fmt="coco", preannotate="labels")
    doc = json.loads((ex.dir / "annotations" / "instances_default.json").read_text())
    doc["annotations"][0]["category_id"] = 2  # the annotator relabels the cat box as dog
    (ex.dir / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    zipped = Path(shutil.make_archive(str(tmp_path / "task"), "zip", root_dir=ex.dir, base_dir="annotations"))
    res = vl.import_cvat(zipped, base=ex.meta.base_file)
    assert res.diff.count("relabelled") == 1 and len(res.diff.objects) == 1, str(res.diff)
