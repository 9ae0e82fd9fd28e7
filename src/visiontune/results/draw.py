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


def draw_legend(
    img: Image.Image, entries: list[tuple[str, tuple[int, int, int]]], font_size: int | None = None
) -> Image.Image:
    """``img`` with a legend strip (a colour swatch and a name per entry) added on the right."""
    if not entries:
        return img
    w, h = img.size
    font = _font(font_size or max(10, round(min(w, h) / 30)))
    probe = ImageDraw.Draw(img)
    row = int(max(probe.textbbox((0, 0), "Ag", font=font)[3] + 6, 14))  # pixel boxes: ints, typed float
    text_w = int(max(probe.textbbox((0, 0), name, font=font)[2] for name, _ in entries))
    cols = max(1, -(-len(entries) * row // max(h - 8, row)))
    per_col = -(-len(entries) // cols)
    col_w = row + 8 + text_w + 10
    out = Image.new("RGB", (w + cols * col_w, max(h, per_col * row + 8)), (255, 255, 255))
    out.paste(img, (0, 0))
    d = ImageDraw.Draw(out)
    for k, (name, color) in enumerate(entries):
        x = w + (k // per_col) * col_w + 6
        y = 4 + (k % per_col) * row
        d.rectangle([x, y + 2, x + row - 4, y + row - 4], fill=color, outline=(0, 0, 0))
        d.text((x + row + 2, y + 1), name, fill=(0, 0, 0), font=font)
    return out


def draw_segmentation(
    image,
    seg,
    *,
    alpha: float = 0.5,
    legend: bool = True,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Copy of ``image`` with a `Segmentation`'s class map (ignore-index pixels left clear) and
    instance masks overlaid in class colours, instance boxes and scores, and a legend."""
    if not isinstance(image, Image.Image):
        image = read_image(image)
    img = image.convert("RGB")
    present: dict[int, str] = {}
    names = list(seg.class_names)
    if seg.class_map is not None:
        cm = seg.class_map.numpy()
        if cm.shape != (img.size[1], img.size[0]):
            img = img.resize((cm.shape[1], cm.shape[0]), Image.Resampling.BILINEAR)
        base = np.asarray(img, np.float32)
        overlay = base.copy()
        valid = np.ones(cm.shape, bool) if seg.ignore_index is None else cm != seg.ignore_index
        for c in np.unique(cm[valid]).tolist():
            overlay[cm == c] = class_color(int(c))
            present[int(c)] = names[c] if 0 <= c < len(names) else str(c)
        a = np.where(valid, alpha, 0.0)[..., None]
        img = Image.fromarray((base * (1 - a) + overlay * a).round().astype(np.uint8))
    if len(seg):
        img = draw_detections(img, seg, line_width=line_width, font_size=font_size, mask_alpha=alpha)
        for lab, name in zip(seg.labels.tolist(), seg.names):
            present[int(lab)] = name
    if legend:
        img = draw_legend(img, [(present[c], class_color(c)) for c in sorted(present)], font_size)
    return img
