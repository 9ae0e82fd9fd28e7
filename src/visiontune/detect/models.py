"""Detector recipes (rebuild a fine-tuned or composed detector exactly), custom anchors, weight
transfer into new heads and backbone freezing.

A detector is rebuilt from a *recipe* (JSON-able dict) registered with the hub's architecture
registry, so a fine-tuned or composed detector saved as ``model.safetensors`` + ``visiontune.json``
reloads through ``visiontune.load`` exactly:

``{"builder": "torchvision", "arch": "fasterrcnn_resnet50_fpn_v2", "num_classes": 4,
   "anchor_sizes": [[32], ...], "aspect_ratios": [[0.5, 1, 2], ...], "min_size": 512, ...}``
``{"builder": "composed", "config": {...}}`` (see `visiontune.detect.compose`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from visiontune.errors import ConfigError, ModelIdError
from visiontune.hub import build_architecture

if TYPE_CHECKING:
    from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetRegressionHead
    from torchvision.models.detection.rpn import RPNHead

log = logging.getLogger("visiontune.detect")


# ----------------------------------------------------------------------------- recipes
def _tv_builder(arch: str):
    import torchvision.models as tvm
    import torchvision.models.detection as tvd

    if arch not in tvm.list_models(module=tvd):
        raise ModelIdError(
            f"torchvision has no detection model {arch!r}; available: {', '.join(tvm.list_models(module=tvd))}"
        )
    return tvm.get_model_builder(arch)


def _anchor_generator(sizes, ratios):
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    return AnchorGenerator(
        tuple(tuple(int(s) for s in lvl) for lvl in sizes), tuple(tuple(float(r) for r in lvl) for lvl in ratios)
    )


def default_anchors(arch_or_model) -> tuple[list[list[int]], list[list[float]]] | None:
    """The anchor sizes / aspect ratios a torchvision detector uses (None: anchor-free or SSD)."""
    model = (
        arch_or_model
        if isinstance(arch_or_model, nn.Module)
        else build_from_recipe({"builder": "torchvision", "arch": arch_or_model, "num_classes": 2})
    )
    gen = getattr(getattr(model, "rpn", None), "anchor_generator", None) or getattr(model, "anchor_generator", None)
    if gen is None or not hasattr(gen, "sizes"):
        return None
    return [list(map(int, s)) for s in gen.sizes], [list(map(float, r)) for r in gen.aspect_ratios]


def normalise_anchors(sizes, ratios, levels: int) -> tuple[list[list[int]], list[list[float]]]:
    """Accept one size per level (``[32, 64, ...]``) or lists per level, and one ratio list for all
    levels or one per level; check they fit ``levels`` feature maps."""
    if sizes is None:
        raise ConfigError("anchor sizes are missing")
    sizes = [[int(s)] if isinstance(s, (int, float)) else [int(x) for x in s] for s in sizes]
    if ratios is None:
        ratios = [0.5, 1.0, 2.0]
    if all(isinstance(r, (int, float)) for r in ratios):
        ratios = [[float(r) for r in ratios]] * len(sizes)
    ratios = [[float(x) for x in r] for r in ratios]
    if len(sizes) != levels:
        raise ConfigError(
            f"anchors: {len(sizes)} size levels given, the model has {levels} feature maps; "
            f"give one size (or list of sizes) per level"
        )
    if len(ratios) != len(sizes):
        raise ConfigError(f"anchors: {len(ratios)} aspect-ratio lists for {len(sizes)} levels")
    if any(s <= 0 for lvl in sizes for s in lvl) or any(r <= 0 for lvl in ratios for r in lvl):
        raise ConfigError("anchors: sizes and aspect ratios must be positive")
    n = {len(a) * len(b) for a, b in zip(sizes, ratios)}
    if len(n) != 1:
        raise ConfigError("anchors: every level needs the same number of sizes x ratios (one shared head)")
    return sizes, ratios


def build_from_recipe(recipe: dict, *, trust_pickle: bool = False) -> nn.Module:
    """Build an (untrained) detector from its recipe: a torchvision one here, a composed one
    through the architecture registry (`visiontune.hub.build_architecture`)."""
    builder = recipe.get("builder")
    if builder == "composed":
        return build_architecture(recipe, trust_pickle=trust_pickle)
    if builder != "torchvision":
        raise ConfigError(f"unknown detector builder {builder!r} in recipe (torchvision | composed)")
    arch = recipe["arch"]
    kwargs: dict[str, Any] = dict(recipe.get("kwargs") or {})
    kwargs.update(weights=None, weights_backbone=None, num_classes=int(recipe["num_classes"]))
    for k in ("min_size", "max_size"):
        if recipe.get(k):
            if arch.startswith("ssd"):
                raise ConfigError(f"{arch} has a fixed input size; {k} cannot be set")
            kwargs[k] = int(recipe[k])
    model = _tv_builder(arch)(**kwargs)
    if recipe.get("anchor_sizes") is not None:
        set_anchors(model, recipe["anchor_sizes"], recipe.get("aspect_ratios"))
    if recipe.get("frozen_bn"):  # pretrained backbones keep their BatchNorm statistics
        freeze_batchnorm(model.backbone)
    return model


def set_anchors(model: nn.Module, sizes, ratios=None) -> nn.Module:
    """Give a Faster / Mask R-CNN or RetinaNet custom anchors. Only the layers whose shape depends
    on the number of anchors per location (RPN ``cls_logits`` / ``bbox_pred``, RetinaNet's final
    classification / regression convs) are re-created; every other head conv is kept as it is."""
    import torch.nn.init as init

    if hasattr(model, "rpn"):
        gen_owner, attr = model.rpn, "anchor_generator"
    elif (
        hasattr(model, "anchor_generator")
        and hasattr(model.head, "classification_head")
        and hasattr(model.head.classification_head, "num_anchors")
    ):
        gen_owner, attr = model, "anchor_generator"
    else:
        raise ConfigError(
            f"custom anchors are supported for Faster/Mask R-CNN and RetinaNet, not "
            f"{type(model).__name__} (anchor-free or fixed SSD priors)"
        )
    levels = len(getattr(gen_owner, attr).sizes)
    sizes, ratios = normalise_anchors(sizes, ratios, levels)
    gen = _anchor_generator(sizes, ratios)
    setattr(gen_owner, attr, gen)
    a = gen.num_anchors_per_location()[0]
    # nn.Module.__getattr__ is typed Tensor | Module: name the torchvision head classes instead
    if hasattr(model, "rpn"):
        head = cast("RPNHead", cast(nn.Module, model.rpn).head)
        if head.cls_logits.out_channels != a:
            c = head.cls_logits.in_channels
            head.cls_logits, head.bbox_pred = nn.Conv2d(c, a, 1), nn.Conv2d(c, a * 4, 1)
            for layer in (head.cls_logits, head.bbox_pred):
                assert layer.bias is not None
                init.normal_(layer.weight, std=0.01)
                init.constant_(layer.bias, 0)
    else:
        retina = cast(nn.Module, model.head)
        cls = cast("RetinaNetClassificationHead", retina.classification_head)
        reg = cast("RetinaNetRegressionHead", retina.regression_head)
        if cls.num_anchors != a:
            c = cls.cls_logits.in_channels
            assert cls.cls_logits.bias is not None
            prior = float(cls.cls_logits.bias.detach().flatten()[0])
            cls.cls_logits = nn.Conv2d(c, a * cls.num_classes, 3, padding=1)
            assert cls.cls_logits.bias is not None
            init.normal_(cls.cls_logits.weight, std=0.01)
            init.constant_(cls.cls_logits.bias, prior)
            reg.bbox_reg = nn.Conv2d(c, a * 4, 3, padding=1)
            assert reg.bbox_reg.bias is not None
            init.normal_(reg.bbox_reg.weight, std=0.01)
            init.zeros_(reg.bbox_reg.bias)
            cls.num_anchors = a
    return model


# ----------------------------------------------------------------------------- weight transfer
@dataclass
class TransferReport:
    """What a pretrained state dict gave a new detector."""

    kept: list[str] = field(default_factory=list)
    reinitialised: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, new, old shape
    missing: list[str] = field(default_factory=list)  # new tensors the checkpoint lacks
    unused: list[str] = field(default_factory=list)  # checkpoint tensors with no place

    def summary(self) -> str:
        """One line: tensors kept, re-initialised, new and unused."""
        return (
            f"{len(self.kept)} pretrained tensors kept, {len(self.reinitialised)} re-initialised "
            f"(shape changed), {len(self.missing)} new, {len(self.unused)} unused"
        )

    def details(self, limit: int = 30) -> str:
        """The summary and each re-initialised tensor's shapes (first ``limit``)."""
        lines = [self.summary()]
        for k, new, old in self.reinitialised[:limit]:
            lines.append(f"  re-initialised {k}: pretrained {tuple(old)} -> now {tuple(new)}")
        for title, items in (("new", self.missing), ("unused", self.unused)):
            if items:
                lines.append(f"  {title}: " + ", ".join(items[:limit]) + (" …" if len(items) > limit else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Counts and the re-initialised tensors as JSON-ready values."""
        return {
            "kept": len(self.kept),
            "reinitialised": [[k, list(a), list(b)] for k, a, b in self.reinitialised],
            "missing": self.missing,
            "unused": self.unused,
        }


def transfer_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> TransferReport:
    """Copy every tensor of ``state_dict`` whose name and shape fit ``model``; report the rest
    (heads sized for other classes or anchors are re-initialised, never half-loaded)."""
    target = model.state_dict()
    rep = TransferReport()
    with torch.no_grad():
        for k, v in target.items():
            if k.endswith("num_batches_tracked"):
                continue
            src = state_dict.get(k)
            if src is None:
                rep.missing.append(k)
            elif tuple(src.shape) != tuple(v.shape):
                rep.reinitialised.append((k, tuple(v.shape), tuple(src.shape)))
            else:
                v.copy_(src.to(v.dtype))
                rep.kept.append(k)
    rep.unused = [k for k in state_dict if k not in target and not k.endswith("num_batches_tracked")]
    return rep


# ----------------------------------------------------------------------------- freezing
def backbone_stages(model: nn.Module) -> list[nn.Module]:
    """The backbone's stages, input side first (what ``trainable_layers`` counts from the top)."""
    body = getattr(getattr(model, "backbone", None), "body", None)
    if body is None:
        body = getattr(model, "backbone", None)
    if body is None:
        raise ConfigError(f"{type(model).__name__} has no .backbone to freeze")
    if hasattr(body, "stages"):  # composed backbones
        return list(body.stages)
    names = [n for n, _ in body.named_children()]
    if "layer1" in names:  # ResNet-style IntermediateLayerGetter
        stem = [m for n, m in body.named_children() if n in ("conv1", "bn1")]
        return [nn.ModuleList(stem)] + [getattr(body, f"layer{i}") for i in range(1, 5) if hasattr(body, f"layer{i}")]
    if isinstance(body, nn.Sequential) or names:
        features = getattr(body, "features", body)
        return [m for m in features.children() if any(True for _ in m.parameters())]
    return [body]


def freeze_backbone(model: nn.Module, trainable_layers: int | None) -> dict:
    """Train only the last ``trainable_layers`` backbone stages (None: leave as is; 0: freeze all).
    The neck (FPN) and heads always train. Returns a summary for the run record."""
    if trainable_layers is None:
        return {}
    stages = backbone_stages(model)
    if not 0 <= trainable_layers <= len(stages):
        raise ConfigError(
            f"trainable_backbone_layers must be in 0..{len(stages)} for this backbone, got {trainable_layers}"
        )
    frozen = stages[: len(stages) - trainable_layers]
    for st in stages:
        for p in st.parameters():
            p.requires_grad_(True)
    for st in frozen:
        for p in st.parameters():
            p.requires_grad_(False)
    n_tr = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    return {
        "trainable_backbone_layers": trainable_layers,
        "backbone_stages": len(stages),
        "trainable_params": n_tr,
        "total_params": n_all,
    }


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace BatchNorm2d layers by FrozenBatchNorm2d with the same statistics (detection
    batches are too small to estimate them)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            f = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    f.weight.copy_(child.weight)
                    f.bias.copy_(child.bias)
                if child.track_running_stats:
                    f.running_mean.copy_(child.running_mean)
                    f.running_var.copy_(child.running_var)
            setattr(module, name, f)
        else:
            freeze_batchnorm(child)
    return module
