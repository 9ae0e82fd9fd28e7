"""`visiontune runs ...`: list, show, compare and reproduce run records (visiontune.track)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from visiontune.progress import format_duration

runs_app = typer.Typer(name="runs", help="List, show, compare and reproduce recorded runs.", no_args_is_help=True)

RootOpt = Annotated[Path, typer.Option("--root", "-r", help="Folder holding the runs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _console():
    from rich.console import Console

    return Console()


def _fmt_duration(s: float | None) -> str:
    return format_duration(s, decimals=1)


def _fmt_num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _fmt_best(best: dict | None) -> str:
    if not best:
        return "-"
    return f"{best['metric']}={_fmt_num(best['value'])}"


_STATUS_STYLE = {"completed": "green", "running": "cyan", "failed": "red", "interrupted": "yellow"}


def _status(s: str) -> str:
    from rich.markup import escape

    return f"[{_STATUS_STYLE.get(s, 'white')}]{escape(s)}[/]"


def _summary_row(r) -> dict[str, Any]:
    return {
        "name": r.name,
        "dir": str(r.dir),
        "status": r.status,
        "status_reason": r.status_reason,
        "kind": r.data.get("kind"),
        "model": r.model_id,
        "data_version": r.data_version,
        "strategy": r.strategy,
        "best": r.best,
        "start_time": r.data.get("start_time"),
        "duration_s": r.duration_s,
    }


@runs_app.command("list")
def list_cmd(root: RootOpt = Path("runs"), as_json: JsonOpt = False) -> None:
    """Every run under ROOT, oldest first: name, model, data version, strategy, best metric,
    duration, status (a run whose process died shows as interrupted)."""
    from rich.markup import escape
    from rich.table import Table

    from visiontune.track import list_runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = list_runs(root)
    if as_json:
        typer.echo(json.dumps([_summary_row(r) for r in runs], indent=2))
        return
    con = _console()
    for w in caught:
        con.print(f"[yellow]warning:[/] {escape(str(w.message))}")
    if not runs:
        con.print(f"no runs in {escape(str(root))}")
        return
    t = Table(title=f"runs in {escape(str(root))}")
    for col in ("name", "model", "data version", "strategy", "best", "duration", "status"):
        t.add_column(col, overflow="fold")
    for r in runs:
        dv = r.data_version or "-"
        t.add_row(
            escape(r.name),
            escape(r.model_id or "-"),
            escape(dv[:16]),
            escape(str(r.strategy or "-")),
            escape(_fmt_best(r.best)),
            _fmt_duration(r.duration_s),
            _status(r.status),
        )
    con.print(t)


@runs_app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Run name, unique prefix or folder.")],
    root: RootOpt = Path("runs"),
    as_json: JsonOpt = False,
) -> None:
    """One run: record, environment, final / best metrics, checkpoints, artifacts, error."""
    from rich.markup import escape
    from rich.table import Table

    from visiontune.track import load_run

    r = load_run(name, root)
    if as_json:
        out = dict(r.data)
        out["status"], out["status_reason"] = r.status, r.status_reason
        out["config"] = r.config
        out["final_metrics"] = r.final_metrics()
        typer.echo(json.dumps(out, indent=2))
        return
    con = _console()
    d = r.data
    env = d.get("env") or {}
    pk = env.get("packages") or {}
    git = d.get("git") or {}
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    rows = [
        ("name", escape(r.name)),
        ("folder", escape(str(r.dir))),
        ("status", _status(r.status) + (f" ({escape(r.status_reason)})" if r.status_reason else "")),
        ("kind", escape(str(d.get("kind")))),
        ("model", escape(f"{r.model_id or '-'}  sha256={(d.get('model') or {}).get('weights_sha256') or '-'}")),
        ("data version", escape(str(r.data_version or "-"))),
        ("strategy", escape(str(r.strategy or "-"))),
        ("seed", escape(f"{d.get('seed')}  deterministic={d.get('deterministic')}")),
        ("started", escape(str(d.get("start_time")))),
        ("duration", _fmt_duration(r.duration_s)),
        ("best", escape(_fmt_best(r.best))),
        ("command", escape(" ".join(d.get("command") or []))),
        ("git", escape(f"{git.get('commit') or '-'}{' (dirty)' if git.get('dirty') else ''}") if git else "-"),
        (
            "environment",
            escape(
                f"python {env.get('python')}, torch {pk.get('torch')}, torchvision "
                f"{pk.get('torchvision')}, timm {pk.get('timm')}, lightning {pk.get('lightning')}, "
                f"visiontune {pk.get('visiontune')}, device {env.get('device')}, "
                f"{env.get('cpu_count')} cpus, host {env.get('hostname')}"
            ),
        ),
        ("trackers", escape(", ".join(d.get("trackers") or {}))),
    ]
    if d.get("reproduced_from"):
        rows.append(("reproduced from", escape(d["reproduced_from"].get("name", "?"))))
    for k, v in rows:
        info.add_row(k, v)
    con.print(info)
    fm = r.final_metrics()
    if fm:
        t = Table(title="metrics")
        for col in ("metric", "final", "best", "min", "max", "points"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for m, s in fm.items():
            t.add_row(
                escape(m),
                _fmt_num(s["final"]),
                _fmt_num(s["best"]),
                _fmt_num(s["min"]),
                _fmt_num(s["max"]),
                str(s["count"]),
            )
        con.print(t)
    if d.get("summary"):
        con.print("[bold]summary[/] " + escape(json.dumps(d["summary"])))
    for c in d.get("checkpoints") or []:
        con.print(
            f"[bold]checkpoint[/] {escape(c.get('kind', ''))}: {escape(c['path'])} score={_fmt_num(c.get('score'))}"
        )
    for a in d.get("artifacts") or []:
        con.print(f"[bold]artifact[/] {escape(a['name'])}: {escape(a['path'])}")
    for e in d.get("tracker_errors") or []:
        con.print(f"[yellow]backend error[/] {escape(e)}")
    if d.get("error"):
        tb = r.dir / (d["error"].get("traceback_file") or "error.txt")
        con.print(f"[red]error[/] {escape(d['error']['type'])}: {escape(d['error']['message'])}")
        if tb.is_file():
            con.print(escape(tb.read_text(encoding="utf-8", errors="replace")[-4000:]))


@runs_app.command("compare")
def compare_cmd(
    names: Annotated[list[str], typer.Argument(help="Two or more runs (names, prefixes or folders).")],
    root: RootOpt = Path("runs"),
    plot: Annotated[Path | None, typer.Option("--plot", help="Write overlaid curves to this PNG.")] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric to plot (repeatable; default: all shared).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Config diff side by side (only keys that differ), final / best metric table, and
    optionally a PNG with every run's curves overlaid."""
    from rich.markup import escape
    from rich.table import Table

    from visiontune.track import compare_runs, load_run, plot_comparison

    records = [load_run(n, root) for n in names]
    cmp = compare_runs(records)
    png = plot_comparison(records, plot, metric or None) if plot is not None else None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "runs": cmp.names,
                    "config_diff": cmp.config_diff,
                    "record_diff": cmp.record_diff,
                    "metrics": cmp.metrics,
                    "data_versions": {n: r.data_version for n, r in zip(cmp.names, records)},
                    "plot": str(png) if png else None,
                },
                indent=2,
            )
        )
        return
    con = _console()
    con.print(
        "trained on data version: " + ", ".join(f"{n} {r.data_version or '-'}" for n, r in zip(cmp.names, records)),
        highlight=False,
        markup=False,
    )
    for title, diff in (("config differences", cmp.config_diff), ("record differences", cmp.record_diff)):
        if not diff:
            con.print(f"[green]{title}: none[/]")
            continue
        t = Table(title=title)
        t.add_column("key")
        for n in cmp.names:
            t.add_column(escape(n), overflow="fold")
        for k, vals in diff.items():
            t.add_row(escape(k), *(escape(json.dumps(v) if not isinstance(v, str) else v) for v in vals))
        con.print(t)
    t = Table(title="metrics (final / best)")
    t.add_column("metric")
    for n in cmp.names:
        t.add_column(escape(n), justify="right")
    for m, vals in cmp.metrics.items():
        t.add_row(escape(m), *("-" if v is None else f"{_fmt_num(v['final'])} / {_fmt_num(v['best'])}" for v in vals))
    con.print(t)
    if png:
        con.print(f"curves written to {escape(str(png))}")


@runs_app.command("reproduce")
def reproduce_cmd(
    name: Annotated[str, typer.Argument(help="Run to re-run (name, prefix or folder).")],
    root: RootOpt = Path("runs"),
    new_name: Annotated[str | None, typer.Option("--name", help="Name of the new run (default <name>-repro).")] = None,
    out_root: Annotated[
        Path | None, typer.Option("--out", "-o", "--out-root", help="Where the new run goes (default: ROOT).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit with code 1 unless every final metric matches exactly.")
    ] = False,
) -> None:
    """Re-run a run from its record (config.yaml + run.json). Warns on every environment, code
    or data-version difference, then compares the final metrics of both runs."""
    from rich.markup import escape
    from rich.table import Table

    from visiontune.track import reproduce

    con = _console()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with con.status(f"re-running {escape(name)} ..."):
            rep = reproduce(name, root, name=new_name, out_root=out_root)
    for w in rep.warnings:
        con.print(f"[yellow]warning:[/] {escape(w)}")
    t = Table(title=f"{escape(rep.original.name)} -> {escape(rep.new.name)}")
    for col in ("metric", "recorded", "reproduced", "difference", "match"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for m, (a, b) in rep.metrics.items():
        same = a == b or (a != a and b != b)
        diff = "-" if a is None or b is None else f"{b - a:+.3g}"
        t.add_row(escape(m), _fmt_num(a), _fmt_num(b), diff, "[green]yes[/]" if same else "[red]no[/]")
    con.print(t)
    if rep.matches:
        con.print(f"[green]reproduced exactly[/]: every final metric of {escape(rep.original.name)} matches")
    else:
        con.print(f"[yellow]{len(rep.mismatches)} metric(s) differ[/]")
    con.print(f"new run: {escape(str(rep.new.dir))}")
    if check and not rep.matches:
        raise typer.Exit(1)


@runs_app.command("selfcheck")
def selfcheck_cmd(
    root: RootOpt = Path("runs"),
    tracker: Annotated[
        list[str] | None,
        typer.Option("--tracker", "-t", help="Backend to check (repeatable): tensorboard, mlflow, mlflow=URI, wandb."),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of the synthetic training.")] = 3,
) -> None:
    """Run a small real deterministic training (MLP on synthetic clusters) through the
    chosen backends, to check a tracking setup end to end in seconds."""
    from rich.markup import escape

    from visiontune.track.selfcheck import run_selfcheck

    con = _console()
    with con.status("training the self-check model ..."):
        run = run_selfcheck({"epochs": epochs}, root=root, trackers=tracker or ["tensorboard"])
    rec = run.record
    con.print(
        f"{_status(rec['status'])} {escape(run.name)} in {_fmt_duration(rec['duration_s'])}: "
        f"{escape(_fmt_best(rec['best']))}"
    )
    for k, v in rec["trackers"].items():
        con.print(f"  {escape(k)}: {escape(json.dumps(v))}")
    for e in rec.get("tracker_errors") or []:
        con.print(f"[red]backend error[/] {escape(e)}")
    con.print(f"folder: {escape(str(run.dir))}")
    if rec["status"] != "completed" or rec.get("tracker_errors"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``runs`` command group to ``app``."""
    app.add_typer(runs_app, name="runs")
