"""How a run hears about its process ending: SIGTERM / SIGINT, uncaught exceptions, interpreter exit.
Each marks the run ``interrupted`` or ``failed`` at once, so a record never claims ``running`` for a
process that is gone; a signal the process ignores (``SIG_IGN``, e.g. SIGINT of a background job)
changes nothing."""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any


class ProcessHooks:
    """Mixed into `visiontune.track.Run` (which provides ``finish``, ``record``, ``_lock``…)."""

    _prev_handlers: dict
    _prev_excepthook: Any
    _finished: bool
    _interrupt_reason: str | None
    # provided by Run
    record: dict[str, Any]
    _lock: threading.RLock
    _csv: Any

    if TYPE_CHECKING:

        def finish(
            self,
            status: str = "completed",
            summary: Mapping[str, Any] | None = None,
            *,
            error: BaseException | None = None,
            reason: str | None = None,
        ) -> None: ...

        def _write_record(self) -> None: ...

    def _install_hooks(self, handle_signals: bool) -> None:
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._prev_handlers[sig] = signal.signal(sig, self._on_signal)
                except (ValueError, OSError):  # pragma: no cover - exotic embedding
                    pass
        self._prev_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self._atexit)

    def _uninstall_hooks(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, prev in self._prev_handlers.items():
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, prev)
        self._prev_handlers = {}
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._prev_excepthook
        atexit.unregister(self._atexit)

    def _on_signal(self, signum, frame) -> None:
        """Mark the record ``interrupted`` at once, then raise (KeyboardInterrupt for SIGINT,
        ``SystemExit(128 + signum)`` for SIGTERM) so the interrupted code unwinds.

        The handler runs *inside* whatever the main thread was doing — possibly a backend's
        write holding that backend's lock (TensorBoard's ``_AsyncWriter.write``). Closing the
        backends from here deadlocked on that lock; so the handler only writes ``run.json``
        (a fresh temporary file, no shared lock but the run's reentrant one) and leaves
        ``finish`` to the unwinding: ``Run.__exit__`` or the atexit hook.
        """
        name = signal.Signals(signum).name
        prev = self._prev_handlers.get(signum, signal.SIG_DFL)
        if prev == signal.SIG_IGN:
            return  # the process ignores this signal (a background job): the run goes on
        if not self._finished:
            with self._lock:
                self._interrupt_reason = f"received {name}"
                self.record["status"], self.record["status_reason"] = "interrupted", f"received {name}"
                try:
                    self._csv._f.flush()
                except (RuntimeError, ValueError):  # interrupted inside a CSV write / closed
                    pass
                self._write_record()  # marked at once, before anything else can go wrong
        if callable(prev):
            prev(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)

    def _excepthook(self, exc_type, exc, tb) -> None:
        if not self._finished:
            if issubclass(exc_type, KeyboardInterrupt):
                self.finish("interrupted", reason=self._interrupt_reason or "KeyboardInterrupt")
            else:
                self.finish("failed", error=exc)
        (self._prev_excepthook or sys.__excepthook__)(exc_type, exc, tb)

    def _atexit(self) -> None:
        if not self._finished:
            self.finish("interrupted", reason=self._interrupt_reason or "the process exited without Run.finish()")
