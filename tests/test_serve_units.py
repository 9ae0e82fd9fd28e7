"""Pieces of visiontune.serve in-process: the micro-batcher, the Runner over an exported ONNX
artifact and over a saved model, config validation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from visiontune.errors import ConfigError
from visiontune.serve.batcher import MicroBatcher, QueueFull


def test_batcher_groups_concurrent_items_within_limits():
    sizes: list[int] = []
    threads: set[str] = set()

    def fn(items):
        sizes.append(len(items))
        threads.add(threading.current_thread().name)
        time.sleep(0.02)
        return [x * 10 for x in items]

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_wait=0.05)
        await b.start()
        try:
            out = await asyncio.gather(*[b.submit(i) for i in range(20)])
        finally:
            await b.stop()
        return out, b.stats

    out, stats = asyncio.run(main())
    assert out == [i * 10 for i in range(20)]
    assert sum(sizes) == 20 and max(sizes) == 8 and all(s <= 8 for s in sizes)
    assert stats.batches == len(sizes) and stats.mean_size > 2
    assert len(threads) == 1 and next(iter(threads)).startswith("visiontune-batch")


def test_batcher_max_wait_bounds_latency_and_errors_stay_in_their_batch():
    calls: list[list[int]] = []

    def fn(items):
        calls.append(list(items))
        if -1 in items:
            raise ValueError("bad batch")
        return items

    async def main():
        b = MicroBatcher(fn, max_batch_size=64, max_wait=0.03, max_queue=3)
        await b.start()
        try:
            t0 = time.perf_counter()
            single = await b.submit(5)  # alone: waits max_wait for company, then runs
            waited = time.perf_counter() - t0
            failed = await asyncio.gather(b.submit(-1), b.submit(2), return_exceptions=True)
            after = await b.submit(7)  # the loop survived the failing batch
            blocked = [b.submit(i) for i in range(5)]
            res = await asyncio.gather(*blocked, return_exceptions=True)
        finally:
            await b.stop()
        return single, waited, failed, after, res

    single, waited, failed, after, res = asyncio.run(main())
    assert single == 5 and 0.025 <= waited < 1.0
    assert all(isinstance(e, ValueError) for e in failed)
    assert after == 7
    assert (
        sum(isinstance(r, QueueFull) for r in res) >= 1 and sum(r in range(5) for r in res if isinstance(r, int)) >= 3
    )


@pytest.mark.slow
def test_runner_serves_exported_onnx_and_saved_models(tmp_path, assets):
    pytest.importorskip("onnxruntime")
    import visiontune as vt
    from visiontune.data import read_image
    from visiontune.export import export, load_artifact
    from visiontune.serve import Runner

    torch.manual_seed(0)
    p = vt.load("timm:mobilenetv3_small_050", pretrained=False, num_classes=3, class_names=["a", "b", "c"])
    p.save(tmp_path / "saved")
    export(p, "onnx", tmp_path / "m.onnx", parity=False)
    files = sorted((assets / "hymenoptera" / "val" / "ants").glob("*.jpg"))[:4]
    imgs = [read_image(f) for f in files]

    onnx = Runner.load(tmp_path / "m.onnx")
    assert onnx.task == "classification" and onnx.class_names == ["a", "b", "c"]
    served = onnx.run([onnx.prepare(im) for im in imgs], {"topk": 2})
    direct = load_artifact(tmp_path / "m.onnx").predict([str(f) for f in files], topk=2)
    for s, d in zip(served, direct):
        assert [t["index"] for t in s["top"]] == d.indices
        assert [t["prob"] for t in s["top"]] == pytest.approx(d.probs, abs=1e-6)

    saved = Runner.load(tmp_path / "saved")
    ref = vt.load(tmp_path / "saved").predict([str(f) for f in files], topk=3)
    for s, d in zip(saved.run([saved.prepare(im) for im in imgs], {"topk": 3}), ref):
        assert [t["label"] for t in s["top"]] == d.labels
    assert saved.describe()["options"]["topk"]["default"] == 5
    with pytest.raises(Exception, match="topk"):
        saved.parse_options({"topk": 0})
    (tmp_path / "lonely.onnx").write_bytes(b"x")
    with pytest.raises(ConfigError, match="sidecar"):
        Runner.load(tmp_path / "lonely.onnx")


def test_serve_config_errors_name_the_field():
    from visiontune.serve import ServeConfig

    with pytest.raises(ConfigError, match="max_batch_size"):
        ServeConfig.make("timm:resnet18", max_batch_size=0)
    with pytest.raises(ConfigError, match="backend"):
        ServeConfig.make("timm:resnet18", backend="flask")
    c = ServeConfig.make("timm:resnet18", workers=2)
    assert ServeConfig.model_validate_json(c.to_env()) == c


def test_batches_split_into_power_of_two_sizes():
    from visiontune.serve.runner import pow2_parts

    assert pow2_parts(11) == [8, 2, 1] and pow2_parts(16) == [16] and pow2_parts(1) == [1] and pow2_parts(0) == []
    assert all(sum(pow2_parts(n)) == n and len(set(pow2_parts(n))) == len(pow2_parts(n)) for n in range(1, 300))
