"""The run record: ``Run.start(...)`` creates ``runs/<name>/`` and fans metrics out to CSV (always)
and the chosen backends; ``finish`` closes it. See docs/track.md for the folder layout."""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from visiontune import _atomic
from visiontune.errors import ConfigError
from visiontune.track import _io
from visiontune.track.backends import Tracker, make_tracker
from visiontune.track.env import capture_environment, deterministic_enabled, git_info
from visiontune.track.hooks import ProcessHooks
from visiontune.track.names import claim_dir, proc_start_ticks, safe_name, utcnow
from visiontune.track.schema import new_record, write_record
from visiontune.track.values import Stat, to_float, to_image_array

STATUSES = ("running", "completed", "failed", "interrupted")
# Metrics a run prefers as its headline "best" value, in order, with their direction.
DEFAULT_MONITORS = (
    ("val/acc", "max"),
    ("val/top1", "max"),
    ("val/map", "max"),
    ("val/f1", "max"),
    ("val/loss", "min"),
    ("train/loss", "min"),
)


class Run(ProcessHooks):
    """One training (or evaluation) run and its folder. Create with :meth:`Run.start`; use as a
    context manager to have exceptions / Ctrl+C recorded automatically::

        with Run.start(root="runs", config=cfg, model_id="timm:resnet18", seed=0) as run:
            for step, batch in ...:
                run.log_metrics({"train/loss": loss}, step=step, epoch=epoch)
            run.finish(summary={"val/acc": acc})
    """

    def __init__(
        self,
        directory: Path,
        record: dict[str, Any],
        config: dict[str, Any],
        trackers: list[Tracker],
        heartbeat_interval: float,
        monitor: str | None,
        mode: str | None,
    ):
        self.dir = Path(directory)
        self.root = self.dir.parent
        self.name = self.dir.name
        self.record = record
        self.config = config
        self._trackers = trackers
        self._lock = threading.RLock()
        self._stats: dict[str, Stat] = {}
        self._step = 0
        self._epoch: int | None = None
        self._finished = False
        self._interrupt_reason: str | None = None
        self._heartbeat_interval = heartbeat_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prev_handlers: dict[int, Any] = {}
        self._prev_excepthook = None
        self._monitor, self._mode = monitor, mode
        self._csv = _io.MetricsCSV(self.dir / "metrics.csv")

    # ----------------------------------------------------------------------------- creation
    @classmethod
    def start(
        cls,
        root: str | os.PathLike = "runs",
        name: str | None = None,
        config: Any = None,
        *,
        model_id: str | None = None,
        weights_sha256: str | None = None,
        data_version: str | None = None,
        seed: int | None = None,
        trackers: Sequence[str | Tracker] = ("tensorboard",),
        command: Sequence[str] | None = None,
        kind: str = "train",
        deterministic: bool | None = None,
        monitor: str | None = None,
        mode: str | None = None,
        tags: Mapping[str, Any] | None = None,
        heartbeat_interval: float = 15.0,
        handle_signals: bool = True,
    ) -> Run:
        """Create ``<root>/<name>/`` (never an existing one), write ``config.yaml`` and
        ``run.json`` (status ``running``) and open the backends.

        ``name`` defaults to ``<UTC timestamp>-<model short>-<strategy>`` made unique;
        ``kind`` names the runner ``reproduce`` uses (see :func:`register_runner`);
        ``monitor``/``mode`` pick the headline metric (default: val/acc, val/loss, ... whichever
        is logged); ``trackers`` are backend names (``tensorboard``, ``mlflow``,
        ``mlflow=URI``, ``wandb``) or Tracker objects -- CSV is always on.
        """
        cfg = _io.to_jsonable(config) if config is not None else {}
        if not isinstance(cfg, dict):
            raise ConfigError(f"Run.start: config must be a mapping (or pydantic model), got {type(config).__name__}")
        if mode not in (None, "min", "max"):
            raise ConfigError(f"Run.start: mode must be 'min' or 'max', got {mode!r}")
        if heartbeat_interval <= 0:
            raise ConfigError("Run.start: heartbeat_interval must be > 0 seconds")
        built = [make_tracker(t) for t in trackers]  # unknown names fail before any folder exists
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        directory = claim_dir(root, name, model_id, cfg.get("strategy"))

        now = utcnow()
        record = new_record(
            directory.name,
            kind=kind,
            now=now,
            model_id=model_id,
            weights_sha256=weights_sha256,
            data_version=data_version,
            strategy=cfg.get("strategy"),
            seed=seed,
            deterministic=deterministic_enabled() if deterministic is None else bool(deterministic),
            command=list(command) if command is not None else None,
            git=git_info(),
            env=capture_environment(),
            monitor=monitor,
            mode=mode,
            tags=dict(tags or {}),
            heartbeat_interval=heartbeat_interval,
            proc_start=proc_start_ticks(os.getpid()),
        )
        for sub in ("checkpoints", "plots"):
            (directory / sub).mkdir(exist_ok=True)
        _io.write_yaml(directory / "config.yaml", cfg)
        write_record(directory / "run.json", record)
        run = cls(directory, record, cfg, [], heartbeat_interval, monitor, mode)
        params = _io.flatten(cfg)
        try:
            for t in built:
                info = t.start(run, params)
                record["trackers"][t.name] = _io.to_jsonable(info or {})
                run._trackers.append(t)
        except BaseException as e:
            run.finish("failed", error=e)
            raise
        run._write_record()
        run._install_hooks(handle_signals)
        run._thread = threading.Thread(target=run._heartbeat_loop, name=f"visiontune-heartbeat-{run.name}", daemon=True)
        run._thread.start()
        return run

    # ------------------------------------------------------------------------------ logging
    @property
    def status(self) -> str:
        """The run's status (running, completed, interrupted, failed)."""
        return self.record["status"]

    @property
    def finished(self) -> bool:
        """True once the run has been finished."""
        return self._finished

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, epoch: int | None = None) -> None:
        """Record scalar metrics at ``step`` (default: the last step used) to metrics.csv
        (appended, flushed per row) and every backend. Tensors / numpy scalars are accepted."""
        if not metrics:
            return
        values: dict[str, float] = {}
        for k, v in metrics.items():
            try:
                values[str(k)] = to_float(v)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"log_metrics: value of {k!r} is not a number ({e})") from None
        with self._lock:
            if self._finished:
                warnings.warn(f"run {self.name} is finished; metrics {list(values)} not recorded", stacklevel=2)
                return
            step = self._step if step is None else int(step)
            if epoch is None:
                epoch = self._epoch
            self._step, self._epoch = max(self._step, step), epoch if epoch is not None else self._epoch
            t = time.time()
            self._csv.write((step, epoch, t, k, v) for k, v in values.items())
            for k, v in values.items():
                self._stats.setdefault(k, Stat()).add(v, step, epoch)
            self._dispatch("log_metrics", values, step, epoch)

    def log_lrs(
        self, optimizer, step: int | None = None, prefix: str = "lr", epoch: int | None = None
    ) -> dict[str, float]:
        """Log the learning rate of every param group of ``optimizer`` as ``lr/<group name>``
        (``name`` key of the group when set, else ``group<i>``). Returns what it logged."""
        lrs = {}
        for i, group in enumerate(optimizer.param_groups):
            label = safe_name(str(group["name"])) if group.get("name") else f"group{i}"
            lrs[f"{prefix}/{label}"] = float(group["lr"])
        self.log_metrics(lrs, step=step, epoch=epoch)
        return lrs

    def log_image(self, tag: str, image: Any, step: int | None = None) -> Path:
        """Save ``image`` (PIL, array, tensor, a batch -> grid, or a matplotlib figure) as
        ``plots/images/<tag>-step<step>.png`` and send it to the backends."""
        from PIL import Image

        arr = to_image_array(image)
        with self._lock:
            step = self._step if step is None else int(step)
            rel = Path("plots") / "images" / f"{safe_name(tag.replace('/', '_'))}-step{step:07d}.png"
            import io as _pyio

            buf = _pyio.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            _atomic.write_bytes(self.dir / rel, buf.getvalue())
            self.record["images"].append({"tag": tag, "step": step, "path": rel.as_posix()})
            self._dispatch("log_image", tag, arr, step)
        return self.dir / rel

    def log_artifact(self, path: str | os.PathLike, name: str | None = None) -> None:
        """Record a file or folder (e.g. the saved model dir) in run.json and upload it to the
        backends that store artifacts (MLflow, W&B)."""
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"log_artifact: {p} does not exist")
        name = name or p.name
        with self._lock:
            self.record["artifacts"].append(
                {"name": name, "path": self._rel(p), "type": "dir" if p.is_dir() else "file"}
            )
            self._dispatch("log_artifact", p, name)
            self._write_record()

    def log_checkpoint(
        self, path: str | os.PathLike, kind: str = "checkpoint", score: float | None = None, step: int | None = None
    ) -> None:
        """Record a checkpoint file (``kind``: best / last / checkpoint) in run.json."""
        self.set_checkpoints(
            [
                *self.record["checkpoints"],
                {
                    "path": self._rel(Path(path)),
                    "kind": kind,
                    "score": score,
                    "step": self._step if step is None else step,
                },
            ]
        )

    def set_checkpoints(self, checkpoints: Sequence[Mapping[str, Any]]) -> None:
        """Replace the checkpoint list of run.json (the Lightning callback mirrors
        ModelCheckpoint's files with it)."""
        with self._lock:
            self.record["checkpoints"] = _io.to_jsonable([dict(c) for c in checkpoints])
            self._write_record()

    def set_tags(self, **tags: Any) -> None:
        """Add ``tags`` to the run record."""
        with self._lock:
            self.record["tags"].update(_io.to_jsonable(tags))
            self._write_record()

    def lightning_callbacks(self, log_every_n_steps: int = 1) -> list:
        """Lightning callbacks that log this run: per-step train metrics, per-epoch metrics
        from ``trainer.callback_metrics``, LR per param group of every optimizer, checkpoint
        paths, and the status when fit raises or is interrupted."""
        from visiontune.track.lightning import RunCallback

        return [RunCallback(self, log_every_n_steps=log_every_n_steps)]

    def flush(self) -> None:
        """Flush the trackers and write the run record."""
        with self._lock:
            self._dispatch("flush")
            self._write_record()

    # ------------------------------------------------------------------------------ finish
    def finish(
        self,
        status: str = "completed",
        summary: Mapping[str, Any] | None = None,
        *,
        error: BaseException | None = None,
        reason: str | None = None,
    ) -> None:
        """Close the run: final run.json (status, end time, duration, summary, best metric),
        curves plot, backends closed. Calling it again does nothing. If a SIGTERM / SIGINT was
        received, a ``completed`` status is recorded as ``interrupted``."""
        if status not in STATUSES[1:]:
            raise ConfigError(f"finish: status must be one of completed, failed, interrupted; got {status!r}")
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._stop.set()
            if self._interrupt_reason and status == "completed":
                status, reason = "interrupted", self._interrupt_reason
            if summary:
                self.record["summary"].update(_io.to_jsonable(dict(summary)))
            if error is not None:
                tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
                _atomic.write_text(self.dir / "error.txt", tb)
                self.record["error"] = {
                    "type": type(error).__name__,
                    "message": str(error)[:2000],
                    "traceback_file": "error.txt",
                }
                reason = reason or f"{type(error).__name__}: {str(error)[:200]}"
            self._set_final(status, reason)
            self._csv.close()
            self._write_record()  # the record is final before any backend can hang
        try:
            self._write_plots()
        except Exception as e:  # noqa: BLE001 - a plot must never cost the record
            self._note_tracker_error("plots", e)
        summ = dict(self.record["summary"])
        for t in list(self._trackers):
            try:
                extra = t.finish(status, summ)
                if extra:
                    self.record["trackers"].setdefault(t.name, {}).update(_io.to_jsonable(extra))
            except Exception as e:  # noqa: BLE001
                self._note_tracker_error(t.name, e)
        self._trackers = []
        self._uninstall_hooks()
        with self._lock:
            self._write_record()

    def _set_final(self, status: str, reason: str | None) -> None:
        end = time.time()
        rec = self.record
        rec["status"], rec["status_reason"] = status, reason
        rec["end_time"] = utcnow()
        start = _dt.datetime.fromisoformat(rec["start_time"].replace("Z", "+00:00")).timestamp()
        rec["duration_s"] = round(end - start, 3)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if self._finished:
            return False
        if exc is None:
            self.finish("completed")
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("interrupted", reason=self._interrupt_reason or "KeyboardInterrupt")
        elif isinstance(exc, SystemExit) and (exc.code in (0, None)):
            self.finish("completed")
        elif isinstance(exc, SystemExit) and self._interrupt_reason:
            self.finish("interrupted", reason=self._interrupt_reason)
        else:
            self.finish("failed", error=exc)
        return False

    # ------------------------------------------------------------------------------ internals
    def _rel(self, p: Path) -> str:
        try:
            return p.resolve().relative_to(self.dir.resolve()).as_posix()
        except ValueError:
            return str(p.resolve())

    def _dispatch(self, method: str, *args) -> None:
        for t in list(self._trackers):
            try:
                getattr(t, method)(*args)
            except Exception as e:  # noqa: BLE001 - a backend must not stop training
                self._trackers.remove(t)
                self._note_tracker_error(t.name, e)

    def _note_tracker_error(self, name: str, e: BaseException) -> None:
        msg = f"{name}: {type(e).__name__}: {e}"
        warnings.warn(
            f"visiontune.track: backend {msg} -- it is switched off for run {self.name}; metrics.csv keeps everything",
            RuntimeWarning,
            stacklevel=3,
        )
        self.record["tracker_errors"].append(msg[:2000])

    def _best(self) -> dict[str, Any] | None:
        metric, mode = self._monitor, self._mode
        if metric is None:
            for m, md in DEFAULT_MONITORS:
                if m in self._stats:
                    metric, mode = m, mode or md
                    break
        if metric is None or metric not in self._stats:
            return None
        mode = mode or ("min" if "loss" in metric or "err" in metric else "max")
        s = self._stats[metric]
        value, step = (s.max, s.max_step) if mode == "max" else (s.min, s.min_step)
        return {"metric": metric, "mode": mode, "value": value, "step": step}

    def _write_record(self) -> None:
        with self._lock:
            rec = self.record
            rec["metrics"] = {k: s.as_dict() for k, s in sorted(self._stats.items())}
            rec["best"] = self._best()
            rec["last_step"] = self._step if self._stats else None
            rec["last_epoch"] = self._epoch
            if rec["status"] == "running":
                rec["heartbeat"]["time"] = utcnow()
            write_record(self.dir / "run.json", rec)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self._heartbeat_interval):
            try:
                with self._lock:
                    if self._finished:
                        return
                    self._dispatch("flush")
                    self._write_record()
            except Exception as e:  # noqa: BLE001 - e.g. disk full; keep training, say so
                warnings.warn(
                    f"visiontune.track: heartbeat of run {self.name} failed: {e}", RuntimeWarning, stacklevel=2
                )

    def _write_plots(self) -> None:
        from visiontune.track.plots import plot_run_curves

        rows = _io.read_metrics_rows(self.dir / "metrics.csv")
        if rows:
            plot_run_curves(rows, self.dir / "plots" / "curves.png", title=self.name)

    # signals, excepthook, atexit
    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, status={self.status!r}, dir={str(self.dir)!r})"
