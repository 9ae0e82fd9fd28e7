"""`engine.fit` around Lightning's own interrupt handling."""

from __future__ import annotations

import signal

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from visiontune.engine.trainer import fit


class _StopsLikeCtrlC(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        if batch_idx == 1:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of an epoch
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_an_interrupted_fit_raises_keyboard_interrupt_and_leaves_ctrl_c_working(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(trainer, _StopsLikeCtrlC(), loader)
    assert trainer.interrupted
    # Lightning set SIGINT to "ignore" for its graceful shutdown; the caller's handler is back
    assert signal.getsignal(signal.SIGINT) == before != signal.SIG_IGN


class _SeesTheFrozenHeap(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.frozen_during_fit: list[int] = []

    def training_step(self, batch, batch_idx):
        import gc

        self.frozen_during_fit.append(gc.get_freeze_count())
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path):
    return L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip


def test_fit_freezes_the_pre_training_heap_and_unfreezes_after(tmp_path):
    """Full GC passes during training skip the heap that existed before it (gc.freeze); the
    freeze ends with the fit, also when it fails, and a caller's own freeze is left alone."""
    import gc

    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)
    assert gc.get_freeze_count() == 0
    m = _SeesTheFrozenHeap()
    fit(_trainer(tmp_path), m, loader)
    assert len(m.frozen_during_fit) == 4 and min(m.frozen_during_fit) > 10_000  # torch + Lightning
    assert gc.get_freeze_count() == 0
    with pytest.raises(KeyboardInterrupt):
        fit(_trainer(tmp_path), _StopsLikeCtrlC(), loader)
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        mine = gc.get_freeze_count()
        fit(_trainer(tmp_path), _SeesTheFrozenHeap(), loader)
        assert gc.get_freeze_count() > 0.99 * mine  # not unfrozen by the fit (a few frozen objects died)
    finally:
        gc.unfreeze()
