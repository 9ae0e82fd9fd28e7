"""Multi-label classification end to end on tiny real image files (colour patches: an image
carries 'red' / 'green' / 'blue' when it has a patch of that colour), timm's test_efficientnet
from random init: both layouts (CSV path,labels and a folder of label folders), thresholds tuned on
val and saved, predict / evaluate / ONNX export of the saved model, labels from masks, the
multi-label audit ranking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visiontune.adapt import TrainConfig, train
from visiontune.adapt.multilabel import multilabel_metrics, tune_thresholds
from visiontune.data.multilabel import MultiLabelDataset, labels_from_masks, load_multilabel
from visiontune.errors import ConfigError, DatasetError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLOURS = ("red", "green", "blue")
BASE = dict(model="timm:test_efficientnet", pretrained=False, image_size=32, batch_size=4, seed=3, trackers=[])


def _image(path: Path, labels: set[str], rng) -> None:
    a = rng.integers(0, 40, (32, 32, 3)).astype(np.uint8)
    for k, c in enumerate(COLOURS):
        if c in labels:
            a[k * 10 : k * 10 + 10, :, k] = 250
    Image.fromarray(a).save(path)


def _label_sets(n: int, rng) -> list[set[str]]:
    return [{c for c in COLOURS if rng.random() < 0.5} for _ in range(n)]


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ml_csv")
    rng = np.random.default_rng(0)
    rows = ["path,labels,split"]
    for split, n in (("train", 16), ("val", 8)):
        (root / split).mkdir()
        for i, labs in enumerate(_label_sets(n, rng)):
            _image(root / split / f"{i}.png", labs, rng)
            rows.append(f"{split}/{i}.png,{';'.join(sorted(labs))},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_csv_and_label_folder_layouts(csv_data, tmp_path):
    s = load_multilabel(csv_data)
    assert s.classes == ["blue", "green", "red"] and len(s.train) == 16 and len(s.val) == 8
    assert isinstance(s.train, MultiLabelDataset)
    x, y = s.train.with_transform(lambda im: torch.zeros(1))[0]
    assert y.dtype == torch.float32 and y.shape == (3,)
    assert s.version == load_multilabel(csv_data).version
    # the same images as label folders: one file under several label folders is one image
    root = tmp_path / "folders"
    for split, ds in (("train", s.train), ("val", s.val)):
        for path, labs in zip(ds.paths, ds.label_sets()):
            for lab in labs:
                d = root / split / lab
                d.mkdir(parents=True, exist_ok=True)
                (d / Path(path).name).write_bytes(Path(path).read_bytes())
    f = load_multilabel(root)
    with_any = sum(1 for labs in s.train.label_sets() if labs)
    assert len(f.train) == with_any and f.classes == s.classes
    got = dict(zip((Path(p).name for p in f.train.paths), f.train.label_sets()))
    want = dict(zip((Path(p).name for p in s.train.paths), s.train.label_sets()))
    assert all(got[k] == want[k] for k in got)
    # bad input: a clear error naming the file and line
    bad = tmp_path / "bad.csv"
    bad.write_text("path,labels\nnope.png,red\n")
    with pytest.raises(DatasetError, match="line 2: file not found"):
        load_multilabel(bad)
    with pytest.raises(DatasetError, match="'labels'"):
        (tmp_path / "single.csv").write_text("path,label\nx.png,red\n")
        load_multilabel(tmp_path / "single.csv")


def test_thresholds_and_metrics_units():
    probs = np.array([[0.9, 0.2], [0.8, 0.6], [0.3, 0.7], [0.1, 0.4]])
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    th = tune_thresholds(probs, y)
    assert 0.3 < th[0] <= 0.8 and 0.4 < th[1] <= 0.6
    m = multilabel_metrics(
        torch.logit(torch.tensor(probs)), torch.tensor(y, dtype=torch.float32), ["a", "b"], thresholds=th
    )
    assert m["val/map"] == pytest.approx(1.0) and m["val/f1_macro"] == pytest.approx(1.0)
    m05 = multilabel_metrics(torch.logit(torch.tensor(probs)), torch.tensor(y, dtype=torch.float32), ["a", "b"])
    assert m05["val/per_label_f1"]["b"] == pytest.approx(1.0) and m05["val/per_label_ap"]["a"] == pytest.approx(1.0)


def test_labels_from_masks(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    m = np.zeros((20, 20), np.uint8)
    m[:1, :1] = 1  # 1 pixel of 400 = 0.25 % < 0.5 %: absent
    m[5:10, 5:10] = 2  # 25 pixels: present
    m[15:, 15:] = 11  # void, ignored
    Image.fromarray(m).save(tmp_path / "mask" / "a.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "img" / "a.jpg")
    rows = labels_from_masks(tmp_path / "img", tmp_path / "mask", ["c0", "c1", "c2"], ignore=[11])
    assert rows == [(str(tmp_path / "img" / "a.jpg"), ["c0", "c2"])]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["linear", "full"])
def test_train_save_predict_export(csv_data, tmp_path, strategy):
    import visiontune as vt

    cfg = TrainConfig(
        **BASE,
        data=str(csv_data),
        task="multilabel",
        strategy=strategy,
        loss="asl" if strategy == "full" else "bce",
        class_weights="auto",
        epochs=6,
        lr=0.05,
        ema=strategy == "linear",
        ema_decay=0.9,
    )
    r = train(cfg, run_root=tmp_path / "runs", progress=False)
    m = r.metrics
    assert cfg.monitor_metric == "val/map" and set(m["val/per_label_ap"]) == set(COLOURS)
    assert m["val/map"] > 0.6  # a patch of colour is easy even for random features
    assert 0.0 <= m["val/f1_macro"] <= 1.0 and "val/f1_macro@0.5" in m
    doc = json.loads((r.model_dir / "visiontune.json").read_text())
    th = doc["card"]["extra"]["thresholds"]
    assert doc["card"]["task"] == "multilabel-classification" and set(th) == set(COLOURS)
    assert th == pytest.approx(m["thresholds"])
    run = json.loads((r.run_dir / "run.json").read_text())
    assert run["tags"]["task"] == "multilabel" and run["summary"]["val/map"] == pytest.approx(m["val/map"])
    if strategy == "linear":  # EMA weights evaluated and saved beside the model
        assert "val_ema/map" in m and (r.run_dir / "model_ema" / "model.safetensors").is_file()
        assert run["tags"]["tricks"]["ema"] == 0.9
    p = vt.load(str(r.model_dir))
    assert p.task == "multilabel-classification"
    images = [str(Path(csv_data).parent / "val" / f"{i}.png") for i in range(3)]
    preds = p.predict(images, tta="flip")
    assert len(preds) == 3 and set(preds[0].probs) == set(COLOURS)
    assert all(set(x.labels) == {c for c in COLOURS if x.probs[c] >= th[c]} for x in preds)
    ev = vt.evaluate(str(r.model_dir), str(csv_data), progress=False)
    if strategy == "full":  # the saved model reproduces the run's numbers
        assert ev.metrics["val/map"] == pytest.approx(m["val/map"], abs=1e-4)
        return
    pytest.importorskip("onnxruntime")
    from visiontune.export import export, load_artifact

    art = export(str(r.model_dir), "onnx", tmp_path / "ml.onnx")
    side = json.loads(Path(str(art.sidecar)).read_text())
    assert side["task"] == "multilabel-classification" and side["output"]["apply"].startswith("sigmoid")
    assert side["output"]["thresholds"] == pytest.approx([th[c] for c in p.class_names])
    rt = load_artifact(tmp_path / "ml.onnx")
    onnx_preds = rt.predict(images)
    for a, b in zip(onnx_preds, p.predict(images)):
        assert a.labels == b.labels and a.probs["red"] == pytest.approx(b.probs["red"], abs=1e-4)


def test_config_refuses_mismatched_options(csv_data):
    with pytest.raises(ConfigError, match="multiclass"):
        TrainConfig.from_dict({**BASE, "data": str(csv_data), "task": "multilabel", "mixup": 0.2})
    with pytest.raises(ConfigError, match="multilabel"):
        TrainConfig.from_dict({**BASE, "data": str(csv_data), "loss": "asl"})


@pytest.mark.slow
def test_multilabel_audit_finds_flipped_labels(csv_data, tmp_path):
    """Labels removed from / added to a few images are ranked first by the audit (CLI too)."""
    from typer.testing import CliRunner

    from visiontune.cli.main import app

    rows = csv_data.read_text().splitlines()
    header, body = rows[0], rows[1:]
    flipped = {}
    for i in (0, 3, 6):  # drop one present label, or add an absent one
        path, labs, split = body[i].split(",")
        have = set(labs.split(";")) - {""}
        change = sorted(have)[0] if have else "red"
        new = have - {change} if have else {change}
        flipped[path] = change
        body[i] = f"{path},{';'.join(sorted(new))},{split}"
    noisy = csv_data.parent / "noisy.csv"
    noisy.write_text("\n".join([header, *body]) + "\n")
    import visiontune as vt

    model_dir = vt.load("timm:test_efficientnet", pretrained=False, num_classes=3).save(tmp_path / "m")
    res = CliRunner().invoke(
        app,
        [
            "audit",
            str(model_dir),
            "--data",
            str(noisy),
            "--split",
            "train",
            "--multilabel",
            "--out",
            str(tmp_path / "audit"),
            "--k-folds",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    import pandas as pd

    pairs = pd.read_csv(tmp_path / "audit" / "multilabel_label_candidates.csv")
    table = pd.read_csv(tmp_path / "audit" / "multilabel_issues.csv")
    assert len(table) == 16 and set(pairs["kind"]) <= {"missed", "wrong"}
    top = {(Path(p).name, lab) for p, lab in zip(pairs["path"].head(6), pairs["label"].head(6))}
    hits = sum((Path(p).name, lab) in top for p, lab in flipped.items())
    assert hits >= 2, (top, flipped)
