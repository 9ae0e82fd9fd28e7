"""The `visiontune` command. Each verb lives in its own module of this package and exposes
`register(app)`; every command is a thin call of the Python API."""

from __future__ import annotations

import importlib
import os
import warnings

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
    "tune",
    "evaluate",
    "track",
    "audit",
    "cache",
    "detect",
    "segment",
    "bench",
    "export",
    "label",
    "pipeline",
    "serve",
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"visiontune.cli.{name}").register(app)


_register_all()


def main() -> None:
    """The ``visiontune`` entry point: typed errors as one line (exit 2), Ctrl-C as "interrupted"
    with the command that resumes the run (exit 130)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # commands print their own one-line warning for random weights (cli.hub.warn_if_random)
    warnings.filterwarnings("ignore", message=r".* has random weights \(pretrained=False")
    from rich.console import Console
    from rich.markup import escape

    from visiontune.errors import VisiontuneError

    err = Console(stderr=True, soft_wrap=True)  # an error stays one line (paths unbroken, grep-able)
    try:
        app()
    except VisiontuneError as e:
        err.print(f"[bold red]error:[/] {type(e).__name__}: {escape(str(e))}", highlight=False)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, SystemExit) as e:
        ki = _interruption(e)  # typer turns Ctrl-C into exit code 130, the KeyboardInterrupt its cause
        if ki is None:
            raise
        run_dir, hint = getattr(ki, "run_dir", None), getattr(ki, "resume_hint", None)
        msg = "interrupted" + (f": run {run_dir} is marked interrupted" if run_dir else "")
        err.print(f"[bold yellow]{escape(msg)}[/]", highlight=False)
        if hint:
            err.print(f"continue it from its last checkpoint with: {escape(hint)}", highlight=False)
        raise SystemExit(130) from None


def _interruption(e: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt behind ``e`` (itself, or up its cause / context chain), if any."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


if __name__ == "__main__":  # pragma: no cover
    main()
