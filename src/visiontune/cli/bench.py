"""`visiontune bench ID ...`: measured model cards on this machine (table, CSV, Markdown, PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from visiontune.cli.options import TrustPickle

console = Console()


def bench_cmd(
    model_ids: list[str] = typer.Argument(..., help="Model ids, e.g. timm:resnet18 torchvision:resnet50."),
    out: Path = typer.Option(Path("bench"), "--out", "-o", help="Folder for bench.csv / .md / .json / .png."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]."),
    threads: int | None = typer.Option(None, "--threads", help="torch intra-op threads (default: torch's)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 (GPU)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="NHWC memory format."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model before timing."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Batch size of the throughput measurement."),
    runs: int = typer.Option(20, "--repeats", help="Timed batch-1 runs (median and p95 over them)."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed warm-up runs."),
    throughput_runs: int = typer.Option(5, "--throughput-runs", help="Timed runs at --batch-size."),
    input_size: int | None = typer.Option(None, "--input-size", help="Square input size instead of the card's."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write bench.png."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
    trust_pickle: bool = TrustPickle,
):
    """Measure parameters, GFLOPs, latency (batch 1: median, p95), throughput and peak memory of each
    model on this machine, beside its published top-1. Models whose weights are not cached are
    measured as random-init architectures (the table says so)."""
    from visiontune.bench import BenchOptions, bench

    opts = BenchOptions(
        device=device,
        threads=threads,
        dtype=dtype,
        channels_last=channels_last,
        compile=compile_,
        batch_size=batch_size,
        warmup=warmup,
        runs=runs,
        throughput_runs=throughput_runs,
        input_size=input_size,
    )
    result = bench(model_ids, opts, out_dir=out, plot=plot, progress=not as_json, trust_pickle=trust_pickle)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
    else:
        if not console.is_terminal:  # piped / logged: do not fold the table into 80 columns
            console.width = max(console.width, 200)
        console.print(result.rich_table())
        for note in result.footnotes():
            console.print(f"[dim]· {note}[/]", highlight=False)
        console.print("wrote " + ", ".join(str(p) for p in result.files.values()), highlight=False)
    if all(r.error for r in result.rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench")(bench_cmd)
