"""`visiontune label ...` and `visiontune select`: Label Studio / CVAT round trips and which
images to label next (thin calls of :mod:`visiontune.label`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

label_app = typer.Typer(
    help="Send images to Label Studio / CVAT with pre-annotations; read corrections back as a new version.",
    no_args_is_help=True,
)
console = Console()
TOOLS = ("label-studio", "cvat", "cvat-coco", "cvat-yolo")
URL = typer.Option("http://127.0.0.1:8080", "--url", envvar="LABEL_STUDIO_URL", help="Label Studio server.")
TOKEN = typer.Option(..., "--token", envvar="LABEL_STUDIO_TOKEN", help="Label Studio API token (legacy token).")


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj.to_dict(), indent=1, default=str))
    else:
        console.print(obj.summary(), highlight=False, markup=False)


@label_app.command("export")
def export_cmd(
    data: str = typer.Argument(..., help="Dataset folder / CSV / version, COCO json or YOLO data.yaml."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the tasks into."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model id, saved model or run folder: pre-annotations."
    ),
    tool: str = typer.Option("label-studio", help=f"One of {', '.join(TOOLS)}."),
    task: str | None = typer.Option(None, help="classification or detection (default: from the data)."),
    image: list[str] | None = typer.Option(None, "--image", help="Only this dataset path (repeatable)."),
    document_root: Path | None = typer.Option(
        None, help="Label Studio LOCAL_FILES_DOCUMENT_ROOT (default: above the data)."
    ),
    preannotate: str | None = typer.Option(None, help="labels, model (or auto for CVAT): what annotators start from."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Write label-tool tasks for a dataset, pre-annotated by a model."""
    from visiontune.errors import ConfigError
    from visiontune.label.api import export_cvat, export_label_studio

    if tool not in TOOLS:
        raise ConfigError(f"unknown --tool {tool!r}; use one of {', '.join(TOOLS)}")
    if tool == "label-studio":
        res = export_label_studio(
            data, out, model=model, task=task, images=image, document_root=document_root, preannotate=preannotate
        )
    else:
        fmt = {"cvat": "cvat", "cvat-coco": "coco", "cvat-yolo": "yolo"}[tool]
        res = export_cvat(data, out, model=model, task=task, images=image, fmt=fmt, preannotate=preannotate or "auto")
    _print(res, as_json)


@label_app.command("import")
def import_cmd(
    export: Path = typer.Argument(
        ..., help="Label Studio JSON export, CVAT annotations.xml, or a CVAT COCO/YOLO zip/folder."
    ),
    base: str | None = typer.Option(None, help="Version the tasks came from (default: from visiontune-export.json)."),
    tool: str = typer.Option("auto", help="label-studio, cvat or auto (from the file)."),
    store: Path | None = typer.Option(None, help="Versions store for the new version."),
    notes: str | None = typer.Option(None, help="Notes for the new version."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Read corrections back: a new dataset version (images untouched) and its diff."""
    from visiontune.label.api import import_cvat, import_label_studio

    is_ls = tool == "label-studio" or (tool == "auto" and export.suffix == ".json" and _looks_like_ls(export))
    if is_ls:
        res = import_label_studio(export, base=base, store=store, notes=notes)
    else:
        res = import_cvat(export, base=base, store=store, notes=notes)
    _print(res, as_json)


def _looks_like_ls(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:2000].lstrip()
    except OSError:
        return True
    return head.startswith("[") or '"data"' in head


@label_app.command("push")
def push_cmd(
    export_dir: Path = typer.Argument(..., help="Folder written by `label export --tool label-studio`."),
    url: str = URL,
    token: str = TOKEN,
    title: str | None = typer.Option(None, help="Project title."),
    project: int | None = typer.Option(None, help="Add the tasks to this existing project."),
) -> None:
    """Create a Label Studio project (config, local storage) and import the tasks."""
    from visiontune.label.api import push_label_studio

    res = push_label_studio(export_dir, url, token, title=title, project=project)
    console.print(res.summary(), highlight=False, markup=False)


@label_app.command("pull")
def pull_cmd(
    project: int = typer.Argument(..., help="Label Studio project id."),
    export_dir: Path = typer.Option(..., "--out", "-o", help="The export folder (holds visiontune-export.json)."),
    url: str = URL,
    token: str = TOKEN,
    base: str | None = typer.Option(None, help="Version the tasks came from (default: from the export folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Download a project's annotations and import them as a new version."""
    from visiontune.label.api import pull_label_studio

    _print(pull_label_studio(url, token, project, export_dir, base=base), as_json)


def select_cmd(
    model: str = typer.Argument(..., help="Classification model id, saved model or run folder."),
    pool: Path = typer.Argument(..., help="Folder of unlabelled images."),
    budget: int = typer.Option(..., "--budget", "-n", help="How many images to pick."),
    strategy: str = typer.Option("hybrid", help="random, margin, entropy, kcenter or hybrid."),
    labelled: str | None = typer.Option(
        None, help="The labelled dataset (k-center covers it; its near duplicates are skipped)."
    ),
    near_duplicate: float = typer.Option(0.95, help="Cosine similarity at which a pool image counts as a duplicate."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the batch as label-tool tasks here."),
    tool: str = typer.Option("label-studio", help="label-studio or cvat (with --out)."),
    seed: int = typer.Option(0, help="Seed (random strategy, first k-center pick)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Rank unlabelled images by what labelling them is worth and keep the best --budget."""
    from visiontune.label.select import select

    res = select(
        model,
        pool,
        budget,
        strategy=strategy,
        labelled=labelled,
        near_duplicate=near_duplicate,
        out=out,
        tool=tool,
        seed=seed,
    )
    _print(res, as_json)
    if not as_json:
        for p, s in list(zip(res.paths, res.scores))[:10]:
            console.print(f"  {s:.4f}  {p}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``label`` command group and ``select`` to ``app``."""
    app.add_typer(label_app, name="label")
    app.command("select")(select_cmd)
