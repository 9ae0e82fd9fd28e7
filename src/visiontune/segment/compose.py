"""Segmenters composed from a YAML / dict — an encoder + a decoder, as Detectron2 / MMSegmentation
configs compose them — built with segmentation-models-pytorch (MIT) over timm or torchvision
encoders.

```yaml
encoder:
  source: timm                 # timm (any features_only model, smp's tu-<name>) | torchvision
  name: tf_efficientnet_lite0  # torchvision: resnet18/34/50/101/152, mobilenet_v2
  weights: null                # a local weights file, read through visiontune's trust gate
  pretrained: false            # the published weights from the local cache (visiontune.load)
  depth: 5                     # encoder stages feeding the decoder
decoder:
  type: fpn                    # fpn | unet | deeplabv3plus | deeplabv3 | lraspp | pspnet | linknet | manet | pan | upernet
  kwargs: {}                   # passed to the smp architecture (e.g. decoder_channels)
image: {size: [240, 320]}      # training / inference input (H, W); mean/std default to the encoder's
classes: [road, car, …]        # or num_classes: N
ignore_index: 255              # the void label of the data
background: false              # whether class 0 is a "background" class
```

Encoder weights come only through ``visiontune.load`` / ``load_state_dict_file`` (the cache
lookup, download rules and trust gate): smp is never asked to download or unpickle anything.
A saved composed segmenter carries the config as its recipe (``builder: segmenter``), so
``visiontune.load(dir)`` rebuilds it.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from visiontune._config import load as load_config
from visiontune.errors import ConfigError, require
from visiontune.hub import Card, Preprocess, Pretrained, load, register_architecture
from visiontune.hub.preprocess import IMAGENET_MEAN, IMAGENET_STD

DECODERS = {
    "fpn": "FPN",
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "deeplabv3plus": "DeepLabV3Plus",
    "deeplabv3": "DeepLabV3",
    "pspnet": "PSPNet",
    "linknet": "Linknet",
    "manet": "MAnet",
    "pan": "PAN",
    "upernet": "UPerNet",
    "lraspp": None,  # torchvision's LRASPP head over the encoder's stride-8 and last features
}
TORCHVISION_ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2")


class EncoderCfg(BaseModel):
    """``encoder:`` of a composed segmenter: timm / torchvision backbone, weights and depth."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["timm", "torchvision"] = "timm"
    name: str
    weights: str | None = None
    pretrained: bool = False
    depth: int = Field(5, ge=3, le=5)


class DecoderCfg(BaseModel):
    """``decoder:``: the decoder type (FPN, U-Net, DeepLabV3+ …) and its keyword arguments."""

    model_config = ConfigDict(extra="forbid")
    type: str = "fpn"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ImageCfg(BaseModel):
    """``image:``: training size and normalisation."""

    model_config = ConfigDict(extra="forbid")
    size: tuple[int, int] = (256, 256)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


class SegmenterConfig(BaseModel):
    """The schema of a composed segmenter; `ConfigError` names the bad key."""

    model_config = ConfigDict(extra="forbid")
    encoder: EncoderCfg
    decoder: DecoderCfg = Field(default_factory=DecoderCfg)
    image: ImageCfg = Field(default_factory=ImageCfg)
    classes: list[str] | None = None
    num_classes: int | None = None
    ignore_index: int | None = 255
    background: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.classes is None and self.num_classes is None:
            raise ValueError("give classes: [names] or num_classes: N")
        if self.classes is not None and self.num_classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"classes has {len(self.classes)} names but num_classes is {self.num_classes}")
        if self.decoder.type.lower() not in DECODERS:
            raise ValueError(f"decoder.type {self.decoder.type!r}: one of {', '.join(DECODERS)}")
        if self.encoder.source == "torchvision" and self.encoder.name not in TORCHVISION_ENCODERS:
            raise ValueError(
                f"encoder.name {self.encoder.name!r}: torchvision encoders are {', '.join(TORCHVISION_ENCODERS)}; "
                "any other backbone: source: timm"
            )
        return self

    @property
    def class_names(self) -> list[str]:
        """The class names (``class0``… when only ``num_classes`` is given)."""
        return list(self.classes) if self.classes is not None else [f"class{i}" for i in range(self.num_classes or 0)]


def parse_config(cfg: Any) -> SegmenterConfig:
    """A path to YAML (a ``segmenter:`` section or the whole file), a dict or a config."""
    return load_config(SegmenterConfig, cfg, section="segmenter", what="segmenter config")


class LRASPPSegmenter(nn.Module):
    """An smp encoder + torchvision's LRASPP head (MobileNetV3's decoder)."""

    def __init__(self, encoder: nn.Module, num_classes: int, inter_channels: int = 128):
        super().__init__()
        from torchvision.models.segmentation.lraspp import LRASPPHead

        self.encoder = encoder
        ch = cast(list[int], encoder.out_channels)  # smp encoders: the width of each stage
        self.low, self.high = len(ch) - 3, len(ch) - 1  # stride 8 and the last stage
        self.segmentation_head = LRASPPHead(ch[self.low], ch[self.high], num_classes, inter_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        out = self.segmentation_head({"low": feats[self.low], "high": feats[self.high]})
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


class PaddedSegmenter(nn.Module):
    """Pads the input to a multiple of the encoder's output stride (smp decoders need it), runs
    ``net`` and crops the logits back: any input size works (CamVid's 240×320, 360×480)."""

    def __init__(self, net: nn.Module, stride: int = 32):
        super().__init__()
        self.net = net
        self.stride = int(stride)

    @property
    def encoder(self) -> nn.Module:
        """The wrapped segmenter's encoder."""
        return cast(nn.Module, self.net.encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        out = self.net(x)
        if out.shape[-2:] != x.shape[-2:]:  # decoders with a fixed upsampling at another depth
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out[..., :h, :w] if (ph or pw) else out


def _encoder_state(cfg: EncoderCfg, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], Card]:
    """The encoder's pretrained tensors and card through ``visiontune.load`` (trust gate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the partial-load warning: checked below
        p = load(f"{cfg.source}:{cfg.name}", weights=cfg.weights, trust_pickle=trust_pickle, strict=cfg.weights is None)
    rep = p.load_report
    if rep is not None and rep.shape_mismatch:
        raise ConfigError(f"encoder.weights {cfg.weights} does not fit {cfg.source} {cfg.name}: {rep.details(8)}")
    return p.model.state_dict(), p.card


def _load_encoder(encoder: nn.Module, cfg: EncoderCfg, state: dict[str, torch.Tensor]) -> None:
    target = cast(nn.Module, encoder.model) if cfg.source == "timm" else encoder  # smp TimmUniversalEncoder.model
    own = target.state_dict()
    missing = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if missing:
        raise ConfigError(
            f"encoder weights of {cfg.source}:{cfg.name} do not cover the encoder: {len(missing)} tensors "
            f"missing or of another shape (e.g. {', '.join(missing[:4])})"
        )
    target.load_state_dict({k: state[k] for k in own})


def build_segmenter(
    cfg: Any, load_encoder_weights: bool = True, *, trust_pickle: bool = False
) -> tuple[nn.Module, Card | None]:
    """The segmentation network of a composed config and the encoder's weights card (None when
    no pretrained weights were loaded). Output: logits N×C×H×W at the input size."""
    cfg = parse_config(cfg)
    smp = require("segmentation_models_pytorch", "segment", "composed segmenters")
    e = cfg.encoder
    enc_name = f"tu-{e.name}" if e.source == "timm" else e.name
    kind = cfg.decoder.type.lower()
    n = len(cfg.class_names)
    try:
        if kind == "lraspp":
            encoder = smp.encoders.get_encoder(enc_name, in_channels=3, depth=e.depth, weights=None)
            model: nn.Module = LRASPPSegmenter(encoder, n, **cfg.decoder.kwargs)
        else:
            decoder = DECODERS[kind]
            assert decoder is not None  # only lraspp (handled above) has no smp class
            arch = getattr(smp, decoder)
            kw = dict(cfg.decoder.kwargs)
            if kind in ("unet", "unetplusplus", "manet") and "decoder_channels" not in kw:
                kw["decoder_channels"] = (256, 128, 64, 32, 16)[5 - e.depth :]  # one per encoder stage
            model = arch(encoder_name=enc_name, encoder_weights=None, encoder_depth=e.depth, classes=n, **kw)
    except (KeyError, RuntimeError) as err:
        raise ConfigError(f"encoder.name: cannot build {e.source} {e.name!r} as an encoder: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"decoder.kwargs / encoder.depth: {err}") from err
    except Exception as err:
        if "Unknown model" in str(err) or "Unsupported model" in str(err):
            raise ConfigError(f"encoder.name: {e.source} has no usable encoder {e.name!r} ({err})") from err
        raise
    if hasattr(model, "requires_divisible_input_shape"):
        setattr(model, "requires_divisible_input_shape", False)  # noqa: B010 - PaddedSegmenter pads
    model = PaddedSegmenter(model, 2**e.depth)
    card = None
    if load_encoder_weights and (e.pretrained or e.weights is not None):
        state, card = _encoder_state(e, trust_pickle)
        _load_encoder(model.encoder, e, state)
    return model, card


def build_from_recipe(recipe: dict, *, trust_pickle: bool = False) -> nn.Module:
    """The architecture builder for recipes ``{"builder": "segmenter", "config": {...}}``."""
    return build_segmenter(recipe["config"], load_encoder_weights=False, trust_pickle=trust_pickle)[0]


def composed_segmenter(cfg: Any, load_encoder_weights: bool = True, *, trust_pickle: bool = False) -> Pretrained:
    """A `Pretrained` (task ``segmentation``) for a composed config: untrained decoder, encoder
    weights as configured; its card carries the recipe, classes and label conventions."""
    cfg = parse_config(cfg)
    model, enc_card = build_segmenter(cfg, load_encoder_weights, trust_pickle=trust_pickle)
    mean = cfg.image.mean or (enc_card.mean if enc_card and enc_card.mean else None) or IMAGENET_MEAN
    std = cfg.image.std or (enc_card.std if enc_card and enc_card.std else None) or IMAGENET_STD
    cfg = cfg.model_copy(update={"image": cfg.image.model_copy(update={"mean": tuple(mean), "std": tuple(std)})})
    pre = Preprocess(resize=tuple(cfg.image.size), crop=None, mean=tuple(mean), std=tuple(std))
    name = f"{cfg.encoder.source}:{cfg.encoder.name}+{cfg.decoder.type.lower()}"
    card = Card(
        source="visiontune",
        name=name,
        model_id=f"composed:{name}",
        task="segmentation",
        num_classes=len(cfg.class_names),
        class_names=cfg.class_names,
        input_size=(3, *cfg.image.size),
        resize_size=tuple(cfg.image.size),
        mean=tuple(mean),
        std=tuple(std),
        preprocess_source="composed segmenter config (image.size; mean/std of the encoder's weights)",
        license_code="Apache-2.0 (visiontune) + MIT (segmentation-models-pytorch)",
        num_params=sum(p.numel() for p in model.parameters()),
        pretrained=enc_card is not None,
        weights_sha256=enc_card.weights_sha256 if enc_card else None,
        weights_file=enc_card.weights_file if enc_card else None,
        recipe={"builder": "segmenter", "config": cfg.model_dump(mode="json")},
        extra={
            "ignore_index": cfg.ignore_index,
            "background": cfg.background,
            "reduce_labels": False,
            "encoder": enc_card.model_id if enc_card else f"{cfg.encoder.source}:{cfg.encoder.name} (random init)",
            **({} if enc_card else {"random_weights": True}),
        },
    )
    return Pretrained(model, card, pre)


register_architecture("segmenter", build_from_recipe)
