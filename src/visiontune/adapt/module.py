"""The LightningModule: a classifier trained with layer groups, a freezing strategy,
discriminative learning rates, warmup + cosine / one-cycle schedules and optional distillation."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from visiontune.adapt.distill import kd_loss
from visiontune.adapt.groups import LayerGroups, param_groups
from visiontune.adapt.strategies import freeze_frozen_norms, n_trainable_backbone, set_trainable
from visiontune.engine import mix_seed, warmup_cosine
from visiontune.hub.classification import logits_of


class AdaptModule(L.LightningModule):
    """Trains ``model`` (whose head is ``groups.head_path``) with the given strategy.

    ``hp`` holds the optimisation options of ``TrainConfig`` (strategy, n_stages, milestones, lr,
    lr_decay, head_lr, optimizer, weight_decay, momentum, label_smoothing, schedule,
    warmup_epochs, seed, kd_temperature, kd_alpha). ``teacher`` (frozen, eval) adds the KD loss;
    ``teacher_input`` maps a student batch to the teacher's input space. ``loss_fn`` (default:
    cross-entropy with ``label_smoothing``) takes (logits, targets) — class indices, or soft
    targets when ``mixer`` (mixup / cutmix, `visiontune.adapt.tricks`) mixes the batch.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: LayerGroups,
        num_classes: int,
        hp: dict,
        teacher: nn.Module | None = None,
        teacher_input=None,
        channels_last: bool = False,
        loss_fn: nn.Module | None = None,
        mixer=None,
    ):
        super().__init__()
        self.loss_fn = loss_fn
        self.mixer = mixer
        self.model = model
        self.groups = groups
        self.num_classes = num_classes
        self.hp = dict(hp)
        self.channels_last = channels_last
        # kept out of the module tree: not trained, not checkpointed
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self._teacher_input = teacher_input
        self.sampler = None  # the train EpochSampler, re-positioned on resume
        self.trainable_groups: list[str] = []
        self.history: list[dict] = []
        self._apply_strategy(0)
        self.val_top1 = torchmetrics.classification.MulticlassAccuracy(num_classes, top_k=1, average="micro")
        # top-5 of 5 classes or fewer is always 1: measured only above that
        self.val_top5 = (
            torchmetrics.classification.MulticlassAccuracy(num_classes, top_k=5, average="micro")
            if num_classes > 5
            else None
        )
        self.val_bal = torchmetrics.classification.MulticlassRecall(num_classes, average="macro")
        self.train_acc = torchmetrics.classification.MulticlassAccuracy(num_classes, top_k=1, average="micro")

    # -- strategy --------------------------------------------------------------------------------
    def n_trainable(self, epoch: int) -> int:
        """How many backbone groups train at ``epoch`` under the strategy (gradual unfreezing schedule)."""
        return n_trainable_backbone(
            self.hp["strategy"], self.groups.n_backbone, epoch, self.hp.get("n_stages", 2), self.hp.get("milestones")
        )

    def _apply_strategy(self, epoch: int) -> None:
        self.trainable_groups = set_trainable(self.model, self.groups, self.n_trainable(epoch))
        if self.training:
            self.train(True)

    def train(self, mode: bool = True):
        """Switch train / eval mode, keeping frozen normalisation layers in eval mode while training."""
        super().train(mode)
        if mode:
            freeze_frozen_norms(self.model)
            if self.trainable_groups == ["head"] and self.groups.n_backbone:
                # head-only training: the whole backbone behaves as at inference (dropout, drop-path)
                head = self.groups.head_path
                for name, m in self.model.named_modules():
                    if name and not (name == head or name.startswith(head + ".") or head.startswith(name + ".")):
                        m.eval()
        for t in self._teacher:
            t.eval()
        return self

    # -- hooks -----------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        for t in self._teacher:
            t.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        # the global RNG (dropout, drop-path) restarts from (seed, epoch, rank): exact resume
        s = mix_seed(self.hp.get("seed", 0), epoch, self.global_rank)
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s % (2**32))
        before = list(self.trainable_groups)
        self._apply_strategy(epoch)
        self.train(True)
        if self.trainable_groups != before:
            self.print(f"epoch {epoch}: training groups {', '.join(self.trainable_groups)}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["visiontune"] = {"trainable_groups": self.trainable_groups}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        try:
            epoch = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
        except (KeyError, TypeError):
            epoch = checkpoint.get("epoch", 0)
        self._apply_strategy(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    # -- steps -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return logits_of(self.model(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        target = y
        if self.mixer is not None:
            x, target = self.mixer(x, y)
        logits = self(x)
        if self.loss_fn is not None:
            loss = self.loss_fn(logits, target)
        else:
            loss = F.cross_entropy(logits.float(), target, label_smoothing=self.hp.get("label_smoothing", 0.0))
        if self._teacher:
            with torch.no_grad():
                tx = self._teacher_input(x) if self._teacher_input is not None else x
                t_logits = logits_of(self._teacher[0](tx)).float()
            a = self.hp.get("kd_alpha", 0.5)
            kd = kd_loss(logits.float(), t_logits, self.hp.get("kd_temperature", 4.0))
            self.log("train/kd", kd, on_step=False, on_epoch=True, sync_dist=True)
            loss = a * kd + (1 - a) * loss
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.float(), y)
        self.val_top1(logits, y)
        self.val_bal(logits, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_top1, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/balanced_acc", self.val_bal, on_step=False, on_epoch=True)
        if self.val_top5 is not None:
            self.val_top5(logits, y)
            self.log("val/top5", self.val_top5, on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        m = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(("train/", "val/"))}
        m["epoch"] = self.current_epoch
        m["lr_head"] = self.trainer.optimizers[0].param_groups[-1]["lr"] if self.trainer.optimizers else 0.0
        m["trainable_groups"] = len(self.trainable_groups)
        self.history.append(m)

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hp
        groups = param_groups(
            self.model, self.groups, hp["lr"], hp.get("lr_decay", 0.1), hp.get("head_lr"), hp.get("weight_decay", 0.0)
        )
        if hp.get("optimizer", "adamw") == "sgd":
            opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp.get("momentum", 0.9), nesterov=True)
        else:
            opt = torch.optim.AdamW(groups, lr=hp["lr"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(round(hp.get("warmup_epochs", 0.0) * total / epochs))
        if hp.get("schedule", "cosine") == "onecycle":
            pct = min(0.9, max(warmup / total, 0.05)) if warmup else 0.25
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in groups],
                total_steps=total,
                pct_start=pct,
                cycle_momentum=hp.get("optimizer") == "sgd",
            )
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup, hp.get("schedule", "cosine")))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
