"""Recipe tricks as config switches: an exponential moving average of the weights (EMA) and
mixup / cutmix on training batches (torchvision.transforms.v2).

* ``EMACallback`` keeps ``torch.optim.swa_utils.AveragedModel`` of the trained module (the
  classifier, or the head of a cached-feature probe), updated after every optimizer step, saved in
  the checkpoints (exact resume) and handed back at the end to be evaluated and saved beside the
  model.
* ``BatchMixer`` applies ``v2.MixUp`` / ``v2.CutMix`` (one of them at random when both are on)
  to a fraction ``mix_prob`` of the batches and returns soft targets. The draws use the global
  RNG, which the module reseeds from (seed, epoch) at every epoch: resumes replay them. On
  cached features (``(B, D)`` tensors) mixup mixes the feature vectors; cutmix needs images.
"""

from __future__ import annotations

from typing import Any, cast

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.transforms import v2

from visiontune.errors import ConfigError


class EMACallback(L.Callback):
    """EMA of ``pl_module.model``'s parameters and buffers with ``decay`` per optimizer step."""

    def __init__(self, decay: float = 0.999):
        self.decay = float(decay)
        self.ema: AveragedModel | None = None
        self._pending: dict | None = None

    @property
    def state_key(self) -> str:
        """The key under which the EMA weights are kept in Lightning checkpoints."""
        return "visiontune-ema"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ema = AveragedModel(
            cast(nn.Module, pl_module.model), multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
        )
        self.ema.requires_grad_(False)
        if self._pending is not None:
            self.ema.load_state_dict(self._pending)
            self._pending = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.ema is not None and (batch_idx + 1) % max(1, trainer.accumulate_grad_batches) == 0:
            self.ema.update_parameters(cast(nn.Module, pl_module.model))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "ema": self.ema.state_dict() if self.ema is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("ema") is not None:
            if self.ema is not None:
                self.ema.load_state_dict(state_dict["ema"])
            else:
                self._pending = state_dict["ema"]

    def averaged(self) -> nn.Module | None:
        """The averaged module (a plain copy of the trained one), or None before training."""
        return None if self.ema is None else self.ema.module


class BatchMixer:
    """Mixup / cutmix of a batch ``(x, y)`` -> ``(x_mixed, soft_targets)``."""

    def __init__(self, num_classes: int, mixup: float = 0.0, cutmix: float = 0.0, prob: float = 1.0):
        ops = []
        if mixup > 0:
            ops.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
        if cutmix > 0:
            ops.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        if not ops:
            raise ConfigError("BatchMixer needs mixup > 0 or cutmix > 0")
        self.op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
        self.num_classes, self.prob, self.cutmix = num_classes, float(prob), cutmix > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prob < 1.0 and float(torch.rand(())) >= self.prob:
            return x, nn.functional.one_hot(y, self.num_classes).float()
        if x.ndim == 2:  # cached features: mixup of the vectors (as 1x1 "images")
            if self.cutmix:
                raise ConfigError("cutmix needs images; the cached-feature probe can use mixup only")
            xm, ym = self.op(x[:, :, None, None], y)
            return xm[:, :, 0, 0], ym
        return self.op(x, y)


def make_mixer(cfg: Any, num_classes: int, cached: bool = False) -> BatchMixer | None:
    """The batch mixer ``cfg`` asks for (None when mixup and cutmix are off)."""
    if not (cfg.mixup or cfg.cutmix):
        return None
    if cached and cfg.cutmix:
        raise ConfigError(
            "key 'cutmix': the linear strategy trains on cached features, which have no pixels to cut; "
            "use mixup, or feature_cache: off to train the head on images"
        )
    return BatchMixer(num_classes, cfg.mixup, cfg.cutmix, cfg.mix_prob)
