"""Data-parallel batch prediction through Lightning (``Trainer.predict`` with DDP).

Every process loads the model, takes the chunks ``c`` with ``c % world_size == rank`` that have
no Parquet part yet, and writes its own parts, so the folder is the same whatever the number of
processes or nodes, and a rerun resumes whatever was cut short. On CPU the processes talk over
gloo. Launch: ``visiontune predict MODEL DATA --out OUT --devices N`` on one machine (Lightning
starts the other processes), or the same command under ``torchrun`` / ``srun`` on each node
with ``--num-nodes M`` (Lightning reads the launcher's environment). See docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from visiontune.errors import require
from visiontune.progress import progress as make_progress
from visiontune.serve.chunks import (
    PLAN_FILE,
    ChunkWriter,
    chunk_batches,
    chunk_ranges,
    default_threads,
    done_chunks,
    make_loader,
    open_plan,
    process_batch,
)
from visiontune.serve.runner import Runner


def _module_class():
    L = require("lightning.pytorch", "serve", "Batch prediction over several devices")

    class BatchPredictModule(L.LightningModule):
        """Runs a :class:`Runner` in ``predict_step`` and writes each finished chunk."""

        def __init__(self, runner: Runner, options: Any, paths: list[str], out: Path, plan: dict, show: bool):
            super().__init__()
            self.runner, self.options, self.paths, self.out, self.plan, self.show = (
                runner,
                options,
                paths,
                out,
                plan,
                show,
            )
            # DDP needs a parameter to wrap; the model stays outside so it is never broadcast or synced
            self.anchor = nn.Parameter(torch.zeros(1))
            self.allow_zero_length_dataloader_with_multiple_devices = True  # fewer chunks than processes
            self.writer: ChunkWriter | None = None
            self.skipped = 0
            self.processed = 0
            self._bar: Any = None

        def predict_dataloader(self):
            rank, world = self.trainer.global_rank, self.trainer.world_size
            n, chunk_size = len(self.paths), self.plan["chunk_size"]
            if rank == 0:
                open_plan(self.out, self.runner, self.options, self.paths, chunk_size)
            self.trainer.strategy.barrier("visiontune-batch-plan")
            n_chunks = len(chunk_ranges(n, chunk_size))
            done = done_chunks(self.out, n_chunks)
            self.skipped = len(done)
            mine = [c for c in range(n_chunks) if c % world == rank and c not in done]
            batches = chunk_batches(mine, n, chunk_size, self.plan["batch_size"])
            self.processed = sum(len(b) for b in batches)
            self.writer = ChunkWriter(self.out, self.runner.task, n, chunk_size)
            return make_loader(self.paths, self.runner.preparer(), batches, self.plan["num_workers"])

        def on_predict_start(self):
            self.runner.to(self.device)
            torch.set_num_threads(self.plan["threads"])
            label = f"predict {self.runner.model_id} (rank {self.trainer.global_rank}/{self.trainer.world_size})"
            self._bar = make_progress(label, self.processed, enabled=self.show, unit="img").__enter__()

        def predict_step(self, batch, batch_idx):
            indices, results, bad = process_batch(self.runner, self.options, batch)
            assert self.writer is not None
            self.writer.add(self.paths, indices, results, bad)
            self._bar.advance(len(indices) + len(bad))

        def on_predict_end(self):
            if self._bar is not None:
                self._bar.__exit__(None, None, None)

    return BatchPredictModule


def predict_distributed(
    model: str,
    paths: list[str],
    out: Path,
    batch_size: int,
    num_workers: int,
    chunk_size: int,
    devices: int,
    num_nodes: int,
    progress: bool,
    load: dict,
    *,
    options: dict,
    options_for_task: dict[str, dict] | None = None,
) -> tuple[int, int, int]:
    """Run the chunks of ``paths`` over ``devices`` x ``num_nodes`` DDP processes.

    Returns (chunks already done before this run, images this process predicted, its global rank)."""
    L = require("lightning.pytorch", "serve", "Batch prediction over several devices")
    runner = Runner.load(model, **load)
    parsed = runner.parse_options({**(options_for_task or {}).get(runner.task, {}), **options})
    plan = {"chunk_size": chunk_size, "batch_size": batch_size, "num_workers": num_workers}
    plan["threads"] = load.pop("threads", None) or default_threads(num_workers, devices)
    if (out / PLAN_FILE).is_file():
        open_plan(out, runner, parsed, paths, chunk_size)  # a mismatch fails here, in every process alike
    trainer = L.Trainer(
        accelerator="auto",
        devices=devices,
        num_nodes=num_nodes,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        inference_mode=True,
    )
    module = _module_class()(runner, parsed, paths, out, plan, progress and trainer.global_rank == 0)
    trainer.predict(module, return_predictions=False)
    trainer.strategy.barrier("visiontune-batch-done")  # every rank's parts are written before any reads them
    return module.skipped, module.processed, trainer.global_rank
