"""Typed on-disk records: every file visiontune writes is read and written in one place.

Each format is a pydantic model deriving from :class:`Record` with a ``KIND`` and ``VERSION``;
its files carry ``"format": "visiontune.<kind>/<n>"``. ``Record.read`` validates a file (and
upgrades documents written by older versions through ``upgrade``), ``Record.write`` writes one
atomically. Errors name the file and the field::

    class ServeStats(Record):
        KIND: ClassVar[str] = "serve-stats"
        VERSION: ClassVar[int] = 1
        requests: int = 0

    ServeStats(requests=3).write("stats.json")      # {"format": "visiontune.serve-stats/1", ...}
    ServeStats.read("stats.json").requests
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from visiontune._atomic import write_text
from visiontune.errors import ConfigError

R = TypeVar("R", bound="Record")

_FORMAT_RE = re.compile(r"^visiontune\.(?P<kind>[a-z0-9][a-z0-9_.-]*)/(?P<version>\d+)$")


def format_id(kind: str, version: int) -> str:
    """``visiontune.<kind>/<version>``."""
    return f"visiontune.{kind}/{int(version)}"


def parse_format(text: str) -> tuple[str, int] | None:
    """(kind, version) of a ``visiontune.<kind>/<n>`` string, or None."""
    m = _FORMAT_RE.match(str(text or ""))
    return (m["kind"], int(m["version"])) if m else None


class Record(BaseModel):
    """Base of every on-disk format. Subclasses set ``KIND`` and ``VERSION``; ``format`` is
    filled in and checked. Unknown keys are kept (a newer writer's additions survive a round
    trip through an older reader) unless the subclass forbids them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    format: str = Field(default="", description="visiontune.<kind>/<n>")

    @classmethod
    def format_id(cls) -> str:
        """This class's ``visiontune.<kind>/<n>``."""
        return format_id(cls.KIND, cls.VERSION)

    @classmethod
    def upgrade(cls, doc: dict[str, Any]) -> dict[str, Any]:
        """Turn a document written by an older version (or an older convention) into this
        version's shape. The base accepts only this version; subclasses extend it."""
        return doc

    @model_validator(mode="before")
    @classmethod
    def _check_format(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = cls.upgrade(dict(data))
        fmt = data.get("format") or cls.format_id()
        parsed = parse_format(fmt)
        if parsed is None or parsed[0] != cls.KIND:
            raise ValueError(f"format is {fmt!r}, expected {cls.format_id()!r}")
        if parsed[1] > cls.VERSION:
            raise ValueError(
                f"format {fmt!r} is newer than this visiontune reads ({cls.format_id()}): upgrade visiontune"
            )
        data["format"] = cls.format_id()
        return data

    # -- files -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls: type[R], doc: dict[str, Any], *, source: str = "document") -> R:
        """Validate a dict; :class:`~visiontune.errors.ConfigError` names ``source`` and the field."""
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            raise ConfigError(f"{source} is not a valid {cls.format_id()} record: {_explain(e)}") from None

    @classmethod
    def read(cls: type[R], path: str | os.PathLike) -> R:
        """Read and validate ``path``."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not readable JSON ({e})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected a JSON object, found {type(doc).__name__}")
        return cls.from_dict(doc, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict, ``format`` first."""
        doc = self.model_dump(mode="json")
        return {"format": doc.pop("format"), **doc}

    def write(self, path: str | os.PathLike, *, indent: int | None = 2) -> Path:
        """Write atomically as JSON; returns the path."""
        return write_text(path, json.dumps(self.to_dict(), indent=indent, default=str) + "\n")


def _explain(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(document)"
        parts.append(f"{loc}: {err.get('msg')}")
    more = len(e.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
