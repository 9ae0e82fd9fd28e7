"""The `visiontune` command. Each verb lives in its own module of this package and exposes
`register(app)`; every command is a thin call of the Python API."""

from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    name="visiontune",
    help="Download, adapt, audit and track pretrained vision models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order matters only for --help listing. Every module listed is imported: one that fails raises
# (no silently missing commands).
COMMAND_MODULES = [
    "hub",
    "data",
    "adapt",
    "evaluate",
    "track",
    "audit",
    "detect",
    "bench",
    "export",
    "pipeline",
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"visiontune.cli.{name}").register(app)


_register_all()


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from visiontune.errors import VisiontuneError

    try:
        app()
    except VisiontuneError as e:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {type(e).__name__}: {e}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
