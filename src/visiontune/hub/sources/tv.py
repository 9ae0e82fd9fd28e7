"""torchvision: ``torchvision:resnet50@IMAGENET1K_V2``; weights enums carry transforms and meta."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from torch import nn

from visiontune.data.hashing import cached_sha256 as file_sha256
from visiontune.errors import ModelIdError, VisiontuneError, WeightsNotCachedError
from visiontune.hub import offline
from visiontune.hub.card import Card
from visiontune.hub.detection import detector_num_classes
from visiontune.hub.heads import find_head
from visiontune.hub.ids import ModelId
from visiontune.hub.licenses import COCO_NOTE, IMAGENET_NOTE
from visiontune.hub.options import LoadOptions
from visiontune.hub.preprocess import Preprocess, interpolation_name
from visiontune.hub.pretrained import Pretrained
from visiontune.hub.registry import Source, register_source, suggest
from visiontune.hub.sources._common import finish, glob_pattern, load_local_weights

TASK_MODULES = {
    "detection": "detection",
    "segmentation": "segmentation",
    "video": "video",
    "optical_flow": "optical_flow",
    "quantization": "quantization",
}


def task_of(name: str) -> str:
    """classification | detection | instance-segmentation (Mask R-CNN) | segmentation | …"""
    import torchvision.models as tvm

    if name.startswith("maskrcnn"):
        return "instance-segmentation"
    for task, mod in TASK_MODULES.items():
        if name in tvm.list_models(module=getattr(tvm, mod)):
            return task
    return "classification"


def resolve_weights(name: str, tag: str | None):
    """The weights enum member for ``tag`` (None → None), with a helpful error."""
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        return None, None
    if tag is None:
        return None, enum
    if tag.upper() == "DEFAULT":
        return enum.DEFAULT, enum
    try:
        return enum[tag], enum
    except KeyError:
        raise ModelIdError(
            f"torchvision:{name} has no weights {tag!r}; available: DEFAULT, " + ", ".join(w.name for w in enum)
        ) from None


def cached_file(w) -> Path:
    """Where torchvision caches the file of weights enum ``w``."""
    return offline.torch_checkpoints_dir() / os.path.basename(w.url)


def ensure_cached(w, enum_name: str) -> None:
    """Fail fast, naming the file and folder, when the weights are not cached and the download
    server cannot be reached."""
    path = cached_file(w)
    if path.is_file():
        return
    from urllib.parse import urlparse

    host = urlparse(w.url).hostname or "download.pytorch.org"
    if not offline.can_reach(host):
        raise WeightsNotCachedError(
            f"torchvision weights {enum_name}.{w.name} are not in the cache and {host} cannot be "
            f"reached. Put {path.name} (from {w.url}) in {path.parent} (set TORCH_HOME to use "
            "another cache), or pass weights=PATH to load a local file.",
            filename=path.name,
            directory=str(path.parent),
        )


def preprocess_from(w, task: str) -> tuple[Preprocess, dict]:
    """(`Preprocess`, card fields) from the transforms of torchvision weights ``w`` for ``task``."""
    t = w.transforms()
    if task == "classification" and hasattr(t, "crop_size"):
        interp = interpolation_name(t.interpolation)
        pre = Preprocess(
            resize=t.resize_size[0] if len(t.resize_size) == 1 else tuple(t.resize_size),
            crop=tuple(t.crop_size),
            interpolation=interp,
            mean=tuple(t.mean),
            std=tuple(t.std),
            antialias=bool(getattr(t, "antialias", True)),
        )
        assert pre.crop is not None  # built from crop_size just above
        fields = dict(
            resize_size=pre.resize,
            crop_size=pre.crop[0] if pre.crop[0] == pre.crop[1] else pre.crop,
            interpolation=interp,
            mean=pre.mean,
            std=pre.std,
            input_size=(3, *pre.crop),
        )
        return pre, fields
    if task == "segmentation" and hasattr(t, "resize_size"):
        rs = t.resize_size
        pre = Preprocess(
            resize=rs[0] if rs and len(rs) == 1 else (tuple(rs) if rs else None),
            crop=None,
            interpolation=interpolation_name(t.interpolation),
            mean=tuple(t.mean),
            std=tuple(t.std),
        )
        return pre, dict(resize_size=pre.resize, mean=pre.mean, std=pre.std, interpolation=pre.interpolation)
    # detection: the model resizes and normalises inside (GeneralizedRCNNTransform / SSD transform)
    pre = Preprocess(resize=None, crop=None, mean=None, std=None)
    return pre, dict(mean=None, std=None)


def build(mid: ModelId, opts: LoadOptions) -> Pretrained:
    """Load ``torchvision:<arch>[@weights]`` as a `Pretrained`."""
    import torchvision.models as tvm

    name = mid.name
    if name not in tvm.list_models():
        raise ModelIdError(
            f"torchvision has no model {name!r}."
            + suggest(name, tvm.list_models(), prefix="torchvision:")
            + " See `visiontune models list --source torchvision`."
        )
    task = task_of(name)
    w, enum = resolve_weights(name, mid.weights)
    if w is None and enum is not None and opts.pretrained and not opts.weights:
        w = enum.DEFAULT
    meta_w = w or (enum.DEFAULT if enum is not None else None)

    kwargs: dict = dict(opts.model_kwargs)
    if task in ("detection", "instance-segmentation", "segmentation"):
        kwargs.setdefault("weights_backbone", None)
    builder = tvm.get_model_builder(name)

    load_report = None
    sha = None
    weights_file = None
    official = False
    if opts.weights:
        model = builder(weights=None, **kwargs)
        load_report, sha = load_local_weights(model, opts, source="torchvision")
        weights_file = str(opts.weights)
        if meta_w is not None:  # torchvision file names carry the sha256 prefix of the official file
            stem = os.path.basename(meta_w.url).rsplit(".", 1)[0]
            prefix = stem.rsplit("-", 1)[-1]
            official = bool(prefix) and sha.startswith(prefix)
    elif w is not None and opts.describe:
        model = builder(weights=None, **kwargs)  # card only: the weights' meta, no download
        official = True
        weights_file = str(cached_file(w)) if cached_file(w).is_file() else None
    elif w is not None:
        ensure_cached(w, type(w).__name__)
        model = builder(weights=w, **kwargs)
        weights_file = str(cached_file(w))
        sha = file_sha256(cached_file(w))
        official = True
    else:
        model = builder(weights=None, **kwargs)

    card = Card(
        source="torchvision",
        name=name,
        model_id=str(mid),
        task=task,
        pretrained=bool(opts.weights) or w is not None,
        license_code="BSD-3-Clause",
        weights_file=weights_file,
        weights_sha256=sha,
    )
    if meta_w is not None:
        pre, fields = preprocess_from(meta_w, task)
        for k, v in fields.items():
            setattr(card, k, v)
        card.preprocess_source = f"torchvision {type(meta_w).__name__}.{meta_w.name}.transforms()" + (
            ""
            if (w is not None or official or mid.weights)
            else " (the architecture's default weights config; the loaded weights state none)"
        )
        meta = meta_w.meta
        card.weights = meta_w.name if (w is not None or official or mid.weights) else None
        card.weights_url = meta_w.url
        card.paper = meta.get("recipe")
        if w is not None or official or (opts.weights and mid.weights):
            cats = meta.get("categories")
            card.class_names = list(cats) if cats else None
            card.num_classes = len(cats) if cats else None
            card.metrics = {f"{ds}/{k}": v for ds, m in meta.get("_metrics", {}).items() for k, v in m.items()}
            if "_ops" in meta:
                card.metrics["GFLOPS"] = meta["_ops"]
            card.license_weights = "see dataset terms"
            ds = " ".join(meta.get("_metrics", {}).keys()) + " " + str(meta.get("_docs", ""))
            card.license_notes = [COCO_NOTE] if "COCO" in ds else [IMAGENET_NOTE] if "ImageNet" in ds else []
            card.license_notes.append(
                "torchvision: pretrained weights may carry the licence terms of the data they were trained on."
            )
    else:
        from visiontune.hub.preprocess import IMAGENET_MEAN, IMAGENET_STD

        pre = Preprocess(resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)
        card.preprocess_source = "assumed ImageNet defaults: torchvision publishes no weights for this architecture"
    if opts.describe and w is not None:
        card.extra["weights_cached"] = cached_file(w).is_file()
        card.extra["cache_path"] = str(cached_file(w))
    if card.num_classes is None and task == "classification":
        try:
            _, h = find_head(model)
            card.num_classes = getattr(h, "out_features", None) or getattr(h, "out_channels", None)
        except (ValueError, AttributeError, VisiontuneError):
            pass
    if task == "segmentation":  # torchvision's segmentation weights: VOC labels, 0 = background
        card.extra.update(ignore_index=255, background=True, reduce_labels=False)
        if card.num_classes is None:
            head = getattr(model, "classifier", None)
            head = getattr(head, "high_classifier", None) or (head[-1] if isinstance(head, nn.Sequential) else None)
            card.num_classes = int(cast(nn.Conv2d, head).out_channels) if head is not None else None
            cats = list(meta_w.meta.get("categories") or []) if meta_w is not None else []
            if card.class_names is None and cats and len(cats) == card.num_classes:
                card.class_names = cats  # the architecture's label space (its weights' categories)
    if task in ("detection", "instance-segmentation") and card.num_classes is None:
        card.num_classes = detector_num_classes(model) or None
        cats = list(meta_w.meta.get("categories") or []) if meta_w is not None else []
        if card.class_names is None and cats and len(cats) == card.num_classes:
            card.class_names = cats  # the architecture's label space (its weights' categories)
    card = finish(model, card, opts)
    return Pretrained(model, card, pre, load_report=load_report)


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[dict]:
    """torchvision models matching ``pattern`` (with ``pretrained``: those that have weights), one dict each."""
    import fnmatch

    import torchvision.models as tvm

    rows = []
    for name in tvm.list_models():
        if not fnmatch.fnmatch(name, glob_pattern(pattern)):
            continue
        try:
            enum = tvm.get_model_weights(name)
            tags = [w.name for w in enum]
        except Exception:
            tags = []
        if pretrained and not tags:
            continue
        cached = any(cached_file(w).is_file() for w in (enum if tags else []))
        rows.append({"id": f"torchvision:{name}", "task": task_of(name), "weights": tags, "cached": cached})
    return rows


@register_source
class TorchvisionSource(Source):
    """``torchvision:<arch>[@WEIGHTS]``: torchvision's builders and weights enums."""

    name = "torchvision"
    aliases = ("tv",)
    listable = True

    build = staticmethod(build)

    list_models = staticmethod(list_models)

    def names(self) -> list[str]:
        """Every model name torchvision knows."""
        import torchvision.models as tvm

        return list(tvm.list_models())
