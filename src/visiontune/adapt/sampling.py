"""Class-balanced sampling that stays seeded and resumable.

``BalancedEpochSampler`` extends the engine's ``EpochSampler``: each epoch draws ``n`` indices
with replacement, every class equally likely (then uniform within the class), from a generator
seeded by (seed, epoch) — so an epoch replays identically after a resume and under DDP every
rank reads its shard of the same draw. The loader around it is the engine's (``SeededDataset``
keys, seeded per-sample augmentation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from visiontune.engine import EpochSampler, SeededDataset, mix_seed, rank_world, seeded_loader

#: a different stream from the shuffle permutation of the same (seed, epoch)
_BALANCED_STREAM = 0xBA1A


class BalancedEpochSampler(EpochSampler):
    """Each class drawn equally often per epoch (with replacement), order a function of
    (seed, epoch); ``labels`` are the training labels (class indices)."""

    def __init__(self, labels: Any, seed: int = 0, pad: bool = True):
        labels = np.asarray(labels, dtype=np.int64)
        super().__init__(len(labels), seed=seed, shuffle=True, pad=pad)
        counts = np.bincount(labels)
        w = np.where(counts[labels] > 0, 1.0 / np.maximum(counts[labels], 1), 0.0)
        self.weights = torch.as_tensor(w / w.sum(), dtype=torch.float64)

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, _BALANCED_STREAM))
        order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        rank, world = rank_world()
        if world > 1:
            total = math.ceil(self.n / world) * world
            order = (order * math.ceil(total / max(self.n, 1)))[:total][rank::world]
        return order


def train_loader(dataset: Any, labels: Any, cfg: Any, *, seeded: bool = True) -> DataLoader:
    """The training loader ``cfg`` asks for: the engine's seeded shuffle, or the balanced sampler
    over ``labels`` (``cfg.sampler == "balanced"``) with the same seeded dataset keys."""
    if cfg.sampler != "balanced":
        return seeded_loader(
            dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers, seeded=seeded
        )
    return DataLoader(
        SeededDataset(dataset, cfg.seed, seeded),
        batch_size=cfg.batch_size,
        sampler=BalancedEpochSampler(labels, seed=cfg.seed),
        num_workers=cfg.num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
    )
