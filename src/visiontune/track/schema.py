"""``run.json``, typed: the one place a run record is validated, read and written.

Everything visiontune records about a run (status, model id and weights sha256, data version,
seed, environment, git commit, command, best / summary metrics, checkpoints, artifacts) is a
:class:`RunDoc` (``"format": "visiontune.run/1"``). `visiontune.track.Run` writes it, the run
listings and ``reproduce`` read it; keys added by a newer version survive a round trip.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from visiontune.errors import ConfigError
from visiontune.records import Record
from visiontune.track import _io

Status = Literal["running", "completed", "failed", "interrupted", "unknown"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class RunModel(_Open):
    """Which model the run started from."""

    id: str | None = None
    weights_sha256: str | None = None


class RunData(_Open):
    """Which data version the run trained on."""

    version: str | None = None


class Heartbeat(_Open):
    """The writing process, refreshed while the run is alive (a dead writer is detected from it)."""

    time: str | None = None
    pid: int | None = None
    host: str | None = None
    proc_start: int | None = None
    interval_s: float = 15.0


class Monitor(_Open):
    """The headline metric and whether higher is better."""

    metric: str | None = None
    mode: Literal["min", "max"] | None = None


class RunDoc(Record):
    """``run.json``."""

    KIND: ClassVar[str] = "run"
    VERSION: ClassVar[int] = 1

    name: str
    kind: str = "train"
    status: Status = "unknown"
    status_reason: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    duration_s: float | None = None
    heartbeat: Heartbeat = Field(default_factory=Heartbeat)
    model: RunModel = Field(default_factory=RunModel)
    data: RunData = Field(default_factory=RunData)
    strategy: str | None = None
    seed: int | None = None
    deterministic: bool | None = None
    command: list[str] = Field(default_factory=list)
    cwd: str | None = None
    git: dict[str, Any] | None = None
    env: dict[str, Any] = Field(default_factory=dict)
    trackers: dict[str, Any] = Field(default_factory=dict)
    monitor: Monitor = Field(default_factory=Monitor)
    best: dict[str, Any] | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    last_step: int | None = None
    last_epoch: int | None = None
    checkpoints: list[dict[str, Any]] = Field(default_factory=list)
    artifacts: list[Any] = Field(default_factory=list)
    images: list[Any] = Field(default_factory=list)
    tags: dict[str, Any] = Field(default_factory=dict)
    error: Any = None
    tracker_errors: list[Any] = Field(default_factory=list)


def new_record(
    name: str,
    *,
    kind: str,
    now: str,
    model_id: str | None,
    weights_sha256: str | None,
    data_version: str | None,
    strategy: Any,
    seed: int | None,
    deterministic: bool,
    command: list[str] | None,
    git: dict | None,
    env: dict,
    monitor: str | None,
    mode: str | None,
    tags: dict,
    heartbeat_interval: float,
    proc_start: int | None,
) -> dict[str, Any]:
    """The record of a run that starts now (a plain dict: `Run` updates it as the run goes)."""
    doc = RunDoc(
        name=name,
        kind=kind,
        status="running",
        start_time=now,
        heartbeat=Heartbeat(
            time=now,
            pid=os.getpid(),
            host=socket.gethostname(),
            proc_start=proc_start,
            interval_s=heartbeat_interval,
        ),
        model=RunModel(id=model_id, weights_sha256=weights_sha256),
        data=RunData(version=data_version),
        strategy=strategy,
        seed=seed,
        deterministic=deterministic,
        command=list(command) if command is not None else list(sys.argv),
        cwd=os.getcwd(),
        git=git,
        env=env,
        trackers={"csv": {"path": "metrics.csv"}},
        monitor=Monitor(metric=monitor, mode=mode),  # type: ignore[arg-type]
        tags=_io.to_jsonable(dict(tags or {})),
    )
    return doc.to_dict()


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Validate ``record`` as a :class:`RunDoc` and write it atomically."""
    doc = RunDoc.from_dict(_io.to_jsonable(record), source=str(path))
    _io.write_json(path, doc.to_dict())


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """``run.json`` validated, as a dict."""
    p = Path(path)
    data = _io.read_json(p)
    if not isinstance(data, dict) or "status" not in data:
        raise ConfigError(f"{p}: not a visiontune run record (no 'status' key)")
    return RunDoc.from_dict(data, source=str(p)).to_dict()
