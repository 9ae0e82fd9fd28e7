"""Streaming feature extraction into a :class:`~visiontune.audit.store.FeatureStore`.

Images are decoded and preprocessed by DataLoader workers; the model runs batch by batch; a
forward pre-hook on the head keeps the head's input (the embedding); every ``chunk_rows`` rows
are appended and committed to the store. Rows the store already holds (by content) are never
recomputed, so a second run, a relabelled copy or a run resumed after a kill only computes what
is missing. Progress (with an ETA) goes through :func:`visiontune.progress.progress`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from visiontune.audit.store import FeatureStore
from visiontune.data import read_image
from visiontune.errors import ImageDecodeError, VisiontuneError
from visiontune.progress import progress as progress_bar

CHUNK_ROWS = 1024
MIN_HASH_SIDE = 16  # a perceptual hash needs more pixels than its 9x8 grid


def dhash(img, size: int = 8) -> int:
    """64-bit difference hash of a PIL image (robust to resizing and recompression).

    Images smaller than ``MIN_HASH_SIDE`` on a side carry too little detail for a perceptual
    hash (8×8 digit scans of one class all hash alike): they get a 64-bit digest of their pixels
    instead, so only pixel-identical tiny images count as visual duplicates."""
    from PIL import Image

    if min(img.size) < MIN_HASH_SIDE:
        d = hashlib.blake2b(img.convert("L").tobytes() + repr(img.size).encode(), digest_size=8).digest()
        return int.from_bytes(d, "big")
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


class ImageFiles(torch.utils.data.Dataset):
    """``(preprocessed tensor, dhash, ok, error)`` per image; ``loader`` reads a sample id
    (default: decode the file with :func:`visiontune.data.read_image`)."""

    def __init__(self, paths: Sequence[str], preprocess: Callable, loader: Callable | None = None):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.loader = loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        p = self.paths[i]
        try:
            if self.loader is None:
                x = self.preprocess(read_image(p))
                return x, dhash_file(p), True, ""
            img = self.loader(p)
            return self.preprocess(img), dhash(img), True, ""
        except (ImageDecodeError, OSError, ValueError) as e:
            return None, 0, False, str(e)


class TensorSamples(torch.utils.data.Dataset):
    """Adapts a dataset yielding ``(x, y)`` tensors (no files behind it) to the extractor."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i][0], 0, True, ""


def _collate(batch):
    good = [b for b in batch if b[2]]
    x = torch.stack([torch.as_tensor(b[0]) for b in good]) if good else None
    return x, [b[1] for b in batch], [b[2] for b in batch], [b[3] for b in batch]


@dataclass
class Extracted:
    """Rows of the requested samples in the store (-1 where the image could not be decoded)."""

    rows: np.ndarray
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (index into the samples, reason)
    computed: int = 0  # samples that went through the network
    seconds: float = 0.0


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted ``path`` (``"classifier"``, ``"head.fc"``, ``"blocks.3"``)."""
    m = model
    for part in path.split(".") if path else []:
        # an integer part indexes a Sequential / ModuleList (nn.Module itself has no __getitem__)
        m = cast(nn.Sequential, m)[int(part)] if part.lstrip("-").isdigit() else getattr(m, part)
    return m


@torch.no_grad()
def extract_to_store(
    model: nn.Module,
    head_path: str,
    samples: torch.utils.data.Dataset,
    keys: Sequence[str],
    store_open: Callable[[int, Sequence[int]], FeatureStore | None],
    store: FeatureStore | None = None,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: Any = None,
    progress: Callable[[int, int], None] | None = None,
    description: str = "features",
    show: bool = True,
    chunk_rows: int = CHUNK_ROWS,
) -> Extracted:
    """Make sure the store holds the embedding of every sample and return their rows.

    ``samples[i]`` gives ``(tensor, dhash, ok, error)`` (:class:`ImageFiles`, :class:`TensorSamples`);
    ``keys[i]`` is its sha256 hex content key. ``store`` is the store if it exists; otherwise
    ``store_open(dim, feature_shape)`` creates it once the first batch shows the width.
    """
    import time

    t0 = time.perf_counter()
    n = len(keys)
    rows = store.lookup(keys) if store is not None else np.full(n, -1, dtype=np.int64)
    todo_keys: dict[str, int] = {}
    for i in np.flatnonzero(rows < 0).tolist():
        todo_keys.setdefault(keys[i], int(i))  # identical content is computed once
    todo = list(todo_keys.values())
    skipped: list[tuple[int, str]] = []
    if not todo:
        if progress is not None:
            progress(n, n)
        return Extracted(rows, skipped, 0, 0.0)

    head = get_module(model, head_path)
    captured: list[torch.Tensor] = []

    def tap(_mod, inputs):
        captured.append(inputs[0].detach())

    handle = head.register_forward_pre_hook(tap)
    was_training = model.training
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(samples, todo),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    done_before = n - len(todo)
    buf_keys: list[str] = []
    buf_emb: list[np.ndarray] = []
    buf_dh: list[int] = []

    def flush() -> None:
        nonlocal store
        if not buf_keys:
            return
        e = np.concatenate(buf_emb)
        if store is None:
            store = store_open(e.shape[1], shape)
            assert store is not None, "FeatureStore.open creates the store when given its width"
        got = store.append(buf_keys, e, np.asarray(buf_dh, dtype=np.uint64))
        for k, r in zip(buf_keys, got):
            rows[np.asarray([i for i in same[k]])] = r
        buf_keys.clear()
        buf_emb.clear()
        buf_dh.clear()

    same: dict[str, list[int]] = {}
    for i in np.flatnonzero(rows < 0).tolist():
        same.setdefault(keys[i], []).append(int(i))
    shape: list[int] = []
    pos = 0
    try:
        with progress_bar(description, n, enabled=show and progress is None, unit="img") as bar:
            bar.update(done_before)
            if progress is not None:
                progress(done_before, n)
            for x, hashes, oks, errs in loader:
                idx = todo[pos : pos + len(oks)]
                pos += len(oks)
                good = [i for i, o in zip(idx, oks) if o]
                for i, o, err in zip(idx, oks, errs):
                    if not o:
                        skipped.extend((j, err) for j in same[keys[i]])
                if x is not None:
                    captured.clear()
                    model(x.to(device))
                    if len(captured) != 1:
                        raise VisiontuneError(
                            f"the model's head was called {len(captured)} times in one forward pass; "
                            "cannot tell which call gives the embeddings"
                        )
                    feats = captured[0]
                    shape = list(feats.shape[1:])
                    buf_emb.append(feats.flatten(1).float().cpu().numpy())
                    buf_keys.extend(keys[i] for i in good)
                    buf_dh.extend(int(h) for h, o in zip(hashes, oks) if o)
                    if len(buf_keys) >= chunk_rows:
                        flush()
                bar.update(done_before + pos)
                if progress is not None:
                    progress(done_before + pos, n)
            flush()
    finally:
        handle.remove()
        model.train(was_training)
    skipped.sort()
    return Extracted(rows, skipped, len(todo), time.perf_counter() - t0)
