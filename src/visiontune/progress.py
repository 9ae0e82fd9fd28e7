"""The one progress reporter: a rich bar with an ETA on a terminal, plain log lines elsewhere.

Long work (feature extraction, audits, benchmarks, batch prediction, serving warm-up) reports
through :func:`progress`. On a terminal it draws a rich progress bar; without one (CI, a pipe, a
notebook's captured output, a scheduler's log file) it prints one plain line at the start, then
one at least every ``every`` seconds — from a background thread, so a slow step still shows the
job is alive — and one at the end::

    [visiontune] features (val): 1200/10000 (12.0%) 45.2 it/s, ETA 3m15s
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

#: Seconds between plain progress lines when not on a terminal.
DEFAULT_EVERY = 10.0


def format_duration(s: float | None, decimals: int = 0) -> str:
    """``42s`` / ``3m05s`` / ``2h07m`` (``-`` for None); ``decimals`` for durations under a minute."""
    if s is None:
        return "-"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.{decimals}f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """Progress of one piece of work with ``total`` steps (None: unknown).

    Use as a context manager; call :meth:`advance` or :meth:`update` as work completes. With
    ``enabled=False`` nothing is shown. ``stream`` (default: stderr) decides terminal or not.
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        every: float = DEFAULT_EVERY,
        unit: str = "it",
        stream: TextIO | None = None,
        console: Any = None,
    ) -> None:
        self.description = description
        self.total = total
        self.enabled = enabled
        self.every = float(every)
        self.unit = unit
        self.completed = 0
        self._stream = stream if stream is not None else sys.stderr
        self._console = console
        self._t0 = 0.0
        self._bar: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- mode --------------------------------------------------------------------------------
    @property
    def on_terminal(self) -> bool:
        """True when the output stream is an interactive terminal (a bar is drawn)."""
        if self._console is not None:
            return bool(self._console.is_terminal)
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        self._t0 = time.perf_counter()
        if not self.enabled:
            return self
        if self.on_terminal:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            console = self._console or Console(file=self._stream)
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        else:
            self._line("started")
            self._thread = threading.Thread(target=self._tick, name="visiontune-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled:
            word = "done" if exc_type is None else f"stopped ({exc_type.__name__})"
            self._line(f"{word} in {format_duration(time.perf_counter() - self._t0)}")

    # -- updates -----------------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        """``n`` more steps are done."""
        self.update(self.completed + n)

    def update(self, completed: int, total: int | None = None) -> None:
        """Set the number of steps done (and, when it becomes known, the total)."""
        with self._lock:
            self.completed = int(completed)
            if total is not None:
                self.total = int(total)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, total=self.total)

    def describe(self, description: str) -> None:
        """Change what the work is called (the bar's label; the next plain line's prefix)."""
        self.description = description
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def __call__(self, done: int, total: int | None = None) -> None:
        """A ``progress(done, total)`` callback, as the feature extractors take."""
        self.update(done, total)

    # -- plain lines ------------------------------------------------------------------------
    def status(self) -> str:
        """One line: done / total, percentage, rate and ETA."""
        with self._lock:
            done, total = self.completed, self.total
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = done / elapsed
        parts = [f"{done}/{total}" if total else f"{done}"]
        if total:
            parts.append(f"({100.0 * done / total:.1f}%)")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if total and rate > 0 and done < total:
            parts.append(f"ETA {format_duration((total - done) / rate)}")
        parts.append(f"elapsed {format_duration(elapsed)}")
        return " ".join(parts)

    def _line(self, suffix: str = "") -> None:
        text = f"[visiontune] {self.description}: {self.status()}" + (f" — {suffix}" if suffix else "")
        try:
            print(text, file=self._stream, flush=True)
        except (OSError, ValueError):  # a closed pipe must not stop the work
            pass

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self._line()


def progress(description: str, total: int | None = None, *, enabled: bool = True, **kwargs: Any) -> Progress:
    """A :class:`Progress` for ``description`` with ``total`` steps (see the module docstring)."""
    return Progress(description, total, enabled=enabled, **kwargs)


def heartbeat(description: str, *, enabled: bool = True, every: float = DEFAULT_EVERY, **kwargs: Any) -> Progress:
    """Progress of work with no countable steps: on a terminal a spinner-like bar, elsewhere a
    line every ``every`` seconds saying how long it has run."""
    return Progress(description, None, enabled=enabled, every=every, **kwargs)
