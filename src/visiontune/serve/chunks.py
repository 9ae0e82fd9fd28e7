"""The pieces of batch prediction shared by one process and a DDP run: the plan file, chunks
and their batches, the DataLoader, Parquet parts and the writer that completes them."""

from __future__ import annotations

import base64
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
from visiontune.errors import ConfigError, ImageDecodeError
from visiontune.records import Record
from visiontune.serve.runner import Runner
from visiontune.serve.sources import inputs_digest

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
    batch: Any = items  # stacked into one tensor / array when every item has the same shape
    if items and len({getattr(x, "shape", None) for x in items}) == 1:
        if all(isinstance(x, torch.Tensor) for x in items):
            batch = torch.stack(items)
        elif all(isinstance(x, np.ndarray) for x in items):
            batch = np.stack(items)
    return [i for i, _ in good], batch, bad


def chunk_ranges(n: int, chunk_size: int) -> list[range]:
    """Consecutive index ranges of ``chunk_size`` covering ``0..n``."""
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
    """A DataLoader that prepares ``paths`` in the given index ``batches`` with ``num_workers`` workers."""
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
    elif task == "segmentation":
        schema = _segmentation_columns(res, cols)
    else:
        schema = _instance_columns(res, [x["detections"] if x else None for x in res], cols)
    fields = [("index", pa.int64()), ("path", pa.string()), ("ok", pa.bool_()), ("error", pa.string()), *schema]
    return pa.table({k: pa.array(cols[k], type=t) for k, t in fields})


def _instance_columns(res: list[dict | None], inst: list[list[dict] | None], cols: dict[str, list]) -> list:
    """The image size and one list per field of the instances (boxes, scores, labels, names) —
    a detector's detections or a segmenter's instances."""
    cols["image_height"] = [x["image_size"][0] if x and x["image_size"] else None for x in res]
    cols["image_width"] = [x["image_size"][1] if x and x["image_size"] else None for x in res]
    for col, key in (("boxes", "box"), ("scores", "score"), ("labels", "label"), ("names", "name")):
        cols[col] = [[d[key] for d in ds] if ds is not None else None for ds in inst]
    return [
        ("image_height", pa.int32()),
        ("image_width", pa.int32()),
        ("boxes", pa.list_(pa.list_(pa.float64(), 4))),
        ("scores", pa.list_(pa.float64())),
        ("labels", pa.list_(pa.int32())),
        ("names", pa.list_(pa.string())),
    ]


def _segmentation_columns(res: list[dict | None], cols: dict[str, list]) -> list[tuple[str, Any]]:
    """A segmenter's columns: the instance columns, the class map as index-PNG bytes
    (``PIL.Image.open(io.BytesIO(...))`` reads it), the class shares, and each instance mask's COCO
    RLE ``counts`` at ``image_height`` × ``image_width``."""
    inst = [x["instances"] if x else None for x in res]
    schema = _instance_columns(res, inst, cols)
    cols["class_map_png"] = [base64.b64decode(x["class_map"]["data"]) if x and x["class_map"] else None for x in res]
    cols["class_areas"] = [list(x["class_areas"].items()) if x else None for x in res]
    cols["masks_rle"] = [[d["mask"]["counts"] for d in ds] if ds is not None else None for ds in inst]
    return [
        *schema[:2],
        ("class_map_png", pa.binary()),
        ("class_areas", pa.map_(pa.string(), pa.float64())),
        *schema[2:],
        ("masks_rle", pa.list_(pa.string())),
    ]


def write_part(out: Path, chunk: int, task: str, rows: list[dict]) -> Path:
    """Write one chunk's rows as ``part-NNNNNN.parquet``, atomically."""
    path = out / PART_PATTERN.format(chunk)
    with atomic_path(path) as tmp:
        pq.write_table(_table(task, rows), tmp, compression="zstd")
    return path


def done_chunks(out: Path, num_chunks: int) -> set[int]:
    """Indices of the chunks whose part file is already written in ``out``."""
    return {c for c in range(num_chunks) if (out / PART_PATTERN.format(c)).is_file()}


class ChunkWriter:
    """Collects rows per chunk and writes a part as soon as its chunk is complete."""

    def __init__(self, out: Path, task: str, n: int, chunk_size: int):
        self.out, self.task, self.n, self.chunk_size = out, task, n, chunk_size
        self.pending: dict[int, list[dict]] = {}
        self.written = 0

    def add(self, paths: list[str], indices: list[int], results: list[dict], bad: list[tuple[int, str]]) -> None:
        """Buffer the results of ``indices`` and the errors of ``bad`` images as rows."""
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
    """(indices, results, failures) of one prepared batch run through ``runner``."""
    indices, items, bad = batch
    results = runner.run(items, options) if len(indices) else []
    return indices, results, bad


# -- the API -----------------------------------------------------------------------------------
def default_threads(num_workers: int, processes: int = 1) -> int:
    """torch threads per model process: the cores left after the DataLoader workers, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, processes) - num_workers)


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
    started = time.time()
    if file.is_file():
        for stale in out.glob(".part-*.tmp.parquet"):  # a part a killed run was writing (never renamed)
            with contextlib.suppress(OSError):  # older than this call: not another rank's write in flight
                if stale.stat().st_mtime < started - 1.0:
                    stale.unlink()
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
