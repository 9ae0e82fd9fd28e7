"""`visiontune data ...`: inspect datasets and manage dataset versions (thin calls of
:mod:`visiontune.data`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(help="Inspect datasets; snapshot, diff and fix dataset versions.", no_args_is_help=True)
console = Console()


@data_app.command("info")
def info(
    source: str = typer.Argument(..., help="Image folder, CSV, manifest JSON, version id or torchvision:<Name>."),
    root: str | None = typer.Option(None, help="Data root (torchvision), path base (CSV) or versions store."),
    val_fraction: float = typer.Option(0.2, help="Share of train drawn as val when the source has no val split."),
    seed: int = typer.Option(0, help="Seed of the stratified train/val split."),
    check: bool = typer.Option(False, "--check", help="Decode every image now and list the ones that fail."),
    workers: int = typer.Option(4, help="Threads used by --check."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Classes, per-split counts, data version and (with --check) undecodable files."""
    from visiontune.data import load_classification

    splits = load_classification(source, root=root, val_fraction=val_fraction, seed=seed)
    if check:
        splits = splits.validate(num_workers=workers, progress=not as_json)
    summary = splits.summary()
    skipped = {k: v for k, v in splits.skipped.items() if v}
    if as_json:
        print(
            json.dumps(
                {
                    "source": splits.source,
                    "version": splits.version,
                    "classes": splits.classes,
                    "counts": summary,
                    "split_info": splits.split_info,
                    "skipped": {k: [list(x) for x in v] for k, v in skipped.items()},
                },
                indent=1,
            )
        )
        return
    console.print(
        f"[bold]{splits.source}[/]  version [cyan]{splits.version}[/]  "
        f"({len(splits.classes)} classes; splits from {splits.split_info.get('splits_from')}, "
        f"val: {splits.split_info.get('val_from')})",
        highlight=False,
    )
    table = Table(show_footer=True)
    table.add_column("class", footer="total")
    for name in summary:
        table.add_column(name, justify="right", footer=str(sum(summary[name].values())))
    for c in splits.classes:
        table.add_row(c, *[str(summary[n].get(c, 0)) for n in summary])
    console.print(table)
    for name, items in skipped.items():
        console.print(f"[yellow]{len(items)} undecodable file(s) in {name}:[/]")
        for path, reason in items:
            console.print(f"  {path}: {reason}", highlight=False, markup=False)


@data_app.command("snapshot")
def snapshot_cmd(
    directory: Path = typer.Argument(..., help="Dataset folder (class folders or train/val/test) or CSV."),
    store: Path | None = typer.Option(None, help="Versions store (default DIR/.visiontune/versions)."),
    notes: str = typer.Option("", help="Free text kept in the manifest."),
) -> None:
    """Hash every image and save the dataset's manifest as a version."""
    from visiontune.data.versions import snapshot

    m = snapshot(directory, store=store, notes=notes)
    console.print(
        f"version [cyan]{m.version}[/] ({len(m.entries)} files, {len(m.classes)} classes, "
        f"parent {m.parent or '-'})\n{m.file}",
        highlight=False,
    )


@data_app.command("diff")
def diff_cmd(
    a: str = typer.Argument(..., help="Older version: manifest JSON or version id."),
    b: str = typer.Argument(..., help="Newer version: manifest JSON or version id."),
    store: Path | None = typer.Option(None, help="Versions store to look ids up in."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Entries added, removed, relabelled and modified between two versions."""
    from visiontune.data.versions import diff

    d = diff(a, b, store=store)
    if as_json:
        print(json.dumps(d.to_dict(), indent=1))
    else:
        console.print(str(d), highlight=False, markup=False)


@data_app.command("apply-fixes")
def apply_fixes_cmd(
    version: str = typer.Argument(..., help="Version to fix: manifest JSON or version id."),
    corrections: Path = typer.Option(..., "--corrections", "-c", help="CSV path,action,new_label."),
    store: Path | None = typer.Option(None, help="Versions store (default: beside the old version)."),
    notes: str | None = typer.Option(None, help="Notes for the new version."),
) -> None:
    """Make a new version with relabelled / removed entries (image files untouched)."""
    from visiontune.data.versions import apply_fixes, find_manifest

    old = find_manifest(version, store)
    new = apply_fixes(old, corrections, store=store, notes=notes)
    if new.version == old.version:
        console.print(f"nothing changed; version {old.version} stays current", highlight=False)
        return
    console.print(f"version [cyan]{new.version}[/] (parent {old.version}): {new.notes}\n{new.file}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    app.add_typer(data_app, name="data")
