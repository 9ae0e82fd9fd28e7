"""Frozen-backbone features, computed once and cached (memory or disk).

The ``linear`` strategy's fast path: the backbone runs once over each split with the *eval*
preprocessing (no augmentation: the same view of each image every epoch), in eval mode and
without gradients; its output — the input of the head — is kept, and the head then trains on
tensors, so every epoch after the first costs only the head.

Cache key: the model id, a hash of the backbone's weights, the data version, the split, the
sample list and the preprocessing. A disk cache is one safetensors file per split, written
atomically; a stale or unreadable file is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

_MEMORY: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
_MEMORY_MAX = 8


@dataclass
class Features:
    x: torch.Tensor  # (N, ...) float32, the head's input
    y: torch.Tensor  # (N,) int64
    key: str
    seconds: float = 0.0  # time spent computing (0 when read from cache)
    cached: bool = False  # read from a cache


def _get_module(model: nn.Module, path: str) -> nn.Module:
    m = model
    for part in path.split("."):
        m = m[int(part)] if part.lstrip("-").isdigit() else getattr(m, part)
    return m


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
    labels. The model's train/eval mode is restored afterwards."""
    head = _get_module(model, head_path)
    hook = _HeadInput()
    handle = head.register_forward_pre_hook(hook)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, persistent_workers=False
    )
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
    """``extract`` with a cache: ``mode`` is ``memory`` (this process) or ``disk`` (a safetensors
    file under ``cache_dir``, also kept in memory)."""
    if mode in ("memory", "disk") and key in _MEMORY:
        x, y = _MEMORY[key]
        return Features(x, y, key, 0.0, True)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.safetensors" if mode == "disk" else None
    if path is not None and path.is_file():
        got = _read(path, key, len(dataset))  # type: ignore[arg-type]
        if got is not None:
            _remember(key, *got)
            return Features(*got, key, 0.0, True)
    t0 = time.perf_counter()
    x, y = extract(model, head_path, dataset, **kw)
    seconds = time.perf_counter() - t0
    if mode in ("memory", "disk"):
        _remember(key, x, y)
    if path is not None:
        _write(path, key, x, y)
    return Features(x, y, key, seconds, False)


def default_cache_dir() -> Path:
    base = os.environ.get("VISIONTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "visiontune"
    )
    return Path(base) / "features"


def clear_memory_cache() -> None:
    _MEMORY.clear()


def _remember(key: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if len(_MEMORY) >= _MEMORY_MAX:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = (x, y)


def _write(path: Path, key: str, x: torch.Tensor, y: torch.Tensor) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({"features": x.contiguous(), "labels": y.contiguous()}, str(tmp), metadata={"key": key})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read(path: Path, key: str, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
            x, y = f.get_tensor("features"), f.get_tensor("labels")
    except Exception:  # truncated / foreign file: recompute
        return None
    if len(x) != n or len(y) != n:
        return None
    return x, y
