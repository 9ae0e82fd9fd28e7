"""The run session: one run folder per training, whatever the task and however many processes.

``Session.open`` creates the run record on rank 0 (a new run, or ``<old>-resumed`` continuing an
interrupted one from its last checkpoint), hands its folder to the DDP worker processes Lightning
starts (through the environment), and adopts the old run's checkpoints so best-model tracking
continues exactly. Used as a context manager it finishes the run as completed, interrupted
(Ctrl-C, SIGTERM) or failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from visiontune.engine.checkpoints import adopt_checkpoints, resume_target, resumed_run_name
from visiontune.engine.options import EngineOptions
from visiontune.errors import ConfigError
from visiontune.track import Run

RUN_DIR_ENV = "VISIONTUNE_RUN_DIR"  # hands rank 0's run directory to DDP worker processes
#: the command that continues an interrupted run of each kind
RESUME_COMMANDS = {
    "train": "visiontune train --resume {dir}",
    "detect-train": "visiontune detect-train --resume {dir}",
    "segment-train": "visiontune segment-train --resume {dir}",
}


def global_rank() -> int:
    """This process's rank from the launcher's environment (torchrun, SLURM, Lightning)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    return local + node * 10_000 if node else local


class Session:
    """A training run's folder, record and checkpoints (see the module docstring)."""

    def __init__(
        self,
        run: Run | None,
        run_dir: Path,
        ckpt_path: Path | None,
        multi: bool,
        resumed_from: Path | None,
        kind: str = "train",
    ):
        self.run = run
        self.kind = kind
        self.dir = run_dir
        self.ckpt_path = ckpt_path
        self.multi = multi
        self.resumed_from = resumed_from

    @property
    def ckpt_dir(self) -> Path:
        """``<run>/checkpoints``."""
        return self.dir / "checkpoints"

    @property
    def is_zero(self) -> bool:
        """True in the process that owns the run record."""
        return self.run is not None

    @classmethod
    def prepare(cls, resume: Any, run_root: str | os.PathLike, run_name: str | None) -> tuple[Path | None, Path | None]:
        """(old run dir, checkpoint) to resume from — checked before any data or model is loaded."""
        return resume_target(resume, run_root, run_name)

    @classmethod
    def open(
        cls,
        *,
        run_root: str | os.PathLike,
        run_name: str | None,
        resume_from: tuple[Path | None, Path | None] = (None, None),
        config: EngineOptions,
        kind: str,
        model_id: str | None,
        weights_sha256: str | None = None,
        data_version: str | None = None,
        monitor: str | None = None,
        mode: str | None = None,
        tags: Mapping[str, Any] | None = None,
        trust_pickle: bool = False,
    ) -> Session:
        """Open the run on rank 0; find rank 0's run folder on the others. ``config`` is the
        training config (an `EngineOptions`): recorded whole, and its seed, trackers, deterministic
        mode and process topology used."""
        resume_dir, ckpt_path = resume_from
        multi = config.multi_process
        if global_rank() != 0:
            env_dir = os.environ.get(RUN_DIR_ENV)
            if env_dir:
                run_dir = Path(env_dir)
            elif run_name:
                run_dir = Path(run_root) / run_name
            else:
                raise ConfigError(
                    "multi-process training started by torchrun / SLURM needs a run name "
                    "(--name / 'name:') so every process writes to the same run"
                )
            # workers resume from the old run's checkpoint itself: rank 0 may still be copying it
            return cls(None, run_dir, ckpt_path, multi, resume_dir, kind)
        root, name = (Path(run_root), run_name) if resume_dir is None else resumed_run_name(resume_dir)
        all_tags = {**(tags or {}), **({"resumed_from": str(resume_dir)} if resume_dir is not None else {})}
        run = Run.start(
            root=root,
            name=name,
            config=config.model_dump(mode="json"),
            model_id=model_id,
            weights_sha256=weights_sha256,
            data_version=data_version,
            seed=config.seed,
            trackers=tuple(config.trackers),
            command=list(sys.argv),
            kind=kind,
            deterministic=config.deterministic,
            monitor=monitor,
            mode=mode,
            tags=all_tags,
        )
        if multi:  # Lightning's launcher copies the environment into the worker processes it starts
            os.environ[RUN_DIR_ENV] = str(run.dir)
        session = cls(run, Path(run.dir), ckpt_path, multi, resume_dir, kind)
        if ckpt_path is not None and resume_dir is not None and Path(run.dir) != resume_dir:
            try:
                session.ckpt_path = adopt_checkpoints(ckpt_path, session.ckpt_dir, trust_pickle=trust_pickle)
            except BaseException as e:
                session.close(e)
                raise
        return session

    # -- lifecycle ---------------------------------------------------------------------------
    def finish(self, summary: Mapping[str, Any] | None = None, artifact: Path | None = None) -> None:
        """Mark the run completed with ``summary`` (rank 0; a no-op elsewhere)."""
        if self.run is None:
            return
        if artifact is not None:
            self.run.log_artifact(artifact)
        self.run.finish("completed", summary=dict(summary or {}))

    def resume_hint(self) -> str:
        """The command that continues this run from its last checkpoint."""
        return RESUME_COMMANDS.get(self.kind, "visiontune train --resume {dir}").format(dir=self.dir)

    def close(self, error: BaseException | None = None) -> None:
        """Finish an unfinished run as interrupted / failed, and forget the DDP hand-over. An
        interruption carries the run folder and the resume command for whoever reports it."""
        if isinstance(error, KeyboardInterrupt) and self.run is not None:
            error.run_dir = self.dir  # type: ignore[attr-defined]
            error.resume_hint = self.resume_hint() if (self.ckpt_dir / "last.ckpt").is_file() else None  # type: ignore[attr-defined]
        if self.multi and self.run is not None:
            os.environ.pop(RUN_DIR_ENV, None)
        if self.run is None or self.run.finished:
            return
        if error is None:
            self.run.__exit__(None, None, None)
        else:
            self.run.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        self.close(exc)
        return False
