"""visiontune.track -- reproducible run records.

``Run.start(...)`` creates ``runs/<name>/`` (config.yaml, run.json, metrics.csv, checkpoints/,
plots/, tb/) and fans metrics out to TensorBoard / MLflow / W&B; ``list_runs``, ``load_run``,
``compare_runs`` and ``reproduce`` read the folders back (``visiontune runs ...``)."""

from visiontune.track.backends import Tracker, available_trackers, make_tracker, register_tracker
from visiontune.track.env import capture_environment
from visiontune.track.records import (
    Comparison,
    RunRecord,
    compare_runs,
    effective_status,
    list_runs,
    load_run,
    plot_comparison,
)
from visiontune.track.reproduce import (
    Reproduction,
    get_runner,
    register_runner,
    registered_runners,
    reproduce,
)
from visiontune.track.run import Run

__all__ = [
    "Comparison",
    "Reproduction",
    "Run",
    "RunRecord",
    "Tracker",
    "available_trackers",
    "capture_environment",
    "compare_runs",
    "effective_status",
    "get_runner",
    "list_runs",
    "load_run",
    "make_tracker",
    "plot_comparison",
    "register_runner",
    "register_tracker",
    "registered_runners",
    "reproduce",
]
