"""The dataset manifest as a typed record: files written before it still load, train the same
split, and are written back unchanged; errors name the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from visiontune.data import Entry, Manifest, load_classification
from visiontune.errors import DatasetError
from visiontune.records import Record

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "dataset-manifest-v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTUNE_CACHE_DIR", str(tmp_path / "vt-cache"))


@pytest.fixture()
def old_manifest(tmp_path) -> Path:
    """The 0.1 fixture copied with its images; ``root`` points at the copy (not part of the hash)."""
    shutil.copytree(FIXTURE / "data", tmp_path / "data")
    doc = json.loads((FIXTURE / EXPECTED["manifest"]).read_text())
    doc["root"] = doc["source"] = str((tmp_path / "data").resolve())
    path = tmp_path / "store" / EXPECTED["manifest"]
    path.parent.mkdir()
    path.write_text(json.dumps(doc, indent=1))
    return path


def test_a_manifest_written_by_0_1_loads_and_splits_the_same(old_manifest, tmp_path):
    old = json.loads(old_manifest.read_text())
    assert old["format"] == "visiontune.dataset-manifest/1" and old["num_entries"] == 5
    m = Manifest.load(old_manifest)
    assert isinstance(m, Record) and m.format == Manifest.format_id() == "visiontune.dataset-manifest/1"
    assert m.version == EXPECTED["version"] and m.classes == EXPECTED["classes"] and m.file == old_manifest.resolve()
    assert all(isinstance(e, Entry) for e in m.entries) and m.verify() == []
    s = load_classification(old_manifest, val_fraction=0.4, seed=0)
    root = Path(old["root"])
    assert [Path(p).relative_to(root).as_posix() for p, _ in s.train.samples] == EXPECTED["train"]
    assert [Path(p).relative_to(root).as_posix() for p, _ in s.val.samples] == EXPECTED["val"]
    assert s.version == EXPECTED["version"]

    saved = m.save(tmp_path / "again")  # written back through the record: the same document
    assert saved.name == EXPECTED["manifest"] and json.loads(saved.read_text()) == old
    assert list(json.loads(saved.read_text()))[:2] == ["format", "version"]


def test_a_new_manifest_round_trips(tmp_path):
    e = [Entry("b/x.png", "0" * 64, 3, "béte", "train"), Entry("a/y.png", "1" * 64, 4, "ant")]
    m = Manifest(entries=e, classes=["ant", "béte"], root=str(tmp_path), source="hand-made", notes="n")
    path = m.save(tmp_path / "store")
    doc = json.loads(path.read_text())
    assert [x["path"] for x in doc["entries"]] == ["a/y.png", "b/x.png"] and doc["num_entries"] == 2
    back = Manifest.load(path)
    assert back.version == m.version and sorted(back.entries) == sorted(e) and back.notes == "n"
    assert back.to_dict() == m.to_dict()


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d.update(format="visiontune.model/2"), "not a visiontune dataset manifest"),
        (lambda d: d.pop("format"), "not a visiontune dataset manifest"),
        (lambda d: d.update(format="visiontune.dataset-manifest/2"), "newer"),
        (lambda d: d.pop("entries"), "malformed manifest: entries"),
        (lambda d: d["entries"][1].pop("sha256"), "malformed manifest: entries.1.sha256"),
        (lambda d: d["entries"][0].update(size="big"), "entries.0.size"),
        (lambda d: d["entries"][0].update(label="dog" if d["entries"][0]["label"] == "cat" else "cat"), "by hand"),
    ],
)
def test_bad_manifests_name_the_file_and_the_field(old_manifest, edit, needle):
    doc = json.loads(old_manifest.read_text())
    edit(doc)
    old_manifest.write_text(json.dumps(doc))
    with pytest.raises(DatasetError) as e:
        Manifest.load(old_manifest)
    assert str(old_manifest) in str(e.value) and needle in str(e.value)
