"""`visiontune serve` as a real server process on 127.0.0.1: served predictions equal direct
ones (a classifier with real weights, a detector), bad requests get 4xx while good ones around
them are answered correctly, health / readiness / metrics / OpenAPI, the client and the CLI."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m visiontune.cli.main serve ...`` in its own session; stopped by its group id."""

    def __init__(self, args: list[str], log: Path):
        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "visiontune.cli.main", "serve", *args, "--host", HOST, "--port", str(self.port)]
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 240.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log_file.close()


@pytest.fixture(scope="module")
def images(assets) -> list[Path]:
    files = sorted((assets / "imagenet-sample-1k").glob("*.JPEG"))
    return files[::97][:10]


@pytest.fixture(scope="module")
def classifier_server(effnet_lite0_file, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "classifier.log"
    args = ["timm:tf_efficientnet_lite0", "--weights", str(effnet_lite0_file), "--max-batch-size", "8"]
    server = ServerProcess([*args, "--max-wait", "0.02", "--max-body-mb", "1"], log)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def direct_classifier(effnet_lite0_file):
    import visiontune as vt

    return vt.load("timm:tf_efficientnet_lite0", weights=effnet_lite0_file)


def _check_same_topk(served: dict, direct, tol: float = 1e-5) -> None:
    got = {d["index"]: d["prob"] for d in served["top"]}
    want = dict(zip(direct.indices, direct.probs))
    assert served["top"][0]["index"] == direct.indices[0]
    assert served["top"][0]["label"] == direct.labels[0]
    for i in set(got) & set(want):
        assert abs(got[i] - want[i]) < tol, (i, got[i], want[i])
    if set(got) != set(want):  # only a tie at the k-th place may swap classes
        assert abs(sorted(got.values())[0] - sorted(want.values())[0]) < tol


@pytest.mark.slow
def test_served_classifier_equals_direct_predict(classifier_server, direct_classifier, images):
    from visiontune.serve import Client

    with Client(classifier_server.url) as client:
        served = client.predict(images, topk=5, concurrency=8)  # concurrent: the server batches them
        served_mp = Client(classifier_server.url, mode="multipart").predict(images[:3], topk=5)
    direct = direct_classifier.predict([str(f) for f in images], topk=5)
    assert len(served) == len(images)
    for s, d in zip(served + served_mp, direct + direct[:3]):
        assert s["task"] == "classification" and len(s["top"]) == 5
        _check_same_topk(s, d)
    assert [s["source"] for s in served] == [str(f) for f in images]
    info = Client(classifier_server.url).info()
    assert info["model"]["task"] == "classification" and info["model"]["num_classes"] == 1000
    assert info["batches"]["mean_size"] > 1.0, "concurrent requests were never batched"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bad_requests(jpeg: bytes) -> list[tuple[str, dict]]:
    """(name, httpx request kwargs) of malformed requests, each a different mistake."""
    b64 = base64.b64encode
    j = {"content-type": "application/json"}
    return [
        ("not an image", {"json": {"image": b64(b"hello, this is text").decode()}}),
        ("truncated jpeg", {"json": {"image": b64(jpeg[: len(jpeg) // 3]).decode()}}),
        ("empty image", {"json": {"image": ""}}),
        ("decompression bomb", {"json": {"image": b64(_png_header_only(40000, 40000)).decode()}}),
        ("wrong field", {"json": {"img": b64(jpeg).decode()}}),
        ("unknown option", {"json": {"image": b64(jpeg).decode(), "top_k": 3}}),
        ("bad option value", {"json": {"image": b64(jpeg).decode(), "topk": "many"}}),
        ("option out of range", {"json": {"image": b64(jpeg).decode(), "topk": 0}}),
        ("not base64", {"json": {"image": "@@@not base64@@@"}}),
        ("image not a string", {"json": {"image": 12345}}),
        ("json not an object", {"content": b"[1, 2, 3]", "headers": j}),
        ("malformed json", {"content": b'{"image": "abc', "headers": j}),
        ("wrong content type", {"content": b"image=abc", "headers": {"content-type": "text/plain"}}),
        ("multipart without file", {"data": {"topk": "3"}, "files": {"other": ("x.jpg", jpeg)}}),
        (
            "garbage multipart",
            {"content": b"--xx\r\ngarbage", "headers": {"content-type": "multipart/form-data; boundary=yy"}},
        ),
        ("raw garbage bytes", {"content": bytes(range(256)) * 8, "headers": {"content-type": "image/jpeg"}}),
        ("body too large", {"content": b"\xff" * (1024 * 1024 + 10), "headers": {"content-type": "image/jpeg"}}),
    ]


@pytest.mark.slow
def test_malformed_requests_interleaved_with_good_ones(classifier_server, direct_classifier, images):
    jpeg = images[0].read_bytes()
    bad = _bad_requests(jpeg)
    expected = {f: p.labels[0] for f, p in zip(images, direct_classifier.predict([str(f) for f in images], topk=1))}
    work = [("bad", bad[i % len(bad)]) for i in range(100)] + [("good", images[i % len(images)]) for i in range(100)]
    random.Random(0).shuffle(work)

    def send(item):
        kind, what = item
        with httpx.Client(base_url=classifier_server.url, timeout=120) as c:
            if kind == "good":
                body = {"image": base64.b64encode(what.read_bytes()).decode(), "topk": 1}
                return kind, what, c.post("/predict", json=body)
            name, kwargs = what
            return kind, name, c.post("/predict", **kwargs)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, work))
    n_bad = n_good = 0
    for kind, what, r in results:
        if kind == "bad":
            n_bad += 1
            assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
            msg = r.json()["error"]["message"]
            assert len(msg) > 15, (what, msg)
        else:
            n_good += 1
            assert r.status_code == 200, r.text[:300]
            assert r.json()["top"][0]["label"] == expected[what]
    assert (n_bad, n_good) == (100, 100)
    by_name = {name: r for kind, name, r in results if kind == "bad"}
    assert by_name["decompression bomb"].status_code == 413
    assert by_name["body too large"].status_code == 413
    assert by_name["wrong content type"].status_code == 415
    assert by_name["wrong field"].status_code == 422 and "'image'" in by_name["wrong field"].json()["error"]["message"]
    assert "truncated" in by_name["truncated jpeg"].json()["error"]["message"]
    # still serving, and the metrics counted what happened
    metrics = httpx.get(classifier_server.url + "/metrics").text
    assert 'visiontune_serve_requests_total{status="413"}' in metrics
    assert "visiontune_serve_batch_size_bucket" in metrics


@pytest.mark.slow
def test_health_ready_openapi_and_cli(classifier_server, images):
    assert httpx.get(classifier_server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(classifier_server.url + "/ready").json()
    assert ready["ready"] is True and ready["task"] == "classification"
    schema = httpx.get(classifier_server.url + "/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data", "image/*"} <= set(body)
    assert "topk" in body["application/json"]["schema"]["properties"]
    raw = httpx.post(
        classifier_server.url + "/predict?topk=2",
        content=images[1].read_bytes(),
        headers={"content-type": "image/jpeg"},
    )
    assert raw.status_code == 200 and len(raw.json()["top"]) == 2
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "visiontune.cli.main", "predict", "--server", classifier_server.url]
    out = subprocess.run(
        [*cmd, str(images[0]), str(images[1]), "--json", "--topk", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    assert [d["source"] for d in docs] == [str(images[0]), str(images[1])]


@pytest.fixture(scope="module")
def saved_detector(tmp_path_factory, assets) -> Path:
    """A random-weight Faster R-CNN whose backbone BatchNorm statistics are estimated on COCO8
    (with the initial statistics its features vanish and every box scores the same)."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    from visiontune.detect import Detector

    torch.manual_seed(0)
    det = Detector.load("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=False)
    files = sorted((assets / "coco8" / "images").rglob("*.jpg"))
    x = torch.stack([pil_to_tensor(Image.open(f).convert("RGB").resize((320, 320))).float() / 255 for f in files])
    for mod in det.model.backbone.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    det.model.backbone.train()
    with torch.no_grad():
        det.model.backbone((x - 0.45) / 0.225)
        det.model.roi_heads.box_predictor.cls_score.weight.normal_(0, 1.0)
    det.model.eval()
    return det.save(tmp_path_factory.mktemp("det") / "detector")


@pytest.mark.slow
def test_served_detector_equals_direct_predict(saved_detector, assets, tmp_path):
    from visiontune.detect import Detector
    from visiontune.serve import Client

    files = sorted((assets / "coco8" / "images").rglob("*.jpg"))[:4]
    server = ServerProcess([str(saved_detector), "--max-batch-size", "4", "--max-wait", "0.05"], tmp_path / "det.log")
    try:
        server.wait_ready()
        with Client(server.url) as client:
            served = client.predict(files, score_threshold=0.0, max_detections=10, concurrency=4)
    finally:
        server.stop()
    det = Detector.load(saved_detector)
    for f, s in zip(files, served):
        d = det([str(f)], score_threshold=0.0, max_detections=10)[0]
        assert s["task"] == "detection" and s["image_size"] == list(d.image_size)
        assert len(s["detections"]) == len(d) > 0
        got = torch.tensor([x["box"] for x in s["detections"]])
        assert torch.allclose(got, d.boxes, atol=1e-3)
        assert torch.allclose(torch.tensor([x["score"] for x in s["detections"]]), d.scores, atol=1e-5)
        assert [x["label"] for x in s["detections"]] == d.labels.tolist()
        assert [x["name"] for x in s["detections"]] == d.names


@pytest.mark.slow
def test_litserve_backend_batches_and_isolates_bad_requests(effnet_lite0_file, direct_classifier, images, tmp_path):
    pytest.importorskip("litserve")
    from visiontune.serve import Client

    args = ["timm:tf_efficientnet_lite0", "--weights", str(effnet_lite0_file), "--backend", "litserve"]
    server = ServerProcess([*args, "--max-batch-size", "8", "--max-wait", "0.05"], tmp_path / "lit.log")
    jpeg = images[0].read_bytes()
    bad = _bad_requests(jpeg)
    try:
        server.wait_ready()
        work = [("good", f) for f in images[:6]] + [("bad", b) for b in bad]
        random.Random(1).shuffle(work)

        def send(item):
            kind, what = item
            if kind == "good":
                return kind, what, Client(server.url).predict_one(what, topk=3)
            return kind, what[0], httpx.post(server.url + "/predict", timeout=60, **what[1])

        with ThreadPoolExecutor(8) as pool:  # bad and good requests share batches
            results = list(pool.map(send, work))
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()
    direct = dict(zip(images, direct_classifier.predict([str(f) for f in images[:6]], topk=3)))
    for kind, what, r in results:
        if kind == "good":
            _check_same_topk(r, direct[what])
        else:
            assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:200])


def test_decode_guards_and_options():
    from PIL import Image

    from visiontune.serve.inputs import RequestError, content_kind, decode_image, parse_json
    from visiontune.serve.runner import ClassifyOptions, DetectOptions

    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(buf, "PNG")
    img = decode_image(buf.getvalue())
    assert img.mode == "RGB" and img.size == (40, 30) and img.getpixel((0, 0)) == (255, 255, 255)
    for data, status, words in [
        (b"", 400, ("empty",)),
        (b"GIF89a-not-really", 400, ("cannot decode", "not a recognised")),  # which: Pillow's plugins loaded
        (buf.getvalue()[:40], 400, ("cannot decode", "not a recognised")),
        (_png_header_only(30000, 30000), 413, ("bomb",)),
    ]:
        with pytest.raises(RequestError) as e:
            decode_image(data)
        assert e.value.status == status and any(w in e.value.message for w in words), e.value.message
    with pytest.raises(RequestError) as e:
        decode_image(buf.getvalue(), limit=100)
    assert e.value.status == 413 and "1,200 pixels" in e.value.message
    with pytest.raises(RequestError) as e:
        content_kind("text/html")
    assert e.value.status == 415
    payload = json.dumps({"image": base64.b64encode(buf.getvalue()).decode(), "score_threshold": 0.5}).encode()
    data, opts = parse_json(payload, DetectOptions)
    assert data == buf.getvalue() and opts.score_threshold == 0.5
    with pytest.raises(RequestError) as e:
        parse_json(payload, ClassifyOptions)
    assert e.value.status == 422 and "score_threshold" in e.value.message and "unknown field" in e.value.message
