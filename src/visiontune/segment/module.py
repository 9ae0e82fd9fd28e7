"""The semantic-segmentation LightningModule: research code only (losses, streaming mIoU
validation, layer groups, the freezing strategy, the optimiser and its warmup-cosine schedule);
the engineering — run session, Trainer, DDP, precision, checkpoints — is `visiontune.engine`'s.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from visiontune.adapt.groups import LayerGroups, param_groups
from visiontune.adapt.strategies import freeze_frozen_norms, n_trainable_backbone, set_trainable
from visiontune.engine import warmup_cosine
from visiontune.segment.metrics import ConfusionMatrix


def encoder_of(model: nn.Module) -> tuple[str, nn.Module] | None:
    """(parameter prefix, module) of a segmenter's encoder / backbone, or None."""
    for path in ("net.encoder", "encoder", "backbone", "segformer.encoder", "model.encoder"):
        m: Any = model
        for part in path.split("."):
            m = getattr(m, part, None)
            if m is None:
                break
        if isinstance(m, nn.Module):
            return path, m
    return None


def segmenter_groups(model: nn.Module, n_encoder_groups: int = 5) -> LayerGroups:
    """Layer groups of a segmenter, input → head: the encoder's parameters in registration order
    cut into ``n_encoder_groups`` contiguous groups of about equal size (stem side first), then
    everything else (decoder + segmentation head) as the head group."""
    hit = encoder_of(model)
    prefix = hit[0] if hit else ""
    named = [(n, p) for n, p in model.named_parameters()]
    enc = [(n, p) for n, p in named if prefix and n.startswith(prefix + ".")]
    head = [n for n, _ in named if not (prefix and n.startswith(prefix + "."))]
    total = sum(p.numel() for _, p in enc) or 1
    groups: list[list[str]] = [[] for _ in range(n_encoder_groups)]
    acc = 0
    for n, p in enc:
        groups[min(n_encoder_groups - 1, int(acc * n_encoder_groups / total))].append(n)
        acc += p.numel()
    keep = [g for g in groups if g]
    return LayerGroups([f"encoder{i}" for i in range(len(keep))] + ["head"], keep + [head], "decoder", "segmenter")


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice loss (1 - mean Dice over classes present in the batch), ignoring void."""
    n = logits.shape[1]
    probs = logits.float().softmax(1)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    t = torch.where(valid, target, torch.zeros_like(target)).clamp(0, n - 1)
    onehot = F.one_hot(t, n).permute(0, 3, 1, 2).float() * valid[:, None]
    probs = probs * valid[:, None]
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0


class SegmentationModule(L.LightningModule):
    """Trains ``model`` (images → N×C×H×W logits). Validation accumulates one confusion matrix
    (all-reduced over DDP ranks), so every process logs the same ``val/mIoU``."""

    class_weights: torch.Tensor  # a buffer (register_buffer): declared for the type checker

    def __init__(
        self,
        model: nn.Module,
        groups: LayerGroups,
        hp: dict[str, Any],
        class_names: list[str],
        ignore_index: int | None,
        steps_total: int,
        class_weights: torch.Tensor | None = None,
        milestones: list[int] | None = None,
    ):
        super().__init__()
        self.model = model
        self.groups = groups
        self.hp = dict(hp)
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.steps_total = steps_total
        self.milestones = list(milestones or [])
        self.register_buffer(
            "class_weights", class_weights if class_weights is not None else torch.ones(0), persistent=False
        )
        self.cm = ConfusionMatrix(len(class_names), ignore_index, class_names)
        self.history: list[dict] = []
        self.best: dict[str, Any] | None = None
        self.training_groups: list[str] = []
        self._apply_strategy(0)

    # -- strategy ------------------------------------------------------------------------------
    def _apply_strategy(self, epoch: int) -> None:
        k = n_trainable_backbone(
            self.hp.get("strategy", "full"),
            self.groups.n_backbone,
            epoch,
            int(self.hp.get("n_stages", 2)),
            self.milestones,
        )
        self.training_groups = set_trainable(self.model, self.groups, k)

    def on_train_epoch_start(self) -> None:
        self._apply_strategy(self.current_epoch)
        self.model.train()
        freeze_frozen_norms(self.model)  # frozen stages keep their BatchNorm statistics

    # -- steps ---------------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (ignore index, optional class weights) and/or Dice, as ``hp['loss']``."""
        kind = self.hp.get("loss", "ce+dice")
        ign = self.ignore_index if self.ignore_index is not None else -100
        w = self.class_weights if self.class_weights.numel() else None
        total = logits.new_zeros(())
        if "ce" in kind:
            total = total + F.cross_entropy(logits.float(), target, weight=w, ignore_index=ign)
        if "dice" in kind:
            total = total + float(self.hp.get("dice_weight", 0.5)) * dice_loss(logits, target, self.ignore_index)
        return total

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self.model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"segmentation loss is {loss.item()} at step {self.global_step}; lower lr=")
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, ys = batch
        logits = self.model(x)
        for lg, y in zip(logits, ys if isinstance(ys, (list, tuple)) else list(ys)):
            if lg.shape[-2:] != y.shape[-2:]:
                lg = F.interpolate(lg[None].float(), size=y.shape[-2:], mode="bilinear", align_corners=False)[0]
            self.cm.update(lg.argmax(0), y)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.world_size > 1:  # every rank saw its shard: sum the matrices
            m = self.cm.matrix.to(self.device)
            self.cm.matrix = self.trainer.strategy.reduce(m, reduce_op="sum").cpu().long()
        if int(self.cm.matrix.sum()) == 0:
            return
        res = self.cm.compute()
        self.cm.reset()
        row = {"val/mIoU": res["mIoU"], "val/pixel_accuracy": res["pixel_accuracy"], "val/dice": res["dice"]}
        for k, v in row.items():
            self.log(k, v if v == v else 0.0, prog_bar=k == "val/mIoU", sync_dist=False)
        self.history.append({"epoch": self.current_epoch + 1, **row})
        if self.best is None or res["mIoU"] > self.best["mIoU"]:
            self.best = {"epoch": self.current_epoch + 1, **res}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["visiontune_segment"] = {"history": self.history, "best": self.best}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("visiontune_segment") or {}
        self.history = list(state.get("history", []))
        self.best = state.get("best")

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        hp = self.hp
        head_lr = float(hp["lr"])
        enc_lr = head_lr * float(hp.get("encoder_lr_scale", 0.1))
        groups = param_groups(
            self.model,
            self.groups,
            enc_lr,
            decay=float(hp.get("lr_decay", 1.0)),
            head_lr=head_lr,
            weight_decay=float(hp.get("weight_decay", 1e-4)),
        )
        if hp.get("optimizer", "adamw") == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=head_lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=head_lr)
        factor = warmup_cosine(self.steps_total, int(hp.get("warmup_steps", 0)), hp.get("schedule", "cosine"))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
