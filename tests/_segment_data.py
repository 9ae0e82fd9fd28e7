"""Small synthetic segmentation data for the segment tests: rectangles of known classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["background", "red", "green"]
COLORS = {1: (220, 30, 30), 2: (30, 200, 40)}


def make_mask_folder(
    root: Path, n: int = 12, size: tuple[int, int] = (48, 64), seed: int = 0, void: bool = True
) -> Path:
    """``root/{train,val}/{images,masks}`` + classes.txt: noise background, one red and one green
    rectangle per image, a 2-pixel void (255) border."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, count in (("train", n), ("val", max(2, n // 3))):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = rng.integers(60, 140, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            for c in (1, 2):
                y0, x0 = rng.integers(0, h - 16), rng.integers(0, w - 16)
                y1, x1 = y0 + rng.integers(10, 16), x0 + rng.integers(10, 16)
                img[y0:y1, x0:x1] = COLORS[c]
                mask[y0:y1, x0:x1] = c
            if void:
                mask[:2], mask[-2:] = 255, 255
            Image.fromarray(img).save(root / split / "images" / f"im{i:03d}.jpg", quality=95)
            Image.fromarray(mask, mode="L").save(root / split / "masks" / f"im{i:03d}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


TINY_SEGMENTER = {
    "encoder": {"source": "timm", "name": "resnet18", "depth": 3},
    "decoder": {"type": "fpn", "kwargs": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}},
    "image": {"size": [48, 64]},
    "classes": CLASSES,
}


def save_tiny_sam(folder: Path) -> Path:
    """An untrained, tiny Hugging Face SAM (model + image processor) saved to ``folder``, offline."""
    import transformers as T

    cfg = T.SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, output_channels=32,
                           image_size=128, patch_size=16, window_size=4, global_attn_indexes=[0], mlp_dim=64,
                           num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_dim=64,
                                 iou_head_hidden_dim=32),
    )  # fmt: skip
    T.SamModel(cfg).save_pretrained(folder)
    T.SamImageProcessor(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128}).save_pretrained(folder)
    return folder
