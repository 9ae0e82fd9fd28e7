"""`visiontune train`, `visiontune lr-find`, `visiontune recommend`: thin calls of visiontune.adapt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from visiontune.cli.options import TrustPickle
from visiontune.errors import ConfigError


def _overrides(**kw: Any) -> dict:
    """Options the user gave (None = not given), with CLI spellings turned into config values."""
    out = {k: v for k, v in kw.items() if v is not None}
    if "milestones" in out:
        try:
            out["milestones"] = [int(x) for x in str(out["milestones"]).split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--milestones: expected comma-separated epochs like 2,4,6, got {kw['milestones']!r}"
            ) from None
    if "trackers" in out:
        out["trackers"] = [t.strip() for t in str(out["trackers"]).split(",") if t.strip()]
    if "devices" in out and str(out["devices"]).isdigit():
        out["devices"] = int(out["devices"])
    return out


def _config(config: Path | None, overrides: dict, resume: Path | None = None):
    """The training config: --config YAML, else the options given, else (with --resume RUN) the
    resumed run's own config.yaml — each with the options given on top."""
    from visiontune.adapt import TrainConfig  # Lightning: imported when a command trains

    if config is not None:
        return TrainConfig.from_yaml(config, overrides)
    missing = [k for k in ("model", "data") if k not in overrides]
    if missing and resume is not None:
        run_dir = resume.parent.parent if resume.is_file() else resume
        if (run_dir / "config.yaml").is_file():
            overrides = {"name": None, **overrides}  # the resumed run gets a name of its own
            return TrainConfig.from_yaml(run_dir / "config.yaml", overrides)
    if missing:
        raise ConfigError(
            f"give --{' and --'.join(missing)} (or --config x.yaml, or --resume RUN to continue a run from its own config)"
        )
    return TrainConfig.from_dict(overrides, source="command line")


def register(app: typer.Typer) -> None:
    """Add the ``train``, ``lr-find`` and ``recommend`` commands to ``app``."""

    @app.command("train")
    def train_cmd(
        model: str | None = typer.Option(None, "--model", "-m", help="model id, e.g. timm:resnet18"),
        data: str | None = typer.Option(None, "--data", "-d", help="image folder / CSV / manifest / torchvision:NAME"),
        strategy: str | None = typer.Option(None, help="linear | partial | full | gradual"),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (options below override it)"),
        epochs: int | None = typer.Option(None),
        batch_size: int | None = typer.Option(None, "--batch-size", "-b"),
        lr: float | None = typer.Option(None, help="head lr; group k steps toward the input gets lr*lr_decay^k"),
        head_lr: float | None = typer.Option(None),
        lr_decay: float | None = typer.Option(None, help="per layer group toward the input (default 0.1)"),
        optimizer: str | None = typer.Option(None, help="adamw | sgd"),
        weight_decay: float | None = typer.Option(None),
        schedule: str | None = typer.Option(None, help="cosine | onecycle | constant"),
        warmup_epochs: float | None = typer.Option(None),
        n_stages: int | None = typer.Option(None, help="partial: last N stages train"),
        milestones: str | None = typer.Option(None, help="gradual: epochs, e.g. 2,4,6"),
        feature_cache: str | None = typer.Option(None, help="linear: memory | disk | off"),
        image_size: int | None = typer.Option(None),
        augment: str | None = typer.Option(None, help="none | light | default | strong"),
        weights: str | None = typer.Option(None, help="local weights file"),
        pretrained: bool | None = typer.Option(None, "--pretrained/--random-init"),
        head_dropout: float | None = typer.Option(None),
        head_hidden: int | None = typer.Option(None),
        precision: str | None = typer.Option(None, help="auto | 32 | bf16 | fp16"),
        accelerator: str | None = typer.Option(None),
        devices: str | None = typer.Option(None),
        num_nodes: int | None = typer.Option(None),
        ddp_strategy: str | None = typer.Option(None, help="Lightning strategy, e.g. ddp"),
        accumulate: int | None = typer.Option(None),
        early_stopping: int | None = typer.Option(None, help="patience in epochs"),
        seed: int | None = typer.Option(None),
        deterministic: bool | None = typer.Option(None, "--deterministic/--no-deterministic"),
        num_workers: int | None = typer.Option(None),
        task: str | None = typer.Option(None, help="multiclass | multilabel (CSV path,labels or label folders)"),
        loss: str | None = typer.Option(None, help="auto | ce | bce | asl"),
        class_weights: str | None = typer.Option(None, "--class-weights", help="auto: from the training counts"),
        sampler: str | None = typer.Option(None, help="shuffle | balanced"),
        logit_adjustment: float | None = typer.Option(None, help="tau of the logit-adjusted loss (1.0 typical)"),
        label_smoothing: float | None = typer.Option(None),
        ema: bool | None = typer.Option(None, "--ema/--no-ema", help="EMA of the weights, evaluated and saved too"),
        ema_decay: float | None = typer.Option(None),
        mixup: float | None = typer.Option(None, help="mixup alpha (0: off)"),
        cutmix: float | None = typer.Option(None, help="cutmix alpha (0: off)"),
        tta: str | None = typer.Option(None, help="final metrics with test-time augmentation: none | flip | crops"),
        monitor: str | None = typer.Option(None, help="auto | val/acc | val/loss | val/balanced_acc | val/map"),
        teacher: str | None = typer.Option(None, help="distil from this frozen model"),
        kd_temperature: float | None = typer.Option(None),
        kd_alpha: float | None = typer.Option(None),
        trackers: str | None = typer.Option(None, help="comma-separated: tensorboard,mlflow,wandb"),
        name: str | None = typer.Option(None, help="run name"),
        runs: Path = typer.Option(Path("runs"), "--out", "-o", "--runs", help="folder that holds the runs"),
        resume: Path | None = typer.Option(None, help="a run folder or checkpoint to continue from"),
        json_out: bool = typer.Option(False, "--json", help="print the final metrics as JSON"),
        trust_pickle: bool = TrustPickle,
    ) -> None:
        """Fine-tune a model on an image classification data set."""
        from visiontune.adapt import train

        ov = _overrides(
            model=model,
            data=data,
            strategy=strategy,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            head_lr=head_lr,
            lr_decay=lr_decay,
            optimizer=optimizer,
            weight_decay=weight_decay,
            schedule=schedule,
            warmup_epochs=warmup_epochs,
            n_stages=n_stages,
            milestones=milestones,
            feature_cache=feature_cache,
            image_size=image_size,
            augment=augment,
            weights=weights,
            pretrained=pretrained,
            head_dropout=head_dropout,
            head_hidden=head_hidden,
            precision=precision,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            ddp_strategy=ddp_strategy,
            accumulate=accumulate,
            early_stopping=early_stopping,
            seed=seed,
            deterministic=deterministic,
            num_workers=num_workers,
            task=task,
            loss=loss,
            class_weights=class_weights,
            sampler=sampler,
            logit_adjustment=logit_adjustment,
            label_smoothing=label_smoothing,
            ema=ema,
            ema_decay=ema_decay,
            mixup=mixup,
            cutmix=cutmix,
            tta=tta,
            monitor=monitor,
            teacher=teacher,
            kd_temperature=kd_temperature,
            kd_alpha=kd_alpha,
            trackers=trackers,
            name=name,
        )
        cfg = _config(config, ov, resume)
        result = train(cfg, run_root=runs, resume=resume, trust_pickle=trust_pickle)
        if result.model_dir is None:  # a DDP worker process
            return
        m = result.metrics
        typer.echo(f"run: {result.run_dir}")
        typer.echo(f"model: {result.model_dir}  (visiontune predict {result.model_dir} IMAGES...)")
        if "val/confusion_matrix_png" in m:
            typer.echo(f"confusion matrix: {m['val/confusion_matrix_png']}")
        if m.get("ema_model_dir"):
            typer.echo(f"EMA weights: {m['ema_model_dir']}")
        if json_out:
            typer.echo(json.dumps({k: v for k, v in m.items()}, indent=2, default=str))

    @app.command("lr-find")
    def lr_find_cmd(
        model: str | None = typer.Option(None, "--model", "-m"),
        data: str | None = typer.Option(None, "--data", "-d"),
        strategy: str | None = typer.Option(None),
        config: Path | None = typer.Option(None, "--config", "-c"),
        batch_size: int | None = typer.Option(None, "--batch-size", "-b"),
        image_size: int | None = typer.Option(None),
        weights: str | None = typer.Option(None),
        pretrained: bool | None = typer.Option(None, "--pretrained/--random-init"),
        optimizer: str | None = typer.Option(None),
        lr_decay: float | None = typer.Option(None),
        n_stages: int | None = typer.Option(None),
        out: Path = typer.Option(Path("lr_find.png"), help="loss-vs-LR plot (PNG)"),
        steps: int = typer.Option(100, help="number of steps from start to end lr"),
        start_lr: float = typer.Option(1e-7),
        end_lr: float = typer.Option(1.0),
        trust_pickle: bool = TrustPickle,
    ) -> None:
        """LR range test from 1e-7 to 1: loss-vs-LR plot and a suggested learning rate."""
        from visiontune.adapt.lr_find import lr_find_config

        ov = _overrides(
            model=model,
            data=data,
            strategy=strategy,
            batch_size=batch_size,
            image_size=image_size,
            weights=weights,
            pretrained=pretrained,
            optimizer=optimizer,
            lr_decay=lr_decay,
            n_stages=n_stages,
        )
        cfg = _config(config, ov)
        res = lr_find_config(cfg, out=out, num_steps=steps, start_lr=start_lr, end_lr=end_lr, trust_pickle=trust_pickle)
        typer.echo(f"steps: {len(res.lrs)} (lr {res.lrs[0]:.1e} .. {res.lrs[-1]:.1e})" if res.lrs else "steps: 0")
        if res.suggestion is None:
            typer.echo("no suggestion: too few steps before the loss diverged; use more data or --steps")
        else:
            typer.echo(f"suggested lr: {res.suggestion:.3g}  (steepest descent; loss lowest at {res.min_loss_lr:.3g})")
        typer.echo(f"plot: {res.plot}")

    @app.command("recommend")
    def recommend_cmd(
        data: str = typer.Argument(..., help="image folder / CSV / manifest"),
        model: str = typer.Option(..., "--model", "-m"),
        weights: str | None = typer.Option(None),
        pretrained: bool = typer.Option(
            True, "--pretrained/--random-init", help="--random-init measures a random-feature baseline"
        ),
        per_class: int = typer.Option(20, help="images per class used to measure feature separability"),
        seed: int = typer.Option(0),
        json_out: bool = typer.Option(False, "--json"),
        trust_pickle: bool = TrustPickle,
    ) -> None:
        """Suggest a strategy from images per class and how separable the classes are under the
        model's frozen features; prints the reasoning."""
        from visiontune.adapt import recommend

        rec = recommend(
            data,
            model,
            weights=weights,
            pretrained=pretrained,
            per_class=per_class,
            seed=seed,
            trust_pickle=trust_pickle,
        )
        if json_out:
            typer.echo(json.dumps(rec.to_dict(), indent=2))
            return
        for r in rec.reasons:
            typer.echo(f"- {r}")
        opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in rec.options.items())
        typer.echo(f"recommended: --strategy {rec.strategy} {opts}".rstrip())
