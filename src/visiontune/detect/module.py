"""The detection LightningModule: torchvision-style detectors trained on the engine.

Research code only (losses, COCO mAP validation, the optimiser and its warmup-cosine schedule);
the engineering — run session, Trainer, DDP, precision, checkpoints — is `visiontune.engine`'s.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from visiontune.engine import mix_seed, warmup_cosine
from visiontune.results import Detections

from .datasets import DetectionDataset
from .detector import Detector
from .evaluate import coco_map


class DetectionModule(L.LightningModule):
    """Trains ``det.pretrained.model`` (a torchvision-style detector returning a loss dict in train
    mode). Validation runs the whole val set on every rank (mAP needs all predictions), so every
    process logs the same ``val/mAP`` and early stopping / best checkpoints agree under DDP."""

    def __init__(self, det: Detector, hp: dict[str, Any], val_ds: DetectionDataset | None, steps_total: int):
        super().__init__()
        self.model = det.pretrained.model
        self.det = det
        self.hp = dict(hp)
        self.val_ds = val_ds
        self.steps_total = steps_total
        self._preds: list[Detections] = []
        self.best_table: str | None = None
        self.best_map = -1.0
        self.history: list[dict] = []

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if not self.model.training:  # prediction / validation left it in eval mode
            self.model.train()
        # the heads sample anchors / proposals with torch's global RNG: seeding it from
        # (seed, step, rank) makes every step replay identically after a resume
        torch.manual_seed(mix_seed(self.hp.get("seed", 0), self.global_step, self.global_rank))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        losses = self.model(list(images), targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"detection loss is {loss.item()} at step {self.global_step} "
                f"({ {k: float(v) for k, v in losses.items()} }); lower lr="
            )
        bs = len(images)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, _ = batch
        raw = self.det.adapter.run(list(images), 0.001, 0.5, 100, None)
        for im, (b, s, lab, _m) in zip(images, raw):
            self._preds.append(Detections(b, s, lab, self.det.class_names, None, tuple(im.shape[-2:])))

    def on_validation_epoch_end(self) -> None:
        if self.val_ds is None or len(self._preds) != len(self.val_ds):
            self._preds = []
            return
        mapping = {i + 1: i for i in range(len(self.val_ds.classes))}
        res = coco_map(self.val_ds, self._preds, mapping, backend=self.hp.get("eval_backend", "pycocotools"))
        self._preds = []
        m = {"val/mAP": res.metrics["AP"], "val/mAP50": res.metrics["AP50"], "val/mAP75": res.metrics["AP75"]}
        for k, v in m.items():
            self.log(k, v if v == v else 0.0, prog_bar=k == "val/mAP50")
        self.history.append({"epoch": self.current_epoch, **m})
        if res.metrics["AP"] > self.best_map:
            self.best_map = res.metrics["AP"]
            self.best_table = res.table()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["visiontune_detect"] = {
            "best_map": self.best_map,
            "best_table": self.best_table,
            "history": self.history,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("visiontune_detect") or {}
        self.best_map = state.get("best_map", -1.0)
        self.best_table = state.get("best_table")
        self.history = list(state.get("history", []))

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        hp = self.hp
        params = [p for p in self.model.parameters() if p.requires_grad]
        if hp.get("optimizer", "sgd") == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=hp["lr"], momentum=hp.get("momentum", 0.9), weight_decay=hp.get("weight_decay", 1e-4)
            )
        else:
            opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 1e-4))
        factor = warmup_cosine(self.steps_total, hp.get("warmup_steps", 50), "cosine", warmup_from=0.001)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
