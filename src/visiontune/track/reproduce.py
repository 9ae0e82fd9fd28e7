"""Re-running a recorded run: the runner registry and :func:`reproduce`."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visiontune.errors import ConfigError
from visiontune.track.env import capture_environment, environment_differences, git_info
from visiontune.track.records import RunRecord, load_run, update_record

Runner = Callable[..., Any]
_RUNNERS: dict[str, Runner] = {}
# Runners shipped with visiontune, imported on first use ("module:function").
_BUILTIN_RUNNERS = {
    "selfcheck": "visiontune.track.selfcheck:run_selfcheck",
    "train": "visiontune.adapt.training:reproduce_runner",
    "detect-train": "visiontune.detect.train:reproduce_runner",
    "segment-train": "visiontune.segment.train:reproduce_runner",
}
# How each kind re-computes its data version from a config ("module:function").
_BUILTIN_DATA_VERSIONS = {
    "train": "visiontune.adapt.training:data_version",
    "detect-train": "visiontune.detect.train:data_version",
    "segment-train": "visiontune.segment.train:data_version",
}
ENTRY_POINT_GROUP = "visiontune.runners"


def register_runner(kind: str, fn: Runner) -> None:
    """Register how runs of ``kind`` (run.json ``kind``) are re-run by ``reproduce``.

    ``fn(config: dict, *, root: Path, name: str)`` must start a new Run with that ``root`` and
    ``name`` (``Run.start(root=root, name=name, ...)``), train from ``config`` and return the new
    run folder (a path, a Run, a RunRecord, or an object with ``run_dir``). Packages can also
    declare runners in the ``visiontune.runners`` entry-point group.
    """
    if not callable(fn):
        raise ConfigError(f"register_runner({kind!r}): expected a callable, got {type(fn).__name__}")
    _RUNNERS[kind] = fn


def registered_runners() -> list[str]:
    """Kinds of runs that can be reproduced (registered, built in and entry points)."""
    eps = [ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    return sorted({*_RUNNERS, *_BUILTIN_RUNNERS, *eps})


def get_runner(kind: str) -> Runner:
    """The runner that re-runs a run of ``kind``."""
    if kind in _RUNNERS:
        return _RUNNERS[kind]
    ref = _BUILTIN_RUNNERS.get(kind)
    if ref is None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == kind:
                _RUNNERS[kind] = ep.load()
                return _RUNNERS[kind]
        raise ConfigError(
            f"no runner registered for runs of kind {kind!r} (known: {', '.join(registered_runners())}). "
            "Register one with visiontune.track.register_runner(kind, fn) or import the package "
            "that provides it."
        )
    module, attr = ref.split(":")
    _RUNNERS[kind] = getattr(importlib.import_module(module), attr)
    return _RUNNERS[kind]


def _result_dir(result: Any) -> Path:
    for attr in ("run_dir", "dir"):
        if hasattr(result, attr):
            return Path(getattr(result, attr))
    if isinstance(result, (str, os.PathLike)):
        return Path(result)
    raise ConfigError(
        f"the runner returned {type(result).__name__}; it must return the new run "
        "folder (path, Run, RunRecord or an object with run_dir)"
    )


def current_data_version(record: RunRecord) -> str | None:
    """The data version the run's config resolves to now, through the task's own data loader
    (``data_version(config)`` of the module that trains runs of this kind). None when the config
    names no data or the kind has no such function."""
    source = record.config.get("data")
    if not isinstance(source, str) or not source:
        return None
    ref = _BUILTIN_DATA_VERSIONS.get(record.data.get("kind") or "train")
    if ref is None:
        return None
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)(dict(record.config))


def environment_warnings(record: RunRecord) -> list[str]:
    """One line per difference between the recorded run and now that may change the numbers."""
    lines = [f"environment: {d}" for d in environment_differences(record.data.get("env") or {}, capture_environment())]
    g_then, g_now = record.data.get("git") or {}, git_info(record.data.get("cwd") or None) or {}
    if g_then.get("commit") and g_then.get("commit") != g_now.get("commit"):
        lines.append(
            f"code: recorded at git commit {g_then['commit'][:12]}, now {(g_now.get('commit') or 'no commit')[:12]}"
        )
    if g_then.get("dirty"):
        lines.append("code: the recorded run had uncommitted changes; the code may differ")
    if not record.data.get("deterministic"):
        lines.append("the recorded run did not use deterministic algorithms; metrics may differ")
    if record.status != "completed":
        lines.append(f"the recorded run is {record.status}; its final metrics are partial")
    return lines


@dataclass
class Reproduction:
    """A re-run next to its original: warnings and (original, new) of each metric."""

    original: RunRecord
    new: RunRecord
    warnings: list[str] = field(default_factory=list)
    # metric -> (recorded final value, reproduced final value)
    metrics: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def matches(self) -> bool:
        """True when every final metric of the original run has exactly the same value."""
        return bool(self.metrics) and all(a == b or (a != a and b != b) for a, b in self.metrics.values())

    @property
    def mismatches(self) -> dict[str, tuple[float | None, float | None]]:
        """The metrics whose original and new values differ (NaN equals NaN)."""
        return {k: v for k, v in self.metrics.items() if not (v[0] == v[1] or (v[0] != v[0] and v[1] != v[1]))}


def reproduce(
    name_or_path: str | os.PathLike,
    root: str | os.PathLike = "runs",
    *,
    name: str | None = None,
    out_root: str | os.PathLike | None = None,
    check_data: bool = True,
) -> Reproduction:
    """Re-run a recorded run from its config.yaml + run.json with the runner of its ``kind``.

    Every environment, code or data-version difference is a warning (returned and emitted as
    ``RuntimeWarning``). The new run goes to ``out_root`` (default: the original's root) as
    ``<name>`` (default ``<original>-repro``, made unique) with ``reproduced_from`` in run.json.
    The result compares the final value of every metric of both runs.
    """
    original = load_run(name_or_path, root)
    kind = original.data.get("kind") or "train"
    runner = get_runner(kind)
    notes = environment_warnings(original)
    recorded_version = original.data_version
    if check_data and recorded_version:
        try:
            now = current_data_version(original)
        except Exception as e:  # noqa: BLE001 - say why it could not be checked, go on
            notes.append(f"data: could not re-compute the data version ({type(e).__name__}: {e})")
        else:
            if now is not None and now != recorded_version:
                notes.append(f"data: recorded version {recorded_version}, now {now}")
    for line in notes:
        warnings.warn(line, RuntimeWarning, stacklevel=2)

    out = Path(out_root) if out_root is not None else original.dir.parent
    if name is None:
        base, i = f"{original.name}-repro", 1
        name = base
        while (out / name).exists():
            i += 1
            name = f"{base}{i}"
    result = runner(dict(original.config), root=out, name=name)
    new_dir = _result_dir(result)
    update_record(
        new_dir, reproduced_from={"name": original.name, "dir": str(original.dir.resolve()), "warnings": notes}
    )
    new = RunRecord.load(new_dir)
    if new.data_version and recorded_version and new.data_version != recorded_version:
        line = f"data: recorded version {recorded_version}, the re-run used {new.data_version}"
        if line not in notes:
            notes.append(line)
            warnings.warn(line, RuntimeWarning, stacklevel=2)
    a, b = original.final_metrics(), new.final_metrics()
    metrics: dict[str, tuple[float | None, float | None]] = {m: (a[m]["final"], b.get(m, {}).get("final")) for m in a}
    for k, v in (original.data.get("summary") or {}).items():
        nv = (new.data.get("summary") or {}).get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics[f"summary/{k}"] = (float(v), float(nv) if isinstance(nv, (int, float)) else None)
    return Reproduction(original, new, notes, metrics)
