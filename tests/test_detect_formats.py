"""Detection formats as reader + writer pairs over plain records, and the dataset content version."""

from __future__ import annotations

import ast
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from visiontune.detect import DetectionDataset, load_yolo
from visiontune.detect.formats import FORMATS, read_coco, read_voc, read_yolo, write_coco, write_voc, write_yolo
from visiontune.detect.records import ImageRecord, content_version
from visiontune.errors import DatasetError

SRC = Path(__file__).resolve().parents[1] / "src" / "visiontune" / "detect"


@pytest.fixture()
def coco8_copy(assets, tmp_path) -> Path:
    """The COCO8 val split copied into tmp_path with a data.yaml (ten classes are enough: the
    val labels use ids below 60, so all 80 names are written)."""
    root = tmp_path / "coco8"
    for sub in ("images/val", "labels/val"):
        shutil.copytree(assets / "coco8" / sub, root / sub)
    (root / "data.yaml").write_text(
        yaml.safe_dump({"path": str(root), "val": "images/val", "names": {i: f"c{i}" for i in range(80)}})
    )
    return root / "data.yaml"


def _records(ds: DetectionDataset) -> dict[str, list]:
    return {
        r.path.name: sorted((int(lab), *np.round(b, 3)) for b, lab in zip(r.boxes.tolist(), r.labels.tolist()))
        for r in ds.images
    }


def test_readers_and_writers_work_on_plain_records(coco8_copy, tmp_path):
    loaded = read_yolo(coco8_copy, split="val")
    assert len(loaded.images) == 4 and all(isinstance(r, ImageRecord) for r in loaded.images)
    assert sum(len(r.labels) for r in loaded.images) == 17 and loaded.issues == []
    ref = _records(DetectionDataset(loaded.images, loaded.classes, loaded.root))

    coco = write_coco(loaded.images, loaded.classes, tmp_path / "c" / "ann.json", image_root=loaded.root)
    back = read_coco(coco, image_root=loaded.root)
    voc = write_voc(back.images, back.classes, tmp_path / "voc", root=back.root, image_mode="link")
    back = read_voc(voc)
    yolo = write_yolo(back.images, back.classes, tmp_path / "yolo", root=back.root, split="val", image_mode="none")
    assert not (tmp_path / "yolo" / "images").exists()  # labels only
    assert (tmp_path / "voc" / "JPEGImages").is_dir() and all(
        p.is_symlink() for p in (tmp_path / "voc" / "JPEGImages").iterdir()
    )
    assert back.classes == loaded.classes  # labels.txt keeps the order
    got = DetectionDataset(back.images, back.classes, back.root)
    for name, rows in _records(got).items():
        np.testing.assert_allclose(rows, ref[name], atol=1e-3)
    assert yaml.safe_load(yolo.read_text())["val"] == "images/val"
    assert set(FORMATS) == {"coco", "yolo", "voc"}


def test_formats_do_not_import_the_dataset_module():
    for f in [SRC / "records.py", *sorted((SRC / "formats").glob("*.py"))]:
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "visiontune.detect.datasets" and node.level == 0, f"{f.name}: {node.module}"
                assert node.col_offset == 0, f"{f.name}: function-level import of {node.module}"


def test_version_same_data_same_id_anywhere(coco8_copy, tmp_path):
    a = load_yolo(coco8_copy, split="val")
    assert len(a.version) == 12 and all(c in "0123456789abcdef" for c in a.version)
    assert load_yolo(coco8_copy, split="val").version == a.version
    moved = tmp_path / "elsewhere"
    shutil.copytree(coco8_copy.parent, moved)
    cfg = yaml.safe_load((moved / "data.yaml").read_text())
    (moved / "data.yaml").write_text(yaml.safe_dump({**cfg, "path": str(moved)}))
    b = load_yolo(moved / "data.yaml", split="val")
    assert b.images[0].path != a.images[0].path and b.version == a.version


def test_version_is_order_independent(coco8_copy):
    a = load_yolo(coco8_copy, split="val")
    shuffled = []
    for r in reversed(a.images):
        perm = np.arange(len(r.labels))[::-1]
        shuffled.append(replace(r, boxes=r.boxes[perm], labels=r.labels[perm], crowd=r.crowd[perm]))
    b = replace(a, images=shuffled)
    assert [r.path for r in b.images] != [r.path for r in a.images] and b.version == a.version


def test_version_changes_with_a_box_a_label_a_class_or_an_image(coco8_copy, tmp_path):
    a = load_yolo(coco8_copy, split="val")
    v = a.version

    def edited(i, **kw):
        images = list(a.images)
        images[i] = replace(images[i], **kw)
        return replace(a, images=images).version

    r = a.images[1]
    moved = r.boxes.copy()
    moved[0] += [2.0, 0.0, 2.0, 0.0]  # one box shifted by 2 px
    assert edited(1, boxes=moved) != v
    nudged = r.boxes.copy()
    nudged[0, 0] = round(nudged[0, 0], 2) + 0.001  # below the 0.01 px resolution
    renudged = r.boxes.copy()
    renudged[0, 0] = round(renudged[0, 0], 2)
    assert edited(1, boxes=nudged) == edited(1, boxes=renudged)
    relabelled = r.labels.copy()
    relabelled[0] = (relabelled[0] + 1) % len(a.classes)
    assert edited(1, labels=relabelled) != v
    assert replace(a, classes=[*a.classes[:-1], "renamed"]).version != v
    assert content_version(a.images[:-1], a.classes, a.root) != v  # an image dropped

    img = a.images[2].path
    img.write_bytes(img.read_bytes() + b"\0")  # same name, other bytes
    assert load_yolo(coco8_copy, split="val").version != v
    img.unlink()
    with pytest.raises(DatasetError, match=img.name):
        _ = a.version
