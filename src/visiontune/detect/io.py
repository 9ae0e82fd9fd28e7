"""Image headers for detection; decoding and listing are `visiontune.data`'s (re-exported here)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from visiontune._atomic import atomic_path, write_text
from visiontune.data.decode import list_images, read_image
from visiontune.errors import ImageDecodeError
from visiontune.results import Detections


def image_size(path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied), read from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"cannot read image header of {path}: {e}") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


__all__ = ["image_size", "list_images", "read_image", "write_detections"]


def write_detections(
    paths: Sequence[str | os.PathLike],
    results: Sequence[Detections],
    out: str | os.PathLike,
    *,
    class_names: Sequence[str],
    model_id: str = "",
    draw: bool = True,
) -> dict[str, Path]:
    """Write what a detection pass found: ``predictions.json`` (COCO results format, image ids
    1..N in ``paths`` order), ``images.json`` (the COCO ``images`` + ``categories`` those ids refer
    to, and the model id) and, with ``draw``, one annotated copy of each image (a file name taken
    twice gets ``_1``, ``_2``…). Every file is written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    coco, imgs, used, written = [], [], set(), set()
    for i, (p, d) in enumerate(zip(paths, results), 1):
        p = Path(p)
        if d.image_size is not None:
            h, w = d.image_size
        else:  # a Detections built without its image size: read it from the file's header
            w, h = image_size(p)
        imgs.append({"id": i, "file_name": str(p), "width": w, "height": h})
        coco += d.to_coco(i)
        used.update(d.labels.tolist())
        if draw:
            suffix = p.suffix if p.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
            name, k = p.stem + suffix, 1
            while name in written:  # the same file name in two folders
                name, k = f"{p.stem}_{k}{suffix}", k + 1
            written.add(name)
            with atomic_path(out / name) as tmp:
                d.draw(read_image(p)).save(tmp, format="PNG" if suffix == ".png" else "JPEG")
    cats = [{"id": j, "name": class_names[j] if j < len(class_names) else str(j)} for j in sorted(used)]
    files = {"predictions": write_text(out / "predictions.json", json.dumps(coco))}
    files["images"] = write_text(
        out / "images.json", json.dumps({"images": imgs, "categories": cats, "model": model_id})
    )
    return files
