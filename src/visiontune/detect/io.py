"""Image headers for detection; decoding and listing are `visiontune.data`'s (re-exported here)."""

from __future__ import annotations

from PIL import Image

from visiontune.data.decode import list_images, read_image
from visiontune.errors import ImageDecodeError


def image_size(path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied), read from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"cannot read image header of {path}: {e}") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


__all__ = ["image_size", "list_images", "read_image"]
