"""Drawing boxes, class names and scores on images (PIL only)."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visiontune.data.decode import read_image


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated colour for a class id (golden-ratio hue walk)."""
    h = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_detections(
    image, detections, line_width: int | None = None, font_size: int | None = None, mask_alpha: float = 0.4
) -> Image.Image:
    """Copy of ``image`` with every detection drawn: box, ``name score`` tag, mask overlay."""
    if not isinstance(image, Image.Image):
        image = read_image(image)
    img = image.convert("RGB").copy()
    w, h = img.size
    lw = line_width or max(1, round(min(w, h) / 250))
    font = _font(font_size or max(10, round(min(w, h) / 40)))
    if detections.masks is not None and len(detections):
        overlay = np.zeros((h, w, 3), np.float32)
        alpha = np.zeros((h, w, 1), np.float32)
        for m, lab in zip(detections.masks, detections.labels.tolist()):
            on = (m.float().reshape(h, w) > 0.5).numpy()
            overlay[on] = class_color(lab)
            alpha[on] = mask_alpha
        base = np.asarray(img, np.float32)
        img = Image.fromarray((base * (1 - alpha) + overlay * alpha).round().astype(np.uint8))
    d = ImageDraw.Draw(img)
    for box, s, lab, name in zip(
        detections.boxes.tolist(), detections.scores.tolist(), detections.labels.tolist(), detections.names
    ):
        color = class_color(lab)
        d.rectangle(box, outline=color, width=lw)
        tag = f"{name} {s:.2f}"
        left, top, right, bottom = d.textbbox((0, 0), tag, font=font)
        tw, th = right - left, bottom - top + 2 * lw
        x1, y1 = box[0], box[1]
        y_tag = y1 - th if y1 - th >= 0 else y1
        d.rectangle([x1, y_tag, x1 + tw + 2 * lw, y_tag + th], fill=color)
        d.text((x1 + lw, y_tag + lw - top), tag, fill=(0, 0, 0) if sum(color) > 380 else (255, 255, 255), font=font)
    return img
