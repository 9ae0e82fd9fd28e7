"""Cost per step: wall seconds and peak resident memory of each step of an audit.

A background thread samples the process's resident set size (``/proc/self/statm``, falling back
to ``getrusage``) every 20 ms while a step runs, so each step gets its own peak, not the
process's lifetime maximum. Printed at the end of every audit and stored in ``summary.json``.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The current resident set size of this process."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class StepCost:
    """One step: seconds, and resident memory at its start and its peak (MB)."""

    seconds: float
    peak_rss_mb: float
    start_rss_mb: float


class CostMeter:
    """``with meter.step("duplicates"): ...`` records that step's :class:`StepCost`."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.steps: dict[str, StepCost] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Context manager timing the step ``name`` and sampling its peak resident memory."""
        start = rss_bytes()
        peak = [start]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self.interval):
                peak[0] = max(peak[0], rss_bytes())

        t = threading.Thread(target=sample, name=f"visiontune-cost-{name}", daemon=True)
        t0 = time.perf_counter()
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=1.0)
            peak[0] = max(peak[0], rss_bytes())
            prev = self.steps.get(name)
            secs = time.perf_counter() - t0 + (prev.seconds if prev else 0.0)
            self.steps[name] = StepCost(
                seconds=secs,
                peak_rss_mb=max(peak[0] / 2**20, prev.peak_rss_mb if prev else 0.0),
                start_rss_mb=(prev.start_rss_mb if prev else start / 2**20),
            )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Seconds and peak RSS per step, as JSON-ready values."""
        return {k: asdict(v) for k, v in self.steps.items()}

    def table(self, console: Any = None) -> Any:
        """The steps as a rich table (seconds, peak RSS), slowest first marked."""
        from rich.table import Table

        t = Table(title="cost per step")
        for c in ("step", "seconds", "% of time", "peak RSS (MB)"):
            t.add_column(c, justify="left" if c == "step" else "right")
        total = sum(s.seconds for s in self.steps.values()) or 1.0
        for name, s in self.steps.items():
            t.add_row(name, f"{s.seconds:.2f}", f"{100 * s.seconds / total:.0f}%", f"{s.peak_rss_mb:.0f}")
        return t
