"""Masks, polygons and the three run-length encodings the label tools use, on plain arrays.

* COCO RLE (pycocotools' ``mask`` API): what visiontune stores in its annotation versions.
* Label Studio brush RLE: the bit-packed ``rle-pack`` stream of the RGBA canvas (32-bit value
  count, 5-bit word size - 1, four 4-bit run-length field sizes - 1, then runs: 1 bit repeat /
  literal, 2 bits choosing the field size, the run length - 1, then the word or words). Label
  Studio's own exporter writes 8-bit words with field sizes 3, 4, 8 and 16 bits, each mask pixel
  repeated in all four channels; the decoder here reads any word / field size.
* CVAT mask RLE: alternating run lengths, background first, row-major over the mask's own
  ``left, top, width, height`` box.

Every mask is an ``(H, W)`` bool array in image pixels; polygons are ``(K, 2)`` float arrays of
pixel ``x, y``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as coco_mask

LS_WORD_SIZE = 8
LS_RLE_SIZES = (3, 4, 8, 16)


# -- geometry ----------------------------------------------------------------------------------
def polygon_to_mask(points: np.ndarray | Sequence, height: int, width: int) -> np.ndarray:
    """Rasterise one polygon (pixel ``x, y`` vertices) with pycocotools, as COCO does."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return np.zeros((height, width), bool)
    rles = coco_mask.frPyObjects([pts.reshape(-1).tolist()], int(height), int(width))
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Pixel ``x1, y1, x2, y2`` enclosing the mask (exclusive right/bottom), or None when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(ys) == 0:
        return None
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)


def polygon_bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    """``x1, y1, x2, y2`` of the polygon ``points``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def class_map_to_masks(class_map: np.ndarray, ignore: Sequence[int] = ()) -> dict[int, np.ndarray]:
    """``{class index: bool mask}`` for every class present in an ``(H, W)`` class-index map."""
    cm = np.asarray(class_map)
    return {int(c): cm == c for c in np.unique(cm) if int(c) not in set(ignore)}


def masks_to_class_map(masks: Sequence[tuple[int, np.ndarray]], height: int, width: int, fill: int = 0) -> np.ndarray:
    """An ``(H, W)`` int32 class map painted from ``(class index, mask)`` pairs, later ones on top."""
    out = np.full((height, width), fill, dtype=np.int32)
    for c, m in masks:
        out[np.asarray(m, bool)] = int(c)
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter / union) if union else 1.0


# -- COCO RLE ------------------------------------------------------------------------------------
def mask_to_coco_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE ``{"size": [h, w], "counts": str}`` (JSON-able)."""
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def coco_rle_to_mask(rle: dict) -> np.ndarray:
    """Decode compressed (string counts) or uncompressed (list counts) COCO RLE."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        obj = coco_mask.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    else:
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return coco_mask.decode(obj).astype(bool)


# -- run lengths (row-major) ---------------------------------------------------------------------
def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, values) of the runs of equal values in a 1-d array."""
    v = np.asarray(values).reshape(-1)
    if len(v) == 0:
        return np.zeros(0, np.int64), v[:0]
    change = np.flatnonzero(v[1:] != v[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(v)]]))
    return lengths.astype(np.int64), v[starts]


# -- CVAT mask RLE -------------------------------------------------------------------------------
def mask_to_cvat(mask: np.ndarray) -> tuple[str, int, int, int, int] | None:
    """``(rle, left, top, width, height)`` of a CVAT ``<mask>``, or None for an empty mask."""
    box = mask_bbox(mask)
    if box is None:
        return None
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = np.asarray(mask[y1:y2, x1:x2], bool)
    lengths, vals = _runs(crop.reshape(-1))
    counts = list(lengths.tolist())
    if vals[0]:  # CVAT's counts start with a background run, possibly empty
        counts = [0] + counts
    return ", ".join(str(c) for c in counts), x1, y1, x2 - x1, y2 - y1


def cvat_to_mask(rle: str, left: int, top: int, width: int, height: int, img_h: int, img_w: int) -> np.ndarray:
    """Decode a CVAT ``<mask>`` into a full-image bool mask. Raises ValueError when the counts
    do not add up to ``width * height`` or the box leaves the image."""
    counts = [int(c) for c in str(rle).replace(" ", "").split(",") if c != ""]
    if any(c < 0 for c in counts):
        raise ValueError("negative run length")
    if sum(counts) != width * height:
        raise ValueError(f"run lengths add up to {sum(counts)}, expected width*height = {width * height}")
    if left < 0 or top < 0 or left + width > img_w or top + height > img_h:
        raise ValueError(f"mask box {left},{top} {width}x{height} leaves the {img_w}x{img_h} image")
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    out = np.zeros((img_h, img_w), bool)
    out[top : top + height, left : left + width] = flat.reshape(height, width)
    return out


# -- Label Studio brush RLE ------------------------------------------------------------------------
class _Bits:
    """Big-endian bit writer."""

    def __init__(self) -> None:
        self.fields: list[tuple[int, int]] = []

    def put(self, value: int, nbits: int) -> None:
        self.fields.append((int(value), int(nbits)))

    def to_bytes(self) -> bytes:
        parts = "".join(format(v, f"0{n}b") for v, n in self.fields)
        parts += "0" * (-len(parts) % 8)
        return int(parts, 2).to_bytes(len(parts) // 8, "big") if parts else b""


def encode_ls_rle(
    values: np.ndarray, word_size: int = LS_WORD_SIZE, rle_sizes: Sequence[int] = LS_RLE_SIZES
) -> list[int]:
    """Label Studio's ``rle`` list (bytes as ints) for a flat array of words (repeat runs only)."""
    v = np.asarray(values).reshape(-1).astype(np.int64)
    if len(v) and (v.min() < 0 or v.max() >= 2**word_size):
        raise ValueError(f"values must fit in {word_size} bits")
    bits = _Bits()
    bits.put(len(v), 32)
    bits.put(word_size - 1, 5)
    for s in rle_sizes:
        bits.put(s - 1, 4)
    limits = [2**s for s in rle_sizes]  # a field of s bits holds run lengths 1 .. 2**s
    lengths, vals = _runs(v)
    for length, value in zip(lengths.tolist(), vals.tolist()):
        while length > 0:
            chunk = min(length, limits[-1])
            idx = next(i for i, lim in enumerate(limits) if chunk <= lim)
            bits.put(1, 1)
            bits.put(idx, 2)
            bits.put(chunk - 1, rle_sizes[idx])
            bits.put(value, word_size)
            length -= chunk
    return list(bits.to_bytes())


def decode_ls_rle(rle: Sequence[int]) -> np.ndarray:
    """The flat array of words in a Label Studio ``rle`` list (repeat and literal runs)."""
    raw = np.asarray(list(rle), dtype=np.uint8)
    bits = np.unpackbits(raw)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise ValueError("truncated Label Studio RLE")
        chunk = bits[pos : pos + n]
        pos += n
        return int(chunk.dot(1 << np.arange(n - 1, -1, -1, dtype=np.int64))) if n else 0

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint32 if word > 16 else np.uint16 if word > 8 else np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = min(num, i + 1 + read(sizes[read(2)]))
        if repeat:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out


def mask_to_brush(mask: np.ndarray) -> list[int]:
    """A bool ``(H, W)`` mask as Label Studio brush ``rle`` (RGBA canvas, 255 where set)."""
    m = np.asarray(mask, bool).astype(np.uint8) * 255
    return encode_ls_rle(np.repeat(m.reshape(-1), 4))


def brush_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode Label Studio brush ``rle`` of an ``height x width`` image (alpha channel > 0)."""
    flat = decode_ls_rle(rle)
    if len(flat) != height * width * 4:
        raise ValueError(f"brush RLE holds {len(flat)} values, expected {height}x{width}x4 = {height * width * 4}")
    return flat.reshape(height, width, 4)[:, :, 3] > 0
