"""engine: the engineering every training shares, apart from the task's research code.

The run session (open, resume, adopt checkpoints, one run folder under DDP), the Trainer factory
(precision, accumulation, clipping, early stopping, DDP strategy, deterministic mode, atomic
trust-gated checkpoints, quiet logs), learning-rate schedules and seeded, resumable data loading.
The engine knows no task: classification (`visiontune.adapt`) and detection (`visiontune.detect`)
are LightningModules trained on it.
"""

from visiontune.engine.checkpoints import (
    AtomicCheckpointIO,
    adopt_checkpoints,
    load_weights,
    resume_target,
    resumed_run_name,
)
from visiontune.engine.schedules import warmup_cosine
from visiontune.engine.seeding import EpochSampler, SeededDataset, mix_seed, rank_world, seeded_loader
from visiontune.engine.session import RUN_DIR_ENV, Session, global_rank
from visiontune.engine.trainer import (
    EngineOptions,
    EpochTable,
    device_for,
    make_trainer,
    on_gpu,
    quiet_lightning,
    resolve_precision,
)

__all__ = [
    "RUN_DIR_ENV",
    "AtomicCheckpointIO",
    "EngineOptions",
    "EpochSampler",
    "EpochTable",
    "SeededDataset",
    "Session",
    "adopt_checkpoints",
    "device_for",
    "global_rank",
    "load_weights",
    "make_trainer",
    "mix_seed",
    "on_gpu",
    "quiet_lightning",
    "rank_world",
    "resolve_precision",
    "resume_target",
    "resumed_run_name",
    "seeded_loader",
    "warmup_cosine",
]
