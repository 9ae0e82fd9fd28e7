"""Small, dependency-light file helpers: JSON/YAML, flattening, the metrics CSV.

Everything a run writes goes through ``visiontune._atomic`` so that a crash at any moment leaves
either the old file or the new one on disk, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from visiontune._atomic import write_text

METRICS_FIELDS = ("step", "epoch", "wall_time", "metric", "value")


def to_jsonable(obj: Any) -> Any:
    """Turn configs (pydantic models, dataclasses, Paths, numpy / torch scalars, tuples) into
    plain JSON / YAML data. Non-finite floats become strings so the JSON stays standard."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "model_dump"):  # pydantic v2
        return to_jsonable(obj.model_dump(mode="json"))
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return to_jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalar
        try:
            return to_jsonable(obj.item())
        except (ValueError, RuntimeError):
            pass
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    return str(obj)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    write_text(path, yaml.safe_dump(to_jsonable(data), sort_keys=False, allow_unicode=True))


def read_json(path: str | os.PathLike) -> Any:
    from visiontune.errors import ConfigError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{path}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg}). "
            "The run record is damaged; restore it from a backup or delete the run folder."
        ) from e


def read_yaml(path: str | os.PathLike) -> Any:
    from visiontune.errors import ConfigError

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({e}). Fix or delete the file.") from e


def flatten(data: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}, "aug": [1, 2]}`` -> ``{"optim.lr": 0.1, "aug": [1, 2]}``.
    Lists stay values (they are compared / logged as a whole)."""
    out: dict[str, Any] = {}
    data = to_jsonable(data)
    if isinstance(data, dict):
        if not data and prefix:
            out[prefix] = {}
        for k, v in data.items():
            key = f"{prefix}{sep}{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key, sep))
            else:
                out[key] = v
    elif prefix:
        out[prefix] = data
    return out


class MetricsCSV:
    """Append-only long-format metrics file: one row per (step, metric).

    The header is fixed (``step,epoch,wall_time,metric,value``) so new metric names never force
    a rewrite; each row is flushed (and fsynced every ``fsync_every`` rows) so a killed process
    keeps every row it wrote. Readable with anything: ``pandas.read_csv(path)``.
    """

    def __init__(self, path: str | os.PathLike, fsync_every: int = 50):
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new and not self._ends_with_newline():
            # A previous writer died mid-line: terminate the torn row so ours start clean.
            with open(self.path, "a", encoding="utf-8", newline="") as f:
                f.write("\n")
        self._f = open(self.path, "a", encoding="utf-8", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")
        self._fsync_every = max(1, fsync_every)
        self._since_sync = 0
        if new:
            self._w.writerow(METRICS_FIELDS)
            self._f.flush()

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def write(self, rows: Iterable[tuple[int | None, int | None, float, str, float]]) -> None:
        for step, epoch, t, name, value in rows:
            self._w.writerow(
                (
                    "" if step is None else int(step),
                    "" if epoch is None else int(epoch),
                    f"{t:.3f}",
                    name,
                    repr(float(value)),
                )
            )
            self._since_sync += 1
        self._f.flush()
        if self._since_sync >= self._fsync_every:
            os.fsync(self._f.fileno())
            self._since_sync = 0

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def read_metrics_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``metrics.csv`` without pandas, skipping a torn (half-written) last line and any
    malformed row; returns dicts with ``step``/``epoch`` (int or None), ``wall_time``,
    ``metric`` and ``value`` (float)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the writer died mid-row: drop the torn tail
    rows: list[dict[str, Any]] = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return rows
    idx = {name: i for i, name in enumerate(header)}
    needed = ("metric", "value")
    if any(n not in idx for n in needed):
        from visiontune.errors import ConfigError

        raise ConfigError(
            f"{path}: line 1: expected a header with columns {','.join(METRICS_FIELDS)}, got {','.join(header)}"
        )
    for row in reader:
        if len(row) != len(header):
            continue  # torn or foreign row
        try:
            value = float(row[idx["value"]])
        except ValueError:
            continue
        rec: dict[str, Any] = {"metric": row[idx["metric"]], "value": value}
        for key in ("step", "epoch"):
            raw = row[idx[key]] if key in idx else ""
            try:
                rec[key] = int(raw) if raw != "" else None
            except ValueError:
                rec[key] = None
        try:
            rec["wall_time"] = float(row[idx["wall_time"]]) if "wall_time" in idx else None
        except ValueError:
            rec["wall_time"] = None
        rows.append(rec)
    return rows
