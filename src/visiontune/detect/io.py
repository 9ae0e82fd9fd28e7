"""Image reading and listing for detection (defers to `visiontune.data.read_image` when present)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from visiontune.errors import DatasetError, ImageDecodeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_image(path) -> Image.Image:
    """Decode an image file to RGB (EXIF orientation applied); ImageDecodeError names the file."""
    try:
        from visiontune.data import read_image as data_read_image
    except ImportError:
        data_read_image = None
    if data_read_image is not None:
        return data_read_image(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"cannot decode image {path}: {e}; check the file or remove it") from e


def image_size(path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied), read from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"cannot read image header of {path}: {e}") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def list_images(inputs) -> list[Path]:
    """Expand files / directories (recursive, sorted) into image paths."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise DatasetError(f"no such image file or directory: {p}")
    if not out:
        raise DatasetError(f"no images found in {', '.join(map(str, inputs))} (suffixes: {sorted(IMAGE_SUFFIXES)})")
    return out
