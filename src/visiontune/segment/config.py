"""`SegmentTrainConfig`: the schema of segmenter fine-tuning (``visiontune segment-train``, its
YAML ``segment_train:`` section, ``train_segmenter``). No Lightning import: configs validate
without it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from visiontune._config import load as load_config
from visiontune.engine.options import EngineOptions


class SegmentTrainConfig(EngineOptions):
    """Schema of ``visiontune segment-train`` (and its YAML ``segment_train:`` section); the
    engine's options (precision, devices, DDP, accumulation, early stopping, seed, trackers …)
    are inherited. The defaults are the recipe measured in benchmarks/bench_segment_camvid.py."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="a composed-segmenter YAML or a saved segmenter dir")
    segmenter: dict | None = None  # an inline composed-segmenter config (instead of model=)
    data: str
    val_data: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    val_fraction: float = Field(0.2, ge=0, lt=1)
    classes: list[str] | str | None = None  # names or a names file (default: the dataset's)
    ignore_index: int | None = None  # the data's void label (default: the dataset's / 255)
    image_size: tuple[int, int] | None = None  # (H, W); default: the model's
    augment: Literal["none", "flip", "default", "strong"] = "flip"
    strategy: Literal["linear", "partial", "full", "gradual"] = "full"
    n_stages: int = Field(2, ge=1)
    milestones: list[int] | None = None
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(8, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="decoder / head learning rate")
    encoder_lr_scale: float = Field(0.3, gt=0, description="encoder lr = lr × this")
    lr_decay: float = Field(1.0, gt=0, le=1, description="per encoder group, toward the input")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    loss: Literal["ce", "dice", "ce+dice"] = "ce+dice"
    dice_weight: float = Field(0.5, ge=0)
    # mIoU averages classes, not pixels: weight CE by 1/sqrt(class pixel frequency) (mean 1) so
    # thin rare classes (poles, signs, people) are learnt; CamVid: 0.422 -> 0.503 mIoU (docs/segment.md)
    class_weights: Literal["none", "inverse_sqrt"] | list[float] = "inverse_sqrt"
    name: str | None = Field(None, description="run name (default: generated)")

    def to_dict(self) -> dict:
        """The config as JSON-ready values."""
        return self.model_dump(mode="json")


def parse_config(cfg: Any) -> SegmentTrainConfig:
    """A config object, dict or YAML path (a ``segment_train:`` section or the whole file)."""
    return load_config(SegmentTrainConfig, cfg, section="segment_train", what="segment-train config")
