"""`visiontune run CONFIG.yaml`: download → adapt → track → audit, in one resumable job.

A run hands over the three things a project needs: a fine-tuned model (``<run>/model``, which
``visiontune.load`` restores with its own preprocessing), a logged reproducible run (config,
data version, environment, metrics, curves, checkpoints) and the audit (ranked mistakes CSV and a
self-contained HTML report).

Config (YAML)::

    name: pets-head            # run name (default: generated)
    root: runs                 # where run directories go
    train:                     # every key of visiontune.adapt.TrainConfig
      model: timm:resnet18
      data: torchvision:OxfordIIITPet
      strategy: linear
      epochs: 3
    audit:
      split: val
      k_folds: 5
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from visiontune._config import read_yaml, validate
from visiontune.errors import ConfigError


class AuditSection(BaseModel):
    """``audit:`` of a pipeline config: whether and how the trained model is audited."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    split: Literal["train", "val", "test"] = "val"
    k_folds: int = Field(5, ge=2)
    label_issues: bool = True
    near_threshold: Literal["auto"] | Annotated[float, Field(gt=0.0, le=1.0)] = "auto"
    report_rows: int = Field(50, ge=1)
    fiftyone: bool = False


class RunConfig(BaseModel):
    """A pipeline config: train, then evaluate, audit and export the model."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    root: str = "runs"
    train: dict[str, Any]
    audit: AuditSection = Field(default_factory=AuditSection)


def load_config(config: str | Path | dict, overrides: dict[str, Any] | None = None) -> tuple[RunConfig, Any]:
    """Validate a run config (a YAML path or a dict). Returns it and its TrainConfig."""
    from visiontune.adapt import TrainConfig

    source = "config"
    if not isinstance(config, dict):
        p = Path(config)
        source = str(p)
        config = read_yaml(p)
        if not isinstance(config, dict):
            raise ConfigError(f"{p}: expected a mapping with keys name, root, train, audit")
        base = p.parent
        train = config.get("train")
        if isinstance(train, dict):  # paths in the config are relative to the config file
            for key in ("data", "weights", "teacher_weights", "cache_dir"):
                v = train.get(key)
                if (
                    isinstance(v, str)
                    and not v.startswith(("torchvision:", "/", "~"))
                    and ":" not in v.split("/")[0]
                    and (base / v).exists()
                ):
                    train[key] = str((base / v).resolve())
    rc = validate(RunConfig, config, source)
    train = {**rc.train, **(overrides or {})}
    if rc.name and "name" not in train:
        train["name"] = rc.name
    tc = TrainConfig.from_dict(train, source=f"{source} [train]")
    return rc, tc


@dataclass
class RunResult:
    """A pipeline run: its folder, the saved model, metrics and what each step wrote."""

    run_dir: Path
    model_dir: Path
    metrics: dict
    audit_dir: Path | None
    report: Path | None
    mistakes_csv: Path | None
    timings: dict = field(default_factory=dict)
    audit: Any = None


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def run(
    config: str | Path | dict,
    *,
    resume: bool = True,
    overrides: dict[str, Any] | None = None,
    console: Any = None,
    trust_pickle: bool = False,
) -> RunResult:
    """Run the whole job. With ``resume`` (default), a run of the same name that was interrupted
    continues from its last checkpoint, a finished training is not repeated, and only the missing
    steps (audit) run. ``trust_pickle`` allows unpickling the files the config names (the
    caller's word, never the config's)."""
    from rich.console import Console

    from visiontune.adapt import train

    console = console or Console()
    rc, tc = load_config(config, overrides)
    if (
        rc.audit.enabled
        and tc.strategy == "linear"
        and "feature_cache" not in rc.train
        and tc.feature_cache == "memory"
    ):
        # the audit (a separate step) reuses the features the linear probe computed: keep them on disk
        tc = tc.model_copy(update={"feature_cache": "disk"})
    root = Path(rc.root)
    timings: dict[str, float] = {}
    run_dir = root / tc.name if tc.name else None
    t0 = time.perf_counter()
    if (
        run_dir is not None
        and resume
        and (run_dir / "model" / "visiontune.json").is_file()
        and _status(run_dir) == "completed"
    ):
        console.print(f"[dim]training already complete in {run_dir}: skipping to the audit[/]")
        metrics = json.loads((run_dir / "run.json").read_text()).get("summary", {})
        model_dir = run_dir / "model"
    else:
        can_resume = bool(
            run_dir is not None
            and resume
            and (run_dir / "checkpoints").is_dir()
            and any((run_dir / "checkpoints").glob("*.ckpt"))
        )
        result = train(
            tc,
            run_root=root,
            run_name=tc.name,
            resume=True if can_resume else None,
            console=console,
            trust_pickle=trust_pickle,
        )
        assert result.model_dir is not None  # rank 0 (this process) saves the model
        run_dir, model_dir, metrics = Path(result.run_dir), Path(result.model_dir), dict(result.metrics)
    timings["train_s"] = time.perf_counter() - t0

    audit_dir = report = mistakes = None
    audit_result = None
    if rc.audit.enabled:
        from visiontune.audit import audit

        t1 = time.perf_counter()
        audit_result = audit(
            run_dir,
            data=None,
            split=rc.audit.split,
            k_folds=rc.audit.k_folds,
            label_issues=rc.audit.label_issues,
            near_threshold=rc.audit.near_threshold,
            report_rows=rc.audit.report_rows,
            fiftyone=rc.audit.fiftyone,
            console=console,
        )
        timings["audit_s"] = time.perf_counter() - t1
        audit_dir = Path(audit_result.out_dir)
        report = audit_result.report_path
        mistakes = audit_result.files.get("mistakes", audit_dir / "mistakes.csv")
    return RunResult(
        run_dir=run_dir,
        model_dir=model_dir,
        metrics=metrics,
        audit_dir=audit_dir,
        report=report,
        mistakes_csv=mistakes,
        timings=timings,
        audit=audit_result,
    )
