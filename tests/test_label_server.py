"""The Label Studio round trip against a REAL Label Studio server started on 127.0.0.1.

The server comes from its own virtual environment (label-studio pins Django and ~40 packages that
clash with visiontune's): ``$VISIONTUNE_LABEL_STUDIO`` or ``/work/venvs/labelstudio/bin/label-studio``
(see .ci/run). For each task kind: create a project from the exported config, import tasks with
pre-annotations, submit annotations through the API as an annotator would (changing some
labels), export, import into visiontune → a new version whose diff lists exactly the changed
labels, with the images' bytes untouched.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from visiontune.label.ls_server import ENV_EXECUTABLE, LocalServer, find_executable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_executable() is None,
        reason=f"label-studio is not installed: create /work/venvs/labelstudio (pip install label-studio==1.23.2) "
        f"or set {ENV_EXECUTABLE}=/path/to/bin/label-studio (.ci/run does)",
    ),
]


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".visiontune" not in p.parts and p.suffix.lower() in (".jpg", ".jpeg", ".png")
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    docroot = tmp_path_factory.mktemp("ls-docroot")
    srv = LocalServer(docroot, tmp_path_factory.mktemp("ls-data"))
    srv.start()
    print(f"label-studio answered after {srv.start_seconds:.1f} s")
    yield srv
    srv.stop()


def _prediction(client, task_id: int, model_version: str) -> list[dict]:
    preds = [p for p in client.predictions(task_id) if p["model_version"] == model_version]
    assert len(preds) == 1, f"task {task_id}: predictions {[p['model_version'] for p in client.predictions(task_id)]}"
    return preds[0]["result"]


def test_classification_round_trip_on_a_real_server(server, assets):
    import visiontune as vt
    import visiontune.label as vl

    root = Path(server.document_root) / "hym"
    for cls in ("ants", "bees"):
        (root / cls).mkdir(parents=True)
        for f in sorted((assets / "hymenoptera" / "val" / cls).iterdir())[:4]:
            shutil.copy(f, root / cls / f.name)
    before = _hashes(root)
    model = vt.load("timm:mobilenetv3_small_050", pretrained=False, class_names=["ants", "bees"])
    ex = vl.export_label_studio(root, root.parent / "export-cls", model=model, progress=False)
    assert ex.meta.base_version and ex.meta.document_root == server.document_root
    push = vl.push_label_studio(ex.dir, server.url, server.token, title="hymenoptera review")
    client = server.client()
    assert len(push.tasks) == 8

    # the images are served from the local folder, byte for byte
    first = sorted(before)[0]
    task = next(t for t in client.tasks(push.project) if t["id"] == push.tasks[first])
    assert hashlib.sha256(client.file(task["data"]["image"])).hexdigest() == before[first]

    # the model's predictions arrived with scores and the run's model_version
    preds = client.predictions(task["id"])
    mine = [p for p in preds if p["model_version"] == ex.meta.model_version]
    assert mine and 0 < mine[0]["score"] <= 1 and mine[0]["result"][0]["value"]["choices"][0] in ("ants", "bees")

    # an annotator: keeps the current label on most tasks, changes two, skips one, leaves one
    paths = sorted(push.tasks)
    changed = {paths[1]: "bees", paths[6]: "ants"}
    for path in paths[:-1]:
        tid = push.tasks[path]
        result = _prediction(client, tid, f"labels {ex.meta.base_version}")
        if path in changed:
            result = [dict(result[0], value={"choices": [changed[path]]})]
        client.annotate(tid, [{k: v for k, v in r.items() if k != "score"} for r in result], lead_time=2.5)
    client.annotate(push.tasks[paths[2]], [], was_cancelled=True)  # a skip never counts

    res = vl.pull_label_studio(server.url, server.token, push.project, ex.dir)
    assert res.changed and res.reviewed == 7 and res.not_annotated == 1
    assert sorted(res.diff.relabelled) == sorted((p, p.split("/")[0], new) for p, new in changed.items())
    assert not res.diff.added and not res.diff.removed and not res.diff.modified
    from visiontune.data.versions import load_manifest

    new = load_manifest(res.file)
    assert new.parent == ex.meta.base_version and new.version == res.version
    assert _hashes(root) == before  # image bytes untouched


def _coco8_detection(assets, dst: Path) -> Path:
    for split in ("train", "val"):
        shutil.copytree(assets / "coco8" / "images" / split, dst / "images" / split)
        shutil.copytree(assets / "coco8" / "labels" / split, dst / "labels" / split)
    names = [f"class{i}" for i in range(80)]
    (dst / "data.yaml").write_text(f"path: {dst}\ntrain: images/train\nval: images/train\nnames: {names}\n")
    return dst / "data.yaml"


def test_detection_round_trip_on_a_real_server(server, assets):
    import visiontune.label as vl
    from visiontune.detect import Detector

    root = Path(server.document_root) / "coco8"
    data = _coco8_detection(assets, root)
    before = _hashes(root)

    def boxes(images):  # a callable detector: one box per image, score 0.8
        return [np.array([[im.width * 0.1, im.height * 0.2, im.width * 0.5, im.height * 0.6, 0.8, 0]]) for im in images]

    det = Detector.from_callable(boxes, [f"class{i}" for i in range(80)], model_id="toy-detector")
    ex = vl.export_label_studio(data, root.parent / "export-det", model=det, progress=False)
    assert ex.meta.task == "detection" and ex.meta.model_version == "toy-detector"
    push = vl.push_label_studio(ex.dir, server.url, server.token)
    client = server.client()
    paths = sorted(push.tasks)
    assert len(paths) == 4

    relabel, drop = paths[0], paths[1]
    for path in paths:
        result = [
            {k: v for k, v in r.items() if k != "score"}
            for r in _prediction(client, push.tasks[path], f"labels {ex.meta.base_version}")
        ]
        if path == relabel:
            result[0] = dict(result[0], value=dict(result[0]["value"], rectanglelabels=["class1"]))
        if path == drop:
            result = result[1:]
        client.annotate(push.tasks[path], result)
    res = vl.pull_label_studio(server.url, server.token, push.project, ex.dir)
    d = res.diff
    assert res.reviewed == 4 and d.count("relabelled") == 1 and d.count("removed") == 1
    assert d.count("added") == 0 and d.count("reshaped") == 0, str(d)  # percentages round-trip exactly enough
    rel = next(o for o in d.objects if o["change"] == "relabelled")
    assert rel["path"] == relabel and rel["new_label"] == "class1" and not rel["reshaped"]
    assert next(o for o in d.objects if o["change"] == "removed")["path"] == drop
    assert _hashes(root) == before
    assert vl.AnnotationVersion.read(res.file).parent == ex.meta.base_version


def test_segmentation_polygons_and_brush_masks_on_a_real_server(server, assets):
    import visiontune.label as vl
    from visiontune.label.core import Shape

    root = Path(server.document_root) / "coco8seg"
    shutil.copytree(assets / "coco8-seg" / "images" / "val", root / "images" / "val")
    shutil.copytree(assets / "coco8-seg" / "labels" / "val", root / "labels" / "val")
    ls = vl.from_yolo_seg(root / "images" / "val", [f"class{i}" for i in range(80)])
    first = ls.items[0]
    w, h = first.ensure_size()
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 2, w // 3 : w // 2] = True
    first.predictions = [Shape("class0", "mask", mask=mask, score=0.7)]
    ls.model_version = "toy-segmenter"
    ex = vl.export_label_studio(ls, root.parent / "export-seg", progress=False)
    push = vl.push_label_studio(ex.dir, server.url, server.token)
    client = server.client()
    paths = sorted(push.tasks)
    for path in paths:
        result = [
            {k: v for k, v in r.items() if k != "score"}
            for r in _prediction(client, push.tasks[path], f"labels {ex.meta.base_version}")
        ]
        if path == first.path:  # accept the model's brush mask as an extra object
            brush = _prediction(client, push.tasks[path], "toy-segmenter")
            result += [{k: v for k, v in r.items() if k != "score"} for r in brush]
            result[0] = dict(result[0], value=dict(result[0]["value"], polygonlabels=["class2"]))
        client.annotate(push.tasks[path], result)
    res = vl.pull_label_studio(server.url, server.token, push.project, ex.dir)
    d = res.diff
    assert (
        d.count("added") == 1 and d.count("relabelled") == 1 and d.count("removed") == 0 and d.count("reshaped") == 0
    ), str(d)
    added = next(o for o in d.objects if o["change"] == "added")
    assert added["path"] == first.path and added["new"].startswith("mask class0")
    v = vl.AnnotationVersion.read(res.file)
    doc = next(o for o in v.by_path()[first.path].objects if o.kind == "mask")
    from visiontune.label.masks import coco_rle_to_mask

    assert (coco_rle_to_mask(doc.rle) == mask).all()  # the brush RLE survived the server exactly


SDK_SCRIPT = r"""
import json, sys
from pathlib import Path
from label_studio_sdk import LabelStudio
url, token, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ls = LabelStudio(base_url=url, api_key=token)
p = ls.projects.create(title="through the sdk", label_config=(folder / "config.xml").read_text())
ls.projects.import_tasks(id=p.id, request=json.loads((folder / "tasks.json").read_text()))
tasks = sorted(ls.tasks.list(project=p.id), key=lambda t: t.data["vt_path"])
for t in tasks[:2]:  # an annotator relabels the first two images as bees
    ls.annotations.create(id=t.id, result=[{"from_name": "class", "to_name": "image", "type": "choices", "value": {"choices": ["bees"]}}])
out = folder / "sdk-export.json"
out.write_bytes(b"".join(ls.projects.exports.download_sync(id=p.id, export_type="JSON", download_all_tasks=True)))
print(out)
"""


def test_label_studio_sdk_drives_the_same_files(server, assets):
    """label-studio-sdk (from the server's venv; it cannot join visiontune's) creates the project
    from config.xml, imports tasks.json, and its JSON export imports into visiontune."""
    import subprocess

    import visiontune.label as vl

    python = Path(server.executable).with_name("python")
    root = Path(server.document_root) / "hym-sdk"
    for cls in ("ants", "bees"):
        (root / cls).mkdir(parents=True)
        for f in sorted((assets / "hymenoptera" / "val" / cls).iterdir())[4:6]:
            shutil.copy(f, root / cls / f.name)
    ex = vl.export_label_studio(root, root.parent / "export-sdk", progress=False)
    r = subprocess.run(
        [str(python), "-c", SDK_SCRIPT, server.url, server.token, str(ex.dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = vl.import_label_studio(ex.dir / "sdk-export.json")
    paths = sorted(it.path for it in vl.from_classification(ex.meta.base_file).items)
    assert res.diff.relabelled == [(paths[0], "ants", "bees"), (paths[1], "ants", "bees")]
    assert res.reviewed == 2 and res.not_annotated == 2
