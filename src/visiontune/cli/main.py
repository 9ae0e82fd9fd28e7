"""The `visiontune` command. Each verb lives in its own module of this package and exposes
`register(app)`; every command is a thin call of the Python API."""

from __future__ import annotations

import importlib
import importlib.util
import os

import typer

app = typer.Typer(
    name="visiontune",
    help="Download, adapt, audit and track pretrained vision models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order matters only for --help listing. A module that is absent is skipped; a module that is
# present but fails to import raises (no silently missing commands).
COMMAND_MODULES = [
    "hub",
    "data",
    "adapt",
    "track",
    "audit",
    "detect",
    "bench",
    "export",
    "pipeline",
    "serve",
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        modname = f"visiontune.cli.{name}"
        if importlib.util.find_spec(modname) is None:
            continue
        importlib.import_module(modname).register(app)


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
