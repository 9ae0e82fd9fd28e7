"""Checkpoints: atomic writes, trust-gated reads, resuming and adopting another run's checkpoints."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

from visiontune._atomic import atomic_path
from visiontune.errors import ConfigError, VisiontuneError
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
        """Write ``checkpoint`` to ``path`` atomically."""
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        """Read the checkpoint at ``path`` through the trust gate (CPU unless ``map_location``)."""
        return torch_load(
            path, trust_pickle=self.trust_pickle, what="training checkpoint", map_location=map_location or "cpu"
        )

    def remove_checkpoint(self, path) -> None:
        """Delete the checkpoint at ``path`` (no error when it is gone)."""
        Path(path).unlink(missing_ok=True)


def resume_target(resume: Any, run_root: str | os.PathLike, run_name: str | None) -> tuple[Path | None, Path | None]:
    """(run dir, checkpoint) from ``resume``: a run dir, a .ckpt file, or True (the named run)."""
    if resume in (None, False):
        return None, None
    if resume is True:
        if not run_name:
            raise ConfigError("resume=True needs the run's name (run_name= or the config's 'name')")
        path = Path(run_root) / run_name
    else:
        path = Path(resume)
    if path.is_file():
        return path.parent.parent, path
    ckpt = path / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise VisiontuneError(
            f"cannot resume: {ckpt} does not exist (the run saved no checkpoint yet); start it again without --resume"
        )
    return path, ckpt


def resumed_run_name(resume_dir: Path) -> tuple[Path, str]:
    """(root, name) of the run that continues ``resume_dir``: ``<old>-resumed`` (``-2``, ``-3``…
    when taken), beside it. Runs are never overwritten."""
    root, base = resume_dir.parent, f"{resume_dir.name}-resumed"
    return root, next(n for n in [base] + [f"{base}-{i}" for i in range(2, 10_000)] if not (root / n).exists())


def adopt_checkpoints(last: Path, ckpt_dir: Path, *, trust_pickle: bool = False) -> Path:
    """Copy a previous run's last (and best) checkpoint into this run's folder, pointing the
    checkpoint callbacks' state at the copies, so best-model tracking continues exactly and the
    new run is self-contained. Returns the copied last checkpoint."""
    io = AtomicCheckpointIO(trust_pickle=trust_pickle)
    ckpt = io.load_checkpoint(last)
    old_dir = Path(last.parent)
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    def moved(p: Any) -> Any:
        return str(ckpt_dir / Path(p).name) if isinstance(p, str) and p and Path(p).parent == old_dir else p

    for state in (ckpt.get("callbacks") or {}).values():
        if isinstance(state, dict) and "dirpath" in state:
            for k in ("best_model_path", "last_model_path", "kth_best_model_path"):
                if k in state:
                    src = state[k]
                    if isinstance(src, str) and src and Path(src).is_file() and Path(src) != last:
                        shutil.copy2(src, ckpt_dir / Path(src).name)
                    state[k] = moved(src)
            if isinstance(state.get("best_k_models"), dict):
                state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
            state["dirpath"] = str(ckpt_dir)
    target = ckpt_dir / "last.ckpt"
    io.save_checkpoint(ckpt, target)
    return target


def load_weights(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The model weights (``state_dict``) of a Lightning checkpoint, through the trust gate."""
    return torch_load(path, trust_pickle=trust_pickle, what="training checkpoint")["state_dict"]
