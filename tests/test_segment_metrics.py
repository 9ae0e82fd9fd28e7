"""Segmentation metrics: the streaming confusion matrix (ignore index, per class, flat memory) and
COCO mask AP through visiontune equal to pycocotools' own on the same predictions."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from visiontune.results import Segmentation, boxes_of_masks
from visiontune.segment.evaluate import coco_truth
from visiontune.segment.formats import load_yolo_seg
from visiontune.segment.metrics import ConfusionMatrix, mask_ap
from visiontune.segment.module import dice_loss


def test_confusion_matrix_metrics_by_hand():
    t = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    p = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(3, ignore_index=255, class_names=["a", "b", "c"])
    cm.update(p, t)
    m = cm.compute()
    # a: tp1 fp1 fn1 -> 1/3; b: tp2 fp1 -> 2/3; c: tp1 fn1 -> 1/2 (ignored pixels count nowhere)
    assert m["iou"] == {"a": pytest.approx(1 / 3, abs=1e-5), "b": pytest.approx(2 / 3, abs=1e-5), "c": 0.5}
    assert m["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 0.5) / 3)
    assert m["pixel_accuracy"] == pytest.approx(4 / 6) and m["pixels"] == 6
    assert m["dice_per_class"]["c"] == pytest.approx(2 / 3, abs=1e-5)


def test_streaming_equals_one_shot_and_keeps_one_matrix():
    g = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 6, (40, 32, 32), generator=g)
    pred = torch.where(torch.rand(40, 32, 32, generator=g) < 0.7, truth, torch.randint(0, 5, (40, 32, 32), generator=g))
    one = ConfusionMatrix(5, ignore_index=5)
    one.update(pred, truth)
    stream = ConfusionMatrix(5, ignore_index=5)
    for a, b in zip(pred, truth):
        stream.update(a, b)
        assert stream.matrix.shape == (5, 5)  # the only state, whatever the number of images
    assert torch.equal(one.matrix, stream.matrix)
    # numpy reference of IoU
    keep = truth != 5
    for c in range(5):
        tp = ((pred == c) & (truth == c) & keep).sum().item()
        union = (((pred == c) & keep) | (truth == c)).sum().item()
        assert one.compute()["iou"][str(c)] == pytest.approx(tp / union, abs=1e-5)


def test_dice_loss_ignores_void_and_is_zero_when_perfect():
    t = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0][t[0] == 0] = 50
    logits[0, 1][t[0] == 1] = 50
    assert dice_loss(logits, t, 255).item() == pytest.approx(0, abs=1e-3)
    assert dice_loss(-logits, t, 255).item() > 0.5


def test_mask_ap_equals_pycocotools_own(assets, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = load_yolo_seg(assets / "coco8-seg", "val")
    truth = coco_truth(ds)
    rng = np.random.default_rng(0)
    preds = []
    for i in range(len(ds)):
        masks, labels, _ = ds.instance_masks(i)
        keep = []
        for m in masks:  # a shifted copy of each true mask, some dropped, plus a false positive
            keep.append(np.roll(m, int(rng.integers(-6, 7)), axis=int(rng.integers(0, 2))))
        fp = np.zeros_like(masks[0])
        fp[:20, :30] = True
        all_m = np.stack([*keep[: max(1, len(keep) - 1)], fp])
        lab = [*labels[: max(1, len(keep) - 1)].tolist(), int(labels[0])]
        seg = Segmentation(
            boxes_of_masks(torch.from_numpy(all_m)), rng.random(len(lab)), lab, ds.classes, torch.from_numpy(all_m)
        )
        preds += seg.to_coco(i + 1, {k: k + 1 for k in range(len(ds.classes))})
    ours = mask_ap(truth, preds)
    # pycocotools on its own: files on disk, its own loaders
    (tmp_path / "gt.json").write_text(json.dumps({**coco_truth(ds), "info": {}}))
    (tmp_path / "dt.json").write_text(json.dumps(preds))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.05 < ours["AP50"] < 1.0  # a real, non-trivial score
    assert ours["AP"] == ev.stats[0] and ours["AP50"] == ev.stats[1] and ours["AP75"] == ev.stats[2]
    assert ours["AR100"] == ev.stats[8]
