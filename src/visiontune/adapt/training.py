"""`train()`: fine-tune any classifier on any classification data set, end to end.

load (hub) → data splits (data) → layer groups + strategy → the engine's session and Trainer
(AMP, channels_last, accumulation, early stopping, best + last atomic checkpoints, exact resume,
DDP) → final top-1 / top-5 / per-class / calibration + confusion matrix → saved model
(``Pretrained.save``) → completed run record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from rich.console import Console
from rich.markup import escape

from visiontune.adapt.config import TrainConfig
from visiontune.adapt.groups import layer_groups
from visiontune.adapt.recipe import (
    cached_setup,
    evaluate_splits,
    image_loaders,
    make_module,
    prepare_card,
    save_ema,
    training_counts,
)
from visiontune.adapt.setup import (
    describe_groups,
    head_path,
    load_pretrained,
    load_splits,
    load_teacher,
    skipped_files,
)
from visiontune.adapt.strategies import default_milestones
from visiontune.adapt.tricks import EMACallback
from visiontune.engine import Session, device_for, fit, global_rank, make_trainer
from visiontune.errors import ConfigError
from visiontune.hub.trust import torch_load

HP_KEYS = (
    "strategy",
    "n_stages",
    "lr",
    "lr_decay",
    "head_lr",
    "optimizer",
    "weight_decay",
    "momentum",
    "label_smoothing",
    "schedule",
    "warmup_epochs",
    "seed",
    "kd_temperature",
    "kd_alpha",
)


@dataclass
class TrainResult:
    """What a training run hands off: the run folder, the saved model, the final metrics."""

    run_dir: Path
    model_dir: Path | None
    metrics: dict
    pretrained: Any
    history: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    best_checkpoint: Path | None = None

    @property
    def dir(self) -> Path:
        """The run folder."""
        return self.run_dir

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "dir": str(self.run_dir),
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "metrics": scalar_metrics(self.metrics),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "timings": self.timings,
        }

    def summary(self) -> str:
        """One line: where it went and the headline metrics."""
        m = self.metrics
        keys = ("val/acc", "val/top5", "val/balanced_acc", "val/map", "val/f1_macro")
        parts = [f"{k} {m[k]:.4f}" for k in keys if k in m]
        return f"{self.run_dir}: " + ", ".join(parts)


def scalar_metrics(metrics: dict) -> dict:
    """The numeric and string entries of a metrics dict (what run summaries hold)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _hp(cfg: TrainConfig, milestones: list[int] | None) -> dict:
    d = {k: getattr(cfg, k) for k in HP_KEYS}
    d["milestones"] = milestones
    return d


def train(
    cfg: TrainConfig | dict,
    run_root: str | os.PathLike = "runs",
    run_name: str | None = None,
    resume: str | os.PathLike | bool | None = None,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    console: Any = None,
    *,
    trust_pickle: bool = False,
    tags: dict | None = None,
) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; see :class:`TrainConfig` for every option.

    ``resume``: a run directory, a checkpoint, or True (the run called ``run_name``); training
    continues from the last checkpoint in a new run ``<old>-resumed`` and ends as the
    uninterrupted run would (same seed). ``callbacks``: extra Lightning callbacks.
    ``trust_pickle``: allow unpickling the files this training reads (``weights``, the teacher's
    weights, a ``resume`` checkpoint written elsewhere); it is the caller's word, never the config's.
    ``tags``: more entries for the run record (``visiontune tune`` names the study and trial).
    A callback with a ``visiontune_summary()`` method adds its dict to the final metrics.
    """
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    run_name = run_name or cfg.name
    is_zero = global_rank() == 0
    console = console or Console(quiet=not is_zero)
    t_start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if cfg.multi_process and cfg.strategy == "gradual":
        raise ConfigError(
            "key 'strategy': gradual unfreezing changes the trainable set during training, which DDP's "
            "gradient buckets cannot follow; use full / partial / linear with several devices, or train "
            "gradual on one device"
        )
    resume_from = Session.prepare(resume, run_root, run_name)
    splits = load_splits(cfg, progress=progress and is_zero)
    skipped = skipped_files(splits)
    if skipped and is_zero:
        console.print(
            f"[yellow]skipped {len(skipped)} undecodable image(s)[/] (listed in run.json): "
            + escape(", ".join(s["path"] for s in skipped[:5]))
            + (" …" if len(skipped) > 5 else "")
        )
    classes = list(splits.classes)
    p = load_pretrained(cfg, classes, trust_pickle)
    model, hpath = p.model, head_path(p)
    groups = layer_groups(model, hpath)
    milestones = cfg.milestones
    if cfg.strategy == "gradual" and milestones is None:
        milestones = default_milestones(cfg.epochs, groups.n_backbone)
    hp = _hp(cfg, milestones)
    train_ds = splits.train.with_transform(p.preprocess if cfg.augment == "none" else p.train_transform(cfg.augment))
    val_ds = splits.val.with_transform(p.preprocess)
    use_cache = cfg.strategy == "linear" and cfg.feature_cache != "off" and cfg.teacher is None
    monitor = cfg.monitor_metric
    mode: Literal["min", "max"] = "min" if monitor == "val/loss" else "max"
    counts, n_train = training_counts(cfg, splits)
    run_tags = {**(tags or {}), "tricks": cfg.tricks, "task": cfg.task}
    if skipped:
        run_tags["skipped_files"] = skipped
    session = Session.open(
        run_root=run_root,
        run_name=run_name,
        resume_from=resume_from,
        config=cfg,
        kind="train",
        model_id=cfg.model,
        weights_sha256=p.card.weights_sha256,
        data_version=splits.version,
        monitor=monitor,
        mode=mode,
        tags=run_tags,
        trust_pickle=trust_pickle,
    )
    timings: dict[str, float] = {}
    with session:
        teacher, teacher_input = load_teacher(cfg, p, classes, trust_pickle) if cfg.teacher else (None, None)
        feats = None
        if use_cache:
            module, train_loader, val_loader, feats = cached_setup(
                cfg, p, hpath, splits, val_ds, hp, timings, console, progress and is_zero, counts, n_train
            )
        else:
            channels_last = (
                cfg.channels_last if cfg.channels_last is not None else device_for(cfg.accelerator).type == "cuda"
            )
            module = make_module(
                cfg,
                model,
                groups,
                len(classes),
                hp,
                counts,
                n_train,
                teacher=teacher,
                teacher_input=teacher_input,
                channels_last=channels_last,
            )
            train_loader, val_loader = image_loaders(cfg, train_ds, val_ds, splits)
        module.sampler = train_loader.sampler
        if is_zero:
            describe_groups(model, groups, console)
            if milestones:
                console.print(f"gradual unfreezing at epochs {milestones} (one group each, head side first)")
        if cfg.task == "multilabel":
            columns = ["train/loss", "val/loss", "val/map", "val/f1_macro"]
        else:
            columns = ["train/loss", "train/acc", "val/loss", "val/acc"] + (["val/top5"] if len(classes) > 5 else [])
        ema_cb = EMACallback(cfg.ema_decay) if cfg.ema else None
        callbacks = [*callbacks, *([ema_cb] if ema_cb else [])]
        trainer, best_cb = make_trainer(
            cfg,
            epochs=cfg.epochs,
            run_dir=session.dir,
            ckpt_dir=session.ckpt_dir,
            monitor=monitor,
            mode=mode,
            run=session.run,
            callbacks=callbacks,
            progress=progress and is_zero,
            console=console,
            table_columns=columns,
            table_extra=lambda m: {"groups": len(getattr(m, "trainable_groups", []))},
            single_device=use_cache,
            trust_pickle=trust_pickle,
        )
        t0 = time.perf_counter()
        fit(trainer, module, train_loader, val_loader, session.ckpt_path)
        timings["fit_s"] = time.perf_counter() - t0
        best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
        if not trainer.is_global_zero:
            return TrainResult(session.dir, None, {}, p, module.history, timings, best)
        evaluated = "last epoch"
        if best is not None and best.is_file():
            ckpt = torch_load(best, trust_pickle=trust_pickle, what="training checkpoint")
            module.load_state_dict(ckpt["state_dict"])
            score = best_cb.best_model_score
            evaluated = f"the best checkpoint (epoch {int(ckpt.get('epoch', 0)) + 1}" + (
                f", {monitor} {float(score):.4f})" if score is not None else ")"
            )
        console.print(f"final metrics from {evaluated}; the last epoch's weights stay in checkpoints/last.ckpt")
        module.to("cpu" if not torch.cuda.is_available() else module.device)
        t0 = time.perf_counter()
        averaged = ema_cb.averaged() if ema_cb else None
        metrics = evaluate_splits(cfg, p, hpath, val_ds, splits, feats, session.dir, console, averaged)
        timings["eval_s"] = time.perf_counter() - t0
        metrics["epochs_trained"] = trainer.current_epoch
        if best_cb.best_model_score is not None:  # the monitored metric at the best epoch
            metrics[f"best/{monitor}"] = float(best_cb.best_model_score)
        metrics["evaluated"] = evaluated
        for cb in callbacks:
            if hasattr(cb, "visiontune_summary"):
                metrics.update(cb.visiontune_summary())
        if best is not None:
            metrics["best_checkpoint"] = str(best)
        p.model.eval()
        training = {**cfg.to_dict(), "milestones": milestones, "layer_groups": groups.names}
        ema_dir = save_ema(cfg, p, metrics, session.dir, training, scalar_metrics)
        if ema_dir is not None:
            metrics["ema_model_dir"] = str(ema_dir)
        prepare_card(cfg, p, metrics)
        model_dir = p.save(session.dir / "model", metrics=scalar_metrics(metrics), training=training)
        timings["total_s"] = time.perf_counter() - t_start
        metrics["timing"] = timings
        session.finish(scalar_metrics(metrics), artifact=model_dir)
        return TrainResult(session.dir, model_dir, metrics, p, module.history, timings, best)


def reproduce_runner(config: dict, *, root: Path, name: str) -> Path:
    """``visiontune runs reproduce`` for runs of kind ``train``: the same config, a new run."""
    cfg = TrainConfig.from_dict(dict(config), source="run config")
    return train(cfg, run_root=root, run_name=name, progress=False).run_dir


def data_version(config: dict) -> str:
    """The data version a training config resolves to now (``runs reproduce`` compares it)."""
    return load_splits(TrainConfig.from_dict(dict(config), source="run config")).version
