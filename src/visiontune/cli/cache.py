"""`visiontune cache info|clear`: what the feature store holds ($VISIONTUNE_CACHE/features), and
emptying it."""

from __future__ import annotations

from pathlib import Path

import typer


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def register(app: typer.Typer) -> None:
    """Add the ``cache`` command group (feature cache) to ``app``."""
    cache_app = typer.Typer(help="The feature cache shared by `audit` and `train --strategy linear`.")
    app.add_typer(cache_app, name="cache")

    @cache_app.command("info")
    def info(
        cache_dir: Path | None = typer.Option(
            None, "--cache-dir", help="cache root (default: $VISIONTUNE_CACHE or ~/.cache/visiontune)"
        ),
    ) -> None:
        """List the feature stores: key, model, images, width and size on disk."""
        from rich.console import Console
        from rich.table import Table

        from visiontune.audit.store import features_root, list_stores

        console = Console()
        stores = list_stores(cache_dir)
        root = features_root(cache_dir)
        if not stores:
            console.print(f"no feature stores in {root}", highlight=False)
            return
        t = Table(title=f"feature stores in {root}")
        for c in ("key", "made by", "images", "dim", "size"):
            t.add_column(c, justify="right" if c in ("images", "dim", "size") else "left")
        total = 0
        for s in stores:
            b = s.nbytes()
            total += b
            t.add_row(s.info.key, s.info.source or "-", f"{s.rows:,}", str(s.dim), _size(b))
        console.print(t)
        console.print(f"{len(stores)} store{'s' if len(stores) != 1 else ''}, {_size(total)} in all", highlight=False)

    @cache_app.command("clear")
    def clear(
        key: str | None = typer.Argument(None, help="one store's key (default: every store)"),
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help="cache root (default: $VISIONTUNE_CACHE)"),
        yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
    ) -> None:
        """Delete the feature stores (or one); the next audit or linear run recomputes them."""
        from visiontune.audit.store import clear_stores, features_root
        from visiontune.errors import ConfigError

        root = features_root(cache_dir)
        if key is not None and not (root / key).is_dir():
            raise ConfigError(f"no feature store {key!r} in {root}: see `visiontune cache info`")
        if not yes and not typer.confirm(f"delete {'store ' + key if key else 'every feature store'} in {root}?"):
            raise typer.Abort()
        freed = clear_stores(cache_dir, key)
        typer.echo(f"freed {_size(freed)} in {root}")
