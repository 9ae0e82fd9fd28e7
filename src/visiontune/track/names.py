"""Run folder names and the process facts a run record keeps (time, process start)."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

from visiontune.errors import ConfigError, ModelIdError
from visiontune.hub.ids import parse_model_id

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def utcnow() -> str:
    """Now, UTC, ISO 8601 with milliseconds and a Z."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def proc_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux); tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
        return int(data[data.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def model_short(model_id: str | None) -> str:
    """A short name for run names: the architecture of a model id, the folder of a path."""
    if not model_id:
        return "model"
    try:
        name = parse_model_id(str(model_id)).name
    except ModelIdError:
        name = str(model_id)
    s = name.replace(":", "/").rstrip("/").split("/")[-1]  # hub:owner/repo:entry -> entry
    return s or "model"


def safe_name(name: str) -> str:
    """``name`` with anything but letters, digits, '.', '_' and '-' replaced by '-'."""
    return _NAME_OK.sub("-", name).strip("-.") or "run"


def claim_dir(root: Path, name: str | None, model_id: str | None, strategy: Any) -> Path:
    """Create the run folder: ``name`` (never an existing one) or ``<UTC stamp>-<model>-<strategy>``."""
    if name is not None:
        safe = safe_name(str(name))
        if safe != name:
            raise ConfigError(f"Run name {name!r}: use letters, digits, '.', '_' and '-' only (e.g. {safe!r})")
        d = root / safe
        try:
            d.mkdir()
        except FileExistsError:
            raise ConfigError(
                f"Run folder {d} already exists; runs are never overwritten. "
                "Pick another name or leave name unset for a unique one."
            ) from None
        return d
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    parts = [stamp, model_short(model_id)] + ([str(strategy)] if strategy else [])
    base = safe_name("-".join(parts))
    for i in range(1, 10_000):
        d = root / (base if i == 1 else f"{base}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise ConfigError(f"Could not find a free run name for {base!r} in {root}")  # pragma: no cover
