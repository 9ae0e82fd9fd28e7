"""TensorBoard backend: real event files under ``<run>/tb`` (scalars, images, hparams)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visiontune.track.backends.base import Tracker


def _hparam_value(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)):
        return v
    return "None" if v is None else str(v)


class TensorBoardTracker(Tracker):
    """Writes scalars, images and hyperparameters to TensorBoard event files in the run folder."""

    name = "tensorboard"

    def __init__(self, subdir: str = "tb", flush_secs: int = 10):
        self.subdir = subdir
        self.flush_secs = flush_secs
        self._writer = None
        self._params: dict[str, Any] = {}
        self._last_step = 0

    def start(self, run, params):
        """Open the event writer under the run folder."""
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(run.dir) / self.subdir
        self._writer = SummaryWriter(log_dir=str(log_dir), flush_secs=self.flush_secs)
        self._params = {k: _hparam_value(v) for k, v in params.items()}
        if run.config:
            import yaml

            text = yaml.safe_dump(run.config, sort_keys=False)
            self._writer.add_text("config", "```yaml\n" + text + "\n```", 0)
        return {"log_dir": self.subdir}

    def log_metrics(self, metrics, step, epoch):
        """Write ``metrics`` as scalars at ``step``."""
        self._last_step = max(self._last_step, step)
        for k, v in metrics.items():
            self._writer.add_scalar(k, v, step)

    def log_image(self, tag, image, step):
        """Write the HWC ``image`` under ``tag`` at ``step``."""
        self._writer.add_image(tag, image, step, dataformats="HWC")

    def flush(self):
        """Flush the event file."""
        if self._writer is not None:
            self._writer.flush()

    def finish(self, status, summary):
        """Write the hyperparameters with the final metrics and close the writer; returns what to record."""
        from torch.utils.tensorboard.summary import hparams

        if self._writer is None:
            return {}
        numeric = {
            f"summary/{k}": float(v)
            for k, v in summary.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        hp = dict(self._params)
        hp["status"] = status
        exp, ssi, sei = hparams(hp, numeric)
        fw = self._writer._get_file_writer()
        for s in (exp, ssi, sei):
            fw.add_summary(s)
        for k, v in numeric.items():
            self._writer.add_scalar(k, v, self._last_step)
        self._writer.flush()
        self._writer.close()
        self._writer = None
        return {}
