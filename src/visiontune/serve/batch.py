"""Batch prediction over a folder or manifest of any size, streamed to Parquet, resumable.

``predict_batch(model, data, out)`` lists the images (a folder, a list of paths, or a manifest:
``.txt`` one path per line, ``.csv`` / ``.parquet`` with a ``path`` column, a visiontune dataset
manifest ``.json``), cuts the list into chunks of ``chunk_size`` and writes one Parquet part per
chunk into the folder ``out`` (atomically: a part is whole or absent). Images are decoded and
preprocessed in DataLoader worker processes; the model runs in the main process. A rerun with
the same inputs skips the parts already written, so a run killed at any point (SIGKILL
included) and run again ends with the same Parquet as one uninterrupted run. A corrupt image
becomes a row with ``ok = false`` and its ``error``; the other rows are unaffected.

With ``devices > 1`` or ``num_nodes > 1`` the chunks are shared out over the processes of a
Lightning DDP run (``Trainer.predict``; gloo on CPU), each writing its own parts: see
:mod:`visiontune.serve.distributed`. Read the result with :func:`read_predictions` (rows in
input order) or any Parquet reader (``pandas.read_parquet(out)``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from visiontune._atomic import atomic_path
from visiontune.data import read_image
from visiontune.errors import ConfigError, DatasetError, ImageDecodeError
from visiontune.progress import progress as make_progress
from visiontune.records import Record
from visiontune.serve.runner import Runner
from visiontune.serve.sources import inputs_digest, list_inputs

PLAN_FILE = "_batch-predict.json"  # "_": Parquet readers of the folder skip it
PART_PATTERN = "part-{:06d}.parquet"


class BatchPlan(Record):
    """``<out>/_batch-predict.json``: what a batch prediction folder holds, to resume it safely."""

    KIND: ClassVar[str] = "batch-predict"
    VERSION: ClassVar[int] = 1

    model: str
    task: str
    options: dict = {}
    num_images: int
    chunk_size: int
    inputs_sha256: str
    done: bool = False
    totals: dict = {}


# -- data loading ------------------------------------------------------------------------------
class _Images(Dataset):
    """(index, prepared image or None, error or None) for each path; runs in DataLoader workers."""

    def __init__(self, paths: list[str], prepare: Callable):
        self.paths = paths
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.prepare(read_image(self.paths[i])), None
        except ImageDecodeError as e:
            return i, None, str(e)
        except Exception as e:  # a preprocessing failure on an odd image: that row fails, not the run
            return i, None, f"{self.paths[i]}: {type(e).__name__}: {e}"


def _collate(samples: list) -> tuple[list[int], Any, list[tuple[int, str]]]:
    good = [(i, x) for i, x, err in samples if err is None]
    bad = [(i, err) for i, _, err in samples if err is not None]
    items = [x for _, x in good]
    if items and len({getattr(x, "shape", None) for x in items}) == 1:
        if all(isinstance(x, torch.Tensor) for x in items):
            items = torch.stack(items)
        elif all(isinstance(x, np.ndarray) for x in items):
            items = np.stack(items)
    return [i for i, _ in good], items, bad


def chunk_ranges(n: int, chunk_size: int) -> list[range]:
    return [range(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def chunk_batches(chunks: list[int], n: int, chunk_size: int, batch_size: int) -> list[list[int]]:
    """Batches of indices that never cross a chunk: the same batches on every run and rank."""
    out = []
    for c in chunks:
        r = range(c * chunk_size, min((c + 1) * chunk_size, n))
        out += [list(r[s : s + batch_size]) for s in range(0, len(r), batch_size)]
    return out


class BatchList(Sampler):
    """A fixed list of index batches as a batch sampler (Lightning wraps samplers, not lists)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(paths: list[str], prepare: Callable, batches: list[list[int]], num_workers: int) -> DataLoader:
    return DataLoader(
        _Images(paths, prepare),
        batch_sampler=BatchList(batches),
        num_workers=num_workers,
        collate_fn=_collate,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )


# -- output ------------------------------------------------------------------------------------
def _table(task: str, rows: list[dict]) -> pa.Table:
    rows = sorted(rows, key=lambda r: r["index"])
    cols: dict[str, list] = {
        "index": [r["index"] for r in rows],
        "path": [r["path"] for r in rows],
        "ok": [r["result"] is not None for r in rows],
        "error": [r.get("error") for r in rows],
    }
    res = [r["result"] for r in rows]
    if task == "classification":
        tops = [x["top"] if x else None for x in res]
        cols["label"] = [t[0]["label"] if t else None for t in tops]
        cols["prob"] = [t[0]["prob"] if t else None for t in tops]
        cols["top_index"] = [[d["index"] for d in t] if t else None for t in tops]
        cols["top_label"] = [[d["label"] for d in t] if t else None for t in tops]
        cols["top_prob"] = [[d["prob"] for d in t] if t else None for t in tops]
        schema = [
            ("label", pa.string()),
            ("prob", pa.float64()),
            ("top_index", pa.list_(pa.int32())),
            ("top_label", pa.list_(pa.string())),
            ("top_prob", pa.list_(pa.float64())),
        ]
    else:
        dets = [x["detections"] if x else None for x in res]
        cols["image_height"] = [x["image_size"][0] if x and x["image_size"] else None for x in res]
        cols["image_width"] = [x["image_size"][1] if x and x["image_size"] else None for x in res]
        cols["boxes"] = [[d["box"] for d in ds] if ds is not None else None for ds in dets]
        cols["scores"] = [[d["score"] for d in ds] if ds is not None else None for ds in dets]
        cols["labels"] = [[d["label"] for d in ds] if ds is not None else None for ds in dets]
        cols["names"] = [[d["name"] for d in ds] if ds is not None else None for ds in dets]
        schema = [
            ("image_height", pa.int32()),
            ("image_width", pa.int32()),
            ("boxes", pa.list_(pa.list_(pa.float64(), 4))),
            ("scores", pa.list_(pa.float64())),
            ("labels", pa.list_(pa.int32())),
            ("names", pa.list_(pa.string())),
        ]
    fields = [("index", pa.int64()), ("path", pa.string()), ("ok", pa.bool_()), ("error", pa.string()), *schema]
    return pa.table({k: pa.array(cols[k], type=t) for k, t in fields})


def write_part(out: Path, chunk: int, task: str, rows: list[dict]) -> Path:
    """Write one chunk's rows as ``part-NNNNNN.parquet``, atomically."""
    path = out / PART_PATTERN.format(chunk)
    with atomic_path(path) as tmp:
        pq.write_table(_table(task, rows), tmp, compression="zstd")
    return path


def done_chunks(out: Path, num_chunks: int) -> set[int]:
    return {c for c in range(num_chunks) if (out / PART_PATTERN.format(c)).is_file()}


class ChunkWriter:
    """Collects rows per chunk and writes a part as soon as its chunk is complete."""

    def __init__(self, out: Path, task: str, n: int, chunk_size: int):
        self.out, self.task, self.n, self.chunk_size = out, task, n, chunk_size
        self.pending: dict[int, list[dict]] = {}
        self.written = 0

    def add(self, paths: list[str], indices: list[int], results: list[dict], bad: list[tuple[int, str]]) -> None:
        for i, r in zip(indices, results):
            self._add({"index": i, "path": paths[i], "result": r, "error": None})
        for i, err in bad:
            self._add({"index": i, "path": paths[i], "result": None, "error": err})

    def _add(self, row: dict) -> None:
        c = row["index"] // self.chunk_size
        rows = self.pending.setdefault(c, [])
        rows.append(row)
        if len(rows) == min(self.chunk_size, self.n - c * self.chunk_size):
            write_part(self.out, c, self.task, self.pending.pop(c))
            self.written += 1


def process_batch(runner: Runner, options: Any, batch: tuple) -> tuple[list[int], list[dict], list]:
    indices, items, bad = batch
    results = runner.run(items, options) if len(indices) else []
    return indices, results, bad


# -- the API -----------------------------------------------------------------------------------
class BatchPredictResult:
    """What a batch prediction wrote: ``dir``, ``metrics`` (counts, seconds, images/s) and the
    ``failed`` images with their errors."""

    def __init__(self, directory: Path, metrics: dict, failed: list[tuple[str, str]]):
        self.dir = directory
        self.metrics = metrics
        self.failed = failed

    def to_dict(self) -> dict:
        return {"dir": str(self.dir), "metrics": self.metrics, "failed": [list(f) for f in self.failed]}

    def summary(self) -> str:
        m = self.metrics
        text = (
            f"{m['predicted']:,} of {m['images']:,} images predicted, {m['failed']:,} unreadable, "
            f"{m['skipped_chunks']} chunk(s) already done; {m['images_per_s']:.1f} images/s → {self.dir}"
        )
        for path, err in self.failed[:10]:
            text += f"\n  skipped: {err if path in err else f'{path}: {err}'}"
        if len(self.failed) > 10:
            text += f"\n  … and {len(self.failed) - 10} more (rows with ok = false)"
        return text


def predict_batch(
    model: str | os.PathLike | Runner,
    data: Any,
    out: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 2,
    chunk_size: int = 1024,
    devices: int = 1,
    num_nodes: int = 1,
    progress: bool = True,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    trust_pickle: bool = False,
    threads: int | None = None,
    options_for_task: dict[str, dict] | None = None,
    **options: Any,
) -> BatchPredictResult:
    """Predict every image of ``data`` into the Parquet folder ``out`` (see the module doc).

    ``options``: the task's options (``topk`` for classifiers; ``score_threshold``, ``nms_iou``,
    ``max_detections``, ``classes`` for detectors). Raises ``DatasetError`` when no image could
    be read at all. ``options_for_task`` maps a task to options used only when the model has
    that task (the CLI's ``--topk`` for classifiers). ``threads``: torch threads of the model
    process (default: the cores left after the DataLoader workers, at least 1 — on a small CPU,
    two model threads racing two decoding workers ran 7x slower than one).
    """
    t0 = time.perf_counter()
    if batch_size < 1 or chunk_size < 1 or num_workers < 0:
        raise ConfigError("batch_size and chunk_size must be >= 1 and num_workers >= 0")
    paths = list_inputs(data)
    out = Path(out)
    if devices > 1 or num_nodes > 1:
        from visiontune.serve.distributed import predict_distributed

        if isinstance(model, Runner):
            raise ConfigError("devices > 1 needs a model id or path (each process loads its own copy)")
        load = {"weights": weights, "pretrained": pretrained, "trust_pickle": trust_pickle, "threads": threads}
        args = (str(model), paths, out, batch_size, num_workers, chunk_size, devices, num_nodes, progress, load)
        skipped, processed, rank = predict_distributed(*args, options=options, options_for_task=options_for_task)
        return _finish(out, paths, chunk_size, skipped, processed, t0, rank=rank)
    if not isinstance(model, Runner):
        model = Runner.load(model, weights=weights, pretrained=pretrained, trust_pickle=trust_pickle)
    parsed = model.parse_options({**(options_for_task or {}).get(model.task, {}), **options})
    with torch_threads(threads or default_threads(num_workers)):
        skipped, total = _predict_local(model, parsed, paths, out, batch_size, num_workers, chunk_size, progress)
    return _finish(out, paths, chunk_size, skipped, total, t0)


def _predict_local(
    runner: Runner,
    parsed: Any,
    paths: list[str],
    out: Path,
    batch_size: int,
    num_workers: int,
    chunk_size: int,
    progress: bool,
) -> tuple[int, int]:
    todo, skipped = open_plan(out, runner, parsed, paths, chunk_size)
    batches = chunk_batches(todo, len(paths), chunk_size, batch_size)
    writer = ChunkWriter(out, runner.task, len(paths), chunk_size)
    total = sum(len(b) for b in batches)
    with make_progress(f"predict {runner.model_id}", total, enabled=progress, unit="img") as bar:
        for batch in make_loader(paths, runner.preparer(), batches, num_workers):
            indices, results, bad = process_batch(runner, parsed, batch)
            writer.add(paths, indices, results, bad)
            bar.advance(len(indices) + len(bad))
    return skipped, total


def default_threads(num_workers: int, processes: int = 1) -> int:
    """torch threads per model process: the cores left after the DataLoader workers, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, processes) - num_workers)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def open_plan(out: Path, runner: Runner, options: Any, paths: list[str], chunk_size: int) -> tuple[list[int], int]:
    """Check or write ``_batch-predict.json``; return (chunks still to do, chunks already done)."""
    plan = BatchPlan(
        model=runner.model_id,
        task=runner.task,
        options=options.model_dump(),
        num_images=len(paths),
        chunk_size=chunk_size,
        inputs_sha256=inputs_digest(paths),
    )
    file = out / PLAN_FILE
    if file.is_file():
        old = BatchPlan.read(file)
        keys = ("model", "task", "options", "num_images", "chunk_size", "inputs_sha256")
        diff = [k for k in keys if getattr(old, k) != getattr(plan, k)]
        if diff:
            raise ConfigError(
                f"{out} holds predictions of another run (different {', '.join(diff)}); "
                "choose a new --out folder or delete this one"
            )
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a batch-prediction folder; choose a new --out folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        plan.write(file)
    n_chunks = len(chunk_ranges(len(paths), chunk_size))
    done = done_chunks(out, n_chunks)
    return [c for c in range(n_chunks) if c not in done], len(done)


def _finish(
    out: Path, paths: list[str], chunk_size: int, skipped: int, processed: int, t0: float, rank: int = 0
) -> BatchPredictResult:
    table = pq.read_table(out, columns=["index", "path", "ok", "error"]) if any(out.glob("part-*.parquet")) else None
    n_chunks = len(chunk_ranges(len(paths), chunk_size))
    missing = n_chunks - len(done_chunks(out, n_chunks))
    if table is None or missing:
        raise DatasetError(f"{out}: {missing} of {n_chunks} chunks were not written; run the same command again")
    ok = table.column("ok").to_pylist()
    failed_rows = [
        (p, e) for p, e, k in zip(table.column("path").to_pylist(), table.column("error").to_pylist(), ok) if not k
    ]
    seconds = time.perf_counter() - t0
    predicted = sum(ok)
    metrics = {
        "images": len(paths),
        "predicted": predicted,
        "failed": len(failed_rows),
        "chunks": n_chunks,
        "skipped_chunks": skipped,
        "seconds": round(seconds, 3),
        "processed": processed,
        "images_per_s": round(processed / seconds, 2) if seconds > 0 else 0.0,
    }
    metrics["rank"] = rank
    if rank == 0:  # one writer of the plan file
        plan = BatchPlan.read(out / PLAN_FILE)
        plan.done, plan.totals = True, {k: metrics[k] for k in ("images", "predicted", "failed")}
        plan.write(out / PLAN_FILE)
    if predicted == 0:
        raise DatasetError(
            f"none of the {len(paths):,} images could be read (first: {failed_rows[0][0]}: {failed_rows[0][1]})"
        )
    return BatchPredictResult(out, metrics, failed_rows)


def read_predictions(out: str | os.PathLike) -> pa.Table:
    """All rows of a batch-prediction folder, in input order."""
    out = Path(out)
    parts = sorted(out.glob("part-*.parquet"))
    if not parts:
        raise DatasetError(f"{out}: no part-*.parquet files (is this a batch-prediction folder?)")
    return pa.concat_tables([pq.read_table(p) for p in parts])


def iter_rows(out: str | os.PathLike) -> Iterator[dict]:
    """Rows one by one, in input order, one part in memory at a time."""
    for p in sorted(Path(out).glob("part-*.parquet")):
        yield from pq.read_table(p).to_pylist()
