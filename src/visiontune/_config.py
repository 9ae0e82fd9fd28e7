"""YAML config files validated by pydantic, the one implementation every verb uses.

Errors are ``ConfigError``s that name the file, the YAML line, the key (dotted for nested
sections) and, for an unknown key, the keys that section allows.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from visiontune.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | os.PathLike, what: str = "config") -> Any:
    """The parsed YAML document at ``path`` (``{}`` for an empty file)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} file {p}: {e}") from None
    return {} if data is None else data


def validate(model: type[M], data: Any, source: str = "config") -> M:
    """``model`` built from ``data`` (a mapping), or a ``ConfigError`` naming every bad key."""
    if isinstance(data, model):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source, model)) from None


def load(
    model: type[M],
    config: Any,
    *,
    section: str | None = None,
    what: str = "config",
    overrides: dict[str, Any] | None = None,
) -> M:
    """``model`` from a YAML path, a dict or an instance. A file or dict that holds the config
    under ``section`` (``train:``, ``detector:`` ...) is unwrapped; ``overrides`` win over it."""
    if isinstance(config, model) and not overrides:
        return config
    source = what
    if isinstance(config, (str, os.PathLike)):
        source = str(config)
        config = read_yaml(config, what)
    elif isinstance(config, model):
        config = config.model_dump()
    if (
        section
        and isinstance(config, dict)
        and isinstance(config.get(section), dict)
        and section not in model.model_fields
    ):
        config = config[section]
    if overrides and isinstance(config, dict):
        config = {**config, **overrides}
    return validate(model, config, source)


def format_errors(e: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"{source}: invalid config"]
    for err in e.errors():
        loc = err["loc"]
        key = ".".join(str(x) for x in loc) or "(config)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            owner = _section_model(model, loc[:-1])
            msg = "unknown key" + (f"; allowed keys: {', '.join(sorted(owner.model_fields))}" if owner else "")
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _section_model(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``loc`` (nested sections, Optional unwrapped)."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        candidates = (field.annotation, *typing.get_args(field.annotation))
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return model
