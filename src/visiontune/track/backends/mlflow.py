"""MLflow backend: params (flattened config), metrics per step, tags, artifacts.

Default store: ``sqlite:///<runs root>/mlflow.db`` with artifacts in ``<runs root>/mlartifacts``;
no server needed. Any tracking URI works (``mlflow=http://host:5000``), and
``MLFLOW_TRACKING_URI`` is honoured when no URI is given.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from visiontune.errors import require
from visiontune.track.backends.base import Tracker

_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
MAX_PARAM_LEN = 6000  # MLflow >= 2.x limit on a param value


def _key(k: str) -> str:
    return _BAD_KEY.sub("_", k)


class MLflowTracker(Tracker):
    """Logs a run to MLflow (``tracking_uri``, ``experiment``): params, metrics, images, artifacts."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str = "visiontune"):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = None
        self.run_id: str | None = None

    def _resolve_uri(self, run) -> tuple[str, str | None]:
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return uri, None
        root = Path(run.root).resolve()
        return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()

    def start(self, run, params):
        """Open the MLflow run of ``run`` and log ``params`` and tags."""
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        require("mlflow", "mlflow", "The MLflow tracker")
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri, artifact_root = self._resolve_uri(run)
        self.tracking_uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            try:
                exp_id = self.client.create_experiment(self.experiment, artifact_location=artifact_root)
            except MlflowException:  # created by a concurrent run in the meantime
                exp_id = self.client.get_experiment_by_name(self.experiment).experiment_id
        else:
            exp_id = exp.experiment_id
        rec = run.record
        tags = {
            "visiontune.run_dir": str(Path(run.dir).resolve()),
            "visiontune.kind": rec.get("kind") or "",
            "visiontune.status": "running",
            "visiontune.version": (rec.get("env", {}).get("packages") or {}).get("visiontune") or "",
            "visiontune.model_id": (rec.get("model") or {}).get("id") or "",
            "visiontune.data_version": (rec.get("data") or {}).get("version") or "",
            "mlflow.source.name": " ".join(rec.get("command") or [])[:500],
        }
        git = rec.get("git") or {}
        if git.get("commit"):
            tags["mlflow.source.git.commit"] = git["commit"]
        mlrun = self.client.create_run(exp_id, run_name=run.name, tags=tags)
        self.run_id = mlrun.info.run_id
        plist = [Param(_key(k), str(v)[:MAX_PARAM_LEN]) for k, v in params.items()]
        for i in range(0, len(plist), 100):
            self.client.log_batch(self.run_id, params=plist[i : i + 100])
        if rec.get("seed") is not None and "seed" not in params:
            self.client.log_batch(self.run_id, tags=[RunTag("visiontune.seed", str(rec["seed"]))])
        return {"tracking_uri": uri, "experiment": self.experiment, "experiment_id": exp_id, "run_id": self.run_id}

    def log_metrics(self, metrics, step, epoch):
        """Log ``metrics`` at ``step`` in one batch."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(_key(k), float(v), ts, int(step)) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def log_image(self, tag, image, step):
        """Log ``image`` under ``tag`` at ``step``."""
        self.client.log_image(self.run_id, image, key=_key(tag), step=int(step))

    def log_artifact(self, path, name):
        """Log the file or folder ``path`` as artifact ``name``."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path=None)

    def finish(self, status, summary):
        """Log the summary, end the MLflow run with ``status``; returns what to record about it."""
        from mlflow.entities import Metric, RunTag

        if self.client is None:
            return {}
        ts = int(time.time() * 1000)
        numeric = [
            Metric(_key(f"summary/{k}"), float(v), ts, 0)
            for k, v in summary.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        self.client.log_batch(self.run_id, metrics=numeric, tags=[RunTag("visiontune.status", status)])
        self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FINISHED"))
        self.client = None
        return {}
