"""Weights & Biases backend. Without an API key (``WANDB_API_KEY`` or a netrc login) it runs in
offline mode and writes ``<run>/wandb/offline-run-*``; upload later with ``wandb sync``."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from visiontune.errors import require
from visiontune.track.backends.base import Tracker


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


class WandbTracker(Tracker):
    """Logs a run to Weights & Biases (offline unless a key is configured)."""

    name = "wandb"

    def __init__(self, project: str | None = None, entity: str | None = None, mode: str | None = None):
        self.project = project or os.environ.get("WANDB_PROJECT") or "visiontune"
        self.entity = entity
        self.mode = mode
        self._run = None
        self._wandb = None

    def start(self, run, params):
        """Start the W&B run of ``run`` with ``params`` as its config."""
        wandb = require("wandb", "wandb", "The Weights & Biases tracker")
        self._wandb = wandb
        mode = self.mode or os.environ.get("WANDB_MODE") or ("online" if _has_wandb_key() else "offline")
        self._run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=run.name,
            dir=str(run.dir),
            config=run.config,
            mode=mode,
            reinit="create_new",
            tags=[t for t in (run.record.get("kind"), run.record.get("strategy")) if t],
        )
        out = {"mode": mode, "project": self.project, "run_id": self._run.id}
        if mode == "offline":
            out["sync"] = f"wandb sync {Path(self._run.dir).parent}"
        return out

    def log_metrics(self, metrics, step, epoch):
        """Log ``metrics`` (and ``epoch``) at ``step``."""
        payload = dict(metrics)
        if epoch is not None:
            payload["epoch"] = epoch
        self._run.log(payload, step=int(step))

    def log_image(self, tag, image, step):
        """Log ``image`` under ``tag`` at ``step``."""
        self._run.log({tag: self._wandb.Image(image)}, step=int(step))

    def log_artifact(self, path, name):
        """Log the file or folder ``path`` as a model artifact named ``name``."""
        path = Path(path)
        art = self._wandb.Artifact(name=f"{self._run.name}-{name}".replace("/", "-"), type="model")
        if path.is_dir():
            art.add_dir(str(path))
        else:
            art.add_file(str(path))
        self._run.log_artifact(art)

    def finish(self, status, summary):
        """Write the summary and finish the W&B run; returns what to record about it."""
        if self._run is None:
            return {}
        for k, v in summary.items():
            self._run.summary[k] = v
        self._run.summary["status"] = status
        self._run.finish(exit_code=0 if status == "completed" else 1)
        self._run = None
        return {}
