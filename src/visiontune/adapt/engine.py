"""`train()`: fine-tune any classifier on any classification data set, end to end.

load (hub) → data splits (data) → layer groups + strategy → Lightning fit (AMP, channels_last,
accumulation, early stopping, best + last atomic checkpoints, exact resume, DDP) → final top-1 /
top-5 / per-class accuracy + confusion matrix → saved model (``Pretrained.save``) → run record
(track).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visiontune.adapt.config import TrainConfig
from visiontune.adapt.data import EpochSampler, SeededDataset
from visiontune.adapt.groups import LayerGroups, layer_groups
from visiontune.adapt.strategies import default_milestones, param_counts, set_trainable
from visiontune.errors import ConfigError, VisiontuneError
from visiontune.hub.trust import torch_load

RUN_DIR_ENV = "VISIONTUNE_RUN_DIR"  # hands rank 0's run directory to DDP worker processes


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path | None
    metrics: dict
    pretrained: Any
    history: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    best_checkpoint: Path | None = None


# -- small helpers --------------------------------------------------------------------------------
def global_rank() -> int:
    """This process's rank from the launcher's environment (torchrun, SLURM, Lightning)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    return local + node * 10_000 if node else local


def resolve_precision(precision: str, accelerator: str) -> str:
    gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if precision == "32" or (precision == "auto" and not gpu):
        return "32-true"
    if precision == "fp16":
        return "16-mixed"
    if precision == "bf16":
        return "bf16-mixed"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _device(accelerator: str) -> torch.device:
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return torch.device("cuda")
    return torch.device("cpu")


def _head_path(p) -> str:
    """Path of the whole classification head: the module the hub put in place (a dropout / MLP head
    included), else the hub's ``find_head`` answer."""
    from visiontune.hub.heads import find_head

    path = (getattr(p.card, "head", None) or {}).get("path")
    if path:
        try:
            _get_module(p.model, path)
            return path
        except (AttributeError, IndexError):
            pass
    return find_head(p.model)[0]


def _get_module(model: nn.Module, path: str) -> nn.Module:
    m = model
    for part in path.split("."):
        m = m[int(part)] if part.lstrip("-").isdigit() else getattr(m, part)
    return m


def with_image_size(preprocess, size: int, crop_pct: float | None = None):
    """The same preprocessing at another input size (resize keeps the crop ratio)."""
    if isinstance(preprocess.resize, tuple):
        return dataclasses.replace(preprocess, resize=(size, size), crop=None)
    old_crop = preprocess.crop[0] if preprocess.crop else None
    ratio = crop_pct or (old_crop / preprocess.resize if old_crop and preprocess.resize else 0.875)
    return dataclasses.replace(preprocess, resize=int(round(size / ratio)), crop=(size, size))


def load_pretrained(cfg: TrainConfig, classes: list[str], trust_pickle: bool = False):
    """The model through the hub, with a new head for ``classes``."""
    from visiontune.hub import load

    head = {"dropout": cfg.head_dropout, "hidden": cfg.head_hidden} if (cfg.head_dropout or cfg.head_hidden) else None
    p = load(
        cfg.model,
        num_classes=len(classes),
        class_names=list(classes),
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        head=head,
        trust_pickle=trust_pickle,
    )
    if p.card.task not in ("classification", None):
        raise ConfigError(
            f"key 'model': {cfg.model} is a {p.card.task} model; train classifiers here (detectors: visiontune.detect)"
        )
    if cfg.image_size:
        p.preprocess = with_image_size(p.preprocess, cfg.image_size, p.card.crop_pct)
    return p


def load_splits(cfg: TrainConfig):
    from visiontune.data import load_classification

    splits = load_classification(cfg.data, root=cfg.data_root, val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    if splits.train is None or len(splits.train) == 0:
        raise ConfigError(f"key 'data': {cfg.data} has no training images")
    if splits.val is None or len(splits.val) == 0:
        raise ConfigError(
            f"key 'data': {cfg.data} has no validation images; add a val/ folder or a split "
            "column, or raise val_fraction"
        )
    return splits


def describe_groups(model: nn.Module, groups: LayerGroups, console=None) -> tuple[int, int]:
    """Print trainable vs total parameters (per group and overall); return (trainable, total)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"layer groups ({groups.source})", show_lines=False)
    for c in ("group", "trainable", "total"):
        table.add_column(c, justify="right" if c != "group" else "left")
    for name, tr, tot in groups.summary(model):
        table.add_row(name, f"{tr:,}", f"{tot:,}")
    tr, tot = param_counts(model)
    table.add_row("[bold]all", f"[bold]{tr:,}", f"[bold]{tot:,}")
    console.print(table)
    console.print(f"trainable parameters: {tr:,} of {tot:,} ({100.0 * tr / max(tot, 1):.2f}%)")
    return tr, tot


def _hp(cfg: TrainConfig, milestones: list[int] | None) -> dict:
    keys = (
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
    d = {k: getattr(cfg, k) for k in keys}
    d["milestones"] = milestones
    return d


def _loader(
    ds, batch_size: int, shuffle: bool, seed: int, num_workers: int, train: bool, seeded: bool = True
) -> DataLoader:
    sampler = EpochSampler(len(ds), seed=seed, shuffle=shuffle, pad=train)
    return DataLoader(
        SeededDataset(ds, seed, seeded),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
    )


# -- the run ----------------------------------------------------------------------------------------
def _open_run(cfg: TrainConfig, run_root: str | os.PathLike, run_name: str | None, resume_dir: Path | None, p, splits):
    """A new run record. Resuming opens the old run again where track supports it; otherwise a
    new run ``<old>-resumed`` continues from the old run's last checkpoint (runs are never
    overwritten) and records where it came from."""
    from visiontune.track import Run

    kwargs = dict(
        config=cfg.to_dict(),
        model_id=cfg.model,
        weights_sha256=p.card.weights_sha256,
        data_version=splits.version,
        seed=cfg.seed,
        trackers=tuple(cfg.trackers),
        command=list(sys.argv),
        kind="train",
        deterministic=cfg.deterministic,
        monitor=cfg.monitor,
        mode="max" if cfg.monitor == "val/acc" else "min",
    )
    if resume_dir is not None:
        root, name = resumed_run_name(resume_dir)
        return Run.start(root=root, name=name, tags={"resumed_from": str(resume_dir)}, **kwargs)
    return Run.start(root=run_root, name=run_name, **kwargs)


def resumed_run_name(resume_dir: Path) -> tuple[Path, str]:
    """(root, name) of the run that continues ``resume_dir``: ``<old>-resumed`` (``-2``, ``-3``…
    when taken), beside it. Runs are never overwritten."""
    root, base = resume_dir.parent, f"{resume_dir.name}-resumed"
    return root, next(n for n in [base] + [f"{base}-{i}" for i in range(2, 10_000)] if not (root / n).exists())


def _adopt_checkpoints(last: Path, ckpt_dir: Path, *, trust_pickle: bool = False) -> Path:
    """Copy a previous run's last (and best) checkpoint into this run's folder, pointing the
    checkpoint callback's state at the copies, so best-model tracking continues exactly and the
    new run is self-contained. Returns the copied last checkpoint."""
    import shutil

    from visiontune.adapt.callbacks import AtomicCheckpointIO

    io = AtomicCheckpointIO(trust_pickle=trust_pickle)
    ckpt = io.load_checkpoint(last)
    old_dir = str(last.parent)
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    def moved(p: Any) -> Any:
        return str(ckpt_dir / Path(p).name) if isinstance(p, str) and p and Path(p).parent == Path(old_dir) else p

    for state in (ckpt.get("callbacks") or {}).values():
        if isinstance(state, dict) and "dirpath" in state:
            for k in ("best_model_path", "last_model_path", "kth_best_model_path"):
                if k in state:
                    src = state[k]
                    if isinstance(src, str) and src and Path(src).is_file() and Path(src) != last:
                        shutil.copy2(src, ckpt_dir / Path(src).name)
                    state[k] = moved(src)
            if isinstance(state.get("best_k_models"), dict):
                state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
            state["dirpath"] = str(ckpt_dir)
    target = ckpt_dir / "last.ckpt"
    io.save_checkpoint(ckpt, target)
    return target


def _resume_target(resume: Any, run_root, run_name: str | None) -> tuple[Path | None, Path | None]:
    """(run dir, checkpoint) from ``resume``: a run dir, a .ckpt file, or True (the named run)."""
    if resume in (None, False):
        return None, None
    if resume is True:
        if not run_name:
            raise ConfigError("resume=True needs the run's name (run_name= or the config's 'name')")
        path = Path(run_root) / run_name
    else:
        path = Path(resume)
    if path.is_file():
        return path.parent.parent, path
    ckpt = path / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise VisiontuneError(
            f"cannot resume: {ckpt} does not exist (the run saved no checkpoint yet); start it again without --resume"
        )
    return path, ckpt


def train(
    cfg: TrainConfig | dict,
    run_root: str | os.PathLike = "runs",
    run_name: str | None = None,
    resume: str | os.PathLike | bool | None = None,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    console=None,
    *,
    trust_pickle: bool = False,
) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; see :class:`TrainConfig` for every option.

    ``trust_pickle``: allow unpickling the files this training reads (``weights``, the teacher's
    weights, a ``resume`` checkpoint written elsewhere); it is the caller's word, never the config's.

    ``resume``: a run directory, a checkpoint, or True (the run called ``run_name``); training
    continues from the last checkpoint and ends as the uninterrupted run would (same seed).
    ``callbacks``: extra Lightning callbacks. Returns the run dir, the saved model dir, the final
    metrics and the trained :class:`~visiontune.Pretrained`.
    """
    import lightning as L

    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    run_name = run_name or cfg.name
    rank = global_rank()
    is_zero = rank == 0
    from rich.console import Console

    console = console or Console(quiet=not is_zero)
    t_start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    multi = (
        str(cfg.ddp_strategy).startswith(("ddp", "fsdp"))
        or cfg.num_nodes > 1
        or (isinstance(cfg.devices, int) and cfg.devices > 1)
    )
    if multi and cfg.strategy == "gradual":
        raise ConfigError(
            "key 'strategy': gradual unfreezing changes the trainable set during training, which "
            "DDP's gradient buckets cannot follow; use full / partial / linear with several "
            "devices, or train gradual on one device"
        )
    resume_dir, ckpt_path = _resume_target(resume, run_root, run_name)
    splits = load_splits(cfg)
    classes = list(splits.classes)
    p = load_pretrained(cfg, classes, trust_pickle)
    model = p.model
    head_path = _head_path(p)
    groups = layer_groups(model, head_path)
    milestones = cfg.milestones
    if cfg.strategy == "gradual" and milestones is None:
        milestones = default_milestones(cfg.epochs, groups.n_backbone)
    hp = _hp(cfg, milestones)

    train_tf = p.preprocess if cfg.augment == "none" else p.train_transform(cfg.augment)
    train_ds = splits.train.with_transform(train_tf)
    val_ds = splits.val.with_transform(p.preprocess)
    use_cache = cfg.strategy == "linear" and cfg.feature_cache != "off" and cfg.teacher is None

    # run record: rank 0 creates it; DDP workers write into the same directory
    run = None
    if is_zero:
        run = _open_run(cfg, run_root, run_name, resume_dir, p, splits)
        run_dir = Path(run.dir)
        if multi:  # Lightning's launcher copies the environment into the worker processes it starts
            os.environ[RUN_DIR_ENV] = str(run_dir)
    else:
        env_dir = os.environ.get(RUN_DIR_ENV)
        if env_dir:
            run_dir = Path(env_dir)
        elif run_name:
            run_dir = Path(run_root) / run_name
        else:
            raise ConfigError(
                "multi-process training started by torchrun / SLURM needs a run name "
                "(--name / 'name:') so every process writes to the same run"
            )
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_path is not None and is_zero and resume_dir is not None and run_dir != resume_dir:
        ckpt_path = _adopt_checkpoints(ckpt_path, ckpt_dir, trust_pickle=trust_pickle)
    timings: dict[str, float] = {}
    try:
        from visiontune.adapt.module import AdaptModule

        teacher, teacher_input = _load_teacher(cfg, p, classes, trust_pickle) if cfg.teacher else (None, None)
        if use_cache:
            module, train_loader, val_loader, feats = _cached_setup(
                cfg, p, head_path, splits, train_ds, val_ds, hp, timings, console, progress and is_zero
            )
        else:
            module = AdaptModule(
                model,
                groups,
                len(classes),
                hp,
                teacher=teacher,
                teacher_input=teacher_input,
                channels_last=_channels_last(cfg),
            )
            train_loader = _loader(train_ds, cfg.batch_size, True, cfg.seed, cfg.num_workers, True)
            val_loader = _loader(val_ds, cfg.batch_size, False, cfg.seed, cfg.num_workers, False)
            feats = None
        module.sampler = train_loader.sampler
        if is_zero:
            describe_groups(model, groups, console)
            if milestones:
                console.print(f"gradual unfreezing at epochs {milestones} (one group each, head side first)")
        t0 = time.perf_counter()
        with _quiet_lightning():
            trainer, ckpt_cb = _make_trainer(
                cfg,
                run_dir,
                ckpt_dir,
                run,
                list(callbacks),
                progress and is_zero,
                console,
                single_device=use_cache,
                trust_pickle=trust_pickle,
            )
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
        timings["fit_s"] = time.perf_counter() - t0
        if trainer.interrupted:
            raise KeyboardInterrupt
        best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else None
        if not trainer.is_global_zero:
            return TrainResult(run_dir, None, {}, p, module.history, timings, best)
        if best is not None and best.is_file():
            state = torch_load(best, trust_pickle=trust_pickle, what="training checkpoint")["state_dict"]
            module.load_state_dict(state)
        module.to("cpu" if not torch.cuda.is_available() else module.device)
        t0 = time.perf_counter()
        metrics = _final_metrics(cfg, p, module, head_path, val_ds, splits, feats, run_dir, classes, console)
        timings["eval_s"] = time.perf_counter() - t0
        metrics["epochs_trained"] = trainer.current_epoch
        if best is not None:
            metrics["best_checkpoint"] = str(best)
        p.model.eval()
        model_dir = p.save(
            run_dir / "model",
            metrics=_scalar(metrics),
            training={**cfg.to_dict(), "milestones": milestones, "layer_groups": groups.names},
        )
        timings["total_s"] = time.perf_counter() - t_start
        metrics["timing"] = timings
        if run is not None:
            if hasattr(run, "log_artifact"):
                run.log_artifact(model_dir)
            run.finish("completed", summary=_scalar(metrics))
        return TrainResult(run_dir, model_dir, metrics, p, module.history, timings, best)
    except KeyboardInterrupt:
        if run is not None:
            run.finish("interrupted", reason="KeyboardInterrupt")
        raise
    except BaseException as e:
        if run is not None:
            run.finish("failed", error=e)
        raise
    finally:
        if is_zero and multi:
            os.environ.pop(RUN_DIR_ENV, None)


@contextlib.contextmanager
def _quiet_lightning():
    """Hide Lightning's banner lines and the warning about frozen modules in eval mode (on purpose
    here: frozen BatchNorm keeps its statistics)."""
    loggers = [
        logging.getLogger(n)
        for n in (
            "lightning.pytorch.utilities.rank_zero",
            "lightning.fabric.utilities.rank_zero",
            "lightning.pytorch.accelerators.cuda",
        )
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)


def _scalar(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _channels_last(cfg: TrainConfig) -> bool:
    return cfg.channels_last if cfg.channels_last is not None else _device(cfg.accelerator).type == "cuda"


def _make_trainer(
    cfg: TrainConfig,
    run_dir: Path,
    ckpt_dir: Path,
    run,
    callbacks: list,
    progress: bool,
    console,
    single_device: bool = False,
    trust_pickle: bool = False,
):
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from visiontune.adapt.callbacks import AtomicCheckpointIO, EpochTable

    mode = "max" if cfg.monitor == "val/acc" else "min"
    ckpt_cb = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="best",
        monitor=cfg.monitor,
        mode=mode,
        save_top_k=1,
        save_last=False,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # Lightning's save_last only writes when a top-k file is written: keep "last" separately, every epoch
    last_cb = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    cbs: list = [ckpt_cb, last_cb, EpochTable(console)]
    if cfg.early_stopping:
        cbs.append(EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.early_stopping))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        cbs.append(RichProgressBar(leave=False))
    if run is not None and hasattr(run, "lightning_callbacks"):
        cbs += list(run.lightning_callbacks())
    cbs += callbacks
    kw: dict[str, Any] = {}
    if single_device:
        kw.update(devices=1, strategy="auto", num_nodes=1)
    else:
        kw.update(devices=cfg.devices, strategy=cfg.ddp_strategy, num_nodes=cfg.num_nodes)
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        accumulate_grad_batches=cfg.accumulate,
        gradient_clip_val=cfg.grad_clip,
        deterministic=cfg.deterministic,
        callbacks=cbs,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO(trust_pickle=trust_pickle)],
        use_distributed_sampler=False,
        limit_train_batches=cfg.max_train_batches,
        log_every_n_steps=1,
        **kw,
    )
    return trainer, ckpt_cb


def _cached_setup(cfg, p, head_path, splits, train_ds, val_ds, hp, timings, console, progress):
    """Linear strategy fast path: backbone features once, then a head-only module on tensors."""
    from visiontune.adapt.features import cache_key, cached_features, weights_hash
    from visiontune.adapt.module import AdaptModule

    model = p.model
    set_trainable(model, layer_groups(model, head_path), 0)  # the backbone is frozen: only the head trains
    device = _device(cfg.accelerator)
    model.to(device)
    bh = weights_hash(model, exclude_prefix=head_path)
    eval_train = splits.train.with_transform(p.preprocess)  # eval preprocessing: no augmentation
    out = {}
    for split, ds in (("train", eval_train), ("val", val_ds)):
        key = cache_key(cfg.model, bh, splits.version, split, ds.paths, p.preprocess)
        with _progress(console, f"features ({split})", len(ds), progress) as cb:
            f = cached_features(
                model,
                head_path,
                ds,
                key,
                mode=cfg.feature_cache,
                cache_dir=cfg.cache_dir,
                batch_size=max(cfg.batch_size, 64),
                num_workers=cfg.num_workers,
                device=device,
                progress=cb,
            )
        timings[f"features_{split}_s"] = f.seconds
        console.print(
            f"features ({split}): {tuple(f.x.shape)} " + ("from cache" if f.cached else f"computed in {f.seconds:.1f}s")
        )
        out[split] = f
    model.to("cpu")
    head = _get_module(model, head_path)
    names = [n for n, _ in head.named_parameters()]
    head_groups = LayerGroups(["head"], [names], head_path="", source="head-only (cached features)")
    hp = {**hp, "strategy": "full"}
    module = AdaptModule(head, head_groups, len(splits.classes), hp)
    train_loader = _loader(
        TensorDataset(out["train"].x, out["train"].y), cfg.batch_size, True, cfg.seed, 0, True, seeded=False
    )
    val_loader = DataLoader(TensorDataset(out["val"].x, out["val"].y), batch_size=1024, shuffle=False)
    return module, train_loader, val_loader, out


class _progress:
    """A rich progress bar as a ``progress(done, total)`` callback."""

    def __init__(self, console, label: str, total: int, enabled: bool):
        self.console, self.label, self.total, self.enabled = console, label, total, enabled
        self._p = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._p = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._p.start()
        task = self._p.add_task(self.label, total=self.total)
        return lambda done, total: self._p.update(task, completed=done)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.stop()
        return False


def _load_teacher(cfg: TrainConfig, student, classes: list[str], trust_pickle: bool = False):
    from visiontune.adapt.distill import input_adapter
    from visiontune.hub import load

    t = load(cfg.teacher, weights=cfg.teacher_weights, trust_pickle=trust_pickle)
    n = t.card.num_classes
    if n is not None and n != len(classes):
        raise ConfigError(
            f"key 'teacher': {cfg.teacher} predicts {n} classes, the data has {len(classes)}; "
            "distil from a teacher fine-tuned on the same classes (e.g. a saved run's model/)"
        )
    if t.card.class_names and list(t.card.class_names) != list(classes):
        raise ConfigError(
            f"key 'teacher': its classes {t.card.class_names[:5]}... differ in order or names "
            f"from the data's {classes[:5]}..."
        )
    return t.model.eval(), input_adapter(student.preprocess, t.preprocess)


def _final_metrics(cfg, p, module, head_path, val_ds, splits, feats, run_dir: Path, classes, console) -> dict:
    from visiontune.adapt.report import classification_metrics, plot_confusion_matrix, predict_logits
    from visiontune.hub.pretrained import logits_of

    model = p.model.eval()
    device = next(model.parameters()).device
    metrics: dict = {}
    evals = [("val", val_ds, feats["val"] if feats else None)]
    if splits.test is not None and len(splits.test):
        evals.append(("test", splits.test.with_transform(p.preprocess), None))
    for split, ds, f in evals:
        if f is not None:
            head = _get_module(model, head_path).eval()
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
        _print_final(console, split, m, classes)
    return metrics


def _print_final(console, split: str, m: dict, classes: list[str]) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{split}[/]: top-1 {m[f'{split}/acc']:.4f}  top-5 {m[f'{split}/top5']:.4f}  "
        f"balanced {m[f'{split}/balanced_acc']:.4f}  (n={m[f'{split}/n']})",
        highlight=False,
    )
    per = m[f"{split}/per_class_acc"]
    if len(classes) <= 50:
        t = Table(title=f"{split} per-class accuracy")
        t.add_column("class")
        t.add_column("accuracy", justify="right")
        for c in classes:
            t.add_row(c, "-" if per[c] is None else f"{per[c]:.4f}")
        console.print(t)


def reproduce_runner(config: dict, *, root: Path, name: str) -> Path:
    """``visiontune runs reproduce`` for runs of kind ``train``: the same config, a new run."""
    cfg = TrainConfig.from_dict({k: v for k, v in dict(config).items()}, source="run config")
    return train(cfg, run_root=root, run_name=name, progress=False).run_dir
