"""Tracking backends behind one interface. CSV is built into the run itself and always on;
these add TensorBoard (default), MLflow and Weights & Biases. Several can run at once."""

from __future__ import annotations

from typing import Any

from visiontune.errors import ConfigError
from visiontune.track.backends.base import Tracker

_BUILTIN = {
    "tensorboard": ("visiontune.track.backends.tensorboard", "TensorBoardTracker"),
    "tb": ("visiontune.track.backends.tensorboard", "TensorBoardTracker"),
    "mlflow": ("visiontune.track.backends.mlflow", "MLflowTracker"),
    "wandb": ("visiontune.track.backends.wandb", "WandbTracker"),
}
_REGISTRY: dict[str, Any] = {}


def register_tracker(name: str, factory) -> None:
    """Make ``trackers=("name",)`` build ``factory()`` (a Tracker subclass or a callable)."""
    _REGISTRY[name.lower()] = factory


def available_trackers() -> list[str]:
    """Names of the trackers ``make_tracker`` can build."""
    return sorted({*(_BUILTIN), *(_REGISTRY)} - {"tb"})


def make_tracker(spec: str | Tracker) -> Tracker:
    """``"tensorboard"``, ``"mlflow"``, ``"mlflow=sqlite:///x.db"`` / ``"mlflow=http://host:5000"``,
    ``"wandb"``, ``"wandb=project-name"``, a registered name, or a Tracker instance."""
    if isinstance(spec, Tracker):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"trackers: expected names or Tracker objects, got {spec!r}")
    name, _, arg = spec.partition("=")
    key = name.strip().lower()
    if key == "csv":
        raise ConfigError("trackers: 'csv' is always on (metrics.csv); leave it out of the list")
    if key in _REGISTRY:
        factory = _REGISTRY[key]
    elif key in _BUILTIN:
        import importlib

        module, attr = _BUILTIN[key]
        factory = getattr(importlib.import_module(module), attr)
    else:
        raise ConfigError(
            f"trackers: unknown backend {name!r}; choose from {', '.join(available_trackers())} (CSV is always on)"
        )
    return factory(arg) if arg else factory()


__all__ = ["Tracker", "available_trackers", "make_tracker", "register_tracker"]
