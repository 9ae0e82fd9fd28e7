"""Hyperparameter search: ``visiontune tune CONFIG --trials N`` with Optuna.

CONFIG is a YAML file with three sections::

    train:            # a TrainConfig: what every trial starts from
      model: timm:resnet18
      data: data/pets
      epochs: 8
    search:           # TrainConfig keys and their ranges
      lr: {low: 1.0e-4, high: 1.0e-1, log: true}
      weight_decay: {low: 1.0e-6, high: 1.0e-2, log: true}
      strategy: [linear, partial]          # a list: one of these values
      augment: [light, default]
      image_size: {low: 128, high: 224, step: 32}
    tune:             # TuneSettings (all optional)
      trials: 8
      pruner: median

Every trial is a tracked run (``<out>/runs/<study>-trial-NN``, tagged with the study, the trial
and its parameters); bad trials are pruned from their per-epoch validation metric through a
Lightning callback (Optuna's median pruner by default); the study is an SQLite database
(``<out>/study.db``, resumable: run again to add trials); the best config is written to
``<out>/best.yaml`` (``visiontune train --config <out>/best.yaml``), the summary to
``<out>/tune.json`` and a plot of the study to ``<out>/study.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
from pydantic import BaseModel, ConfigDict, Field

from visiontune._atomic import save_figure, write_text
from visiontune._config import read_yaml
from visiontune.adapt.config import TrainConfig
from visiontune.adapt.training import train
from visiontune.errors import ConfigError, require
from visiontune.records import Record


class TuneSettings(BaseModel):
    """The ``tune:`` section."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(8, ge=1)
    metric: str = Field("auto", description="auto: the train config's monitor metric")
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    pruner: Literal["median", "none"] = "median"
    startup_trials: int = Field(2, ge=0, description="trials never pruned, to learn what 'median' is")
    warmup_epochs: int = Field(1, ge=0, description="first epochs of each trial never pruned")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    study: str | None = Field(None, description="study name (default: the config file's stem)")


class TuneRecord(Record):
    """``tune.json``: the study's trials, their runs and the best one."""

    KIND: ClassVar[str] = "tune"
    VERSION: ClassVar[int] = 1

    study: str
    storage: str
    metric: str
    direction: str
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_config: str | None
    plot: str | None = None
    seconds: float = 0.0


def suggest(trial: Any, name: str, spec: Any) -> Any:
    """One parameter from its search spec: a list (categorical) or {low, high[, log, step]}."""
    if isinstance(spec, list):
        return trial.suggest_categorical(name, spec)
    if not isinstance(spec, dict) or "low" not in spec or "high" not in spec:
        raise ConfigError(f"search.{name}: give a list of values or {{low, high[, log, step]}}, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown:
        raise ConfigError(f"search.{name}: unknown keys {sorted(unknown)} (low, high, log, step)")
    lo, hi = spec["low"], spec["high"]
    if isinstance(lo, int) and isinstance(hi, int) and not isinstance(spec.get("step", 1), float):
        return trial.suggest_int(name, lo, hi, step=int(spec.get("step", 1)), log=bool(spec.get("log", False)))
    return trial.suggest_float(name, float(lo), float(hi), log=bool(spec.get("log", False)), step=spec.get("step"))


class PruningCallback(L.Callback):
    """Reports ``metric`` to the Optuna trial after every validation and stops training (the run
    still ends and is recorded) when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.metric]), step=epoch)
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True

    def visiontune_summary(self) -> dict[str, Any]:
        """What the run record says about the trial."""
        return {"tune/trial": self.trial.number, "tune/pruned": int(self.pruned_at is not None)}


def read_tune_file(config: str | Path) -> tuple[dict, dict, TuneSettings]:
    """(train section, search section, settings) of a tune YAML file."""
    doc = read_yaml(config, "tune config")
    if not isinstance(doc, dict) or not isinstance(doc.get("train"), dict):
        raise ConfigError(f"{config}: a tune config needs a 'train:' section (a training config)")
    search = doc.get("search") or {}
    if not isinstance(search, dict) or not search:
        raise ConfigError(f"{config}: give the 'search:' section, e.g. lr: {{low: 1.0e-4, high: 1.0e-1, log: true}}")
    bad = sorted(set(search) - set(TrainConfig.model_fields))
    if bad:
        raise ConfigError(f"{config}: search keys {bad} are not training options")
    unknown = sorted(set(doc) - {"train", "search", "tune"})
    if unknown:
        raise ConfigError(f"{config}: unknown sections {unknown} (train, search, tune)")
    try:
        settings = TuneSettings(**(doc.get("tune") or {}))
    except Exception as e:
        raise ConfigError(f"{config}: tune: {e}") from None
    return doc["train"], search, settings


def tune(
    config: str | Path,
    *,
    trials: int | None = None,
    out: str | Path = "tune",
    progress: bool = True,
    console: Any = None,
    trust_pickle: bool = False,
) -> TuneRecord:
    """Run the search in ``config`` (see the module docstring); returns the ``tune.json`` record."""
    optuna = require("optuna", "tune", "visiontune tune (hyperparameter search)")
    base, search, settings = read_tune_file(config)
    TrainConfig.from_dict(base, source=f"{config}: train")  # fail before any trial
    n_trials = trials or settings.trials
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = settings.study or Path(config).stem
    base_cfg = TrainConfig.from_dict(base)
    metric = base_cfg.monitor_metric if settings.metric == "auto" else settings.metric
    direction = settings.direction
    if direction == "auto":
        direction = "minimize" if metric.endswith("loss") else "maximize"
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    sampler = (
        optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=max(1, settings.startup_trials))
        if settings.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=settings.seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs)
        if settings.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=storage, direction=direction, sampler=sampler, pruner=pruner, load_if_exists=True
    )
    t0 = time.perf_counter()

    def objective(trial: Any) -> float:
        params = {k: suggest(trial, k, spec) for k, spec in search.items()}
        cfg = TrainConfig.from_dict({**base, **params, "name": None}, source=f"trial {trial.number}")
        cb = PruningCallback(trial, metric)
        run_name = f"{name}-trial-{trial.number:02d}"
        tags = {"tune": {"study": name, "trial": trial.number, "params": params, "storage": storage}}
        r = train(
            cfg,
            run_root=out / "runs",
            run_name=run_name,
            callbacks=[cb],
            progress=progress,
            console=console,
            trust_pickle=trust_pickle,
            tags=tags,
        )
        trial.set_user_attr("run_dir", str(r.run_dir))
        trial.set_user_attr("epochs_trained", int(r.metrics.get("epochs_trained", 0)))
        if cb.pruned_at is not None:
            trial.set_user_attr("pruned_at_epoch", cb.pruned_at + 1)
            raise optuna.TrialPruned(f"pruned after epoch {cb.pruned_at + 1}")
        value = r.metrics.get(metric, r.metrics.get(f"best/{metric}"))
        if not isinstance(value, (int, float)):
            raise ConfigError(f"tune.metric {metric!r} is not among the run's final metrics")
        return float(value)

    study.optimize(objective, n_trials=n_trials, catch=())
    return _write_outputs(study, base, metric, direction, storage, out, time.perf_counter() - t0)


def _write_outputs(study: Any, base: dict, metric: str, direction: str, storage: str, out: Path, seconds: float):
    import yaml

    rows = []
    for t in study.trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "run_dir": t.user_attrs.get("run_dir"),
                "epochs_trained": t.user_attrs.get("epochs_trained"),
                "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
                "intermediate": {int(k): float(v) for k, v in t.intermediate_values.items()},
            }
        )
    complete = [r for r in rows if r["state"] == "complete"]
    best, best_path = None, None
    if complete:
        bt = study.best_trial
        best = next(r for r in rows if r["number"] == bt.number)
        cfg = TrainConfig.from_dict({**base, **bt.params, "name": None})
        doc = {"train": {k: v for k, v in cfg.to_dict().items() if k in {**base, **bt.params} or k == "name"}}
        doc["train"].pop("name", None)
        best_path = write_text(out / "best.yaml", yaml.safe_dump(doc, sort_keys=False))
    plot = plot_study(rows, metric, out / "study.png")
    rec = TuneRecord(
        study=study.study_name,
        storage=storage,
        metric=metric,
        direction=direction,
        trials=rows,
        best=best,
        best_config=str(best_path) if best_path else None,
        plot=str(plot),
        seconds=seconds,
    )
    rec.write(out / "tune.json")
    return rec


def plot_study(rows: list[dict], metric: str, path: Path) -> Path:
    """Two panels: the final value of every trial (best so far as a line), and every trial's
    per-epoch metric (pruned trials dashed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    done = [r for r in rows if r["state"] == "complete"]
    a.scatter([r["number"] for r in done], [r["value"] for r in done], label="complete")
    pruned = [r for r in rows if r["state"] == "pruned" and r["intermediate"]]
    a.scatter(
        [r["number"] for r in pruned],
        [list(r["intermediate"].values())[-1] for r in pruned],
        marker="x",
        label="pruned (last reported)",
    )
    a.set_xlabel("trial")
    a.set_ylabel(metric)
    a.legend()
    for r in rows:
        if r["intermediate"]:
            steps = sorted(r["intermediate"])
            b.plot(
                [s + 1 for s in steps],
                [r["intermediate"][s] for s in steps],
                linestyle="--" if r["state"] == "pruned" else "-",
                marker=".",
                label=f"trial {r['number']}",
            )
    b.set_xlabel("epoch")
    b.set_ylabel(metric)
    if len(rows) <= 12:
        b.legend(fontsize=7)
    fig.suptitle(f"study: {len(rows)} trials, {len(pruned)} pruned")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
