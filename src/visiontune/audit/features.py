"""Per-image model outputs for the audit, backed by the shared feature store.

One pass per image gives everything the audit needs: the embedding (the head's input: K-fold
label issues, near duplicates, the map) and a perceptual hash (visual duplicates); the logits
are recomputed from the stored embedding through the model's own head, so they equal a full
forward pass and a retrained head needs no new pass. Embeddings live in the content-keyed
:class:`~visiontune.audit.store.FeatureStore` (``$VISIONTUNE_CACHE``): a second audit, an audit
of a relabelled copy, or of a ``linear`` run trained on the same backbone runs no network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from visiontune.audit.extract import CHUNK_ROWS, ImageFiles, dhash, dhash_file, extract_to_store
from visiontune.audit.store import FeatureStore, store_key
from visiontune.data.hashing import hash_files
from visiontune.hub.heads import find_head as hub_find_head

__all__ = ["ImageOutputs", "compute_outputs", "dhash", "dhash_file", "find_head", "head_logits", "model_key"]


def find_head(model: nn.Module) -> tuple[str, nn.Module]:
    """(dotted path, module) of the classification head."""
    return hub_find_head(model)


def model_key(pretrained: Any) -> str:
    """The feature-store key of a model: its weights *before* the head plus the preprocessing.

    The head is left out (logits are recomputed from the embeddings through the current head),
    so a retrained head, or another model sharing the backbone, reuses the cache."""
    head_path, _ = find_head(pretrained.model)
    return store_key(pretrained.model, head_path, pretrained.preprocess)


def head_logits(head: nn.Module, embeddings: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Apply the model's own head to cached embeddings (exactly what the full model computes)."""
    head.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(embeddings), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(embeddings[i : i + batch_size]))
            out.append(head(x.to(next(head.parameters()).dtype)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, cast(nn.Linear, head).out_features), np.float32)


@dataclass
class ImageOutputs:
    """Per-image results, row-aligned with `paths`; embeddings stay in the store."""

    paths: list[str]
    sha256: list[str]
    logits: np.ndarray  # (N, C) in the model's output order; NaN rows for unreadable images
    dhash: np.ndarray  # (N,) uint64
    ok: np.ndarray  # (N,) bool: False where the image could not be decoded
    skipped: list[tuple[str, str]]
    n_computed: int  # images that went through the network (the rest came from the store)
    rows: np.ndarray  # (N,) int64 row in `store`, -1 where not ok
    store: FeatureStore | None

    @property
    def dim(self) -> int:
        """Embedding width of the feature store (0 when nothing was extracted)."""
        return self.store.dim if self.store is not None else 0

    def embeddings_of(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """Embeddings of the images at ``index`` (readable ones), float32 copies."""
        r = self.rows[np.asarray(index, dtype=np.int64)]
        if self.store is None:
            return np.zeros((len(r), 0), np.float32)
        return self.store.read(r)

    @property
    def embeddings(self) -> np.ndarray:
        """All embeddings (N, D) in memory (zeros for unreadable images): small data only; the
        audit's steps read :meth:`iter_embeddings` chunks instead."""
        E = np.zeros((len(self.paths), self.dim), dtype=np.float32)
        k = np.flatnonzero(self.ok)
        if len(k):
            E[k] = self.embeddings_of(k)
        return E

    def iter_embeddings(self, index: np.ndarray, chunk: int = 16384) -> Iterator[tuple[int, np.ndarray]]:
        """(offset, embeddings of ``index[offset:offset+chunk]``): bounded memory."""
        for s in range(0, len(index), chunk):
            yield s, self.embeddings_of(index[s : s + chunk])

    def vectors(self, index: np.ndarray) -> StoreVectors:
        """The embeddings of the images at ``index`` as chunk-readable vectors (not loaded)."""
        return StoreVectors(self.store, self.rows[np.asarray(index, dtype=np.int64)], self.dim)


class StoreVectors:
    """Rows of a feature store read on demand (:class:`visiontune.audit.ann.Vectors`)."""

    def __init__(self, store: FeatureStore | None, rows: np.ndarray, dim: int):
        self.store, self.rows, self.dim = store, rows, dim

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The store rows of images ``index`` as a float32 array."""
        if self.store is None:
            return np.zeros((len(index), 0), np.float32)
        return self.store.read(self.rows[np.asarray(index, dtype=np.int64)])

    def chunks(self, chunk: int = 16384) -> Iterator[tuple[int, np.ndarray]]:
        """``(first image, block)`` pairs read from the store in blocks of ``chunk``."""
        if self.store is not None:
            yield from self.store.iter_chunks(self.rows, chunk)


def compute_outputs(
    pretrained: Any,
    paths: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None = None,
    sha256: Sequence[str] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    show: bool = False,
    description: str = "audit: features",
    chunk_rows: int = CHUNK_ROWS,
) -> ImageOutputs:
    """Logits, embeddings (in the store under ``cache_dir``, default ``$VISIONTUNE_CACHE``) and
    perceptual hashes for `paths`; images the store holds skip the network."""
    model: nn.Module = pretrained.model
    model.eval()
    head_path, head = find_head(model)
    paths = [str(p) for p in paths]
    shas = list(sha256) if sha256 is not None else [h for h, _ in hash_files(paths)]
    key = model_key(pretrained)
    store = FeatureStore.open(key, root=cache_dir)
    source = getattr(getattr(pretrained, "card", None), "model_id", None)
    got = extract_to_store(
        model,
        head_path,
        ImageFiles(paths, pretrained.preprocess),
        shas,
        lambda dim, shape: FeatureStore.open(key, root=cache_dir, dim=dim, feature_shape=shape, source=source),
        store,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        show=show,
        description=description,
        chunk_rows=chunk_rows,
    )
    store = store or FeatureStore.open(key, root=cache_dir)
    rows = got.rows
    ok = rows >= 0
    skipped = [(paths[i], reason) for i, reason in got.skipped]
    n_out = getattr(head, "out_features", None)
    logits = np.full((len(paths), n_out or 0), np.nan, dtype=np.float32)
    dh = np.zeros(len(paths), dtype=np.uint64)
    if store is not None and ok.any():
        k = np.flatnonzero(ok)
        dh[k] = store.dhash(rows[k])
        parts = [head_logits(head, e) for _, e in store.iter_chunks(rows[k])]
        lg = np.concatenate(parts).astype(np.float32)
        if logits.shape[1] != lg.shape[1]:
            logits = np.full((len(paths), lg.shape[1]), np.nan, dtype=np.float32)
        logits[k] = lg
    return ImageOutputs(
        paths=paths,
        sha256=shas,
        logits=logits,
        dhash=dh,
        ok=ok,
        skipped=skipped,
        n_computed=got.computed,
        rows=rows,
        store=store,
    )
