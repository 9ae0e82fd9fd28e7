"""Label-loop building blocks: the three RLEs, Label Studio results and config, annotation
versions and their diffs, data.apply_fixes' add action."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from visiontune.errors import DatasetError
from visiontune.label import masks as mk
from visiontune.label.core import Item, LabelSet, Shape
from visiontune.label.labelstudio import labelling_config, result_to_shape, shape_to_result
from visiontune.label.versions import diff_annotations, snapshot_annotations, version_from_labelset


def test_brush_rle_round_trips_and_reads_literal_runs_and_long_runs():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (7, 300), (300, 301)]:
        m = rng.random(shape) > 0.7
        m[: shape[0] // 2] = True  # a run longer than 2**16 words in the big case
        assert (mk.brush_to_mask(mk.mask_to_brush(m), *shape) == m).all()
    # a hand-made stream with a literal run (flag 0): 3 values 5, 6, 7 then a repeat of 4 x 9
    bits = mk._Bits()
    for v, n in [(7, 32), (7, 5), (2, 4), (3, 4), (7, 4), (15, 4)]:
        bits.put(v, n)
    for v, n in [(0, 1), (0, 2), (2, 3), (5, 8), (6, 8), (7, 8), (1, 1), (0, 2), (3, 3), (9, 8)]:
        bits.put(v, n)
    assert mk.decode_ls_rle(list(bits.to_bytes())).tolist() == [5, 6, 7, 9, 9, 9, 9]
    with pytest.raises(ValueError, match="expected 2x2x4"):
        mk.brush_to_mask(mk.mask_to_brush(np.ones((3, 3), bool)), 2, 2)


def test_cvat_and_coco_rle():
    m = np.zeros((20, 30), bool)
    m[3:9, 4:12] = True
    m[3, 4] = True
    rle, left, top, w, h = mk.mask_to_cvat(m)
    assert (left, top, w, h) == (4, 3, 8, 6) and rle.startswith("0, ")  # starts on a set pixel
    assert (mk.cvat_to_mask(rle, left, top, w, h, 20, 30) == m).all()
    assert mk.mask_to_cvat(np.zeros((4, 4), bool)) is None
    with pytest.raises(ValueError, match="add up to"):
        mk.cvat_to_mask("1, 2", 0, 0, 2, 2, 4, 4)
    with pytest.raises(ValueError, match="leaves the"):
        mk.cvat_to_mask("4", 3, 3, 2, 2, 4, 4)
    assert (mk.coco_rle_to_mask(mk.mask_to_coco_rle(m)) == m).all()
    poly = mk.polygon_to_mask([[2, 2], [12, 2], [12, 8], [2, 8]], 20, 30)
    assert 50 <= poly.sum() <= 80 and poly[5, 7] and not poly[15, 20]


def test_labelling_config_is_valid_xml_and_escapes_class_names():
    classes = ["a&b", 'say "hi"', "<tag>"]
    for task in ("classification", "detection", "segmentation"):
        root = ET.fromstring(labelling_config(classes, task))
        values = [e.get("value") for e in root.iter() if e.tag in ("Choice", "Label")]
        assert set(values) == set(classes)
    seg = ET.fromstring(labelling_config(classes, "segmentation"))
    assert {e.tag for e in seg} >= {"Image", "PolygonLabels", "BrushLabels"}
    assert (
        ET.fromstring(labelling_config(classes, "classification", multi_label=True)).find("Choices").get("choice")
        == "multiple"
    )


def test_results_round_trip_shapes_within_a_hundredth_of_a_pixel():
    m = np.zeros((40, 50), bool)
    m[5:25, 10:33] = True
    shapes = [
        Shape("cat", "box", box=(1.25, 2.5, 40.75, 39.0), score=0.5),
        Shape("dog", "polygon", points=[[1, 2], [49, 3.5], [20, 39]]),
        Shape("dog", "mask", mask=m),
        Shape("cat", "tag"),
    ]
    for s in shapes:
        r = shape_to_result(s, 50, 40, "x")
        (back,), warn = result_to_shape(r, 50, 40)
        assert warn is None and back.label == s.label and back.kind == s.kind
        if s.kind == "box":
            np.testing.assert_allclose(back.box, s.box, atol=1e-9)
        if s.kind == "polygon":
            np.testing.assert_allclose(back.points, s.points, atol=1e-9)
        if s.kind == "mask":
            assert (back.mask == m).all()
    r = shape_to_result(shapes[0], 50, 40, "x")
    r["value"]["rotation"] = 90
    (rot,), warn = result_to_shape(r, 50, 40)
    assert "rotated" in warn and rot.box[2] < shapes[0].box[0] + 1e-6  # rotated about its top-left corner
    with pytest.raises(ValueError, match="drawn on a 50x40 image"):
        result_to_shape(shape_to_result(shapes[0], 50, 40, "x"), 60, 40)


def _set(tmp_path, n=3):
    files = []
    for i in range(n):
        f = tmp_path / f"im{i}.png"
        Image.new("RGB", (50, 40), (i * 40, 0, 0)).save(f)
        files.append(f)
    items = [
        Item(f.name, str(f), labels=[Shape("cat", "box", box=(1, 1, 20, 20)), Shape("dog", "box", box=(25, 5, 45, 35))])
        for f in files
    ]
    return LabelSet(items, ["cat", "dog"], "detection", str(tmp_path))


def test_annotation_versions_hash_content_and_diff_matches_objects(tmp_path):
    ls = _set(tmp_path)
    v1 = snapshot_annotations(ls)
    assert snapshot_annotations(ls).version == v1.version == ls.base_version  # same content, same id
    ls.items[0].labels[0] = Shape("dog", "box", box=(1.004, 1, 20, 20))  # relabel (sub-tolerance move)
    ls.items[1].labels[1] = Shape("dog", "box", box=(26, 6, 44, 36))  # reshaped
    ls.items[2].labels.append(Shape("cat", "box", box=(40, 30, 49, 39)))  # added
    del ls.items[2].labels[0]  # removed
    v2 = version_from_labelset(ls, parent=v1.version)
    d = diff_annotations(v1, v2.model_copy(update={"version": v2.content_hash()}))
    got = sorted((o["path"], o["change"]) for o in d.objects)
    assert got == [("im0.png", "relabelled"), ("im1.png", "reshaped"), ("im2.png", "added"), ("im2.png", "removed")]
    rel = next(o for o in d.objects if o["change"] == "relabelled")
    assert rel["old_label"] == "cat" and rel["new_label"] == "dog" and not rel["reshaped"]
    assert "~ im0.png: box cat [1,1,20,20] -> dog" in str(d)


def test_edited_annotation_version_file_is_refused(tmp_path):
    ls = _set(tmp_path)
    v = snapshot_annotations(ls)
    f = tmp_path / ".visiontune" / "annotations" / f"{v.version}.json"
    f.write_text(f.read_text().replace('"cat"', '"dog"', 2))
    from visiontune.label.versions import find_annotations

    with pytest.raises(DatasetError, match="edited by hand"):
        find_annotations(f)


def test_apply_fixes_adds_new_files_and_names_bad_rows(tmp_path):
    from visiontune.data.versions import apply_fixes, diff, snapshot

    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / "d" / c / f"{i}.png")
    pool = tmp_path / "pool"
    pool.mkdir()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(pool / "new.png")
    m = snapshot(tmp_path / "d")
    new = apply_fixes(m, [{"path": str(pool / "new.png"), "action": "add", "new_label": "b"}])
    d = diff(m, new)
    assert [(e.path, e.label) for e in d.added] == [(str(pool / "new.png"), "b")] and new.parent == m.version
    with pytest.raises(DatasetError) as e:
        apply_fixes(
            m,
            [
                {"path": "a/0.png", "action": "add", "new_label": "b"},
                {"path": str(pool / "missing.png"), "action": "add", "new_label": "b"},
                {"path": str(pool / "new.png"), "action": "add", "new_label": "zebra"},
            ],
        )
    msg = str(e.value)
    assert "row 1: a/0.png is already in version" in msg and "row 2: file to add not found" in msg
    assert "row 3: unknown label 'zebra'" in msg
