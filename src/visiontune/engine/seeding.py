"""Deterministic, resumable data order and augmentation.

``EpochSampler`` yields ``(epoch, index)`` pairs: the order is a function of (seed, epoch) only,
and ``SeededDataset`` seeds each sample's augmentation from (seed, epoch, index) in a private RNG
scope. So an epoch replays identically after a resume, with any number of workers, and under DDP
each rank reads its own shard of the same permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def mix_seed(*xs: int) -> int:
    """A 63-bit seed mixed from integers (splitmix64 steps): stable across runs and platforms."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Seeded per-epoch permutation (or the identity when ``shuffle=False``), sharded over DDP
    ranks. Training shards are padded to equal length (as ``DistributedSampler`` does);
    evaluation shards (``pad=False``) cover every sample exactly once."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, pad: bool = True):
        self.n, self.seed, self.shuffle, self.pad = n, seed, shuffle, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Position the sampler at ``epoch`` (Lightning calls this each epoch; resume too)."""
        self.epoch = int(epoch)

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        rank, world = rank_world()
        if world > 1:
            if self.pad:
                total = math.ceil(self.n / world) * world
                order = (order * math.ceil(total / max(self.n, 1)))[:total]
            order = order[rank::world]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for i in self._indices():
            yield epoch, i

    def __len__(self) -> int:
        rank, world = rank_world()
        if world == 1:
            return self.n
        if self.pad:
            return math.ceil(self.n / world)
        return len(range(rank, self.n, world))


class SeededDataset(Dataset):
    """Wraps a dataset indexed by ``(epoch, index)``; each sample's random transforms draw from a
    torch RNG seeded by (seed, epoch, index), without touching the global RNG. ``seeded=False``
    (data without random transforms, e.g. cached features) only maps the keys."""

    def __init__(self, dataset: Any, seed: int = 0, seeded: bool = True):
        self.dataset, self.seed, self.seeded = dataset, seed, seeded

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if not self.seeded:
            return self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also queues CUDA seeding (slow, and
            # transforms run on the CPU)
            torch.default_generator.manual_seed(mix_seed(self.seed, epoch, index))
            return self.dataset[index]


def seeded_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    train: bool = True,
    seeded: bool = True,
    collate_fn: Any = None,
) -> DataLoader:
    """A DataLoader whose order is a function of (seed, epoch) and whose per-sample augmentation
    is seeded by (seed, epoch, index): an epoch replays identically after a resume, with any number
    of workers; under DDP each rank reads its shard (training shards padded to equal length)."""
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle, pad=train)
    return DataLoader(
        SeededDataset(dataset, seed, seeded),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        collate_fn=collate_fn,
    )
