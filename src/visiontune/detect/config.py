"""`DetectTrainConfig`: the schema of detector fine-tuning (``visiontune detect-train``, its YAML,
``train_detector``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from visiontune._config import load as load_config
from visiontune.engine.options import EngineOptions


class DetectTrainConfig(EngineOptions):
    """Schema of ``visiontune detect-train`` (and its ``--config`` YAML); the engine's options
    (precision, devices, DDP, accumulation, early stopping, seed, trackers …) are inherited."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="torchvision:<arch>, a composed-detector YAML, or a saved detector dir")
    compose: dict | None = None  # an inline composed-detector config (instead of model=YAML)
    data: str
    val_data: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    val_fraction: float = Field(0.2, ge=0, lt=1)
    classes: list[str] | None = None  # keep only these classes (default: all of the dataset)
    pretrained: bool = True
    weights: str | None = None
    trainable_backbone_layers: int | None = None
    anchor_sizes: list | Literal["auto"] | None = None
    aspect_ratios: list | None = None
    min_size: int | None = None
    max_size: int | None = None
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(4, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = 0.9
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float | None = Field(10.0, gt=0.0)
    name: str | None = Field(None, description="run name (default: generated)")
    hflip: float = Field(0.5, ge=0, le=1)
    eval_backend: str = "pycocotools"

    def to_dict(self) -> dict:
        """The config as JSON-ready values."""
        return self.model_dump(mode="json")


def parse_config(cfg: DetectTrainConfig | dict | str | Any) -> DetectTrainConfig:
    """A config object, dict or YAML path (a ``detect_train:`` section or the whole file)."""
    return load_config(DetectTrainConfig, cfg, section="detect_train", what="detect-train config")
