"""Robust image decoding: every readable image becomes an 8-bit RGB ``PIL.Image``.

``read_image`` applies the EXIF orientation, converts every Pillow mode to RGB (alpha is
composited on white, 16-bit and float data are scaled to 8 bits), and turns every failure
(missing, empty, truncated, corrupt, not an image, decompression bomb) into an
``ImageDecodeError`` that names the file and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visiontune.errors import DatasetError, ImageDecodeError

#: File extensions treated as images when scanning folders (compared lower-cased).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

#: Default pixel limit (width x height) above which a file is refused as a possible
#: decompression bomb (about 13k x 13k; the point where Pillow itself refuses a file;
#: Pillow warns from 89 Mpx on).
#: Lower it per call or with ``VISIONTUNE_MAX_IMAGE_PIXELS``; raising it beyond this also needs
#: Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` raised.
DEFAULT_MAX_PIXELS = 2 * 89_478_485


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a non-hidden file name with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The one image-listing function: files are kept as given, folders are searched recursively
    (sorted, hidden files skipped) for :data:`IMAGE_EXTENSIONS`. Raises
    :class:`~visiontune.errors.DatasetError` for a path that does not exist or when nothing is found."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
        elif p.is_file():
            out.append(p)
        else:
            raise DatasetError(f"no such image file or directory: {p}")
    if not out:
        raise DatasetError(
            f"no images found in {', '.join(map(str, inputs))} (suffixes: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return out


def _max_pixels(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get("VISIONTUNE_MAX_IMAGE_PIXELS")
    if env:
        try:
            return int(env)
        except ValueError:
            pass
    return DEFAULT_MAX_PIXELS


def _scale_to_uint8(img: Image.Image) -> Image.Image:
    """Single-channel 16-bit / 32-bit int / float image -> 8-bit 'L', scaled by its value range.

    I;16* modes are 16-bit by definition: 0..65535 maps to 0..255. Mode 'I' holds 16-bit data
    when its values fit 0..65535 (8-bit data when they fit 0..255, kept as is); anything else
    and mode 'F' outside 0..1 are min-max normalised. Float data within 0..1 is multiplied by 255.
    """
    mode = img.mode
    arr = np.asarray(img)
    if mode.startswith("I;16"):
        arr = arr.astype(np.float64) * (255.0 / 65535.0)
    elif mode == "I":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 255:
            arr = arr.astype(np.float64)
        elif lo >= 0 and hi <= 65535:
            arr = arr.astype(np.float64) * (255.0 / 65535.0)
        else:
            arr = (arr.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1))
    else:  # "F"
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        flo, fhi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if flo >= 0.0 and fhi <= 1.0:
            arr = arr * 255.0
        else:
            arr = (arr - flo) * (255.0 / (fhi - flo if fhi > flo else 1.0))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow image mode to 8-bit RGB (transparency composited on white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _scale_to_uint8(img).convert("RGB")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return _composite_on_white(img.convert("RGBA"))
    if mode == "P":
        if "transparency" in img.info or img.palette is not None and img.palette.mode == "RGBA":
            return _composite_on_white(img.convert("RGBA"))
        return img.convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    # L, CMYK, YCbCr, LAB, HSV, RGBX ...
    return img.convert("RGB")


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Read an image file as an 8-bit RGB ``PIL.Image`` with its EXIF orientation applied.

    Raises :class:`~visiontune.errors.ImageDecodeError` naming the file and the reason when the
    file is missing, empty, not an image, truncated or corrupt, or larger than ``max_pixels``
    (default :data:`DEFAULT_MAX_PIXELS`, or ``$VISIONTUNE_MAX_IMAGE_PIXELS``) — a guard against decompression bombs.
    """
    p = Path(path)
    limit = _max_pixels(max_pixels)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(f"{p}: file not found") from None
    except OSError as e:
        raise ImageDecodeError(f"{p}: cannot read the file ({e.strerror or e})") from None
    if p.is_dir():
        raise ImageDecodeError(f"{p}: is a folder, not an image file")
    if size == 0:
        raise ImageDecodeError(f"{p}: file is empty (0 bytes)")
    try:
        with Image.open(p) as opened:
            img = opened
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageDecodeError(f"{p}: image has no pixels ({w}x{h})")
            if w * h > limit:
                raise ImageDecodeError(
                    f"{p}: {w}x{h} = {w * h:,} pixels exceeds the limit of {limit:,} "
                    "(possible decompression bomb); pass max_pixels= or set "
                    "VISIONTUNE_MAX_IMAGE_PIXELS to allow it"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF / multi-page TIFF: the first frame
            img.load()
            upright: Image.Image = img
            try:
                upright = ImageOps.exif_transpose(img) or img
            except Exception:  # malformed EXIF block: keep the pixels as stored
                pass
            rgb = to_rgb(upright)
            # closing the file destroys the opened image's pixels: detach them first
            return rgb.copy() if rgb is opened else rgb
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, ImportError):
        # ImportError: some libraries (e.g. ultralytics) patch Image.open to fetch an optional
        # decoder plugin on unknown formats and fail with ImportError when it is absent.
        with open(p, "rb") as f:
            head = f.read(16)
        raise ImageDecodeError(f"{p}: not a recognised image format ({size} bytes, starts with {head!r})") from None
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{p}: refused as a possible decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower():
            reason = f"truncated file ({reason})"
        raise ImageDecodeError(f"{p}: cannot decode image: {reason}") from None
