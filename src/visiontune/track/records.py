"""Reading run folders back: list, show, compare. Works on any folder a Run wrote (also on
ones from crashed processes); needs no backend."""

from __future__ import annotations

import datetime as _dt
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune.errors import ConfigError
from visiontune.track import _io
from visiontune.track.names import proc_start_ticks
from visiontune.track.schema import read_record, write_record

# A heartbeat older than this many intervals (and at least STALE_MIN_S) means the writer died.
STALE_INTERVALS = 4
STALE_MIN_S = 120.0


def _pid_alive(pid: int, proc_start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover
        return False
    if proc_start is not None:
        now_start = proc_start_ticks(pid)
        if now_start is not None and now_start != proc_start:
            return False  # the pid was reused by another process
    return True


def _parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return _dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def effective_status(data: dict[str, Any], now: float | None = None) -> tuple[str, str | None]:
    """Status of a record, detecting dead writers: a ``running`` record whose process is gone
    (same host) or whose heartbeat is stale (other host) is ``interrupted``."""
    status, reason = data.get("status", "unknown"), data.get("status_reason")
    if status != "running":
        return status, reason
    hb = data.get("heartbeat") or {}
    pid, host = hb.get("pid"), hb.get("host")
    if host == socket.gethostname() and isinstance(pid, int):
        if not _pid_alive(pid, hb.get("proc_start")):
            return "interrupted", f"process {pid} on {host} ended without finishing the run (killed?)"
        return "running", None
    last = _parse_time(hb.get("time"))
    limit = max(STALE_INTERVALS * float(hb.get("interval_s") or 15.0), STALE_MIN_S)
    now = _dt.datetime.now(_dt.timezone.utc).timestamp() if now is None else now
    if last is not None and now - last > limit:
        return "interrupted", f"no heartbeat from {host} for {now - last:.0f} s"
    return "running", None


@dataclass
class RunRecord:
    """A run folder read back: ``data`` is run.json, ``config`` is config.yaml."""

    dir: Path
    data: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"
    status_reason: str | None = None

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RunRecord:
        """The run record in ``directory`` (its ``run.json``)."""
        d = Path(directory)
        rj = d / "run.json"
        if not rj.is_file():
            raise ConfigError(
                f"{d} is not a run folder (no run.json). Runs are listed by `visiontune runs list --root DIR`."
            )
        data = read_record(rj)
        cfg_path = d / "config.yaml"
        cfg = _io.read_yaml(cfg_path) if cfg_path.is_file() else {}
        status, reason = effective_status(data)
        return cls(d, data, cfg or {}, status, reason)

    @property
    def name(self) -> str:
        """The run's name (its folder name when not recorded)."""
        return self.data.get("name") or self.dir.name

    @property
    def model_id(self) -> str | None:
        """The model id the run trained, if recorded."""
        return (self.data.get("model") or {}).get("id")

    @property
    def data_version(self) -> str | None:
        """The data version the run trained on, if recorded."""
        return (self.data.get("data") or {}).get("version")

    @property
    def strategy(self) -> str | None:
        """The training strategy, if recorded."""
        return self.data.get("strategy") or self.config.get("strategy")

    @property
    def duration_s(self) -> float | None:
        """Run time in seconds (from the record, else start to end time)."""
        if self.data.get("duration_s") is not None:
            return float(self.data["duration_s"])
        start = _parse_time(self.data.get("start_time"))
        hb = _parse_time((self.data.get("heartbeat") or {}).get("time"))
        if start is None:
            return None
        if self.status == "running":
            return _dt.datetime.now(_dt.timezone.utc).timestamp() - start
        return None if hb is None else hb - start

    @property
    def best(self) -> dict[str, Any] | None:
        """The best monitored metric and its step, if recorded."""
        return self.data.get("best")

    def metric_rows(self) -> list[dict[str, Any]]:
        """Every row of ``metrics.csv``."""
        return _io.read_metrics_rows(self.dir / "metrics.csv")

    def final_metrics(self) -> dict[str, dict[str, float]]:
        """metric -> {final, best, min, max, count} recomputed from metrics.csv (the CSV is the
        source of truth; it survives a SIGKILL that run.json's last heartbeat may not)."""
        out: dict[str, dict[str, float]] = {}
        for r in self.metric_rows():
            m, v = r["metric"], r["value"]
            s = out.setdefault(m, {"final": v, "min": v, "max": v, "count": 0})
            s["final"] = v
            if v == v:  # not NaN
                s["min"] = v if s["min"] != s["min"] else min(s["min"], v)
                s["max"] = v if s["max"] != s["max"] else max(s["max"], v)
            s["count"] += 1
        for m, s in out.items():
            s["best"] = s["min"] if ("loss" in m or "err" in m) else s["max"]
        return out

    def metrics_frame(self):
        """metrics.csv as a pandas DataFrame (long format: step, epoch, wall_time, metric, value)."""
        import pandas as pd

        return pd.DataFrame(self.metric_rows(), columns=["step", "epoch", "wall_time", "metric", "value"])

    def start_timestamp(self) -> float:
        """Start time as a POSIX timestamp (0 when unknown)."""
        return _parse_time(self.data.get("start_time")) or 0.0


def resolve_run_dir(name_or_path: str | os.PathLike, root: str | os.PathLike = "runs") -> Path:
    """The folder of a run given by path or by name under ``root``."""
    p = Path(name_or_path)
    if (p / "run.json").is_file():
        return p
    cand = Path(root) / str(name_or_path)
    if (cand / "run.json").is_file():
        return cand
    root_p = Path(root)
    matches = (
        sorted(
            d
            for d in root_p.iterdir()
            if d.is_dir() and d.name.startswith(str(name_or_path)) and (d / "run.json").is_file()
        )
        if root_p.is_dir()
        else []
    )
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"run {name_or_path!r} is ambiguous in {root}: " + ", ".join(m.name for m in matches[:10]))
    raise ConfigError(f"no run named {name_or_path!r} in {root_p.resolve()} (see `visiontune runs list --root DIR`)")


def load_run(name_or_path: str | os.PathLike, root: str | os.PathLike = "runs") -> RunRecord:
    """A run by folder path, by name under ``root``, or by a unique name prefix."""
    return RunRecord.load(resolve_run_dir(name_or_path, root))


def list_runs(root: str | os.PathLike = "runs") -> list[RunRecord]:
    """Every run under ``root``, oldest first. Damaged records are skipped with a warning."""
    import warnings

    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if d.is_dir() and (d / "run.json").is_file():
            try:
                out.append(RunRecord.load(d))
            except ConfigError as e:
                warnings.warn(str(e), RuntimeWarning, stacklevel=2)
    out.sort(key=lambda r: (r.start_timestamp(), r.name))
    return out


def update_record(directory: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Atomically merge top-level ``fields`` into a finished run's run.json."""
    rj = Path(directory) / "run.json"
    data = read_record(rj)
    data.update(_io.to_jsonable(fields))
    write_record(rj, data)
    return data


@dataclass
class Comparison:
    """How runs differ: config keys, record fields and final metrics, one value per run."""

    names: list[str]
    config_diff: dict[str, list[Any]]  # flattened key -> value per run (only differing keys)
    record_diff: dict[str, list[Any]]  # model / data version / seed / env differences
    metrics: dict[str, list[dict[str, float] | None]]  # metric -> per run {final, best, ...}


_MISSING = "<unset>"


def compare_runs(records: list[RunRecord]) -> Comparison:
    """Config diff (flattened, only keys that differ), record diff (model, weights, data
    version, seed, key package versions) and a final / best table of every metric."""
    if len(records) < 2:
        raise ConfigError("compare needs at least two runs")
    flat = [_io.flatten(r.config) for r in records]
    keys = sorted(set().union(*flat))
    config_diff = {
        k: [f.get(k, _MISSING) for f in flat] for k in keys if len({repr(f.get(k, _MISSING)) for f in flat}) > 1
    }

    def meta(r: RunRecord) -> dict[str, Any]:
        env = r.data.get("env") or {}
        m = {
            "model.id": r.model_id,
            "model.weights_sha256": (r.data.get("model") or {}).get("weights_sha256"),
            "data.version": r.data_version,
            "seed": r.data.get("seed"),
            "deterministic": r.data.get("deterministic"),
            "status": r.status,
            "git.commit": (r.data.get("git") or {}).get("commit"),
            "device": env.get("device"),
            "python": env.get("python"),
        }
        for pkg, ver in (env.get("packages") or {}).items():
            m[f"packages.{pkg}"] = ver
        return m

    metas = [meta(r) for r in records]
    mkeys = list(dict.fromkeys(k for m in metas for k in m))
    record_diff = {k: [m.get(k) for m in metas] for k in mkeys if len({repr(m.get(k)) for m in metas}) > 1}
    finals = [r.final_metrics() for r in records]
    all_metrics = sorted(set().union(*finals), key=lambda m: (m.startswith("lr"), m))
    metrics = {m: [f.get(m) for f in finals] for m in all_metrics}
    return Comparison([r.name for r in records], config_diff, record_diff, metrics)


def plot_comparison(records: list[RunRecord], out: str | os.PathLike, metrics: list[str] | None = None) -> Path:
    """PNG with the runs' curves overlaid, one panel per shared metric."""
    from visiontune.track.plots import plot_compare_curves

    names = [r.name for r in records]
    if len(set(names)) != len(names):
        names = [str(r.dir) for r in records]
    return plot_compare_curves({n: r.metric_rows() for n, r in zip(names, records)}, out, metrics)
