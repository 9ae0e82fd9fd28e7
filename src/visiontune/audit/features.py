"""Batched forward passes that keep both the logits and the embeddings (the head's input).

One pass per image gives everything the audit needs: logits (predictions, losses), the
embedding (K-fold label issues, near duplicates) and a perceptual hash (visual duplicates).
Embeddings are cached on disk keyed by the model and by each file's sha256, so a second audit
(or an audit of a relabelled copy of the data) runs the network only on images it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visiontune._atomic import atomic_path
from visiontune.data import read_image
from visiontune.errors import ImageDecodeError, VisiontuneError
from visiontune.hub.checkpoint import sha256_file

CACHE_FORMAT = 2  # 2: tiny images hash by content (see dhash)


MIN_HASH_SIDE = 16  # a perceptual hash needs more pixels than its 9x8 grid


def dhash(img, size: int = 8) -> int:
    """64-bit difference hash of a PIL image (robust to resizing and recompression).

    Images smaller than ``MIN_HASH_SIDE`` on a side carry too little detail for a perceptual
    hash (8×8 digit scans of one class all hash alike): they get a 64-bit digest of their pixels
    instead, so only pixel-identical tiny images count as visual duplicates."""
    from PIL import Image

    if min(img.size) < MIN_HASH_SIDE:
        import hashlib

        digest = hashlib.blake2b(img.convert("L").tobytes() + repr(img.size).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")
    g = img.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR)
    a = np.asarray(g, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def dhash_file(path: str) -> int:
    """dHash of an image file. JPEGs are decoded at reduced scale (`draft`), which is many times
    faster and gives the same bits as a full decode for an 8x9 hash up to noise within the
    distance tolerance; every hash in an audit is computed this way, so they are comparable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft("L", (64, 64))
            return dhash(ImageOps.exif_transpose(im))
    except ImportError as e:  # an Image.open patched by another library (plugin fetch failed)
        raise OSError(f"{path}: cannot identify image ({e})") from None


def find_head(model: nn.Module) -> tuple[str, nn.Module]:
    from visiontune.hub.heads import find_head as hub_find_head

    return hub_find_head(model)


def model_key(pretrained: Any) -> str:
    """Identity of what produces the embeddings: the weights before the head + the preprocessing.

    The head is left out (logits are recomputed from the embeddings through the current head),
    so a retrained head, or another model sharing the backbone, reuses the cache.
    """
    head_path, _ = find_head(pretrained.model)
    h = hashlib.sha256()
    sd = pretrained.model.state_dict()
    for name in sorted(sd):
        if name.startswith(head_path + "."):
            continue
        t = sd[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    pre = pretrained.preprocess
    desc = pre.to_dict() if hasattr(pre, "to_dict") else repr(pre)
    h.update(json.dumps({"head": head_path, "preprocess": desc}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


@dataclass
class ImageOutputs:
    """Per-image results of the forward pass, row-aligned with `paths`."""

    paths: list[str]
    sha256: list[str]
    logits: np.ndarray  # (N, C) in the model's output order; NaN rows for unreadable images
    embeddings: np.ndarray  # (N, D) float32
    dhash: np.ndarray  # (N,) uint64
    ok: np.ndarray  # (N,) bool: False where the image could not be decoded
    skipped: list[tuple[str, str]]
    n_computed: int  # images that went through the network (the rest came from the cache)


class EmbeddingCache:
    """`<dir>/embeddings-<model key>.npz`: sha256 -> (embedding, dhash). Written atomically."""

    def __init__(self, directory: str | os.PathLike | None, key: str):
        self.path = Path(directory) / f"embeddings-{key}.npz" if directory is not None else None
        self.rows: dict[str, tuple[np.ndarray, int]] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    if int(z["format"]) == CACHE_FORMAT:
                        for s, e, d in zip(z["sha256"], z["emb"], z["dhash"]):
                            self.rows[str(s)] = (e, int(d))
            except (OSError, ValueError, KeyError):
                self.rows = {}  # a damaged cache is rebuilt, never trusted

    def get(self, sha: str):
        return self.rows.get(sha)

    def put(self, sha: str, emb: np.ndarray, dh: int) -> None:
        self.rows[sha] = (emb, dh)
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty or not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        shas = list(self.rows)
        emb = np.stack([self.rows[s][0] for s in shas]).astype(np.float32)
        dh = np.array([self.rows[s][1] for s in shas], dtype=np.uint64)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, format=np.int64(CACHE_FORMAT), sha256=np.array(shas), emb=emb, dhash=dh)
        self.dirty = False


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], preprocess: Callable):
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            x = self.preprocess(read_image(self.paths[i]))
            return x, dhash_file(self.paths[i]), True, ""
        except (ImageDecodeError, OSError, ValueError) as e:
            return None, 0, False, str(e)


def _collate(batch):
    good = [b for b in batch if b[2]]
    x = torch.stack([b[0] for b in good]) if good else None
    return x, [b[1] for b in batch], [b[2] for b in batch], [b[3] for b in batch]


def head_logits(head: nn.Module, embeddings: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Apply the model's own head to cached embeddings (exactly what the full model computes)."""
    head.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(embeddings), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(embeddings[i : i + batch_size]))
            out.append(head(x.to(next(head.parameters()).dtype)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, head.out_features), np.float32)


def compute_outputs(
    pretrained: Any,
    paths: Sequence[str],
    *,
    cache: EmbeddingCache | None = None,
    sha256: Sequence[str] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: Callable[[int], None] | None = None,
    given: np.ndarray | None = None,
) -> ImageOutputs:
    """Logits, embeddings and perceptual hashes for `paths`; cached images skip the network.

    Logits of cached images are recomputed from their embedding through the model's head, so
    they equal those of a full forward pass. `given`: embeddings already known for every path
    (e.g. the training run's feature cache); then only the perceptual hashes are computed.
    """
    model: nn.Module = pretrained.model
    model.eval()
    _, head = find_head(model)
    paths = [str(p) for p in paths]
    shas = list(sha256) if sha256 is not None else [sha256_file(p) for p in paths]
    n = len(paths)
    emb: list[np.ndarray | None] = [None] * n
    dh = np.zeros(n, dtype=np.uint64)
    ok = np.ones(n, dtype=bool)
    skipped: list[tuple[str, str]] = []
    todo = []
    for i, s in enumerate(shas):
        hit = cache.get(s) if cache is not None else None
        if hit is None and given is not None:
            try:
                hit = (np.asarray(given[i], dtype=np.float32), dhash_file(paths[i]))
            except (OSError, ValueError) as e:
                ok[i] = False
                skipped.append((paths[i], str(e)))
                continue
            if cache is not None:
                cache.put(s, hit[0], hit[1])
        if hit is None:
            todo.append(i)
        else:
            emb[i], dh[i] = hit[0], hit[1]
    if progress and n - len(todo):
        progress(n - len(todo))
    if cache is not None and not todo:
        cache.save()

    if todo:
        captured: list[torch.Tensor] = []

        def tap(_mod, inputs):
            captured.append(inputs[0].detach().flatten(1).float().cpu())

        handle = head.register_forward_pre_hook(tap)
        try:
            device = next(model.parameters()).device
            loader = torch.utils.data.DataLoader(
                _Images([paths[i] for i in todo], pretrained.preprocess),
                batch_size=batch_size,
                num_workers=num_workers,
                collate_fn=_collate,
            )
            pos = 0
            with torch.inference_mode():
                for x, hashes, oks, errs in loader:
                    idx = todo[pos : pos + len(oks)]
                    pos += len(oks)
                    good = [i for i, o in zip(idx, oks) if o]
                    for i, o, h, err in zip(idx, oks, hashes, errs):
                        if o:
                            dh[i] = h
                        else:
                            ok[i] = False
                            skipped.append((paths[i], err))
                    if x is not None:
                        captured.clear()
                        model(x.to(device))
                        if len(captured) != 1:
                            raise VisiontuneError(
                                f"the model's head was called {len(captured)} times in one forward "
                                "pass; cannot tell which call gives the embeddings"
                            )
                        feats = captured[0].numpy()
                        for j, i in enumerate(good):
                            emb[i] = feats[j]
                            if cache is not None:
                                cache.put(shas[i], feats[j], int(dh[i]))
                    if progress:
                        progress(len(oks))
        finally:
            handle.remove()
        if cache is not None:
            cache.save()

    dim = next((e.shape[0] for e in emb if e is not None), getattr(head, "in_features", 0))
    E = np.zeros((n, dim), dtype=np.float32)
    for i, e in enumerate(emb):
        if e is not None:
            E[i] = e
    logits = head_logits(head, E).astype(np.float32)
    logits[~ok] = np.nan
    return ImageOutputs(
        paths=paths,
        sha256=shas,
        logits=logits,
        embeddings=E,
        dhash=dh,
        ok=ok,
        skipped=skipped,
        n_computed=len(todo),
    )
