"""`visiontune runs ...`: list, show, compare and reproduce recorded runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
runs_app = typer.Typer(help="Recorded runs: list, show, compare, reproduce.", no_args_is_help=True)
RootOpt = typer.Option(Path("runs"), "--root", "-r", help="Folder that holds the run directories.")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)[:80]
    return str(v)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


@runs_app.command("list")
def list_cmd(root: Path = RootOpt, as_json: bool = typer.Option(False, "--json")):
    """Every run: name, model, data version, strategy, best metric, duration, status."""
    from visiontune.track import list_runs

    runs = list_runs(root)
    if as_json:
        typer.echo(json.dumps([{"name": r.name, "dir": str(r.dir), "model": r.model_id, "data_version": r.data_version,
                                "strategy": r.strategy, "best": r.best, "duration_s": r.duration_s,
                                "status": r.status, "status_reason": r.status_reason} for r in runs],
                              indent=1, default=str))
        return
    t = Table(title=f"{len(runs)} runs in {root}")
    for c in ("name", "model", "data version", "strategy", "best", "duration", "status"):
        t.add_column(c)
    colour = {"completed": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}
    for r in runs:
        best = r.best or {}
        b = f"{best.get('metric')}={_fmt(best.get('value'))}" if best.get("metric") else "-"
        st = f"[{colour.get(r.status, 'white')}]{r.status}[/]"
        t.add_row(r.name, _fmt(r.model_id), _fmt(r.data_version)[:14], _fmt(r.strategy), b, _duration(r.duration_s), st)
    console.print(t)


@runs_app.command("show")
def show_cmd(name: str, root: Path = RootOpt, as_json: bool = typer.Option(False, "--json")):
    """One run: its record, final metrics and files."""
    from visiontune.track import load_run

    r = load_run(name, root)
    if as_json:
        typer.echo(json.dumps({"record": r.data, "config": r.config, "final_metrics": r.final_metrics()},
                              indent=1, default=str))
        return
    d = r.data
    env = d.get("env") or {}
    head = Table(title=f"run {r.name}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value", overflow="fold")
    rows = [("dir", str(r.dir)), ("status", r.status + (f" ({r.status_reason})" if r.status_reason else "")),
            ("model", _fmt(r.model_id)), ("weights sha256", _fmt((d.get("model") or {}).get("weights_sha256"))),
            ("data version", _fmt(r.data_version)), ("strategy", _fmt(r.strategy)), ("seed", _fmt(d.get("seed"))),
            ("deterministic", _fmt(d.get("deterministic"))), ("started", _fmt(d.get("start_time"))),
            ("duration", _duration(r.duration_s)), ("command", " ".join(d.get("command") or []) or "-"),
            ("git", _fmt((d.get("git") or {}).get("commit"))), ("device", _fmt(env.get("device"))),
            ("python / torch", f"{env.get('python', '-')} / {(env.get('packages') or {}).get('torch', '-')}"),
            ("checkpoints", ", ".join(str(c.get("path", c)) for c in d.get("checkpoints") or []) or "-")]
    for k, v in rows:
        head.add_row(k, v)
    console.print(head)
    fm = r.final_metrics()
    if fm:
        t = Table(title="metrics")
        for c in ("metric", "final", "best", "min", "max", "points"):
            t.add_column(c)
        for m, s in sorted(fm.items()):
            t.add_row(m, _fmt(s["final"]), _fmt(s["best"]), _fmt(s["min"]), _fmt(s["max"]), str(s["count"]))
        console.print(t)


@runs_app.command("compare")
def compare_cmd(names: List[str] = typer.Argument(..., help="Two or more run names or directories."),
                root: Path = RootOpt,
                plot: Optional[Path] = typer.Option(None, "--plot", help="Write the overlaid curves to this PNG."),
                metrics: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="Only these metrics in the plot.")):
    """Config diff side by side, a metrics table, and overlaid curves."""
    from visiontune.track import compare_runs, load_run, plot_comparison

    records = [load_run(n, root) for n in names]
    c = compare_runs(records)
    t = Table(title="config (keys that differ)")
    t.add_column("key", style="bold")
    for n in c.names:
        t.add_column(n, overflow="fold")
    for k, vals in c.config_diff.items():
        t.add_row(k, *[_fmt(v) for v in vals])
    if not c.config_diff:
        t.add_row("(identical configs)", *["" for _ in c.names])
    console.print(t)
    if c.record_diff:
        t = Table(title="record (model, data, environment) differences")
        t.add_column("field", style="bold")
        for n in c.names:
            t.add_column(n, overflow="fold")
        for k, vals in c.record_diff.items():
            t.add_row(k, *[_fmt(v) for v in vals])
        console.print(t)
    t = Table(title="metrics: final (best)")
    t.add_column("metric", style="bold")
    for n in c.names:
        t.add_column(n)
    for m, per in c.metrics.items():
        if m.startswith("lr"):
            continue
        t.add_row(m, *[f"{_fmt(s['final'])} ({_fmt(s['best'])})" if s else "-" for s in per])
    console.print(t)
    if plot:
        out = plot_comparison(records, plot, metrics or None)
        console.print(f"curves: {out}")


@runs_app.command("reproduce")
def reproduce_cmd(name: str, root: Path = RootOpt,
                  new_name: Optional[str] = typer.Option(None, "--name", help="Name of the re-run (default NAME-repro)."),
                  skip_data_check: bool = typer.Option(False, "--skip-data-check")):
    """Re-run a recorded run; warn on every environment or data difference; compare the metrics."""
    import warnings

    from visiontune.track import reproduce

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rep = reproduce(name, root, name=new_name, check_data=not skip_data_check)
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    t = Table(title=f"{rep.original.name} → {rep.new.name}")
    for c in ("metric", "recorded", "reproduced", ""):
        t.add_column(c)
    for m, (a, b) in sorted(rep.metrics.items()):
        if m.startswith("lr"):
            continue
        same = a == b or (a != a and b != b)
        t.add_row(m, _fmt(a), _fmt(b), "[green]=[/]" if same else "[red]≠[/]")
    console.print(t)
    if rep.matches:
        console.print("[green]reproduced exactly[/]: every final metric is identical")
    else:
        console.print(f"[red]{len(rep.mismatches)} metrics differ[/]")
        raise typer.Exit(1)


@runs_app.command("selfcheck")
def selfcheck_cmd(root: Path = RootOpt, trackers: str = typer.Option("tensorboard", "--trackers",
                                                                      help="Comma-separated: tensorboard,mlflow,wandb")):
    """A tiny real training run through every part of the record (checks a tracking setup)."""
    from visiontune.track.selfcheck import run_selfcheck

    run = run_selfcheck(root=root, trackers=[t for t in trackers.split(",") if t])
    console.print(f"run written: {run.dir} (status {run.status})")


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
