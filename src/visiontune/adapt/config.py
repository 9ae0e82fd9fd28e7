"""`TrainConfig`: the one schema behind `visiontune.adapt.train`, `visiontune train --config x.yaml`
and the `train:` section of `visiontune run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from visiontune._config import load, validate
from visiontune.engine.options import EngineOptions

Strategy = Literal["linear", "partial", "full", "gradual"]
Monitor = Literal["auto", "val/acc", "val/loss", "val/balanced_acc", "val/map", "val/f1_macro"]


class TrainConfig(EngineOptions):
    """Everything a fine-tuning run needs (the engine's options included). Unknown keys are
    refused (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    # what to adapt
    model: str = Field(description="model id, e.g. 'timm:resnet18' or a saved model directory")
    weights: str | None = Field(None, description="local weights file for the model (offline)")
    pretrained: bool = Field(True, description="start from pretrained weights (False: random init)")
    head_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    head_hidden: int | None = Field(None, gt=0, description="hidden width of an MLP head")

    # data
    data: str = Field(description="image folder (train/ val/), CSV, manifest JSON or torchvision:NAME")
    data_root: str | None = None
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = 0
    image_size: int | None = Field(None, gt=0, description="override the model's input size")
    augment: Literal["none", "light", "default", "strong"] = "default"
    validate_images: bool = Field(
        True,
        description="decode every image once before training; undecodable files are dropped and listed in run.json",
    )

    task: Literal["multiclass", "multilabel"] = Field(
        "multiclass",
        description="multilabel: several labels per image (CSV 'labels' column or a folder of label folders)",
    )

    # strategy
    strategy: Strategy = "full"
    n_stages: int = Field(2, ge=0, description="partial: number of last stages to train")
    milestones: list[int] | None = Field(
        None, description="gradual: epochs at which the next stages unfreeze (default: evenly spread)"
    )
    feature_cache: Literal["memory", "disk", "off"] = "disk"
    cache_dir: str | None = None

    # optimisation
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(
        1e-3, gt=0.0, description="learning rate at the head; the group k steps toward the input gets lr * lr_decay**k"
    )
    head_lr: float | None = Field(None, gt=0.0, description="learning rate of the head if it differs from lr")
    lr_decay: float = Field(0.1, gt=0.0, le=1.0, description="factor per layer group toward the input")
    weight_decay: float = Field(0.01, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    loss: Literal["auto", "ce", "bce", "asl"] = Field(
        "auto", description="auto: cross-entropy (multiclass) / BCE (multilabel); asl: asymmetric loss (multilabel)"
    )
    asl_gamma_neg: float = Field(4.0, ge=0.0, description="asl: focusing on negatives")
    asl_gamma_pos: float = Field(0.0, ge=0.0, description="asl: focusing on positives")
    asl_clip: float = Field(0.05, ge=0.0, lt=1.0, description="asl: probability margin shifted off easy negatives")

    # imbalance
    class_weights: Literal["auto"] | list[float] | None = Field(
        None, description="'auto': n / (classes * count) from the training counts; or one weight per class"
    )
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle", description="balanced: draw every class equally often (seeded by (seed, epoch), resumable)"
    )
    logit_adjustment: float = Field(
        0.0, ge=0.0, description="tau of the logit-adjusted loss (tau * log prior added in training; 1.0 typical)"
    )

    # recipe tricks
    ema: bool = Field(False, description="keep an exponential moving average of the weights; evaluated and saved too")
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0)
    mixup: float = Field(0.0, ge=0.0, description="mixup alpha (0: off); on the cached probe it mixes features")
    cutmix: float = Field(0.0, ge=0.0, description="cutmix alpha (0: off); needs images (not the cached probe)")
    mix_prob: float = Field(1.0, ge=0.0, le=1.0, description="fraction of batches mixed when mixup/cutmix is on")
    tta: Literal["none", "flip", "crops"] = Field(
        "none", description="test-time augmentation of the final metrics: flip, or 5 crops x flip"
    )
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)

    # engine (precision, devices, DDP, accumulation, clipping, early stopping, seed, ...: EngineOptions)
    channels_last: bool | None = Field(None, description="default: on when training on a GPU")
    monitor: Monitor = Field("auto", description="auto: val/acc (multiclass) or val/map (multilabel)")

    # distillation
    teacher: str | None = Field(None, description="model id / saved dir of a frozen teacher")
    teacher_weights: str | None = None
    kd_temperature: float = Field(4.0, gt=0.0)
    kd_alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the KD term (1 - alpha: CE)")

    # bookkeeping
    name: str | None = Field(None, description="run name (default: generated)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.milestones is not None:
            if sorted(self.milestones) != self.milestones or len(set(self.milestones)) != len(self.milestones):
                raise ValueError("milestones must be strictly increasing epochs, e.g. [2, 4, 6]")
            if any(m < 1 or m >= self.epochs for m in self.milestones):
                raise ValueError(f"milestones must lie in 1..epochs-1 (epochs={self.epochs})")
        multi = self.task == "multilabel"
        if multi and self.loss == "ce":
            raise ValueError("loss 'ce' is for one label per image; multilabel uses bce or asl")
        if not multi and self.loss in ("bce", "asl"):
            raise ValueError(f"loss {self.loss!r} is for task: multilabel")
        if multi and (self.mixup or self.cutmix or self.sampler == "balanced" or self.logit_adjustment):
            raise ValueError("mixup / cutmix / sampler: balanced / logit_adjustment are for multiclass tasks")
        if multi and self.teacher:
            raise ValueError("distillation (teacher) is for multiclass tasks")
        if multi and self.monitor in ("val/acc", "val/balanced_acc"):
            raise ValueError(f"monitor {self.monitor!r} is a multiclass metric; multilabel: val/map, val/f1_macro")
        if not multi and self.monitor in ("val/map", "val/f1_macro"):
            raise ValueError(f"monitor {self.monitor!r} is a multilabel metric")
        return self

    @property
    def monitor_metric(self) -> str:
        """The metric best checkpoints and early stopping watch."""
        if self.monitor != "auto":
            return self.monitor
        return "val/map" if self.task == "multilabel" else "val/acc"

    @property
    def tricks(self) -> dict[str, Any]:
        """The recipe switches of this run (recorded in run.json)."""
        return {
            "ema": self.ema_decay if self.ema else None,
            "mixup": self.mixup or None,
            "cutmix": self.cutmix or None,
            "label_smoothing": self.label_smoothing or None,
            "tta": None if self.tta == "none" else self.tta,
            "class_weights": self.class_weights,
            "sampler": self.sampler,
            "logit_adjustment": self.logit_adjustment or None,
        }

    @property
    def effective_head_lr(self) -> float:
        """The head's learning rate: ``head_lr`` when set, else ``lr``."""
        return self.head_lr if self.head_lr is not None else self.lr

    # -- construction helpers that turn pydantic's errors into ConfigError naming the key --
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Validate ``data`` into a `TrainConfig`; bad keys raise ConfigError naming ``source``."""
        return validate(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The ``train:`` section of the YAML at ``path`` (with ``overrides`` applied) as a `TrainConfig`."""
        return load(cls, Path(path), section="train", overrides=overrides)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values (what ``config.yaml`` records)."""
        return self.model_dump(mode="json")
