"""The Trainer factory: one place that turns engine options into a Lightning ``Trainer``.

Precision (AMP on GPU), gradient accumulation and clipping, early stopping, DDP / multi-node
strategy, deterministic mode, best + last atomic checkpoints with trust-gated reads, the per-epoch
table, the progress bar and quiet Lightning logs — the same for every task.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar
from rich.console import Console

from visiontune.engine.checkpoints import AtomicCheckpointIO, load_weights
from visiontune.engine.options import EngineOptions, resolve_precision
from visiontune.errors import ConfigError


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's banner lines and the warnings visiontune handles on purpose (frozen
    modules in eval mode keep their BatchNorm statistics; few workers on small data)."""
    names = (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    )
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            r".*module\(s\) in eval mode.*",
            r".*isinstance\(treespec, LeafSpec\).*",
            r".*does not have many workers.*",
            r".*Checkpoint directory .* exists and is not empty.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)


class EpochBar(RichProgressBar):
    """Lightning's rich bar, counting epochs from 1 to ``max_epochs`` as the table does."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch + 1}" + (f"/{self.trainer.max_epochs}" if self.trainer.max_epochs else "")
        width = len(self.validation_description)
        return f"{text:{width}}" if width > len(text) else text


class EpochTable(Callback):
    """Prints one row per epoch (1-based): the given metric columns, lr, extra cells, time."""

    def __init__(self, columns: Sequence[str], console: Any = None, extra: Any = None):
        self.columns = list(columns)
        self.console = console or Console()
        self.extra = extra  # fn(pl_module) -> dict of more cells (e.g. training groups)
        self._t0 = 0.0
        self._header = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        more = self.extra(pl_module) if self.extra else {}
        names = ["epoch", *self.columns, "lr", *more, "time"]
        lr = trainer.optimizers[0].param_groups[-1]["lr"] if trainer.optimizers else float("nan")
        cells = [str(trainer.current_epoch + 1)]
        cells += [f"{float(m[k]):.4f}" if k in m else "-" for k in self.columns]
        cells += [f"{lr:.2e}", *[str(v) for v in more.values()], f"{time.perf_counter() - self._t0:.1f}s"]
        widths = [max(len(n), len(c), 5) for n, c in zip(names, cells)]
        # print through the live progress bar's console when there is one: the row goes above the
        # bar instead of onto its line
        bar = getattr(trainer, "progress_bar_callback", None)
        live = getattr(bar, "progress", None)
        console = live.console if live is not None else self.console
        if not self._header:
            console.print(" ".join(f"{n:>{w}}" for n, w in zip(names, widths)), style="bold")
            self._header = True
        console.print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths)), highlight=False)


def make_trainer(
    opts: EngineOptions,
    *,
    epochs: int,
    run_dir: Path,
    ckpt_dir: Path,
    monitor: str | None,
    mode: Literal["min", "max"],
    run: Any = None,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    console: Any = None,
    table_columns: Sequence[str] | None = None,
    table_extra: Any = None,
    single_device: bool = False,
    trust_pickle: bool = False,
) -> tuple[Any, Any]:
    """A Lightning Trainer for one run and its best-checkpoint callback.

    Writes ``ckpt_dir/best.ckpt`` (the ``monitor`` metric's best epoch) and ``ckpt_dir/last.ckpt``
    (every epoch), both atomically; reads checkpoints through the trust gate. ``monitor=None``
    (no validation data): "best" is the last epoch. ``single_device`` forces one process (e.g. a
    head trained on cached features).
    """
    if opts.early_stopping and monitor is None:
        raise ConfigError("early_stopping needs validation data: there is no metric to watch")
    best = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=False,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # Lightning's save_last only writes when a top-k file is written: keep "last" separately, every epoch
    last = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    cbs: list[Any] = [best, last]
    if table_columns is not None:
        cbs.append(EpochTable(table_columns, console, table_extra))
    if opts.early_stopping and monitor is not None:  # None raised ConfigError above
        cbs.append(EarlyStopping(monitor=monitor, mode=mode, patience=opts.early_stopping))
    if progress:
        cbs.append(EpochBar(leave=False))
    if run is not None:
        cbs += list(run.lightning_callbacks())
    cbs += list(callbacks)
    if single_device:
        topology: dict[str, Any] = {"devices": 1, "strategy": "auto", "num_nodes": 1}
    else:
        topology = {"devices": opts.devices, "strategy": opts.ddp_strategy, "num_nodes": opts.num_nodes}
    with quiet_lightning():  # no "GPU available" banners
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=opts.accelerator,
            precision=resolve_precision(opts.precision, opts.accelerator),
            accumulate_grad_batches=opts.accumulate,
            gradient_clip_val=opts.grad_clip,
            deterministic=opts.deterministic,
            callbacks=cbs,
            logger=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO(trust_pickle=trust_pickle)],
            use_distributed_sampler=False,
            limit_train_batches=opts.max_train_batches,
            log_every_n_steps=1,
            **topology,
        )
    return trainer, best


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Training allocates many short-lived objects, and every so often Python's cyclic GC makes a
    full (generation 2) pass over *every* tracked object — the ~600k objects torch, Lightning and
    the model's modules leave on the heap, none of which becomes garbage while training runs:
    0.3-0.6 s a pass here, ~4 % of a 15-step CPU span. ``gc.freeze()`` moves that heap to the
    permanent generation, so later passes scan only what training creates (and forked DataLoader
    workers stop touching the parent's pages). No collection first (it would cost the same 0.3-0.6 s
    on every fit): cyclic garbage that is frozen is freed by the first full pass after the
    unfreeze. Unfrozen afterwards; a caller that froze the heap itself keeps its own freeze."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def fit(trainer: Any, module: Any, train_loader: Any, val_loader: Any = None, ckpt_path: Any = None) -> None:
    """``trainer.fit`` with quiet logs and the pre-training heap frozen (see :func:`frozen_heap`);
    Ctrl-C surfaces as ``KeyboardInterrupt`` (Lightning turns it into ``sys.exit(1)`` after its
    graceful shutdown, which would hide it from the caller).

    Lightning also sets SIGINT to "ignore" for that shutdown and never restores it: a notebook or
    script that interrupted one ``vt.train`` could not be interrupted again, and every process it
    started would inherit the ignored signal. The handler the caller had is put back."""
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        with quiet_lightning(), frozen_heap():
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and sigint is not None and signal.getsignal(signal.SIGINT) != sigint:
            signal.signal(signal.SIGINT, sigint)
    if trainer.interrupted:
        raise KeyboardInterrupt


def fit_best(
    trainer: Any,
    best_cb: Any,
    module: Any,
    train_loader: Any,
    val_loader: Any,
    ckpt_path: Any,
    *,
    metric: str,
    trust_pickle: bool = False,
) -> dict[str, Any] | None:
    """`fit`, then on rank 0 reload the best checkpoint into ``module`` and return the run's
    metrics: ``train_seconds``, ``epochs`` and the row of ``module.history`` (one dict per
    validation) with the highest ``metric``. None on the other ranks (they have nothing to save)."""
    t0 = time.time()
    fit(trainer, module, train_loader, val_loader, ckpt_path)
    train_s = time.time() - t0
    if not trainer.is_global_zero:
        return None
    best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    if best is not None and best.is_file():
        module.load_state_dict(load_weights(best, trust_pickle=trust_pickle))
    metrics: dict[str, Any] = {"train_seconds": round(train_s, 1), "epochs": trainer.current_epoch}
    history = getattr(module, "history", None) or []
    if history:
        metrics.update({k: float(v) for k, v in max(history, key=lambda h: h[metric]).items()})
    return metrics
