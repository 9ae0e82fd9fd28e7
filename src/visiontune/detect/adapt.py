"""A detector for new classes from a torchvision id, a composed-detector YAML, a saved detector or a
`Detector`: new box predictor, optional custom anchors, backbone stages frozen, every pretrained
tensor whose shape still fits kept (the report lists the rest). Every file is read through
``visiontune.load`` / the trust gate."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from visiontune.errors import ConfigError
from visiontune.hub import load, load_state_dict_file, parse_model_id, sha256_file
from visiontune.hub.checkpoint import resolve_weights_path
from visiontune.hub.saved import is_saved_model

from .anchors import suggest_anchors
from .compose import parse_config as parse_compose
from .config import DetectTrainConfig
from .datasets import DetectionDataset
from .detector import Detector
from .models import TransferReport, build_from_recipe, default_anchors, freeze_backbone, transfer_weights

if TYPE_CHECKING:
    from torchvision.models.detection.transform import GeneralizedRCNNTransform


def recipe_and_state(
    cfg: DetectTrainConfig, classes: list[str], trust_pickle: bool = False
) -> tuple[dict, dict | None, str, str | None]:
    """(new recipe, pretrained state dict to transfer or None, base id, sha256 of the pretrained
    weights file). Every file is read through ``visiontune.load`` / the trust gate;
    ``trust_pickle`` comes from the caller."""
    nc = len(classes) + 1
    src = cfg.model
    if cfg.compose is not None or src.endswith((".yaml", ".yml")):
        c = parse_compose(cfg.compose if cfg.compose is not None else src)
        upd: dict[str, Any] = {"classes": classes, "num_classes": None}
        if cfg.trainable_backbone_layers is not None:
            upd["backbone"] = c.backbone.model_copy(update={"trainable_layers": cfg.trainable_backbone_layers})
        if cfg.anchor_sizes is not None:
            upd["anchors"] = c.anchors.model_copy(
                update={"sizes": cfg.anchor_sizes, "aspect_ratios": cfg.aspect_ratios or c.anchors.aspect_ratios}
            )
        if cfg.min_size or cfg.max_size:
            upd["image"] = c.image.model_copy(
                update={k: v for k, v in (("min_size", cfg.min_size), ("max_size", cfg.max_size)) if v}
            )
        c = c.model_copy(update=upd)
        recipe: dict[str, Any] = {
            "builder": "composed",
            "config": c.model_dump(mode="json"),
            "load_backbone_weights": True,
        }
        weights = c.backbone.weights
        return recipe, None, src, sha256_file(resolve_weights_path(weights)) if weights else None
    mid = parse_model_id(src)
    local = Path(mid.name)
    if mid.source == "file" and is_saved_model(local):
        base = Detector.load(local, trust_pickle=trust_pickle)
        saved: dict[str, Any] | None = copy.deepcopy(base.config) if base.config else None
        if saved is None and base.card.source == "torchvision":  # a saved torchvision hub detector
            saved = {"builder": "torchvision", "arch": parse_model_id(base.card.model_id).name, "num_classes": nc}
        if saved is None:
            raise ConfigError(f"model={src!r}: this saved {base.card.source} detector has no recipe to fine-tune from")
        recipe = saved
        state: dict[str, Any] | None = base.pretrained.model.state_dict()
        if recipe["builder"] == "composed":
            recipe["config"]["classes"], recipe["config"]["num_classes"] = classes, None
            if cfg.trainable_backbone_layers is not None:
                recipe["config"]["backbone"]["trainable_layers"] = cfg.trainable_backbone_layers
            recipe["load_backbone_weights"] = False
        else:
            recipe["num_classes"] = nc
        return recipe, state, src, base.card.weights_sha256
    if mid.source != "torchvision":
        raise ConfigError(
            f"model={src!r}: fine-tuning takes torchvision:<arch>, a composed-detector YAML or a "
            "saved detector directory (Ultralytics models train with visiontune.detect.yolo.train)"
        )
    recipe = {"builder": "torchvision", "arch": mid.name, "num_classes": nc}
    for k in ("min_size", "max_size"):
        if getattr(cfg, k):
            recipe[k] = getattr(cfg, k)
    state, sha = None, None
    if cfg.weights:
        state = load_state_dict_file(cfg.weights, trust_pickle=trust_pickle)
        sha = sha256_file(resolve_weights_path(cfg.weights))
    elif cfg.pretrained:
        pre = load(src, trust_pickle=trust_pickle)
        state, sha = pre.model.state_dict(), pre.card.weights_sha256
    if state is not None:
        recipe["frozen_bn"] = True
    return recipe, state, src, sha


def adapt_detector(
    base: str | Detector,
    classes: list[str],
    *,
    anchor_sizes=None,
    aspect_ratios=None,
    trainable_backbone_layers: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    trust_pickle: bool = False,
) -> tuple[Detector, TransferReport | None]:
    """A detector for ``classes`` made from ``base`` (a torchvision id, composed-detector YAML, saved
    detector directory or `Detector`): new box predictor, optional custom anchors, backbone stages
    frozen but the last ``trainable_backbone_layers``; every pretrained tensor whose shape still
    fits is kept, and the report lists the rest."""
    if not isinstance(base, Detector):
        cfg = DetectTrainConfig(
            model=str(base),
            data="-",
            pretrained=pretrained,
            weights=weights,
            trainable_backbone_layers=trainable_backbone_layers,
            min_size=min_size,
            max_size=max_size,
        )
        return adapt_detector_from_cfg(cfg, list(classes), anchor_sizes, aspect_ratios, trust_pickle)
    if base.config is None:
        raise ConfigError("adapt_detector needs a torchvision / composed detector (with a recipe)")
    recipe = copy.deepcopy(base.config)
    if recipe["builder"] == "composed":
        c = recipe["config"]
        c["classes"], c["num_classes"] = list(classes), None
        if anchor_sizes is not None:
            c["anchors"] = {"sizes": anchor_sizes, "aspect_ratios": aspect_ratios}
        if trainable_backbone_layers is not None:
            c["backbone"]["trainable_layers"] = trainable_backbone_layers
        for k, v in (("min_size", min_size), ("max_size", max_size)):
            if v:
                c["image"][k] = v
    else:
        recipe["num_classes"] = len(classes) + 1
        recipe.update({k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v})
        if anchor_sizes is not None:
            recipe["anchor_sizes"], recipe["aspect_ratios"] = anchor_sizes, aspect_ratios
    state = base.pretrained.model.state_dict()
    det, report = _build_and_transfer(
        recipe, state, base.model_id, list(classes), trainable_backbone_layers, trust_pickle
    )
    det.card.weights_sha256 = base.card.weights_sha256
    return det, report


def _build_and_transfer(
    recipe: dict,
    state: dict | None,
    model_id: str,
    classes: list[str],
    trainable_backbone_layers: int | None,
    trust_pickle: bool = False,
) -> tuple[Detector, TransferReport | None]:
    model = build_from_recipe(recipe, trust_pickle=trust_pickle)
    report = transfer_weights(model, state) if state is not None else None
    if recipe["builder"] == "torchvision":
        freeze_backbone(model, trainable_backbone_layers)
    recipe.pop("load_backbone_weights", None)
    return Detector.from_torchvision(model, ["__background__", *classes], model_id, config=recipe), report


def adapt_detector_from_cfg(cfg: DetectTrainConfig, classes, anchor_sizes, ratios, trust_pickle: bool = False):
    """The detector (and transfer report) a training config asks for; see `adapt_detector`."""
    c = cfg.model_copy(update={"anchor_sizes": anchor_sizes, "aspect_ratios": ratios})
    recipe, state, model_id, sha = recipe_and_state(c, list(classes), trust_pickle)
    if recipe["builder"] == "torchvision" and anchor_sizes is not None:
        recipe["anchor_sizes"], recipe["aspect_ratios"] = anchor_sizes, ratios
    det, report = _build_and_transfer(
        recipe, state, model_id, list(classes), cfg.trainable_backbone_layers, trust_pickle
    )
    det.card.weights_sha256 = sha
    return det, report


def auto_anchors(cfg: DetectTrainConfig, ds: DetectionDataset):
    """(anchor sizes, aspect ratios, fit report) suggested for ``ds`` by k-means on its boxes."""
    mid = parse_model_id(cfg.model) if cfg.compose is None and not cfg.model.endswith((".yaml", ".yml")) else None
    if mid is not None and mid.source == "torchvision":
        found = default_anchors(mid.name)
        if found is None:
            raise ConfigError(f"{cfg.model} has no anchors to tune (anchor-free or SSD)")
        sizes, ratios = found
        levels, nr = len(sizes), len(ratios[0])
        probe = build_from_recipe(
            {
                "builder": "torchvision",
                "arch": mid.name,
                "num_classes": 2,
                **{k: getattr(cfg, k) for k in ("min_size", "max_size") if getattr(cfg, k)},
            }
        )
        transform = cast("GeneralizedRCNNTransform", probe.transform)
        mn, mx = int(transform.min_size[0]), int(transform.max_size)
    else:
        c = parse_compose(cfg.compose if cfg.compose is not None else cfg.model)
        probe = build_from_recipe({"builder": "composed", "config": c.model_dump(mode="json")})
        found = default_anchors(probe)
        assert found is not None, "composed detectors always carry an anchor generator (FCOS: one per level)"
        sizes, ratios = found
        levels, nr = len(sizes), len(ratios[0])
        mn, mx = c.image.min_size, c.image.max_size
    s = suggest_anchors(
        ds,
        num_levels=levels,
        num_ratios=nr,
        min_size=cfg.min_size or mn,
        max_size=cfg.max_size or mx,
        default_sizes=[x for lvl in sizes for x in lvl],
        default_ratios=ratios[0],
    )
    return s.sizes, s.aspect_ratios, s.to_dict()
