"""Measurements of one model on this machine: parameters, FLOPs, latency, throughput, memory.

Every number here is measured, never looked up: FLOPs by running one forward pass under
``torch.utils.flop_counter.FlopCounterMode``, latency with ``time.perf_counter`` around warmed-up
forward passes in ``torch.inference_mode()`` (CUDA synchronised before each clock read), and peak
memory with ``torch.cuda.max_memory_allocated`` on a GPU or, on the CPU, by tracking every tensor
the forward pass allocates (a dispatch mode that adds a storage's bytes when an op creates it and
subtracts them when the last tensor using it is freed).
"""

from __future__ import annotations

import contextlib
import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from visiontune.errors import ConfigError
from visiontune.hub.pretrained import count_params

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class BenchOptions:
    """How to measure. ``batch_size`` is the throughput batch; latency is always at batch 1."""

    device: str = "cpu"
    threads: int | None = None
    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False
    batch_size: int = 8
    warmup: int = 3
    runs: int = 20
    throughput_runs: int = 5
    input_size: int | None = None  # override the card's eval resolution (square)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not str(self.device).startswith(("cpu", "cuda")):
            raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={self.device!r} but no CUDA GPU is visible to torch; use device='cpu'")
        for name in ("batch_size", "runs", "throughput_runs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.dtype == "float16" and not str(self.device).startswith("cuda"):
            raise ConfigError("dtype='float16' is a GPU format (slow or unsupported on CPU); use bfloat16 or float32")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by ``dtype``."""
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        """The options as JSON-ready values."""
        return asdict(self)


@dataclass
class Measurement:
    """What was measured for one model (times in milliseconds, memory in MiB)."""

    params: int
    gflops: float | None
    latency_median_ms: float
    latency_p95_ms: float
    latency_mean_ms: float
    latency_runs: int
    throughput_ips: float
    batch_size: int
    peak_memory_mib: float | None
    memory_method: str
    flops_note: str | None = None


def count_flops(model: nn.Module, example: torch.Tensor) -> tuple[float | None, str | None]:
    """Forward-pass FLOPs (multiply-add = 2 FLOPs) of ``model(example)``, in GFLOPs.

    Uses ``FlopCounterMode``, which counts matmuls, convolutions and attention; elementwise ops
    are not counted (they are a few percent for CNNs). Returns ``(None, reason)`` when the model
    cannot be run under the counter.
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(example)
    except Exception as e:  # the counter cannot trace some custom ops: report, do not fail the bench
        return None, f"FLOP counter failed: {type(e).__name__}: {e}"
    return counter.get_total_flops() / example.shape[0] / 1e9, None


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def time_calls(fn: Callable[[], Any], *, warmup: int, runs: int, device: torch.device) -> list[float]:
    """Seconds per call of ``fn`` over ``runs`` timed calls after ``warmup`` untimed ones."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


class ActivationMemory(TorchDispatchMode):
    """High-water mark of the bytes held by tensors that ops create while the mode is active.

    Parameters and inputs existed before and are not counted; views share their base's storage
    and are counted once. On CPU this is what the forward pass adds on top of the weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0:
                continue
            if key in self.live:
                self.live[key][1] += 1
            else:
                self.live[key] = [storage.nbytes(), 1]
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            weakref.finalize(t, self._release, key)
        return out


def peak_memory(model: nn.Module, example: torch.Tensor, device: torch.device) -> tuple[float | None, str]:
    """Peak memory of one forward pass at ``example``'s batch size, in MiB, and how it was measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            model(example)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        return peak / 2**20, "cuda max_memory_allocated above weights+input"
    tracker = ActivationMemory()
    try:
        with torch.inference_mode(), tracker:
            model(example)
    except Exception as e:
        return None, f"activation tracking failed: {type(e).__name__}"
    return tracker.peak / 2**20, "cpu activations (tensor allocations tracked during forward)"


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` intra-op threads, restoring the previous setting afterwards."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def prepare(model: nn.Module, options: BenchOptions) -> tuple[nn.Module, Callable[[torch.Tensor], Any]]:
    """Move/cast the model as ``options`` say; returns (model, the callable to time)."""
    device = torch.device(options.device)
    model = model.eval().to(device=device, dtype=options.torch_dtype)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn: Callable = model
    if options.compile:
        fn = torch.compile(model)
    return model, fn


def make_input(batch: int, input_size: tuple[int, int, int], options: BenchOptions) -> torch.Tensor:
    """A random ``(batch, *input_size)`` input on the benchmark's device and dtype (channels-last when asked)."""
    x = torch.randn(batch, *input_size, device=options.device, dtype=options.torch_dtype)
    if options.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def measure(model: nn.Module, input_size: tuple[int, int, int], options: BenchOptions | None = None) -> Measurement:
    """Measure ``model`` at ``input_size`` (C, H, W) as ``options`` say."""
    options = options or BenchOptions()
    device = torch.device(options.device)
    with torch_threads(options.threads):
        model, fn = prepare(model, options)
        params = count_params(model)
        x1 = make_input(1, input_size, options)
        gflops, note = count_flops(model, x1)

        def call1():
            with torch.inference_mode():
                fn(x1)

        # torch.compile compiles on the first call: give it at least one more warm-up
        warm = options.warmup + (2 if options.compile else 0)
        lat = time_calls(call1, warmup=warm, runs=options.runs, device=device)
        xb = make_input(options.batch_size, input_size, options)

        def callb():
            with torch.inference_mode():
                fn(xb)

        thr = time_calls(callb, warmup=max(1, min(options.warmup, 2)), runs=options.throughput_runs, device=device)
        mem, method = peak_memory(model, x1, device)
    return Measurement(
        params=params,
        gflops=gflops,
        latency_median_ms=statistics.median(lat) * 1e3,
        latency_p95_ms=percentile(lat, 95) * 1e3,
        latency_mean_ms=statistics.fmean(lat) * 1e3,
        latency_runs=len(lat),
        throughput_ips=options.batch_size / statistics.median(thr),
        batch_size=options.batch_size,
        peak_memory_mib=mem,
        memory_method=method,
        flops_note=note,
    )
