"""The interface every tracking backend implements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from visiontune.track.run import Run


class Tracker:
    """A backend the run fans out to. Subclasses override what they support; the defaults do
    nothing. ``start`` may raise (misconfiguration is reported at once); errors in the logging
    calls are caught by the run, reported once and the backend is switched off, so a tracking
    server going away never kills a training run."""

    name = "tracker"

    def start(self, run: Run, params: dict[str, Any]) -> dict[str, Any]:
        """Open the backend; ``params`` is the flattened config. Returns what run.json should
        record about this backend (ids, URIs, folders)."""
        return {}

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int | None) -> None:
        """Record ``metrics`` at ``step`` (and ``epoch``)."""
        pass

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image`` is an HxWx3 uint8 array."""

    def log_artifact(self, path: Path, name: str) -> None:
        """Store the file or folder ``path`` under ``name``."""
        pass

    def flush(self) -> None:
        """Push buffered data to the backend."""
        pass

    def finish(self, status: str, summary: dict[str, Any]) -> dict[str, Any]:
        """Close the backend with the run's final status. Returns extra run.json info."""
        return {}
