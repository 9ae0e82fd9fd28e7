"""Segmenters behind `visiontune serve`: a saved composed segmenter and its ONNX export, each a
real server process on 127.0.0.1, answer with the class maps `vt.load(...).predict` gives (an
index PNG in the JSON); instance masks travel as COCO RLE and decode to the same masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _segment_data import TINY_SEGMENTER, make_mask_folder, save_tiny_sam
from test_serve_server import ServerProcess

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    import visiontune as vt
    from visiontune.segment.compose import composed_segmenter

    root = tmp_path_factory.mktemp("seg")
    data = make_mask_folder(root / "data", n=4)
    torch.manual_seed(0)
    p = composed_segmenter({**TINY_SEGMENTER, "ignore_index": 255})
    saved = p.save(root / "model")
    images = sorted((data / "val" / "images").glob("*.jpg"))
    onnx = vt.export(saved, out=root / "seg.onnx", parity_images=images).path
    return {"saved": saved, "onnx": onnx, "images": images, "direct": vt.load(str(saved)), "root": root}


@pytest.mark.slow
@pytest.mark.parametrize("artifact", ["saved", "onnx"])
def test_served_segmenter_equals_direct_predict(segmenter, artifact, tmp_path):
    from typer.testing import CliRunner

    from visiontune.cli.main import app
    from visiontune.serve import Client
    from visiontune.serve.segment import read_class_map

    images = segmenter["images"]
    server = ServerProcess(
        [str(segmenter[artifact]), "--max-batch-size", "4", "--max-wait", "0.05"], tmp_path / "s.log"
    )
    try:
        server.wait_ready()
        with Client(server.url) as client:
            assert client.info()["model"]["task"] == "segmentation"
            served = client.predict(images, concurrency=4)
            with pytest.raises(Exception, match="422"):  # a classifier's option is not a segmenter's
                client.predict_one(images[0], topk=3)
        cli = CliRunner().invoke(app, ["predict", "--server", server.url, str(images[0])], catch_exceptions=False)
    finally:
        server.stop()
    direct = segmenter["direct"].predict([str(f) for f in images])
    for s, d in zip(served, direct):
        assert s["task"] == "segmentation" and s["kind"] == "semantic"
        assert s["image_size"] == list(d.image_size) == [48, 64]
        assert s["class_names"] == d.class_names and s["ignore_index"] == 255
        got = read_class_map(s["class_map"])
        agree = (torch.from_numpy(got) == d.class_map).float().mean().item()
        # the saved model is the same computation; the ONNX export may flip a boundary pixel
        assert agree == 1.0 if artifact == "saved" else agree > 0.999
        assert s["class_areas"].keys() <= set(d.class_names)
        if artifact == "saved":
            assert s["class_areas"] == d.class_areas()
    assert cli.exit_code == 0, cli.output
    assert str(images[0]) in cli.output and "%" in cli.output


def test_instance_masks_travel_as_rle_and_class_maps_as_png():
    from visiontune.results.segmentation import Segmentation
    from visiontune.serve.segment import class_map_png, read_class_map, segmentation_json

    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.random((3, 20, 30)) > 0.6)
    s = Segmentation(
        torch.tensor([[1.0, 2, 10, 12], [0, 0, 30, 20], [5, 5, 6, 6]]),
        torch.tensor([0.9, 0.5, 0.2]),
        torch.tensor([0, 1, 1]),
        ["cat", "dog"],
        masks,
        (20, 30),
    )
    doc = json.loads(json.dumps(segmentation_json(s)))  # JSON-able as served
    assert doc["kind"] == "instance" and doc["class_map"] is None and len(doc["instances"]) == 3
    back = Segmentation.from_rle([i["mask"] for i in doc["instances"]], [i["label"] for i in doc["instances"]])
    assert torch.equal(back.masks, masks)
    assert [i["name"] for i in doc["instances"]] == ["cat", "dog", "dog"]
    # class maps: 8-bit when they fit, 16-bit when not, lossless either way
    for hi, dtype in ((255, "uint8"), (300, "uint16")):
        cm = rng.integers(0, hi + 1, size=(7, 9))
        enc = class_map_png(cm)
        assert enc["dtype"] == dtype and np.array_equal(read_class_map(enc), cm)
    with pytest.raises(ValueError, match="0..65535"):
        class_map_png(np.array([[-1]]))


def test_promptable_segmenter_is_refused_with_the_reason(tmp_path):
    pytest.importorskip("transformers")
    from visiontune.errors import ConfigError
    from visiontune.serve import Runner

    save_tiny_sam(tmp_path / "sam")
    with pytest.raises(ConfigError, match="promptable"):
        Runner.load(f"hf:{tmp_path / 'sam'}")


@pytest.mark.slow
def test_batch_predict_writes_segmentation_columns(segmenter, tmp_path):
    import io

    from PIL import Image

    from visiontune.serve import predict_batch, read_predictions

    images = [str(f) for f in segmenter["images"]]
    predict_batch(str(segmenter["saved"]), images, tmp_path / "out", batch_size=2, num_workers=0)
    df = read_predictions(tmp_path / "out").to_pandas()
    direct = segmenter["direct"].predict(images)
    assert df["path"].tolist() == images and df["ok"].all()
    for (_, row), d in zip(df.iterrows(), direct):
        cm = np.asarray(Image.open(io.BytesIO(row["class_map_png"])))
        assert (row["image_height"], row["image_width"]) == d.image_size
        assert np.array_equal(cm, d.class_map.numpy())
        assert dict(row["class_areas"]) == d.class_areas()
