"""Preprocessing built from a card's values: one object, serialisable, the same for PIL and tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from visiontune.errors import ConfigError

INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "lanczos": InterpolationMode.LANCZOS,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
}
# PIL resample ids used by Hugging Face image processors
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(x: int | Sequence[int] | None) -> tuple[int, int] | None:
    if x is None:
        return None
    if isinstance(x, int):
        return (x, x)
    x = tuple(int(v) for v in x)
    return (x[0], x[0]) if len(x) == 1 else (x[0], x[1])


def interpolation_name(mode: Any) -> str:
    """The interpolation name (``bilinear``, ``bicubic`` …) of a torchvision mode, PIL constant or string."""
    if isinstance(mode, InterpolationMode):
        return mode.value
    if isinstance(mode, int):
        return PIL_RESAMPLE.get(mode, "bilinear")
    s = str(mode).lower()
    if s.startswith("interpolationmode."):
        s = s.split(".", 1)[1]
    if s not in INTERPOLATIONS:
        raise ConfigError(f"unknown interpolation {mode!r}; one of {sorted(INTERPOLATIONS)}")
    return s


@dataclass
class Preprocess:
    """Eval preprocessing: resize → centre crop → float in [0, 1] → normalise.

    ``resize``: an int resizes the shorter edge (aspect kept); an (h, w) pair resizes to exactly
    that ("squash"). ``crop``: (h, w) centre crop, or None. ``mean``/``std`` None means the model
    takes un-normalised [0, 1] input (it normalises inside, as torchvision detectors do).
    """

    resize: int | tuple[int, int] | None
    crop: tuple[int, int] | None
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    antialias: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.resize, (list, tuple)):
            self.resize = _pair(self.resize)
        self.crop = _pair(self.crop)
        self.interpolation = interpolation_name(self.interpolation)
        if self.mean is not None:
            self.mean = tuple(float(v) for v in self.mean)
        if self.std is not None:
            self.std = tuple(float(v) for v in self.std)

    # -- the transform -------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int] | None:
        """The ``(h, w)`` the model sees: the crop, else a two-sided resize (None when neither fixes it)."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.resize, tuple):
            return self.resize
        return None

    def to_float(self, img: Image.Image | torch.Tensor) -> torch.Tensor:
        """Resize + crop + [0, 1] float tensor, no normalisation."""
        if isinstance(img, Image.Image):
            if img.mode != "RGB":
                img = img.convert("RGB")
        elif not isinstance(img, torch.Tensor):
            raise TypeError(f"expected a PIL image or a CHW tensor, got {type(img).__name__}")
        mode = INTERPOLATIONS[self.interpolation]
        if self.resize is not None:
            size = list(self.resize) if isinstance(self.resize, tuple) else [self.resize]
            img = F.resize(img, size, interpolation=mode, antialias=self.antialias)
        if self.crop is not None:
            img = F.center_crop(img, list(self.crop))
        x = F.pil_to_tensor(img) if isinstance(img, Image.Image) else img
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif not x.is_floating_point():
            x = F.to_dtype(x, torch.float32, scale=True)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` normalised with the mean / std (unchanged when the model takes un-normalised input)."""
        if self.mean is None or self.std is None:
            return x
        return F.normalize(x, list(self.mean), list(self.std))

    def __call__(self, img: Image.Image | torch.Tensor) -> torch.Tensor:
        return self.normalize(self.to_float(img))

    # -- augmentation from the same config -----------------------------------------------------
    def train_transform(self, strength: str = "default") -> v2.Compose:
        """Training augmentation with the same output size, interpolation and normalisation.

        ``light``: random resized crop (scale 0.5–1) + horizontal flip; ``default``: scale
        0.25–1, flip, mild colour jitter; ``strong``: scale 0.08–1, flip, TrivialAugmentWide.
        """
        size = self.input_size or _pair(self.resize)  # type: ignore[arg-type]
        if size is None:
            raise ConfigError("a training transform needs an output size: set resize or crop in the preprocessing")
        mode = INTERPOLATIONS[self.interpolation]
        scale = {"light": (0.5, 1.0), "default": (0.25, 1.0), "strong": (0.08, 1.0)}
        if strength not in scale:
            raise ConfigError(f"strength must be one of {sorted(scale)}, got {strength!r}")
        ops: list = [v2.ToImage()]
        ops.append(v2.RandomResizedCrop(list(size), scale=scale[strength], interpolation=mode, antialias=True))
        ops.append(v2.RandomHorizontalFlip())
        if strength == "default":
            ops.append(v2.ColorJitter(0.2, 0.2, 0.2))
        elif strength == "strong":
            ops.append(v2.TrivialAugmentWide(interpolation=mode))
        ops.append(v2.ToDtype(torch.float32, scale=True))
        if self.mean is not None and self.std is not None:
            ops.append(v2.Normalize(list(self.mean), list(self.std)))
        return v2.Compose(ops)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The preprocessing as JSON-ready values (what cards and sidecars store)."""
        d = asdict(self)
        d["resize"] = list(self.resize) if isinstance(self.resize, tuple) else self.resize
        d["crop"] = list(self.crop) if self.crop else None
        d["mean"] = list(self.mean) if self.mean else None
        d["std"] = list(self.std) if self.std else None
        d["value_range"] = [0.0, 1.0]
        d["channel_order"] = "RGB"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        """A `Preprocess` from `to_dict` output (unknown keys ignored)."""
        keys = {"resize", "crop", "interpolation", "mean", "std", "antialias", "extra"}
        return cls(**{k: v for k, v in d.items() if k in keys})

    def describe(self) -> str:
        """One line: resize, crop, interpolation and normalisation."""
        r = self.resize if not isinstance(self.resize, tuple) else "x".join(map(str, self.resize))
        c = "x".join(map(str, self.crop)) if self.crop else "none"
        n = f"mean={self.mean} std={self.std}" if self.mean else "no normalisation"
        return f"resize {r} ({self.interpolation}) → crop {c} → [0,1] → {n}"

    def __repr__(self) -> str:
        return f"Preprocess({self.describe()})"
