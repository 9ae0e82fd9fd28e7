"""Engine options every training config shares, and how they resolve on this machine. No
Lightning import here: configs validate without it."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, Field


class EngineOptions(BaseModel):
    """Engineering options every training config shares (the task configs inherit them)."""

    precision: Literal["32", "bf16", "fp16", "auto"] = "auto"
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    ddp_strategy: str = Field("auto", description="Lightning strategy, e.g. 'ddp' for multi-GPU / multi-node")
    accumulate: int = Field(1, ge=1, description="gradient accumulation steps")
    grad_clip: float | None = Field(None, gt=0.0, description="clip the gradient norm to this value")
    early_stopping: int | None = Field(None, ge=1, description="patience in epochs on the monitored metric")
    seed: int = 0
    deterministic: bool = False
    num_workers: int = Field(0, ge=0)
    max_train_batches: int | float | None = Field(None, description="limit batches per epoch (debugging)")
    trackers: list[str] = Field(default_factory=lambda: ["tensorboard"])

    @property
    def multi_process(self) -> bool:
        """True when training runs in several processes (DDP / FSDP / several devices or nodes)."""
        return (
            str(self.ddp_strategy).startswith(("ddp", "fsdp"))
            or self.num_nodes > 1
            or (isinstance(self.devices, int) and self.devices > 1)
        )


def on_gpu(accelerator: str) -> bool:
    """True when ``accelerator`` resolves to a CUDA device here."""
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def device_for(accelerator: str) -> torch.device:
    """The device ``accelerator`` resolves to in this process."""
    return torch.device("cuda") if on_gpu(accelerator) else torch.device("cpu")


def resolve_precision(precision: str, accelerator: str) -> Literal["32-true", "16-mixed", "bf16-mixed"]:
    """Lightning's precision string: full precision on CPU, bf16 (else fp16) mixed on GPU."""
    gpu = on_gpu(accelerator)
    if precision == "32" or (precision == "auto" and not gpu):
        return "32-true"
    if precision == "fp16":
        return "16-mixed"
    if precision == "bf16":
        return "bf16-mixed"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
