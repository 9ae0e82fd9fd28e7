"""ImageDataset: bad files never stop an epoch (also in DataLoader workers), validate(), pickling."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from visiontune.data import ImageDataset, load_classification
from visiontune.errors import DatasetError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTUNE_CACHE_DIR", str(tmp_path / "vt-cache"))


def to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.resize((16, 16)), dtype=np.uint8).copy()).permute(2, 0, 1)


@pytest.fixture()
def dirty(tmp_path) -> Path:
    """6 good images per class, one truncated JPEG and one text file named .jpg."""
    root = tmp_path / "dirty"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20, 20), (i * 30, 100 if c == "cat" else 200, 0)).save(root / c / f"{i}.png")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "cat" / "2_truncated.jpg").write_bytes(buf.getvalue()[:300])
    (root / "dog" / "3_page.jpg").write_text("<html>not an image</html>")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_files_do_not_crash_an_epoch_and_are_listed(dirty, workers):
    ds = load_classification(dirty, val_fraction=0.0).train.with_transform(to_tensor)
    assert len(ds) == 14
    loader = DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False)
    seen = 0
    for _ in range(2):  # two epochs
        for x, y in loader:
            assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.uint8
            seen += len(y)
    assert seen == 28  # every index yields a sample (a good neighbour stands in for a bad file)
    bad = dict(ds.skipped)
    assert set(bad) == {str(dirty / "cat" / "2_truncated.jpg"), str(dirty / "dog" / "3_page.jpg")}
    assert "truncated" in bad[str(dirty / "cat" / "2_truncated.jpg")]
    assert "not a recognised image" in bad[str(dirty / "dog" / "3_page.jpg")]


def test_substitute_is_next_index_and_deterministic(dirty):
    ds = load_classification(dirty, val_fraction=0.0).train
    i = ds.paths.index(str(dirty / "cat" / "2_truncated.jpg"))
    img, label = ds[i]
    ref, ref_label = ds[i + 1]
    assert np.array_equal(np.asarray(img), np.asarray(ref)) and label == ref_label == int(ds.labels[i + 1])
    assert ds[i][1] == label  # same answer the second time (the file is now known bad)
    assert len(ds.skipped) == 1


def test_validate_drops_bad_files_with_a_report(dirty, caplog):
    splits = load_classification(dirty, val_fraction=0.0)
    clean = splits.validate(num_workers=2)
    assert len(clean.train) == 12
    assert {Path(p).name for p, _ in clean.train.skipped} == {"2_truncated.jpg", "3_page.jpg"}
    assert "dropped 2 of 14" in caplog.text
    assert all(ds_label in (0, 1) for _, ds_label in clean.train)
    assert splits.train.skipped == clean.train.skipped  # the original view knows them too


def test_pickle_and_views(dirty):
    ds = load_classification(dirty, val_fraction=0.0).train
    clone = pickle.loads(pickle.dumps(ds.with_transform(to_tensor)))
    x, y = clone[0]
    assert isinstance(x, torch.Tensor) and y == 0
    assert ds.transform is None  # with_transform made a new view
    sub = ds.subset([0, len(ds) - 1])
    assert len(sub) == 2 and sub.labels.tolist() == [0, 1]
    assert ds.class_counts() == {"cat": 7, "dog": 7}
    with pytest.raises(ValueError):
        ds.labels[0] = 1  # read-only


def test_constructor_checks_labels(tmp_path):
    ds = ImageDataset([("a.png", "dog"), ("b.png", 0)], ["cat", "dog"], root=tmp_path)
    assert ds.labels.tolist() == [1, 0] and ds.paths[0] == str(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="not one of the classes"):
        ImageDataset([("a.png", "owl")], ["cat", "dog"])
    with pytest.raises(DatasetError, match="outside 0..1"):
        ImageDataset([("a.png", 5)], ["cat", "dog"])


def test_all_bad_raises_clearly(tmp_path):
    (tmp_path / "x.jpg").write_text("nope")
    ds = ImageDataset([(tmp_path / "x.jpg", 0)], ["only"])
    with pytest.raises(DatasetError, match="none of the 1 images"):
        ds[0]
    with pytest.raises(IndexError):
        ds[3]
