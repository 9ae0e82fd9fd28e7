"""Export backends behind one interface (`visiontune.export.backends.base.Backend`): the
registry ``BACKENDS`` maps a format name to the backend that writes and runs it.

A new format is one module with a `Backend` subclass and one `register_backend` call;
`visiontune.export.export` and `visiontune.export.load_artifact` then accept it.
"""

from __future__ import annotations

import difflib

from visiontune.errors import ConfigError
from visiontune.export.backends.base import Backend, ExportOptions, Runner
from visiontune.export.backends.onnx import OnnxBackend
from visiontune.export.backends.torchscript import TorchScriptBackend

#: format name -> backend
BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Make ``backend`` available under ``backend.name`` (replacing one of the same name)."""
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str, *, what: str = "format") -> Backend:
    """The backend for format ``name`` (case-insensitive); ConfigError with a suggestion otherwise."""
    key = str(name).lower()
    if key not in BACKENDS:
        close = difflib.get_close_matches(key, BACKENDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{what} must be one of {sorted(BACKENDS)}, got {name!r}{hint}")
    return BACKENDS[key]


def artifact_suffixes() -> tuple[str, ...]:
    """Every file suffix an exported artifact can have."""
    return tuple(s for b in BACKENDS.values() for s in b.suffixes)


register_backend(OnnxBackend())
register_backend(TorchScriptBackend())

__all__ = [
    "BACKENDS",
    "Backend",
    "ExportOptions",
    "OnnxBackend",
    "Runner",
    "TorchScriptBackend",
    "artifact_suffixes",
    "get_backend",
    "register_backend",
]
