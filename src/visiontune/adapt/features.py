"""Frozen-backbone features, computed once and cached (memory or the shared disk store).

The ``linear`` strategy's fast path: the backbone runs once over each split with the *eval*
preprocessing (no augmentation: the same view of each image every epoch), in eval mode and
without gradients; its output — the input of the head — is kept, and the head then trains on
tensors, so every epoch after the first costs only the head.

``mode="disk"`` (the default of ``TrainConfig.feature_cache``) uses the same content-keyed
:class:`~visiontune.audit.store.FeatureStore` as ``visiontune audit``: one store per backbone
(weights outside the head + preprocessing), one row per image content (sha256 of the file), in
``$VISIONTUNE_CACHE/features`` (or ``cache_dir/features``). A second run on the same data and
model — another learning rate, more epochs, another seed for the head — and the audit of the
run skip extraction; an extraction killed mid-way resumes from its last committed chunk.
``mode="memory"`` keeps features in this process only; ``visiontune cache info|clear`` shows
and empties the disk store.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visiontune.audit.extract import ImageFiles, TensorSamples, extract_to_store, get_module
from visiontune.audit.store import FeatureStore, features_root, store_key
from visiontune.data.hashing import hash_files

_MEMORY: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
_MEMORY_MAX = 8


@dataclass
class Features:
    x: torch.Tensor  # (N, ...) float32, the head's input
    y: torch.Tensor  # (N,) int64
    key: str
    seconds: float = 0.0  # time spent computing (0 when read from cache)
    cached: bool = False  # read from a cache


def weights_hash(model: nn.Module, exclude_prefix: str | None = None) -> str:
    """sha256 over the backbone's parameters and buffers (names, shapes, values)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if exclude_prefix and (name == exclude_prefix or name.startswith(exclude_prefix + ".")):
            continue
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(
    model_id: str, backbone_hash: str, data_version: str, split: str, paths: list[str], preprocess: Any
) -> str:
    """The in-memory cache key of one split's features (the disk store is keyed by content)."""
    desc = preprocess.to_dict() if hasattr(preprocess, "to_dict") else repr(preprocess)
    doc = json.dumps(
        {
            "model": model_id,
            "weights": backbone_hash,
            "data": data_version,
            "split": split,
            "samples": hashlib.sha256("\n".join(paths).encode()).hexdigest(),
            "preprocess": desc,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


class _HeadInput:
    """Forward pre-hook capturing the input of the head module."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple) -> None:
        self.value = args[0]


@torch.no_grad()
def extract(
    model: nn.Module,
    head_path: str,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` (eval mode, no grad) over ``dataset`` and return the head's inputs and the
    labels, all in memory. The model's train/eval mode is restored afterwards."""
    head = get_module(model, head_path)
    hook = _HeadInput()
    handle = head.register_forward_pre_hook(hook)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    done = 0
    try:
        for x, y in loader:
            model(x.to(device, non_blocking=True))
            if hook.value is None:
                raise RuntimeError(f"the head {head_path} was not called by the model's forward")
            feats.append(hook.value.detach().float().cpu())
            labels.append(torch.as_tensor(y, dtype=torch.long))
            hook.value = None
            done += len(y)
            if progress is not None:
                progress(done, len(dataset))
    finally:
        handle.remove()
        model.train(was_training)
    if not feats:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(feats), torch.cat(labels)


def _content(dataset: Any, key: str, head_path: str, model: nn.Module) -> tuple[str, Dataset, list[str], np.ndarray]:
    """(store key, samples, per-sample content keys, labels) of a dataset.

    A dataset of image files (``visiontune.data.ImageDataset``) is keyed by file content and
    shares the audit's store; one with a custom loader by its sample ids; any other dataset
    (tensors) by ``key`` and the sample index, in a store of its own."""
    paths = getattr(dataset, "paths", None)
    transform = getattr(dataset, "transform", None)
    labels = getattr(dataset, "labels", None)
    multi_hot = getattr(dataset, "targets_matrix", None)  # multi-label: (N, C) 0/1 targets
    if paths is not None and labels is not None and transform is not None:
        loader = getattr(dataset, "loader", None)
        if loader is None:
            keys = [h for h, _ in hash_files(paths)]
        else:
            keys = [hashlib.sha256(f"sample:{p}".encode()).hexdigest() for p in paths]
        return (
            store_key(model, head_path, transform),
            ImageFiles(paths, transform, loader),
            keys,
            np.asarray(multi_hot, dtype=np.float32) if multi_hot is not None else np.asarray(labels, dtype=np.int64),
        )
    n = len(dataset)
    if labels is None:
        labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(n)]
    skey = hashlib.sha256(f"dataset:{key}".encode()).hexdigest()[:24]
    keys = [hashlib.sha256(f"{key}:{i}".encode()).hexdigest() for i in range(n)]
    return skey, TensorSamples(dataset), keys, np.asarray(labels, dtype=np.int64)


def cached_features(
    model: nn.Module,
    head_path: str,
    dataset: Dataset,
    key: str,
    *,
    mode: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    **kw: Any,
) -> Features:
    """``extract`` with a cache: ``mode`` is ``memory`` (this process) or ``disk`` (the shared
    feature store under ``cache_dir`` or ``$VISIONTUNE_CACHE``, also kept in memory).
    ``kw``: ``batch_size``, ``num_workers``, ``device``, ``progress(done, total)``."""
    if mode in ("memory", "disk") and key in _MEMORY:
        x, y = _MEMORY[key]
        return Features(x, y, key, 0.0, True)
    if mode != "disk":
        t0 = time.perf_counter()
        x, y = extract(model, head_path, dataset, **kw)
        seconds = time.perf_counter() - t0
        if mode == "memory":
            _remember(key, x, y)
        return Features(x, y, key, seconds, False)

    skey, samples, keys, labels = _content(dataset, key, head_path, model)
    store = FeatureStore.open(skey, root=cache_dir)
    got = extract_to_store(
        model,
        head_path,
        samples,
        keys,
        lambda dim, shape: FeatureStore.open(skey, root=cache_dir, dim=dim, feature_shape=shape),
        store,
        batch_size=int(kw.get("batch_size", 64)),
        num_workers=int(kw.get("num_workers", 0)),
        device=kw.get("device"),
        progress=kw.get("progress"),
        show=False,
        description="features",
    )
    store = store or FeatureStore.open(skey, root=cache_dir)
    ok = np.flatnonzero(got.rows >= 0)
    if store is None or not len(ok):
        return Features(torch.empty(0), torch.empty(0, dtype=torch.long), key, got.seconds, False)
    shape = store.info.feature_shape
    x = torch.from_numpy(store.read(got.rows[ok]).reshape(len(ok), *shape))
    y = torch.from_numpy(labels[ok])
    _remember(key, x, y)
    return Features(x, y, key, got.seconds if got.computed else 0.0, got.computed == 0)


def default_cache_dir():
    """Where the disk feature stores live (``$VISIONTUNE_CACHE/features``)."""
    return features_root()


def clear_memory_cache() -> None:
    _MEMORY.clear()


def _remember(key: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if len(_MEMORY) >= _MEMORY_MAX:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = (x, y)
