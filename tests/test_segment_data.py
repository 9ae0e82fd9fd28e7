"""Segmentation data: mask folders, COCO polygons / RLE, YOLO-seg — validation errors that name
the file, exact conversion between the formats, image and mask augmented together."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from _segment_data import CLASSES, make_mask_folder
from visiontune.errors import DatasetError
from visiontune.segment.formats import (
    convert,
    load_coco_seg,
    load_mask_folder,
    load_segmentation,
    load_yolo_seg,
    write_coco_seg,
    write_mask_folder,
    write_yolo_seg,
)
from visiontune.segment.transforms import SegTorchDataset, joint_transform


def test_camvid_mask_folder_validates_with_its_void_index(assets):
    ds = load_mask_folder(assets / "camvid", "val", ignore_index=11)
    assert len(ds) == 101 and ds.classes[0] == "Sky" and len(ds.classes) == 11
    stats = ds.validate()
    assert stats["unit"] == "pixels" and all(v > 0 for v in stats["per_class"].values())
    assert len(ds.version) == 12 and ds.version == load_mask_folder(assets / "camvid", "val", ignore_index=11).version
    with pytest.raises(DatasetError, match=r"val/masks/.*\.png: values \[11\] are outside the 11 classes"):
        load_mask_folder(assets / "camvid", "val").validate()  # void 11 is not the default ignore index 255


def test_bad_masks_are_named(tmp_path):
    root = make_mask_folder(tmp_path / "d", n=3)
    bad = root / "train" / "masks" / "im001.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad)
    (root / "train" / "masks" / "im002.png").write_bytes(b"")
    arr = np.zeros((48, 64), np.uint8)
    arr[5, 5] = 7
    Image.fromarray(arr).save(root / "train" / "masks" / "im000.png")
    with pytest.raises(DatasetError) as e:
        load_mask_folder(root, "train").validate()
    msg = str(e.value)
    assert "im001.png: mask is 10x10 but its image im001.jpg is 64x48" in msg
    assert "im000.png: values [7] are outside the 3 classes" in msg
    assert "im002.png: cannot read the mask" in msg
    (root / "train" / "masks" / "im002.png").unlink()
    with pytest.raises(DatasetError, match="1 image.* without a mask .*im002.jpg"):
        load_mask_folder(root, "train")


def test_polygons_under_three_points_are_named(tmp_path, assets):
    root = tmp_path / "y"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "images" / "val" / "a.jpg")
    (root / "labels" / "val" / "a.txt").write_text("0 0.1 0.1 0.5 0.5 0.9 0.1\n1 0.2 0.2 0.3 0.3\n")
    with pytest.raises(DatasetError, match=r"a\.txt:2: a polygon with 2 points"):
        load_yolo_seg(root, "val")
    coco = {
        "images": [{"id": 1, "file_name": str(root / "images" / "val" / "a.jpg"), "height": 30, "width": 40}],
        "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 5]]}],
        "categories": [{"id": 1, "name": "x"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=r"c\.json: annotation id 9: a polygon with 2 points"):
        load_coco_seg(tmp_path / "c.json")


@pytest.mark.parametrize("split", ["train", "val"])
def test_yolo_to_coco_to_yolo_keeps_every_instance_mask(assets, tmp_path, split):
    src = load_yolo_seg(assets / "coco8-seg", split)
    assert sum(len(s.instances) for s in src.samples) > 0
    for mode in ("rle", "polygon"):
        coco = load_coco_seg(write_coco_seg(src, tmp_path / f"{mode}.json", mode=mode))
        back = load_yolo_seg(write_yolo_seg(coco, tmp_path / f"y-{mode}", split), split)
        for i in range(len(src)):
            a, la, _ = src.instance_masks(i)
            b, lb, _ = back.instance_masks(i)
            assert la.tolist() == lb.tolist()
            for x, y in zip(a, b):
                assert (x & y).sum() / (x | y).sum() >= 0.99, (mode, i)


def test_mask_folder_round_trips_through_coco_and_palette_pngs(tmp_path):
    root = make_mask_folder(tmp_path / "d", n=3, void=False)
    ds = load_mask_folder(root, "train")
    coco = convert(root, tmp_path / "c.json", "coco", split="train")
    masks = write_mask_folder(load_segmentation(coco, ignore_index=None), tmp_path / "m")
    back = load_mask_folder(masks, classes=CLASSES)
    with Image.open(back.samples[0].mask) as im:
        assert im.mode == "P"  # VOC-style palette PNG, indices are the classes
    for i in range(len(ds)):
        # every class (background too: an ordinary class) became one COCO mask and came back
        assert (ds.class_map(i) == back.class_map(i)).all()


def test_image_and_mask_are_augmented_together(tmp_path):
    root = make_mask_folder(tmp_path / "d", n=2)
    ds = load_mask_folder(root, "train")
    tf = joint_transform((24, 32), None, None, train=True, augment="strong", ignore_index=255)
    data = SegTorchDataset(ds, tf)
    for seed in range(6):
        torch.manual_seed(seed)
        x, m = data[0]
        assert x.shape == (3, 24, 32) and m.shape == (24, 32) and m.dtype == torch.int64
        assert set(m.unique().tolist()) <= {0, 1, 2, 255}  # nearest-neighbour: no blended labels
        red = m == 1
        if red.sum() > 4:  # where the mask says red, the image is red
            r, g = x[0][red].mean(), x[1][red].mean()
            assert r > g + 0.3
    flip = joint_transform(None, None, None, train=True, augment="flip")
    img = Image.new("RGB", (8, 4))
    img.paste((255, 0, 0), (0, 0, 4, 4))
    mask = torch.zeros(4, 8, dtype=torch.int64)
    mask[:, :4] = 1
    for seed in range(4):
        torch.manual_seed(seed)
        x, m = flip(img, tv_tensors.Mask(mask))
        assert ((x[0] > 0.5) == (m == 1)).all()
