"""Lightning plumbing: atomic checkpoints and the per-epoch table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import Callback

from visiontune._atomic import atomic_path
from visiontune.hub.trust import torch_load


class AtomicCheckpointIO(CheckpointIO):
    """Checkpoints written to a temporary sibling, flushed to disk, then renamed over the target:
    a crash (even SIGKILL) leaves either the previous checkpoint or the new one, never half of one.
    Reading goes through the trust gate: ``weights_only=True`` (visiontune's own checkpoints load
    so), full unpickling only when the user passed ``trust_pickle``."""

    def __init__(self, trust_pickle: bool = False):
        super().__init__()
        self.trust_pickle = trust_pickle

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return torch_load(
            path, trust_pickle=self.trust_pickle, what="training checkpoint", map_location=map_location or "cpu"
        )

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


class EpochTable(Callback):
    """Prints one row per epoch: losses, accuracies, head lr, training groups, time."""

    COLUMNS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "val/top5", "lr", "groups", "time")

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console()
        self._t0 = 0.0
        self._header = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        widths = (5, 10, 9, 8, 7, 8, 8, 6, 6)
        if not self._header:
            self.console.print(" ".join(f"{c:>{w}}" for c, w in zip(self.COLUMNS, widths)), style="bold")
            self._header = True
        lr = trainer.optimizers[0].param_groups[-1]["lr"] if trainer.optimizers else float("nan")
        vals = [str(trainer.current_epoch)]
        for k in ("train/loss", "train/acc", "val/loss", "val/acc", "val/top5"):
            vals.append(f"{float(m[k]):.4f}" if k in m else "-")
        vals += [
            f"{lr:.2e}",
            str(len(getattr(pl_module, "trainable_groups", []))),
            f"{time.perf_counter() - self._t0:.1f}s",
        ]
        self.console.print(" ".join(f"{v:>{w}}" for v, w in zip(vals, widths)), highlight=False)
