"""load_classification over real folders, CSVs, split files, torchvision layouts and the shared assets."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontune.data import DatasetWarning, load_classification, stratified_split
from visiontune.errors import ConfigError, DatasetError, OfflineError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTUNE_CACHE_DIR", str(tmp_path / "vt-cache"))


def _img(path: Path, value: int = 0, size=(8, 8), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value % 256, 40, 90)).save(path, format=fmt)
    return path


def _class_tree(root: Path, counts: dict[str, int], ext=".png"):
    for c, n in counts.items():
        for i in range(n):
            _img(root / c / f"{c}_{i:03d}{ext}", value=i * 7 + len(c))
    return root


def test_hymenoptera(assets):
    s = load_classification(assets / "hymenoptera")
    assert s.classes == ["ants", "bees"]
    assert (len(s.train), len(s.val), s.test) == (244, 153, None)
    assert s.summary() == {"train": {"ants": 123, "bees": 121}, "val": {"ants": 70, "bees": 83}}
    assert s.split_info["val_from"] == "source"
    assert s.train.labels.dtype == np.int64 and s.train.labels[0] == 0 and s.train.labels[-1] == 1
    assert any(p.endswith(".jpeg") for p in s.train.paths)
    img, label = s.val[0]
    assert img.mode == "RGB" and label == 0
    assert len(s.version) == 12 and s.version == load_classification(assets / "hymenoptera").version


def test_split_layout_aliases_union_of_classes_and_filters(tmp_path):
    root = tmp_path / "ds"
    _class_tree(root / "train", {"cat": 3, "dog": 2})
    _class_tree(root / "valid", {"cat": 1, "dog": 1})
    _class_tree(root / "test", {"cat": 1, "dog": 1, "owl": 1})
    _img(root / "train" / "cat" / "UPPER.JPEG", fmt="JPEG")
    _img(root / "train" / "cat" / "nested" / "deep.webp")
    _img(root / "train" / "cat" / ".hidden.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    _img(root / "train" / "dog" / ".thumbs" / "t.png")
    with pytest.warns(DatasetWarning, match="owl"):
        s = load_classification(root)
    assert s.classes == ["cat", "dog", "owl"]
    assert s.summary()["train"] == {"cat": 5, "dog": 2, "owl": 0}
    assert s.summary()["val"] == {"cat": 1, "dog": 1, "owl": 0}
    assert s.summary()["test"] == {"cat": 1, "dog": 1, "owl": 1}
    names = [Path(p).name for p in s.train.paths]
    assert "UPPER.JPEG" in names and "deep.webp" in names
    assert ".hidden.png" not in names and "t.png" not in names and "notes.txt" not in names
    assert s.test.labels[s.test.paths.index(str(root / "test" / "owl" / "owl_000.png"))] == 2


def test_layout_errors_and_warnings(tmp_path):
    a = tmp_path / "a"
    _class_tree(a / "val", {"x": 1})
    with pytest.raises(DatasetError, match="no train/ folder"):
        load_classification(a)
    b = tmp_path / "b"
    _class_tree(b / "train", {"x": 2})
    _class_tree(b / "val", {"x": 1})
    _class_tree(b / "validation", {"x": 1})
    with pytest.raises(DatasetError, match="both"):
        load_classification(b)
    c = tmp_path / "c"
    _class_tree(c, {"x": 3, "y": 3})
    (c / "empty_class").mkdir()
    with pytest.warns(DatasetWarning, match="empty class folder"):
        s = load_classification(c)
    assert s.classes == ["x", "y"]
    with pytest.raises(DatasetError, match="no images found"):
        load_classification(tmp_path / "c" / "empty_class")
    with pytest.raises(DatasetError, match="not found"):
        load_classification(tmp_path / "missing")
    with pytest.raises(ConfigError), pytest.warns(DatasetWarning):
        load_classification(c, val_fraction=1.0)


def test_single_folder_stratified_split_is_reproducible_and_stratified(tmp_path):
    root = _class_tree(tmp_path / "flat", {"a": 50, "b": 20, "c": 10, "d": 1})
    s1 = load_classification(root, val_fraction=0.2, seed=0)
    s2 = load_classification(root, val_fraction=0.2, seed=0)
    s3 = load_classification(root, val_fraction=0.2, seed=1)
    assert s1.train.paths == s2.train.paths and s1.val.paths == s2.val.paths
    assert s1.val.paths != s3.val.paths
    assert s1.summary()["val"] == {"a": 10, "b": 4, "c": 2, "d": 0}
    assert s1.summary()["train"] == {"a": 40, "b": 16, "c": 8, "d": 1}
    assert not set(s1.train.paths) & set(s1.val.paths)
    assert s1.version == s3.version  # same files and labels: the data version does not depend on the split seed
    assert s1.split_info["val_from"].startswith("seeded stratified")
    # order independence: the split is a function of the keys, not of their order
    keys = [f"k{i}" for i in range(30)]
    labels = ["x" if i % 3 else "y" for i in range(30)]
    tr, va = stratified_split(keys, labels, 0.3, seed=5)
    rev_tr, rev_va = stratified_split(keys[::-1], labels[::-1], 0.3, seed=5)
    assert sorted(keys[i] for i in va) == sorted(keys[::-1][i] for i in rev_va)
    assert len(tr) + len(va) == 30
    none = load_classification(root, val_fraction=0.0)
    assert none.val is None and len(none.train) == 81


def test_csv_source_with_and_without_split(tmp_path):
    for i in range(6):
        _img(tmp_path / "imgs" / f"{i}.png", value=i)
    (tmp_path / "labels.csv").write_text(
        "path,label,split\n"
        + "".join(f"imgs/{i}.png,{'10' if i % 2 else '2'},{'train' if i < 4 else 'valid'}\n" for i in range(6))
    )
    s = load_classification(tmp_path / "labels.csv")
    assert s.classes == ["2", "10"]  # numeric names sort numerically
    assert (len(s.train), len(s.val)) == (4, 2)
    assert s.split_info["splits_from"] == "CSV split column"
    (tmp_path / "nosplit.csv").write_text(
        "path,label\n" + "".join(f"imgs/{i}.png,{'a' if i < 3 else 'b'}\n" for i in range(6))
    )
    s2 = load_classification(tmp_path / "nosplit.csv", val_fraction=0.34)
    assert s2.summary()["val"] == {"a": 1, "b": 1}


def test_csv_errors_name_the_line(tmp_path):
    _img(tmp_path / "ok.png")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "path,label,split\nok.png,a,train\nmissing.png,a,train\nok.png,,train\n\nok.png,b,holdout\nok.png,a,val\n"
    )
    with pytest.raises(DatasetError) as e:
        load_classification(bad)
    msg = str(e.value)
    assert "line 3: file not found" in msg and "missing.png" in msg
    assert "line 4: empty label" in msg
    assert "line 6: unknown split 'holdout'" in msg
    assert "line 7: ok.png is listed again (first on line 2)" in msg
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("ok.png,a\n")
    with pytest.raises(DatasetError, match="line 1: header"):
        load_classification(nohead)


def test_split_files(tmp_path):
    root = tmp_path / "ds"
    _class_tree(root / "images", {"cat": 3, "dog": 3})
    (root / "train.txt").write_text(
        "# comment\nimages/cat/cat_000.png\nimages/cat/cat_001.png\nimages/dog/dog_000.png\n\n"
    )
    (root / "val.csv").write_text("path,label\nimages/cat/cat_002.png,cat\nimages/dog/dog_001.png,dog\n")
    s = load_classification(root, split_files={"train": "train.txt", "val": "val.csv"})
    assert s.summary() == {"train": {"cat": 2, "dog": 1}, "val": {"cat": 1, "dog": 1}}
    (root / "bad.txt").write_text("images/cat/cat_000.png\nimages/cat/nope.png\n")
    with pytest.raises(DatasetError, match=r"bad.txt, line 2: file not found"):
        load_classification(root, split_files={"train": "bad.txt"})
    with pytest.raises(DatasetError, match="both"):
        load_classification(root, split_files={"train": "train.txt", "val": "train.txt"})


def test_version_follows_content_and_labels(tmp_path):
    root = _class_tree(tmp_path / "flat", {"a": 3, "b": 3})
    v1 = load_classification(root).version
    _img(root / "a" / "a_000.png", value=200)  # content change
    v2 = load_classification(root).version
    assert v2 != v1
    (root / "a" / "a_001.png").rename(root / "b" / "a_001.png")  # label change
    assert load_classification(root).version not in (v1, v2)


def test_torchvision_dtd_from_local_files(tmp_path):
    base = tmp_path / "tv" / "dtd" / "dtd"
    for cls in ("banded", "dotted"):
        for i in range(3):
            _img(base / "images" / cls / f"{cls}_{i}.jpg", value=i, fmt="JPEG")
    labels = base / "labels"
    labels.mkdir(parents=True)
    (labels / "train1.txt").write_text("banded/banded_0.jpg\ndotted/dotted_0.jpg\n")
    (labels / "val1.txt").write_text("banded/banded_1.jpg\ndotted/dotted_1.jpg\n")
    (labels / "test1.txt").write_text("banded/banded_2.jpg\ndotted/dotted_2.jpg\n")
    s = load_classification("torchvision:DTD", root=tmp_path / "tv")
    assert s.classes == ["banded", "dotted"]
    assert (len(s.train), len(s.val), len(s.test)) == (2, 2, 2)
    assert s.train.paths[0].endswith("banded_0.jpg") and s.train[1][1] == 1
    assert s.manifest().entries[0].path.startswith("dtd/dtd/images/")


def test_torchvision_missing_offline_is_fast_and_says_where(tmp_path, monkeypatch):
    monkeypatch.delenv("VISIONTUNE_OFFLINE", raising=False)
    t = time.perf_counter()
    with pytest.raises((OfflineError, DatasetError)) as e:
        load_classification("torchvision:CIFAR10", root=tmp_path / "nothing-here")
    assert time.perf_counter() - t < 2.0
    assert "cifar-10-batches-py" in str(e.value) and str(tmp_path / "nothing-here") in str(e.value)
    monkeypatch.setenv("VISIONTUNE_OFFLINE", "1")
    with pytest.raises(OfflineError, match="oxford-iiit-pet"):
        load_classification("torchvision:oxford_iiit_pet", root=tmp_path)
    with pytest.raises(DatasetError, match="not supported"):
        load_classification("torchvision:ImageNet", root=tmp_path)


def test_in_memory_dataset_ids_and_version():
    from visiontune.data.splits import make_splits
    from visiontune.data.torchvision_sources import collect_arrays

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    c = collect_arrays(
        "cifar10",
        {"train": (data[:16], [i % 2 for i in range(16)]), "test": (data[16:], [0, 1, 0, 1])},
        ["airplane", "automobile"],
    )
    s = make_splits(c, val_fraction=0.25, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (12, 4, 4)
    assert s.test.paths[0] == "cifar10/test/000000"
    img, label = s.test[1]
    assert np.array_equal(np.asarray(img), data[17]) and label == 1
    assert len(s.version) == 12 and s.manifest().root is None


def test_torchvision_pets_from_local_files_draws_val_from_trainval(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    lines = {"trainval": [], "test": []}
    for k, (breed, label) in enumerate(
        [
            ("Abyssinian", 1),
            ("Abyssinian", 1),
            ("Abyssinian", 1),
            ("basset_hound", 2),
            ("basset_hound", 2),
            ("basset_hound", 2),
        ]
    ):
        image_id = f"{breed}_{k}"
        _img(base / "images" / f"{image_id}.jpg", value=k, fmt="JPEG")
        lines["test" if k in (2, 5) else "trainval"].append(f"{image_id} {label} 1 1")
    (base / "annotations").mkdir()
    for split, ls in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(ls) + "\n")
    s = load_classification("torchvision:OxfordIIITPet", root=tmp_path, val_fraction=0.5)
    assert s.classes == ["Abyssinian", "Basset Hound"]  # torchvision's class names are kept
    assert (len(s.train), len(s.val), len(s.test)) == (2, 2, 2)
    assert s.split_info["val_from"] == "seeded stratified split of train"
    assert sorted(s.test.labels.tolist()) == [0, 1]


def test_cli_error_exit_code(tmp_path, monkeypatch, capsys):
    from visiontune.cli.main import main

    monkeypatch.setattr("sys.argv", ["visiontune", "data", "info", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert "DatasetError" in capsys.readouterr().err


def test_splits_pickle(tmp_path):
    import pickle

    root = _class_tree(tmp_path / "flat", {"a": 3, "b": 3})
    s = load_classification(root)
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.version == s.version and s2.val.paths == s.val.paths
