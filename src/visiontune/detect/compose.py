"""Detectors composed from a YAML / dict: backbone + FPN neck + head + anchors + image sizes.

```yaml
backbone:
  source: timm                 # timm (any features_only model) | torchvision
  name: mobilenetv3_small_100
  pretrained: false            # timm: its pretrained weights from the local cache
  weights: null                # a local weights file (safetensors / weights-only .pth)
  out_indices: [2, 3, 4]       # stages feeding the neck (timm numbering: 0 = first stage)
  trainable_layers: 3          # stages trained, counted from the top; "all"; default: 3 when
                               # the backbone is pretrained (torchvision's default), all when not
  frozen_bn: true              # BatchNorm -> FrozenBatchNorm2d (default: true when pretrained)
neck:
  channels: 128                # FPN width
  extra: auto                  # auto | none | pool | p6p7 (auto: pool for Faster R-CNN, p6p7 otherwise)
head:
  type: faster_rcnn            # faster_rcnn | retinanet | fcos
  kwargs: {}                   # passed to torchvision's FasterRCNN / RetinaNet / FCOS
anchors:                       # optional; default: derived from the feature strides
  sizes: [32, 64, 128, 256]    # one per FPN level (or a list per level)
  aspect_ratios: [0.5, 1.0, 2.0]
image: {min_size: 128, max_size: 160}
classes: [cat, dog]            # or num_classes: 2 (without background)
```
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from visiontune._config import load as load_config
from visiontune.errors import ConfigError
from visiontune.hub import load, load_into, load_state_dict_file
from visiontune.hub.heads import find_head

from .detector import Detector
from .models import (
    _anchor_generator,
    backbone_stages,
    freeze_backbone,
    freeze_batchnorm,
    normalise_anchors,
)

if TYPE_CHECKING:
    from timm.models import FeatureInfo


class BackboneCfg(BaseModel):
    """``backbone:`` of a composed detector: timm / torchvision model, weights and trainable stages."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["timm", "torchvision"] = "timm"
    name: str
    pretrained: bool = False
    weights: str | None = None
    out_indices: list[int] | None = None
    trainable_layers: int | Literal["all"] | None = None  # None: 3 when pretrained, else all
    frozen_bn: bool | None = None


class NeckCfg(BaseModel):
    """``neck:``: FPN channels and the extra levels."""

    model_config = ConfigDict(extra="forbid")
    channels: int = Field(128, gt=0)
    extra: Literal["auto", "none", "pool", "p6p7"] = "auto"


class HeadCfg(BaseModel):
    """``head:``: Faster R-CNN, RetinaNet or FCOS, with extra keyword arguments."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["faster_rcnn", "retinanet", "fcos"] = "faster_rcnn"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class AnchorsCfg(BaseModel):
    """``anchors:``: sizes per level and aspect ratios (defaults from the head)."""

    model_config = ConfigDict(extra="forbid")
    sizes: list[int | float | list[int | float]] | None = None
    aspect_ratios: list[float | list[float]] | None = None


class ImageCfg(BaseModel):
    """``image:``: the detector's resize range and normalisation."""

    model_config = ConfigDict(extra="forbid")
    min_size: int = Field(512, gt=0)
    max_size: int = Field(683, gt=0)
    mean: list[float] | None = None
    std: list[float] | None = None


class ComposeConfig(BaseModel):
    """The schema of a composed detector; `ConfigError` names the bad key."""

    model_config = ConfigDict(extra="forbid")
    backbone: BackboneCfg
    neck: NeckCfg = Field(default_factory=NeckCfg)
    head: HeadCfg = Field(default_factory=HeadCfg)
    anchors: AnchorsCfg = Field(default_factory=AnchorsCfg)
    image: ImageCfg = Field(default_factory=ImageCfg)
    classes: list[str] | None = None
    num_classes: int | None = None

    @model_validator(mode="after")
    def _classes(self):
        if self.classes is None and self.num_classes is None:
            raise ValueError("give classes: [names] or num_classes: N")
        if self.classes is not None and self.num_classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"classes has {len(self.classes)} names but num_classes is {self.num_classes}")
        return self

    @property
    def class_names(self) -> list[str]:
        """The class names (``class0``… when only ``num_classes`` is given)."""
        if self.classes is not None:
            return list(self.classes)
        assert self.num_classes is not None  # the validator requires classes or num_classes
        return [f"class{i}" for i in range(self.num_classes)]


def parse_config(cfg) -> ComposeConfig:
    """A path to YAML, a dict or a ComposeConfig -> validated ComposeConfig."""
    return load_config(ComposeConfig, cfg, section="detector", what="detector config")


# ----------------------------------------------------------------------------- backbones
class StagedBody(nn.Module):
    """Runs ``stages`` in order and returns the outputs of the selected ones (cuts the rest)."""

    def __init__(self, stages: list[nn.Module], out_indices: list[int]):
        super().__init__()
        last = max(out_indices)
        self.stages = nn.ModuleList(stages[: last + 1])
        self.out_indices = list(out_indices)

    def forward(self, x):
        outs = []
        for i, st in enumerate(self.stages):
            x = st(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


class TimmBody(nn.Module):
    """A timm ``features_only`` model; ``stages`` = stem, then each block / layer (input side first)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        taps = [info["module"] for info in model.feature_info.get_dicts()]
        units: list[nn.Module] = []
        stem: list[nn.Module] = []
        for n, m in model.named_children():
            if any(t.startswith(n + ".") for t in taps):
                units += list(m.children())
            elif n in taps or n.startswith(("layer", "stages", "blocks", "features")):
                units.append(m)
            elif not units and any(True for _ in m.parameters()):
                stem.append(m)
            elif any(True for _ in m.parameters()):
                units.append(m)
        self.stages = [nn.ModuleList(stem)] * bool(stem) + units

    def forward(self, x):
        return self.model(x)


def _pretrained_state(source: str, name: str, weights: str | None, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """The backbone's pretrained tensors through ``visiontune.load`` (its cache lookup, download
    rules and trust gate): the published weights, or a local file fitted by name, then by order
    and shape. Only the classifier head may be missing from the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the partial-load warning: checked below
        p = load(f"{source}:{name}", weights=weights, trust_pickle=trust_pickle, strict=weights is None)
    rep = p.load_report
    if rep is not None:
        head = find_head(p.model)[0]
        lost = [k for k in rep.missing if not k.startswith(head + ".")]
        if lost or rep.shape_mismatch:
            raise ConfigError(f"backbone.weights {weights} does not fit {source} {name}: {rep.details(8)}")
    return p.model.state_dict()


def _timm_body(cfg: BackboneCfg, trust_pickle: bool = False):
    import timm

    kw: dict[str, Any] = {"features_only": True}
    if cfg.out_indices is not None:
        kw["out_indices"] = tuple(cfg.out_indices)
    if cfg.pretrained or cfg.weights is not None:
        # timm adapts the tensors to the feature model with its own checkpoint filter
        sd = _pretrained_state("timm", cfg.name, cfg.weights, trust_pickle)
        kw.update(pretrained=True, pretrained_cfg_overlay={"source": "", "state_dict": sd})
    try:
        model = timm.create_model(cfg.name, **kw)
    except RuntimeError as e:
        raise ConfigError(f"backbone.name: timm cannot build {cfg.name!r} with features_only: {e}") from e
    except Exception as e:
        if "Unknown model" in str(e):
            raise ConfigError(f"backbone.name: timm has no model {cfg.name!r}") from e
        raise
    for attr in ("pretrained_cfg", "default_cfg"):  # do not keep a second copy of the weights
        if isinstance(getattr(model, attr, None), dict):
            getattr(model, attr).pop("state_dict", None)
    info = cast("FeatureInfo", model.feature_info)
    return TimmBody(model), info.channels(), info.reduction()


def _torchvision_stages(name: str) -> tuple[nn.Module, list[nn.Module]]:
    import torchvision.models as tvm

    try:
        model = tvm.get_model(name, weights=None)
    except ValueError as e:
        raise ConfigError(f"backbone.name: torchvision has no model {name!r}") from e
    if hasattr(model, "layer1"):  # ResNet / ResNeXt / Wide ResNet
        stem = nn.Sequential(model.conv1, model.bn1, model.relu)
        stages = [stem, nn.Sequential(model.maxpool, model.layer1), model.layer2, model.layer3, model.layer4]
        return model, stages
    feats = getattr(model, "features", None)
    if not isinstance(feats, nn.Sequential):
        raise ConfigError(
            f"backbone.name: torchvision {name} has neither layer1..4 nor a .features "
            "Sequential; use a ResNet / MobileNet / EfficientNet / ConvNeXt / VGG family model or timm"
        )
    # group blocks into stages that end where the resolution next halves
    x = torch.zeros(1, 3, 64, 64)
    groups: list[list[nn.Module]] = []
    cur: list[nn.Module] = []
    with torch.no_grad():
        feats.eval()
        for blk in feats:
            y = blk(x)
            if y.shape[-1] < x.shape[-1] and cur:
                groups.append(cur)
                cur = []
            cur.append(blk)
            x = y
        groups.append(cur)
    return model, [nn.Sequential(*g) for g in groups]


def _torchvision_body(cfg: BackboneCfg, load_weights: bool, trust_pickle: bool = False):
    model, stages = _torchvision_stages(cfg.name)
    if load_weights and cfg.weights is not None:
        sd = load_state_dict_file(cfg.weights, trust_pickle=trust_pickle)
        rep = load_into(model, sd, strict=False, source=str(cfg.weights))
        if rep.shape_mismatch or rep.unused:
            # Same names, other meaning (e.g. older torchvision key layouts): align purely by
            # order and shape, as the names mislead.
            rep = load_into(model, {f"ckpt::{k}": v for k, v in sd.items()}, strict=False, source=str(cfg.weights))
        lost = [k for k in rep.missing if not k.startswith(("fc.", "classifier."))]
        if lost or rep.unused or rep.shape_mismatch:
            raise ConfigError(f"backbone.weights {cfg.weights} does not fit torchvision {cfg.name}: {rep.details(8)}")
    elif load_weights and cfg.pretrained:
        model.load_state_dict(_pretrained_state("torchvision", cfg.name, None, trust_pickle))
    n = len(stages)
    out_idx = cfg.out_indices or list(range(max(0, n - 3), n))
    if any(i < 0 or i >= n for i in out_idx):
        raise ConfigError(f"backbone.out_indices {out_idx}: torchvision {cfg.name} has stages 0..{n - 1}")
    x = torch.zeros(1, 3, 64, 64)
    chans, reds = [], []
    with torch.no_grad():
        for st in stages:
            st.eval()
            x = st(x)
            chans.append(x.shape[1])
            reds.append(64 // x.shape[-1])
    body = StagedBody(stages, out_idx)
    return body, [chans[i] for i in out_idx], [reds[i] for i in out_idx]


class FPNBackbone(nn.Module):
    """Body + torchvision FeaturePyramidNetwork -> OrderedDict of maps, with ``out_channels``."""

    def __init__(self, body: nn.Module, in_channels: list[int], channels: int, extra: str):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import (
            FeaturePyramidNetwork,
            LastLevelMaxPool,
            LastLevelP6P7,
        )

        self.body = body
        block = {"pool": LastLevelMaxPool(), "p6p7": LastLevelP6P7(channels, channels), "none": None}[extra]
        self.fpn = FeaturePyramidNetwork(in_channels, channels, extra_blocks=block)
        self.out_channels = channels

    def forward(self, x):
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_composed(cfg, load_backbone_weights: bool = True, *, trust_pickle: bool = False) -> nn.Module:
    """Build a trainable torchvision detector from a composed config (see module docstring).
    ``load_backbone_weights=False`` skips the backbone's pretrained weights (used when a saved
    detector is restored: its own state dict follows). ``trust_pickle`` is for a pickled
    ``backbone.weights`` file, and comes from the caller, never from the config."""
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.ops import MultiScaleRoIAlign

    cfg = parse_config(cfg)
    b = cfg.backbone
    if b.source == "timm":
        if not load_backbone_weights:
            b = b.model_copy(update={"pretrained": False, "weights": None})
        body, chans, reds = _timm_body(b, trust_pickle)
    else:
        body, chans, reds = _torchvision_body(b, load_backbone_weights, trust_pickle)
    pretrained = cfg.backbone.pretrained or cfg.backbone.weights is not None
    if cfg.backbone.frozen_bn if cfg.backbone.frozen_bn is not None else pretrained:
        freeze_batchnorm(body)
    head = cfg.head.type
    extra = cfg.neck.extra if cfg.neck.extra != "auto" else ("pool" if head == "faster_rcnn" else "p6p7")
    backbone = FPNBackbone(body, chans, cfg.neck.channels, extra)
    strides = list(reds) + (
        [reds[-1] * 2] if extra == "pool" else [reds[-1] * 2, reds[-1] * 4] if extra == "p6p7" else []
    )
    levels = len(strides)
    if cfg.anchors.sizes is not None:
        sizes, ratios = normalise_anchors(cfg.anchors.sizes, cfg.anchors.aspect_ratios, levels)
    elif head == "fcos":
        sizes, ratios = [[s] for s in strides], [[1.0]] * levels
    elif head == "retinanet":
        sizes = [[int(4 * s * 2 ** (k / 3)) for k in range(3)] for s in strides]
        ratios = [list(cfg.anchors.aspect_ratios or [0.5, 1.0, 2.0])] * levels
        sizes, ratios = normalise_anchors(sizes, ratios, levels)
    else:
        sizes, ratios = normalise_anchors([[8 * s] for s in strides], cfg.anchors.aspect_ratios, levels)
    anchors = _anchor_generator(sizes, ratios)
    nc = len(cfg.class_names) + 1  # + background
    kw = dict(
        min_size=cfg.image.min_size,
        max_size=cfg.image.max_size,
        image_mean=cfg.image.mean,
        image_std=cfg.image.std,
        **cfg.head.kwargs,
    )
    try:
        if head == "faster_rcnn":
            names = [str(i) for i in range(len(chans))]
            pool = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
            model = FasterRCNN(backbone, num_classes=nc, rpn_anchor_generator=anchors, box_roi_pool=pool, **kw)
        elif head == "retinanet":
            model = RetinaNet(backbone, num_classes=nc, anchor_generator=anchors, **kw)
        else:
            model = FCOS(backbone, num_classes=nc, anchor_generator=anchors, **kw)
    except TypeError as e:
        raise ConfigError(f"head.kwargs: {e}") from e
    tl = cfg.backbone.trainable_layers
    if tl is None and pretrained:
        # torchvision's default for pretrained detector backbones: training the first stages too
        # (with frozen BatchNorm statistics) costs accuracy on small detection datasets; measured
        # in benchmarks/bench_detect_finetune.py
        tl = min(3, len(backbone_stages(model)))
    freeze_backbone(model, None if tl in (None, "all") else tl)
    return model


def build_from_recipe(recipe: dict, *, trust_pickle: bool = False) -> nn.Module:
    """The architecture builder registered for recipes ``{"builder": "composed", "config": {...}}``."""
    return build_composed(
        recipe["config"],
        load_backbone_weights=bool(recipe.get("load_backbone_weights", False)),
        trust_pickle=trust_pickle,
    )


def composed_detector(cfg, load_backbone_weights: bool = True, *, trust_pickle: bool = False) -> Detector:
    """A `Detector` for a composed config (untrained head; backbone weights as configured)."""
    cfg = parse_config(cfg)
    model = build_composed(cfg, load_backbone_weights=load_backbone_weights, trust_pickle=trust_pickle)
    recipe = {"builder": "composed", "config": cfg.model_dump(mode="json")}
    name = f"composed:{cfg.backbone.source}:{cfg.backbone.name}+{cfg.head.type}"
    return Detector.from_torchvision(model, ["__background__", *cfg.class_names], name, config=recipe)
