"""Prometheus metrics of a running server (``GET /metrics``).

One set of metrics per process. With several worker processes the server sets
``PROMETHEUS_MULTIPROC_DIR`` before they start, each process writes its samples there, and
``/metrics`` on any of them reports the sum over all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from typing import Any

from visiontune.errors import require

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _prom():
    return require("prometheus_client", "serve", "Serving metrics")


class Metrics:
    """The server's counters, histograms and gauges."""

    def __init__(self) -> None:
        prom = _prom()
        self.requests = prom.Counter(
            "visiontune_serve_requests_total", "Prediction requests answered, by HTTP status.", ["status"]
        )
        self.latency = prom.Histogram(
            "visiontune_serve_request_seconds", "Time from request received to response.", buckets=LATENCY_BUCKETS
        )
        self.batch_size = prom.Histogram(
            "visiontune_serve_batch_size", "Images per model call (dynamic batching).", buckets=BATCH_BUCKETS
        )
        self.batch_seconds = prom.Histogram(
            "visiontune_serve_batch_seconds", "Time of one batched model call.", buckets=LATENCY_BUCKETS
        )
        self.queue_depth = prom.Gauge(
            "visiontune_serve_queue_depth", "Requests waiting for a batch.", multiprocess_mode="livesum"
        )
        self.ready = prom.Gauge("visiontune_serve_ready", "1 when the model is loaded.", multiprocess_mode="livemax")

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one batch: its size and its seconds."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    """This process's metrics (created once)."""
    return Metrics()


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process, or of all processes in multiprocess mode."""
    prom = _prom()
    metrics()  # registered even before the first request
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
    return prom.generate_latest(prom.REGISTRY), prom.CONTENT_TYPE_LATEST


def multiprocess_dir() -> Any:
    """Make a fresh directory for multiprocess metrics and point the environment at it.

    Returns a callable that removes it (call at server exit)."""
    path = tempfile.mkdtemp(prefix="visiontune-prom-")
    os.environ[MULTIPROC_ENV] = path

    def cleanup() -> None:
        shutil.rmtree(path, ignore_errors=True)
        if os.environ.get(MULTIPROC_ENV) == path:
            del os.environ[MULTIPROC_ENV]

    return cleanup


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
