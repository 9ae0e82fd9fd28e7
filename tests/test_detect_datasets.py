"""COCO / YOLO / VOC detection datasets: load, validate, convert (real COCO8 images and labels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from visiontune.detect import load_coco, load_detection, load_voc, load_yolo
from visiontune.detect.datasets import detect_format
from visiontune.errors import DatasetError

COCO_NAMES_HEAD = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]


@pytest.fixture()
def coco8_yaml(assets, tmp_path) -> Path:
    """A data.yaml for the COCO8 copy (it ships without one); names = the 80 COCO classes."""
    names = [f"class{i}" for i in range(80)]
    names[: len(COCO_NAMES_HEAD)] = COCO_NAMES_HEAD
    names[16], names[17], names[25], names[58] = "dog", "horse", "umbrella", "potted plant"
    p = tmp_path / "data.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "path": str(assets / "coco8"),
                "train": "images/train",
                "val": "images/val",
                "names": dict(enumerate(names)),
            }
        )
    )
    return p


def _boxes_by_image(ds):
    out = {}
    for r in ds.images:
        key = Path(r.path).stem.split("__")[-1]
        rows = sorted((ds.classes[lab], *np.round(b, 3)) for b, lab in zip(r.boxes.tolist(), r.labels.tolist()))
        out[key] = rows
    return out


def test_yolo_loads_real_coco8(coco8_yaml):
    ds = load_yolo(coco8_yaml, split="train")
    assert len(ds) == 4 and ds.num_boxes == 13
    assert detect_format(coco8_yaml) == "yolo"
    r = ds.images[0]
    assert (r.boxes[:, 2] > r.boxes[:, 0]).all() and (r.boxes[:, 2] <= r.width + 1e-6).all()
    val = load_yolo(coco8_yaml, split="val")
    assert val.num_boxes == 17


def test_round_trip_coco_yolo_voc_coco_preserves_every_box(coco8_yaml, tmp_path):
    src = load_yolo(coco8_yaml, split="val")
    coco1 = src.to_coco(tmp_path / "a" / "ann.json")
    ds_coco = load_coco(coco1)
    ds_yolo = load_detection(ds_coco.to_yolo(tmp_path / "yolo", split="val"), split="val")
    ds_voc = load_voc(ds_yolo.to_voc(tmp_path / "voc"))
    ds_back = load_coco(ds_voc.to_coco(tmp_path / "back.json"))

    assert ds_back.classes == src.classes  # class order survives VOC via labels.txt
    ref = _boxes_by_image(src)
    assert sum(len(v) for v in ref.values()) == 17
    for ds in (ds_coco, ds_yolo, ds_voc, ds_back):
        got = _boxes_by_image(ds)
        assert got.keys() == ref.keys()
        for k in ref:
            assert [g[0] for g in got[k]] == [r[0] for r in ref[k]]
            np.testing.assert_allclose([g[1:] for g in got[k]], [r[1:] for r in ref[k]], atol=1e-3)
    # the images travelled too and still decode at their recorded size
    r = ds_back.images[0]
    from PIL import Image

    assert Image.open(r.path).size == (r.width, r.height)


def _coco(tmp_path, anns, images=None):
    p = tmp_path / "bad.json"
    p.write_text(
        json.dumps(
            {
                "images": images or [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
                "annotations": anns,
                "categories": [{"id": 3, "name": "cat"}],
            }
        )
    )
    return p


@pytest.mark.parametrize(
    "ann, needle",
    [
        ({"id": 17, "image_id": 1, "category_id": 3, "bbox": [10, 10, 0, 20]}, "no positive area"),
        ({"id": 17, "image_id": 1, "category_id": 3, "bbox": [90, 10, 30, 20]}, "outside the 100x80 image"),
        ({"id": 17, "image_id": 1, "category_id": 9, "bbox": [10, 10, 5, 5]}, "category_id 9"),
        ({"id": 17, "image_id": 5, "category_id": 3, "bbox": [10, 10, 5, 5]}, "image_id 5"),
        ({"id": 17, "image_id": 1, "category_id": 3, "bbox": [10, "x", 5, 5]}, "not four numbers"),
    ],
)
def test_coco_errors_name_file_and_annotation_id(tmp_path, ann, needle):
    p = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}, ann])
    with pytest.raises(DatasetError) as e:
        load_coco(p)
    msg = str(e.value)
    assert str(p) in msg and "annotation id 17" in msg and needle in msg
    assert "annotation id 1:" not in msg  # the good one is not blamed
    ds = load_coco(p, strict=False)  # skip-and-report mode keeps the good annotation
    assert ds.num_boxes == 1 and len(ds.issues) == 1 and "annotation id 17" in ds.issues[0]


def test_yolo_errors_name_file_and_line(assets, tmp_path):
    img_dir = tmp_path / "images" / "train"
    lab_dir = tmp_path / "labels" / "train"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    src = next((assets / "coco8" / "images" / "train").glob("*.jpg"))
    (img_dir / src.name).write_bytes(src.read_bytes())
    lf = lab_dir / (src.stem + ".txt")
    lf.write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5 0.5 0 0.2\n0 0.5 abc 0.2 0.2\n0 0.5 0.5\n")
    with pytest.raises(DatasetError) as e:
        load_yolo(tmp_path, names=["a", "b"])
    msg = str(e.value)
    assert f"{lf}:2: class id 7 is not in 0..1" in msg
    assert f"{lf}:3:" in msg and "positive area" in msg
    assert f"{lf}:4:" in msg and f"{lf}:5:" in msg and f"{lf}:1:" not in msg
    assert load_yolo(tmp_path, names=["a", "b"], strict=False).num_boxes == 1


def test_voc_errors_name_file_and_object(tmp_path):
    (tmp_path / "Annotations").mkdir()
    x = tmp_path / "Annotations" / "img1.xml"
    x.write_text("""<annotation><filename>img1.jpg</filename><size><width>50</width><height>40</height></size>
      <object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>
      <object><name>dog</name><bndbox><xmin>30</xmin><ymin>5</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
      <object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax></bndbox></object>
    </annotation>""")
    with pytest.raises(DatasetError) as e:
        load_voc(tmp_path)
    msg = str(e.value)
    assert f"{x} object 2" in msg and "positive area" in msg and f"{x} object 3" in msg
    ds = load_voc(tmp_path, classes=["cat"], strict=False)
    assert ds.num_boxes == 0 and len(ds.issues) == 3
    assert any(f"{x} object 1: class 'dog' is not in the class list" in i for i in ds.issues)


def test_split_is_seeded_and_stratified(coco8_yaml):
    ds = load_yolo(coco8_yaml, split="train")
    ds.images += load_yolo(coco8_yaml, split="val").images
    a1, b1 = ds.split(0.25, seed=3)
    a2, b2 = ds.split(0.25, seed=3)
    assert [r.path for r in b1.images] == [r.path for r in b2.images]
    assert len(a1) + len(b1) == 8 and {r.path for r in a1.images}.isdisjoint({r.path for r in b1.images})
