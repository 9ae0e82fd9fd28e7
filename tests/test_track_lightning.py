"""RunCallback inside a real lightning.Trainer fit (CPU, a few steps)."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from visiontune.track import Run, load_run


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 3)

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/acc", (self.net(x).argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self.net(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD([{"params": self.net.weight, "lr": 0.1}, {"params": self.net.bias, "lr": 0.01}])


def test_callback_logs_steps_epochs_lrs_checkpoints(tmp_path):
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g))
    dl = torch.utils.data.DataLoader(ds, batch_size=8)
    run = Run.start(root=tmp_path, name="pl", config={"lr": 0.1}, trackers=[])
    ck = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=run.dir / "checkpoints", monitor="val/acc", mode="max", save_last=True
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ck, *run.lightning_callbacks()],
    )
    trainer.fit(_Tiny(), dl, dl)
    run.finish(summary={"val/acc": float(trainer.callback_metrics["val/acc"])})
    rec = load_run(run.dir)
    fm = rec.final_metrics()
    assert fm["train/loss"]["count"] == 8  # one per optimizer step
    assert fm["lr/group0"]["final"] == 0.1 and fm["lr/group1"]["final"] == 0.01
    assert fm["val/acc"]["count"] == 2 and fm["train/loss_epoch"]["count"] == 2
    # an epoch-only metric is one point per epoch, never repeated at the next epoch's steps
    assert fm["train/acc"]["count"] == 2
    kinds = {c["kind"] for c in rec.data["checkpoints"]}
    assert {"best", "last"} <= kinds
    assert all((run.dir / c["path"]).is_file() for c in rec.data["checkpoints"])
    assert rec.status == "completed"
