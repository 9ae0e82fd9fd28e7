"""Real ImageNet weights end to end: EfficientNet-Lite0 → ONNX, parity and top-1 on 100 real images."""

from __future__ import annotations

import csv

import pytest

import visiontune as vt
from visiontune.export import export, load_artifact


@pytest.mark.slow
def test_effnet_lite0_onnx_parity_on_100_imagenet_images(tmp_path, assets, effnet_lite0_file):
    root = assets / "imagenet-sample-1k"
    rows = list(csv.DictReader(open(root / "labels.csv", newline="")))[::10][:100]  # 100 classes, spread out
    images = [str(root / r["file"]) for r in rows]
    labels = [int(r["index"]) for r in rows]

    p = vt.load("timm:tf_efficientnet_lite0", weights=effnet_lite0_file)
    res = export(p, "onnx", tmp_path / "lite0.onnx", images=images, labels=labels, parity_limit=100)
    par = res.parity
    print(f"\nEfficientNet-Lite0 → ONNX parity: {par.summary()}")
    assert par.n_images == 100
    assert par.max_abs_diff <= 1e-4
    assert par.top1_agreement == 1.0 and par.end_to_end_top1_agreement == 1.0
    # top-1 through the artifact (sidecar PIL+NumPy preprocessing → ONNX Runtime) vs PyTorch
    # (its own torchvision preprocessing): the same, and what real ImageNet weights reach here
    assert par.top1_accuracy_artifact == par.top1_accuracy_pytorch > 0.8

    # the user-facing predict() of the artifact gives PyTorch's labels
    rt = load_artifact(res.artifact)
    few = images[:8]
    assert [q.label for q in rt.predict(few, topk=1)] == [q.label for q in p.predict(few, topk=1)]
