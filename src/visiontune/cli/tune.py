"""`visiontune tune CONFIG --trials N`: hyperparameter search (visiontune.adapt.tune); with
``--sweep``, the one-pass sweep of linear heads over cached features (visiontune.adapt.probe_sweep)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visiontune.cli.options import TrustPickle
from visiontune.errors import ConfigError


def _values(name: str, spec, points: int) -> list[float]:
    from visiontune.adapt.probe_sweep import log_grid

    if isinstance(spec, list):
        return [float(v) for v in spec]
    if isinstance(spec, dict) and "low" in spec and "high" in spec:
        return log_grid(float(spec["low"]), float(spec["high"]), points)
    raise ConfigError(f"search.{name}: the sweep needs a list or {{low, high}}")


def register(app: typer.Typer) -> None:
    """Add the ``tune`` command to ``app``."""

    @app.command("tune")
    def tune_cmd(
        config: Path = typer.Argument(..., help="YAML with train:, search: and tune: sections"),
        trials: int | None = typer.Option(None, "--trials", "-n", help="number of trials (default: tune.trials)"),
        out: Path = typer.Option(Path("tune"), "--out", "-o", help="folder for runs/, study.db, best.yaml"),
        sweep: bool = typer.Option(
            False, "--sweep", help="linear probe: train every (lr, weight_decay) head in one pass instead"
        ),
        points: int = typer.Option(5, help="--sweep: values per {low, high} range (log-spaced)"),
        progress: bool = typer.Option(False, "--progress/--no-progress", help="per-trial training bars"),
        json_out: bool = typer.Option(False, "--json"),
        trust_pickle: bool = TrustPickle,
    ) -> None:
        """Search learning rate, weight decay, strategy, augmentation, image size ... with Optuna:
        every trial a tracked run, bad trials pruned, the study in SQLite, the best config written."""
        if sweep:
            from visiontune.adapt.probe_sweep import probe_sweep
            from visiontune.adapt.tune import read_tune_file

            base, search, _ = read_tune_file(config)
            extra = sorted(set(search) - {"lr", "weight_decay"})
            if extra:
                raise ConfigError(f"--sweep covers lr and weight_decay only; the search also names {extra}")
            lrs = _values("lr", search.get("lr", [base.get("lr", 1e-3)]), points)
            wds = _values("weight_decay", search.get("weight_decay", [base.get("weight_decay", 0.01)]), points)
            res = probe_sweep({**base, "strategy": "linear"}, lrs, wds, out=out, trust_pickle=trust_pickle)
            if json_out:
                typer.echo(json.dumps(res.to_dict(), indent=2))
                return
            for s in sorted(res.settings, key=lambda s: -s[res.metric]):
                typer.echo(f"lr {s['lr']:.3g}  weight_decay {s['weight_decay']:.3g}  {res.metric} {s[res.metric]:.4f}")
            typer.echo(res.summary())
            typer.echo(f"written: {out / 'sweep.json'}")
            return
        from visiontune.adapt.tune import tune

        rec = tune(config, trials=trials, out=out, progress=progress, trust_pickle=trust_pickle)
        if json_out:
            typer.echo(json.dumps(rec.to_dict(), indent=2, default=str))
            return
        for t in rec.trials:
            value = "-" if t["value"] is None else f"{t['value']:.4f}"
            params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
            typer.echo(f"trial {t['number']:>2} {t['state']:>8}  {rec.metric} {value}  {params}")
        pruned = sum(t["state"] == "pruned" for t in rec.trials)
        typer.echo(f"{len(rec.trials)} trials ({pruned} pruned) in {rec.seconds:.0f}s; study: {rec.storage}")
        if rec.best is not None:
            typer.echo(f"best: trial {rec.best['number']} {rec.metric} {rec.best['value']:.4f}")
            typer.echo(f"best config: {rec.best_config}  (visiontune train --config {rec.best_config})")
        names = " ".join(Path(t["run_dir"]).name for t in rec.trials if t["run_dir"])
        typer.echo(f"plot: {rec.plot}")
        typer.echo(f"compare: visiontune runs compare {names} --root {out / 'runs'}")
