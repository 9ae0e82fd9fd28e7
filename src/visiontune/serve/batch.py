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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from visiontune.errors import ConfigError, DatasetError
from visiontune.progress import progress as make_progress
from visiontune.serve.chunks import (
    PLAN_FILE,
    BatchPlan,
    ChunkWriter,
    chunk_batches,
    chunk_ranges,
    default_threads,
    done_chunks,
    make_loader,
    open_plan,
    process_batch,
)
from visiontune.serve.distributed import predict_distributed
from visiontune.serve.runner import Runner
from visiontune.serve.sources import list_inputs


class BatchPredictResult:
    """What a batch prediction wrote: ``dir``, ``metrics`` (counts, seconds, images/s) and the
    ``failed`` images with their errors."""

    def __init__(self, directory: Path, metrics: dict, failed: list[tuple[str, str]]):
        self.dir = directory
        self.metrics = metrics
        self.failed = failed

    def to_dict(self) -> dict:
        """Folder, metrics and failed images as JSON-ready values."""
        return {"dir": str(self.dir), "metrics": self.metrics, "failed": [list(f) for f in self.failed]}

    def summary(self) -> str:
        """One line: images predicted, unreadable and how fast."""
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


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
