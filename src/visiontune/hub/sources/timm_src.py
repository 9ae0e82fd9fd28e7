"""timm: ``timm:convnext_tiny.fb_in22k_ft_in1k``; ``pretrained_cfg`` resolves weights and data config."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import cast

from visiontune.data.hashing import cached_sha256 as file_sha256
from visiontune.errors import ModelIdError, WeightsNotCachedError
from visiontune.hub import offline
from visiontune.hub.card import Card
from visiontune.hub.checkpoint import load_state_dict_file
from visiontune.hub.ids import ModelId
from visiontune.hub.licenses import IMAGENET_NOTE
from visiontune.hub.options import LoadOptions
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.pretrained import Pretrained
from visiontune.hub.registry import Source, register_source, suggest
from visiontune.hub.sources._common import finish, glob_pattern, load_local_weights

HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def preprocess_from_cfg(cfg: dict) -> tuple[Preprocess, dict]:
    """timm's eval transform, from its data config: resize = floor(size / crop_pct), centre crop."""
    _, h, w = cfg["input_size"]
    crop_pct = cfg.get("crop_pct") or 1.0
    mode = cfg.get("crop_mode") or "center"
    sh, sw = math.floor(h / crop_pct), math.floor(w / crop_pct)
    if mode == "squash":
        resize: int | tuple[int, int] = (sh, sw)
    else:  # 'center' (and 'border', which timm pads; we resize the shorter edge)
        resize = sh if sh == sw else (sh, sw)
    pre = Preprocess(
        resize=resize,
        crop=(h, w),
        interpolation=cfg.get("interpolation") or "bilinear",
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )
    fields = dict(
        input_size=(3, h, w),
        resize_size=resize,
        crop_size=h if h == w else (h, w),
        crop_pct=crop_pct,
        interpolation=pre.interpolation,
        mean=pre.mean,
        std=pre.std,
    )
    return pre, fields


def imagenet_class_names(model, num_classes: int | None) -> list[str] | None:
    """ImageNet class names for ``model``'s label space of ``num_classes``, when timm knows it."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if not subset:
            return None
        names = [d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions()]
        return names if num_classes in (None, len(names)) else None
    except Exception:
        return None


def _cached_weights(cfg: dict) -> Path | None:
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return Path(cfg["file"])
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else list(HF_FILES)
        for f in files:
            p = try_to_load_from_cache(cfg["hf_hub_id"], f, cache_dir=str(offline.hf_cache_dir()))
            if isinstance(p, str) and os.path.isfile(p):
                return Path(p)
    if cfg.get("url"):
        p = offline.torch_checkpoints_dir() / os.path.basename(cfg["url"].split("?")[0])
        if p.is_file():
            return p
    return None


def _missing_error(name: str, cfg: dict) -> WeightsNotCachedError:
    where = []
    if cfg.get("hf_hub_id"):
        repo = cfg["hf_hub_id"]
        d = offline.hf_cache_dir() / ("models--" + repo.replace("/", "--"))
        where.append(
            f"the Hugging Face cache ({d}: model.safetensors of {repo}, e.g. "
            f"`huggingface-cli download {repo}` on a machine with network, then copy HF_HOME)"
        )
    if cfg.get("url"):
        where.append(f"{offline.torch_checkpoints_dir() / os.path.basename(cfg['url'])} (from {cfg['url']})")
    return WeightsNotCachedError(
        f"timm weights for {name} are not cached and cannot be downloaded (offline). Put them in "
        + " or ".join(where)
        + ", or pass weights=PATH to load a local file.",
        filename="model.safetensors" if cfg.get("hf_hub_id") else os.path.basename(cfg.get("url", "")),
        directory=str(offline.hf_cache_dir()),
    )


def _create_from_cached(name: str, path: Path, opts: LoadOptions):
    """Build ``name`` with the cached weights at ``path``, read through the trust gate and handed
    to timm as a state dict, so timm's own checkpoint filters (position-embedding resizing, head
    adaptation) still apply."""
    import timm

    sd = load_state_dict_file(path, trust_pickle=opts.trust_pickle)
    overlay = {"source": "", "state_dict": sd}
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **opts.model_kwargs)
    for attr in ("pretrained_cfg", "default_cfg"):  # do not keep a second copy of the weights
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict):
            cfg.pop("state_dict", None)
    return model


def _split(mid: ModelId) -> tuple[str, str]:
    name = mid.name
    if mid.weights:
        name = f"{name.split('.')[0]}.{mid.weights}"
    return name, name.split(".")[0]


def build(mid: ModelId, opts: LoadOptions) -> Pretrained:
    """Load ``timm:<name>`` as a `Pretrained` (weights from the cache, a file or none)."""
    import timm

    name, arch = _split(mid)
    if not timm.is_model(arch):
        raise ModelIdError(f"timm has no architecture {arch!r}." + suggest(arch, timm.list_models(), prefix="timm:"))
    if "." in name:
        try:
            timm.models.get_pretrained_cfg(name, allow_unregistered=False)
        except Exception:
            tags = [t for t in timm.list_pretrained(f"{arch}.*")]
            raise ModelIdError(f"timm has no weights tag {name!r}; available: {', '.join(tags) or 'none'}") from None

    load_report = None
    sha = None
    weights_file = None
    loaded = False
    if opts.weights:
        model = timm.create_model(name, pretrained=False, **opts.model_kwargs)
        load_report, sha = load_local_weights(model, opts, source="timm")
        weights_file, loaded = str(opts.weights), True
    elif opts.pretrained and opts.describe:
        model = timm.create_model(name, pretrained=False, **opts.model_kwargs)  # card only: no weights loaded
        path = _cached_weights(dict(cast(dict, model.pretrained_cfg)))
        weights_file, loaded = (str(path) if path else None), True
    elif opts.pretrained:
        pcfg = timm.models.get_pretrained_cfg(name)  # no model built just to read the config
        cfg = pcfg.to_dict() if pcfg is not None else {}
        if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
            raise WeightsNotCachedError(f"timm publishes no pretrained weights for {name}; use pretrained=False")
        path = _cached_weights(cfg)
        if path is None:
            host = "huggingface.co" if cfg.get("hf_hub_id") else "github.com"
            if not offline.can_reach(host):
                raise _missing_error(name, cfg)
            model = timm.create_model(name, pretrained=True, **opts.model_kwargs)
            path = _cached_weights(cfg)
        else:
            model = _create_from_cached(name, path, opts)
        weights_file, loaded = (str(path) if path else None), True
        sha = file_sha256(path) if path else None
    else:
        model = timm.create_model(name, pretrained=False, **opts.model_kwargs)

    cfg = dict(cast(dict, model.pretrained_cfg))
    from timm.data import resolve_model_data_config

    data_cfg = resolve_model_data_config(model)
    pre, fields = preprocess_from_cfg(data_cfg)
    tag = cfg.get("tag")
    card = Card(
        source="timm",
        name=arch,
        model_id=str(mid),
        weights=tag if loaded else None,
        task="classification",
        pretrained=loaded,
        license_code="Apache-2.0",
        weights_file=weights_file,
        weights_sha256=sha,
        weights_url=cfg.get("url") or cfg.get("hf_hub_id"),
        preprocess_source=f"timm pretrained_cfg of {arch}"
        + (f".{tag}" if tag else "")
        + " (resolve_model_data_config)",
        num_classes=getattr(model, "num_classes", None),
        paper=cfg.get("paper_ids"),
        **fields,
    )
    if loaded:
        card.license_weights = cfg.get("license")
        card.class_names = imagenet_class_names(model, card.num_classes)
        if card.class_names:  # ImageNet label space → ImageNet-trained
            card.license_notes = [IMAGENET_NOTE]
        if cfg.get("test_input_size"):
            card.extra["test_input_size"] = cfg["test_input_size"]
    card = finish(model, card, opts)
    return Pretrained(model, card, pre, load_report=load_report)


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[dict]:
    """timm models matching ``pattern`` (with ``pretrained``: those with pretrained weights), one dict each."""
    import timm

    pat = glob_pattern(pattern)
    names = timm.list_pretrained(pat) if pretrained else timm.list_models(pat)
    return [
        {
            "id": f"timm:{n}",
            "task": "classification",
            "weights": [n.split(".", 1)[1]] if "." in n else [],
            "cached": None,
        }
        for n in names
    ]


@register_source
class TimmSource(Source):
    """``timm:<arch>[.<tag>]`` (or ``timm:<arch>@<tag>``): timm's registry and pretrained configs."""

    name = "timm"
    listable = True

    build = staticmethod(build)

    list_models = staticmethod(list_models)

    def names(self) -> list[str]:
        """Every model name timm knows."""
        import timm

        return list(timm.list_models())
