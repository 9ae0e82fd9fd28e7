"""Dataset versions: snapshot -> apply_fixes -> diff round trip, errors naming lines, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from visiontune.data import DatasetWarning, load_classification
from visiontune.data.hashing import HashCache, hash_files, sha256_file
from visiontune.data.manifest import Manifest
from visiontune.data.versions import apply_fixes, diff, list_versions, snapshot
from visiontune.errors import DatasetError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTUNE_CACHE_DIR", str(tmp_path / "vt-cache"))


@pytest.fixture()
def tree(tmp_path) -> Path:
    root = tmp_path / "pets"
    for split, n in (("train", 4), ("val", 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 12), (i * 40, 90 if c == "cat" else 180, len(split))).save(
                    root / split / c / f"{c}{i}.png"
                )
    return root


def _file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*.png"))}


def test_snapshot_fix_diff_round_trip_leaves_files_untouched(tree, tmp_path):
    before = _file_hashes(tree)
    m1 = snapshot(tree, notes="first")
    assert m1.file == (tree / ".visiontune" / "versions" / f"{m1.version}.json").resolve()
    saved = json.loads(m1.file.read_text())
    assert saved["version"] == m1.version and saved["parent"] is None and saved["root"] == str(tree.resolve())
    assert {e["path"]: e["sha256"] for e in saved["entries"]} == before
    assert {e["split"] for e in saved["entries"]} == {"train", "val"}
    # the training-time data version of the same folder is the same id
    assert load_classification(tree).version == m1.version
    assert snapshot(tree).version == m1.version  # unchanged data: same version, no new file
    assert len(list_versions(m1.file.parent)) == 1

    fixes = tmp_path / "corrections.csv"
    fixes.write_text(
        f"path,action,new_label\ntrain/cat/cat1.png,relabel,dog\n{tree / 'val' / 'dog' / 'dog0.png'},remove,\n"
    )
    m2 = apply_fixes(m1.version, fixes)
    assert m2.parent == m1.version and m2.version != m1.version and m2.root == m1.root
    assert m2.file.parent == m1.file.parent and m1.file.is_file()
    d = diff(m1, m2)
    assert d.relabelled == [("train/cat/cat1.png", "cat", "dog")]
    assert [e.path for e in d.removed] == ["val/dog/dog0.png"]
    assert not d.added and not d.modified and d.unchanged == len(m1.entries) - 2
    assert _file_hashes(tree) == before  # the original files are untouched
    assert (tree / "val" / "dog" / "dog0.png").is_file()

    s = load_classification(m2.version)  # a version id alone
    assert s.version == m2.version
    assert s.summary() == {"train": {"cat": 3, "dog": 5}, "val": {"cat": 2, "dog": 1}}
    cat1 = str(tree / "train" / "cat" / "cat1.png")
    assert s.train.labels[s.train.paths.index(cat1)] == 1
    assert load_classification(m2.file).version == m2.version

    # a real content change shows up as "modified", a new file as "added"
    Image.new("RGB", (12, 12), (1, 2, 3)).save(tree / "train" / "dog" / "dog0.png")
    Image.new("RGB", (12, 12), (9, 9, 9)).save(tree / "train" / "dog" / "new.png")
    m3 = snapshot(tree)
    assert m3.parent == m2.version  # newest earlier version of this root
    d3 = diff(m1.version, m3.version)
    assert [p for p, _, _ in d3.modified] == ["train/dog/dog0.png"]
    assert [e.path for e in d3.added] == ["train/dog/new.png"]
    with pytest.raises(DatasetError, match="size"):
        load_classification(m1.file)  # the files no longer match version 1
    assert [p for p, _ in m1.verify()] == ["train/dog/dog0.png"]


def test_corrections_errors_name_the_line(tree, tmp_path):
    m1 = snapshot(tree)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "path,action,new_label\n"
        "train/cat/cat0.png,relabel,dog\n"
        "train/cat/nope.png,remove,\n"
        "train/cat/cat1.png,relabel,hamster\n"
        "train/cat/cat2.png,delete,\n"
        "train/cat/cat0.png,remove,\n"
        "train/cat/cat3.png,relabel,\n"
    )
    with pytest.raises(DatasetError) as e:
        apply_fixes(m1, bad)
    msg = str(e.value)
    assert "line 3: path 'train/cat/nope.png' is not in version" in msg
    assert "line 4: unknown label 'hamster'" in msg
    assert "line 5: unknown action 'delete'" in msg
    assert "line 6: train/cat/cat0.png already corrected at" in msg and "line 2" in msg
    assert "line 7: relabel of train/cat/cat3.png needs a new_label" in msg
    assert len(list_versions(m1.file.parent)) == 1  # nothing written
    with pytest.warns(DatasetWarning) as record:
        same = apply_fixes(m1, [{"path": "train/cat/cat0.png", "action": "relabel", "new_label": "cat"}])
    assert same.version == m1.version
    assert any("already has label 'cat'" in str(w.message) for w in record)
    assert any("change nothing" in str(w.message) for w in record)


def test_tampered_manifest_is_refused(tree):
    m1 = snapshot(tree)
    d = json.loads(m1.file.read_text())
    d["entries"][0]["label"] = "dog" if d["entries"][0]["label"] == "cat" else "cat"
    m1.file.write_text(json.dumps(d))
    with pytest.raises(DatasetError, match="edited by hand"):
        Manifest.load(m1.file)


def test_hash_cache_reuses_and_invalidates(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    cache = HashCache(tmp_path / "h.sqlite")
    [(h1, n1)] = hash_files([f], cache=cache)
    assert (h1, n1) == (sha256_file(f), 3)
    assert cache.lookup([(str(f), 3, f.stat().st_mtime_ns)]) == {str(f): h1}
    f.write_bytes(b"abcd")
    [(h2, n2)] = hash_files([f], cache=cache)
    assert n2 == 4 and h2 == sha256_file(f) != h1


def test_cli_data_commands(tree, tmp_path):
    from visiontune.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["data", "info", str(tree), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["counts"] == {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}
    r = runner.invoke(app, ["data", "info", str(tree), "--check"])
    assert r.exit_code == 0 and "cat" in r.stdout and "total" in r.stdout
    store = tmp_path / "store"
    r = runner.invoke(app, ["data", "snapshot", str(tree), "--store", str(store)])
    assert r.exit_code == 0, r.output
    v1 = next(store.glob("*.json")).stem
    fixes = tmp_path / "fix.csv"
    fixes.write_text("path,action,new_label\nval/cat/cat0.png,relabel,dog\n")
    r = runner.invoke(app, ["data", "apply-fixes", v1, "--corrections", str(fixes), "--store", str(store)])
    assert r.exit_code == 0, r.output
    v2 = next(p.stem for p in store.glob("*.json") if p.stem != v1)
    r = runner.invoke(app, ["data", "diff", v1, v2, "--store", str(store)])
    assert r.exit_code == 0 and "1 relabelled" in r.stdout and "val/cat/cat0.png: cat -> dog" in r.stdout
    r = runner.invoke(app, ["data", "diff", v1, "ffffffffffff", "--store", str(store)])
    assert r.exit_code != 0 and "not found" in str(r.exception)
