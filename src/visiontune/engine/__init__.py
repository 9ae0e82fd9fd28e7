"""engine: the engineering every training shares, apart from the task's research code.

The run session (open, resume, adopt checkpoints, one run folder under DDP), the Trainer factory
(precision, accumulation, clipping, early stopping, DDP strategy, deterministic mode, atomic
trust-gated checkpoints, quiet logs), learning-rate schedules and seeded, resumable data loading.
The engine knows no task: classification (`visiontune.adapt`) and detection (`visiontune.detect`)
are LightningModules trained on it.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Lightning takes seconds to import: the engine's names load on first use, so that inference-only
# users of visiontune.detect / visiontune.hub (and configs that only need EngineOptions) skip it.
_LAZY = {
    "AtomicCheckpointIO": "visiontune.engine.checkpoints",
    "adopt_checkpoints": "visiontune.engine.checkpoints",
    "load_weights": "visiontune.engine.checkpoints",
    "resume_target": "visiontune.engine.checkpoints",
    "resumed_run_name": "visiontune.engine.checkpoints",
    "warmup_cosine": "visiontune.engine.schedules",
    "EpochSampler": "visiontune.engine.seeding",
    "SeededDataset": "visiontune.engine.seeding",
    "mix_seed": "visiontune.engine.seeding",
    "rank_world": "visiontune.engine.seeding",
    "seeded_loader": "visiontune.engine.seeding",
    "RUN_DIR_ENV": "visiontune.engine.session",
    "Session": "visiontune.engine.session",
    "global_rank": "visiontune.engine.session",
    "EngineOptions": "visiontune.engine.options",
    "EpochTable": "visiontune.engine.trainer",
    "device_for": "visiontune.engine.options",
    "make_trainer": "visiontune.engine.trainer",
    "fit": "visiontune.engine.trainer",
    "fit_best": "visiontune.engine.trainer",
    "on_gpu": "visiontune.engine.options",
    "quiet_lightning": "visiontune.engine.trainer",
    "resolve_precision": "visiontune.engine.options",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from visiontune.engine.checkpoints import (
        AtomicCheckpointIO,
        adopt_checkpoints,
        load_weights,
        resume_target,
        resumed_run_name,
    )
    from visiontune.engine.options import EngineOptions, device_for, on_gpu, resolve_precision
    from visiontune.engine.schedules import warmup_cosine
    from visiontune.engine.seeding import EpochSampler, SeededDataset, mix_seed, rank_world, seeded_loader
    from visiontune.engine.session import RUN_DIR_ENV, Session, global_rank
    from visiontune.engine.trainer import EpochTable, fit, fit_best, make_trainer, quiet_lightning


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'visiontune.engine' has no attribute {name!r}")
