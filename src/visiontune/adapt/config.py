"""`TrainConfig`: the one schema behind `visiontune.adapt.train`, `visiontune train --config x.yaml`
and the `train:` section of `visiontune run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from visiontune._config import load, validate
from visiontune.engine.options import EngineOptions

Strategy = Literal["linear", "partial", "full", "gradual"]


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
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0.0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)

    # engine (precision, devices, DDP, accumulation, clipping, early stopping, seed, ...: EngineOptions)
    channels_last: bool | None = Field(None, description="default: on when training on a GPU")
    monitor: Literal["val/acc", "val/loss"] = "val/acc"

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
        return self

    @property
    def effective_head_lr(self) -> float:
        return self.head_lr if self.head_lr is not None else self.lr

    # -- construction helpers that turn pydantic's errors into ConfigError naming the key --
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        return validate(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        return load(cls, Path(path), section="train", overrides=overrides)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
