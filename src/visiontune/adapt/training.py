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
from typing import Any

import lightning as L
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch.utils.data import DataLoader, TensorDataset

from visiontune.adapt.config import TrainConfig
from visiontune.adapt.features import cache_key, cached_features, weights_hash
from visiontune.adapt.groups import LayerGroups, layer_groups
from visiontune.adapt.module import AdaptModule
from visiontune.adapt.report import classification_metrics, plot_confusion_matrix, predict_logits
from visiontune.adapt.setup import (
    describe_groups,
    get_module,
    head_path,
    load_pretrained,
    load_splits,
    load_teacher,
    skipped_files,
)
from visiontune.adapt.strategies import default_milestones, set_trainable
from visiontune.engine import (
    Session,
    device_for,
    fit,
    global_rank,
    make_trainer,
    seeded_loader,
)
from visiontune.errors import ConfigError
from visiontune.hub.classification import logits_of
from visiontune.hub.trust import torch_load
from visiontune.progress import progress as progress_bar

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
        parts = [f"{k} {m[k]:.4f}" for k in ("val/acc", "val/top5", "val/balanced_acc") if k in m]
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
) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; see :class:`TrainConfig` for every option.

    ``resume``: a run directory, a checkpoint, or True (the run called ``run_name``); training
    continues from the last checkpoint in a new run ``<old>-resumed`` and ends as the
    uninterrupted run would (same seed). ``callbacks``: extra Lightning callbacks.
    ``trust_pickle``: allow unpickling the files this training reads (``weights``, the teacher's
    weights, a ``resume`` checkpoint written elsewhere); it is the caller's word, never the config's.
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
    mode = "max" if cfg.monitor == "val/acc" else "min"
    session = Session.open(
        run_root=run_root,
        run_name=run_name,
        resume_from=resume_from,
        config=cfg,
        kind="train",
        model_id=cfg.model,
        weights_sha256=p.card.weights_sha256,
        data_version=splits.version,
        monitor=cfg.monitor,
        mode=mode,
        tags={"skipped_files": skipped} if skipped else None,
        trust_pickle=trust_pickle,
    )
    timings: dict[str, float] = {}
    with session:
        teacher, teacher_input = load_teacher(cfg, p, classes, trust_pickle) if cfg.teacher else (None, None)
        feats = None
        if use_cache:
            module, train_loader, val_loader, feats = _cached_setup(
                cfg, p, hpath, splits, val_ds, hp, timings, console, progress and is_zero
            )
        else:
            channels_last = (
                cfg.channels_last if cfg.channels_last is not None else device_for(cfg.accelerator).type == "cuda"
            )
            module = AdaptModule(
                model,
                groups,
                len(classes),
                hp,
                teacher=teacher,
                teacher_input=teacher_input,
                channels_last=channels_last,
            )
            train_loader = seeded_loader(
                train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers
            )
            val_loader = seeded_loader(
                val_ds, cfg.batch_size, shuffle=False, seed=cfg.seed, num_workers=cfg.num_workers, train=False
            )
        module.sampler = train_loader.sampler
        if is_zero:
            describe_groups(model, groups, console)
            if milestones:
                console.print(f"gradual unfreezing at epochs {milestones} (one group each, head side first)")
        columns = ["train/loss", "train/acc", "val/loss", "val/acc"] + (["val/top5"] if len(classes) > 5 else [])
        trainer, best_cb = make_trainer(
            cfg,
            epochs=cfg.epochs,
            run_dir=session.dir,
            ckpt_dir=session.ckpt_dir,
            monitor=cfg.monitor,
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
                f", {cfg.monitor} {float(score):.4f})" if score is not None else ")"
            )
        console.print(f"final metrics from {evaluated}; the last epoch's weights stay in checkpoints/last.ckpt")
        module.to("cpu" if not torch.cuda.is_available() else module.device)
        t0 = time.perf_counter()
        metrics = final_metrics(cfg, p, hpath, val_ds, splits, feats, session.dir, console)
        timings["eval_s"] = time.perf_counter() - t0
        metrics["epochs_trained"] = trainer.current_epoch
        metrics["evaluated"] = evaluated
        if best is not None:
            metrics["best_checkpoint"] = str(best)
        p.model.eval()
        model_dir = p.save(
            session.dir / "model",
            metrics=scalar_metrics(metrics),
            training={**cfg.to_dict(), "milestones": milestones, "layer_groups": groups.names},
        )
        timings["total_s"] = time.perf_counter() - t_start
        metrics["timing"] = timings
        session.finish(scalar_metrics(metrics), artifact=model_dir)
        return TrainResult(session.dir, model_dir, metrics, p, module.history, timings, best)


def _cached_setup(cfg, p, hpath, splits, val_ds, hp, timings, console, progress):
    """Linear strategy fast path: backbone features once, then a head-only module on tensors."""
    model = p.model
    set_trainable(model, layer_groups(model, hpath), 0)  # the backbone is frozen: only the head trains
    device = device_for(cfg.accelerator)
    model.to(device)
    bh = weights_hash(model, exclude_prefix=hpath)
    eval_train = splits.train.with_transform(p.preprocess)  # eval preprocessing: no augmentation
    out = {}
    for split, ds in (("train", eval_train), ("val", val_ds)):
        key = cache_key(cfg.model, bh, splits.version, split, ds.paths, p.preprocess)
        with progress_bar(f"features ({split})", len(ds), enabled=progress, console=console) as bar:
            f = cached_features(
                model,
                hpath,
                ds,
                key,
                mode=cfg.feature_cache,
                cache_dir=cfg.cache_dir,
                batch_size=max(cfg.batch_size, 64),
                num_workers=cfg.num_workers,
                device=device,
                progress=bar,
            )
        timings[f"features_{split}_s"] = f.seconds
        how = "from cache" if f.cached else f"computed in {f.seconds:.1f}s"
        console.print(f"features ({split}): {tuple(f.x.shape)} {how}")
        out[split] = f
    model.to("cpu")
    head = get_module(model, hpath)
    names = [n for n, _ in head.named_parameters()]
    head_groups = LayerGroups(["head"], [names], head_path="", source="head-only (cached features)")
    module = AdaptModule(head, head_groups, len(splits.classes), {**hp, "strategy": "full"})
    train_tensors = TensorDataset(out["train"].x, out["train"].y)
    train_loader = seeded_loader(train_tensors, cfg.batch_size, shuffle=True, seed=cfg.seed, seeded=False)
    val_loader = DataLoader(TensorDataset(out["val"].x, out["val"].y), batch_size=1024, shuffle=False)
    return module, train_loader, val_loader, out


def final_metrics(cfg, p, hpath, val_ds, splits, feats, run_dir: Path, console) -> dict:
    """Metrics of the trained model on val (and test when there is one), with confusion PNGs."""
    classes = list(splits.classes)
    model = p.model.eval()
    device = next(model.parameters()).device
    metrics: dict = {}
    evals = [("val", val_ds, feats["val"] if feats else None)]
    if splits.test is not None and len(splits.test):
        evals.append(("test", splits.test.with_transform(p.preprocess), None))
    for split, ds, f in evals:
        if f is not None:
            head = get_module(model, hpath).eval()
            batches = DataLoader(TensorDataset(f.x, f.y), batch_size=1024)
            logits, labels = predict_logits(lambda x, head=head: logits_of(head(x)), batches, device)
        else:
            batches = DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
            logits, labels = predict_logits(lambda x: logits_of(model(x)), batches, device)
        m, cm = classification_metrics(logits, labels, classes, prefix=split)
        metrics.update(m)
        png = plot_confusion_matrix(
            cm, classes, run_dir / "plots" / f"confusion_matrix_{split}.png", title=f"{split} confusion matrix"
        )
        metrics[f"{split}/confusion_matrix_png"] = str(png)
        print_split_metrics(console, split, m, classes)
    return metrics


def print_split_metrics(console: Any, split: str, m: dict, classes: list[str]) -> None:
    """The headline line and (for up to 50 classes) the per-class table of one split."""
    top5 = f"  top-5 {m[f'{split}/top5']:.4f}" if f"{split}/top5" in m else ""
    console.print(
        f"[bold]{split}[/]: top-1 {m[f'{split}/acc']:.4f}{top5}  balanced {m[f'{split}/balanced_acc']:.4f}  "
        f"ECE {m[f'{split}/ece']:.4f}  (n={m[f'{split}/n']})",
        highlight=False,
    )
    if len(classes) > 50:
        return
    t = Table(title=f"{split} per class")
    for c, j in (("class", "left"), ("precision", "right"), ("recall", "right")):
        t.add_column(c, justify=j)
    prec, rec = m[f"{split}/per_class_precision"], m[f"{split}/per_class_recall"]
    for c in classes:
        t.add_row(c, "-" if prec[c] is None else f"{prec[c]:.4f}", "-" if rec[c] is None else f"{rec[c]:.4f}")
    console.print(t)


def reproduce_runner(config: dict, *, root: Path, name: str) -> Path:
    """``visiontune runs reproduce`` for runs of kind ``train``: the same config, a new run."""
    cfg = TrainConfig.from_dict(dict(config), source="run config")
    return train(cfg, run_root=root, run_name=name, progress=False).run_dir


def data_version(config: dict) -> str:
    """The data version a training config resolves to now (``runs reproduce`` compares it)."""
    return load_splits(TrainConfig.from_dict(dict(config), source="run config")).version
