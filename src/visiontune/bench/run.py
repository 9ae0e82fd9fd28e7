"""`bench(ids)`: measure several models on this machine and write a table and a plot."""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from visiontune.bench._resolve import RANDOM_INIT, load_for_bench, published_top1
from visiontune.bench.measure import BenchOptions, measure
from visiontune.errors import VisiontuneError
from visiontune.progress import progress as progress_bar

COLUMNS = [
    ("model_id", "model"),
    ("weights", "weights"),
    ("input", "input"),
    ("params_m", "params M"),
    ("gflops", "GFLOPs"),
    ("latency_median_ms", "b1 ms median"),
    ("latency_p95_ms", "b1 ms p95"),
    ("throughput_ips", "img/s @batch"),
    ("peak_memory_mib", "peak MiB b1"),
    ("top1", "top-1 % (published)"),
    ("top1_per_mparam", "top-1 / M params"),
]


@dataclass
class BenchRow:
    """One benchmarked model: ids, sizes, latency / throughput / memory, published accuracy or the error."""

    model_id: str
    weights: str
    input: str
    params_m: float | None = None
    gflops: float | None = None
    latency_median_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_mean_ms: float | None = None
    throughput_ips: float | None = None
    batch_size: int | None = None
    peak_memory_mib: float | None = None
    memory_method: str | None = None
    top1: float | None = None
    top1_metric: str | None = None
    top1_per_mparam: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    """Every benchmarked row, the options used and the environment measured on."""

    rows: list[BenchRow]
    options: BenchOptions
    environment: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    # -- renderings ----------------------------------------------------------------------------
    def cells(self, row: BenchRow) -> list[str]:
        """The formatted table cells of ``row`` (``n/a`` for missing values)."""

        def num(v: float | None, fmt: str) -> str:
            return "n/a" if v is None else format(v, fmt)

        if row.error:
            return [row.model_id, row.weights, row.input] + ["error"] * (len(COLUMNS) - 3)
        return [
            row.model_id,
            row.weights,
            row.input,
            num(row.params_m, ".2f"),
            num(row.gflops, ".2f"),
            num(row.latency_median_ms, ".1f"),
            num(row.latency_p95_ms, ".1f"),
            num(row.throughput_ips, ".1f"),
            num(row.peak_memory_mib, ".1f"),
            num(row.top1, ".2f"),
            num(row.top1_per_mparam, ".2f"),
        ]

    def header_note(self) -> str:
        """One line naming the device, dtype and flags the numbers were measured with."""
        e, o = self.environment, self.options
        flags = [
            f"device={o.device}",
            f"threads={e['threads']}",
            f"dtype={o.dtype}",
            f"throughput batch={o.batch_size}",
            f"latency runs={o.runs} (warm-up {o.warmup})",
        ]
        if o.channels_last:
            flags.append("channels_last")
        if o.compile:
            flags.append("torch.compile")
        return f"{e['device_name']} · torch {e['torch']} · " + ", ".join(flags)

    def footnotes(self) -> list[str]:
        """Footnotes explaining the memory methods and other caveats of the table."""
        notes = []
        methods = {r.memory_method for r in self.rows if r.memory_method}
        for m in sorted(methods):
            notes.append(f"peak memory: {m}")
        notes.append("GFLOPs: torch.utils.flop_counter, one image, multiply-add = 2 FLOPs")
        if any(r.weights == RANDOM_INIT for r in self.rows):
            notes.append(
                "random init rows: latency/FLOPs/memory are those of the architecture; "
                "top-1 is the published figure of its default weights"
            )
        for r in self.rows:
            for n in r.notes:
                notes.append(f"{r.model_id}: {n}")
            if r.error:
                notes.append(f"{r.model_id}: {r.error}")
        return notes

    def rich_table(self):
        """The results as a rich Table (header note as caption)."""
        from rich.table import Table

        table = Table(title="visiontune bench", caption=self.header_note(), caption_justify="left")
        for i, (_, title) in enumerate(COLUMNS):
            table.add_column(title, justify="left" if i < 3 else "right", overflow="fold")
        for row in self.rows:
            table.add_row(*self.cells(row), style="red" if row.error else None)
        return table

    def markdown(self) -> str:
        """The results as a Markdown table with the header note and footnotes."""
        head = [t for _, t in COLUMNS]
        lines = [
            f"<!-- {self.header_note()} -->",
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|",
        ]
        for row in self.rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in self.cells(row)) + " |")
        lines.append("")
        lines.append(f"Measured on {self.header_note()}.")
        lines.extend(f"- {n}" for n in self.footnotes())
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """Environment, options and rows as JSON-ready values."""
        return {
            "environment": self.environment,
            "options": self.options.to_dict(),
            "rows": [asdict(r) for r in self.rows],
        }

    # -- files ---------------------------------------------------------------------------------
    def write(self, out_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
        """bench.csv, bench.md, bench.json and (when ``plot``) bench.png in ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"csv": out / "bench.csv", "markdown": out / "bench.md", "json": out / "bench.json"}
        fields = [f for f in BenchRow.__dataclass_fields__ if f != "notes"] + ["notes"]
        _atomic_write(files["csv"], lambda f: _write_csv(f, fields, self.rows))
        _atomic_write(files["markdown"], lambda f: f.write(self.markdown()))
        _atomic_write(files["json"], lambda f: json.dump(self.to_dict(), f, indent=2))
        if plot:
            from visiontune.bench.plot import scatter

            files["plot"] = scatter(self, out / "bench.png")
        self.files = files
        return files


def _write_csv(f, fields: list[str], rows: Sequence[BenchRow]) -> None:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in rows:
        d = asdict(r)
        d["notes"] = "; ".join(r.notes)
        w.writerow(d)


def _atomic_write(path: Path, writer) -> None:
    from visiontune._atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer(f)


def environment(options: BenchOptions) -> dict[str, Any]:
    """Device, library versions and host facts the benchmark ran on."""
    dev = torch.device(options.device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"
    return {
        "device_name": name,
        "torch": torch.__version__,
        "threads": options.threads or torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _input_size(card: Any, options: BenchOptions) -> tuple[int, int, int]:
    if options.input_size:
        return (3, options.input_size, options.input_size)
    size = getattr(card, "input_size", None)
    if size:
        return tuple(int(v) for v in size)  # type: ignore[return-value]
    return (3, 224, 224)


def bench_one(model_id: str, options: BenchOptions, *, trust_pickle: bool = False) -> BenchRow:
    """Load (pretrained if cached, else random init) and measure one model."""
    resolved = load_for_bench(model_id, trust_pickle=trust_pickle)
    p = resolved.pretrained
    card = p.card
    if getattr(card, "task", "classification") != "classification":
        raise VisiontuneError(f"{model_id} is a {card.task} model; bench measures classification models")
    size = _input_size(card, options)
    m = measure(p.model, size, options)
    top1, key = published_top1(card)
    row = BenchRow(
        model_id=model_id,
        weights=resolved.weights_status,
        input="x".join(map(str, size[1:])),
        params_m=m.params / 1e6,
        gflops=m.gflops,
        latency_median_ms=m.latency_median_ms,
        latency_p95_ms=m.latency_p95_ms,
        latency_mean_ms=m.latency_mean_ms,
        throughput_ips=m.throughput_ips,
        batch_size=m.batch_size,
        peak_memory_mib=m.peak_memory_mib,
        memory_method=m.memory_method,
        top1=top1,
        top1_metric=key,
        top1_per_mparam=(top1 / (m.params / 1e6)) if top1 is not None and m.params else None,
    )
    if top1 is None:
        row.notes.append("no published top-1 available offline for these weights")
    if m.flops_note:
        row.notes.append(m.flops_note)
    return row


def bench(
    model_ids: Iterable[str],
    options: BenchOptions | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    plot: bool = True,
    progress: bool = True,
    keep_going: bool = True,
    trust_pickle: bool = False,
) -> BenchResult:
    """Measure each model on this machine; write bench.csv/.md/.json/.png to ``out_dir`` if given.

    A model that fails to load or run (unknown id, a ``torch.compile`` failure, out of memory)
    becomes an error row (``keep_going=True``) so one model does not lose the others'
    measurements; with ``keep_going=False`` the error is raised.
    """
    options = options or BenchOptions()
    ids = list(model_ids)
    if not ids:
        raise VisiontuneError("bench needs at least one model id, e.g. timm:resnet18")
    rows: list[BenchRow] = []
    with progress_bar("bench", len(ids), enabled=progress, unit="models") as prog:
        for mid in ids:
            prog.describe(f"bench: measuring {mid}")
            try:
                rows.append(bench_one(mid, options, trust_pickle=trust_pickle))
            except Exception as e:  # noqa: BLE001 - one model's failure (bad id, compile error, OOM) is its row
                if not keep_going:
                    raise
                msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                rows.append(BenchRow(model_id=mid, weights="-", input="-", error=f"{type(e).__name__}: {msg}"))
            prog.advance()
    result = BenchResult(rows, options, environment(options))
    if out_dir is not None:
        result.write(out_dir, plot=plot)
    return result
