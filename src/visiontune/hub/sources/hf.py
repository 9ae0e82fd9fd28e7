"""Hugging Face: ``hf:microsoft/resnet-50[@revision]`` (or a local save_pretrained folder).

Auto classes pick the task from the config's architecture; the image processor is the
preprocessing. Cache first (``local_files_only``); a download is only tried when the Hub is
reachable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from visiontune.errors import UnsafeCheckpointError, WeightsNotCachedError, require
from visiontune.hub import offline
from visiontune.hub.card import Card
from visiontune.hub.checkpoint import load_into
from visiontune.hub.ids import ModelId
from visiontune.hub.options import LoadOptions
from visiontune.hub.preprocess import Preprocess, interpolation_name
from visiontune.hub.pretrained import Pretrained
from visiontune.hub.registry import Source, register_source
from visiontune.hub.sources._common import finish, glob_pattern, load_local_weights
from visiontune.hub.trust import torch_load

TASKS = [
    ("SamModel", "promptable-segmentation", "AutoModel"),
    ("ForImageClassification", "classification", "AutoModelForImageClassification"),
    ("ForObjectDetection", "detection", "AutoModelForObjectDetection"),
    ("ForSemanticSegmentation", "segmentation", "AutoModelForSemanticSegmentation"),
    ("ForUniversalSegmentation", "segmentation", "AutoModelForUniversalSegmentation"),
    ("ForInstanceSegmentation", "segmentation", "AutoModelForInstanceSegmentation"),
    ("ForDepthEstimation", "depth", "AutoModelForDepthEstimation"),
    ("ForZeroShotImageClassification", "zero-shot-classification", "AutoModelForZeroShotImageClassification"),
]


def task_of(architectures) -> tuple[str, str]:
    """(task, Auto class) from a config's ``architectures`` names; ``features`` when none matches."""
    for arch in architectures or []:
        for suffix, task, auto in TASKS:
            if arch.endswith(suffix):
                return task, auto
    return "features", "AutoModel"


def task_for(config) -> tuple[str, str]:
    """(task, architecture) of a Hugging Face ``config``."""
    return task_of(getattr(config, "architectures", None))


def _cached(transformers, name: str, revision: str | None, fn):
    """Call ``fn(local_files_only=True)``; on a cache miss, download only if the Hub answers."""
    try:
        return fn(local_files_only=True)
    except (OSError, ValueError) as e:
        local_dir = os.path.isdir(name)
        if local_dir or not offline.can_reach("huggingface.co"):
            repo_dir = offline.hf_cache_dir() / ("models--" + name.replace("/", "--"))
            raise WeightsNotCachedError(
                f"Hugging Face model {name}{'@' + revision if revision else ''} is not in the local cache "
                f"({repo_dir}) and the Hub cannot be reached ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                f"On a machine with network run `huggingface-cli download {name}` and copy its HF_HOME here "
                "(or set HF_HOME to it), or pass a folder written by save_pretrained as 'hf:/path/to/folder'.",
                filename="config.json",
                directory=str(repo_dir),
            ) from None
        return fn(local_files_only=False)


def _hub_license(name: str, revision: str | None) -> str | None:
    """The licence the repo's model card states (YAML front matter of README.md), if cached."""
    try:
        if os.path.isdir(name):
            readme: Path | None = Path(name) / "README.md"
        else:
            from huggingface_hub import try_to_load_from_cache

            p = try_to_load_from_cache(name, "README.md", revision=revision, cache_dir=str(offline.hf_cache_dir()))
            readme = Path(p) if isinstance(p, str) else None
        if readme is None or not readme.is_file():
            return None
        text = readme.read_text(encoding="utf-8", errors="replace")
        m = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
        if not m:
            return None
        import yaml

        meta = yaml.safe_load(m.group(1)) or {}
        lic = meta.get("license")
        return str(lic) if lic else None
    except Exception:
        return None


def _as_dict(size) -> dict:
    """Image processors keep sizes as dicts (transformers 4) or SizeDict dataclasses (5)."""
    if size is None:
        return {}
    if isinstance(size, (int, float)):
        return {"shortest_edge": int(size)}
    if not isinstance(size, dict):
        import dataclasses

        is_instance = dataclasses.is_dataclass(size) and not isinstance(size, type)
        size = dataclasses.asdict(size) if is_instance else dict(vars(size))
    return {k: v for k, v in size.items() if v is not None}


def preprocess_from_processor(proc) -> tuple[Preprocess, dict]:
    """(`Preprocess`, card fields) read from a Hugging Face image processor."""
    size = _as_dict(getattr(proc, "size", None))
    crop = _as_dict(getattr(proc, "crop_size", None)) if getattr(proc, "do_center_crop", False) else None
    crop_pct = getattr(proc, "crop_pct", None)
    resample = getattr(proc, "resample", 2)
    interp = interpolation_name(int(resample) if not isinstance(resample, str) else resample)
    mean = tuple(proc.image_mean) if getattr(proc, "do_normalize", True) and getattr(proc, "image_mean", None) else None
    std = tuple(proc.image_std) if mean is not None else None
    resize: int | tuple[int, int] | None
    crop_hw: tuple[int, int] | None = None
    if "height" in size and "width" in size:
        resize = (int(size["height"]), int(size["width"]))
    elif "shortest_edge" in size:
        s = int(size["shortest_edge"])
        if crop_pct is not None:  # ConvNeXt-style processor: resize s/crop_pct then crop s (below 384)
            if s < 384:
                resize, crop_hw = int(s / crop_pct), (s, s)
            else:
                resize = (s, s)
        else:
            resize = s
    else:
        resize = None
    if crop and crop_hw is None:
        crop_hw = (int(crop["height"]), int(crop["width"])) if "height" in crop else (int(crop["shortest_edge"]),) * 2
    if getattr(proc, "do_resize", True) is False:
        resize = None
    pre = Preprocess(resize=resize, crop=crop_hw, interpolation=interp, mean=mean, std=std)
    size_hw = pre.input_size
    fields = dict(
        resize_size=pre.resize,
        crop_size=(crop_hw[0] if crop_hw and crop_hw[0] == crop_hw[1] else crop_hw),
        crop_pct=crop_pct,
        interpolation=interp,
        mean=mean,
        std=std,
        input_size=(3, *size_hw) if size_hw else None,
    )
    return pre, fields


def _weight_files(name: str, revision: str | None) -> list[Path]:
    """The local files ``from_pretrained`` would read weights from: safetensors when present, else
    the pickled ``pytorch_model.bin`` (or its shards)."""

    def local(fname: str) -> Path | None:
        if os.path.isdir(name):
            p = Path(name) / fname
            return p if p.is_file() else None
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, fname, revision=revision, cache_dir=str(offline.hf_cache_dir()))
        return Path(hit) if isinstance(hit, str) and os.path.isfile(hit) else None

    if local("model.safetensors") or local("model.safetensors.index.json"):
        return []
    index = local("pytorch_model.bin.index.json")
    if index is not None:
        import json

        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        return [p for p in (local(s) for s in shards) if p is not None]
    single = local("pytorch_model.bin")
    return [single] if single is not None else []


def gate_pickled_weights(name: str, revision: str | None, opts: LoadOptions) -> dict[str, Any] | None:
    """Pass every pickled weights file of the repo through the trust gate before transformers
    reads it. None: there are none, or they hold only tensors (transformers then reads them with
    ``weights_only=True`` itself). A dict: files that need full unpickling, which the user
    trusted — their tensors, read here once."""
    trusted: dict[str, Any] = {}
    for f in _weight_files(name, revision):
        try:
            torch_load(f, trust_pickle=False, what="Hugging Face pytorch_model.bin")
        except UnsafeCheckpointError:
            if not opts.trust_pickle:
                raise
            obj = torch_load(f, trust_pickle=True, what="Hugging Face pytorch_model.bin")
            trusted.update({k: v for k, v in obj.items() if hasattr(v, "shape")})
    return trusted or None


def build(mid: ModelId, opts: LoadOptions) -> Pretrained:
    """Load ``hf:<repo>`` (classifier, detector or segmenter) as a `Pretrained`."""
    transformers = require("transformers", "hf", "Loading Hugging Face models")
    name, rev = mid.name, mid.weights
    rev_kw: dict = {"revision": rev} if rev else {}
    if not os.path.isdir(name):
        rev_kw["cache_dir"] = str(offline.hf_cache_dir())  # read now, not at transformers' import
    code_kw = {"trust_remote_code": True} if opts.trust_remote_code else {}
    config = _cached(
        transformers, name, rev, lambda **kw: transformers.AutoConfig.from_pretrained(name, **rev_kw, **code_kw, **kw)
    )
    task, auto_name = task_for(config)
    auto = getattr(transformers, auto_name)
    proc = None
    try:
        proc = _cached(
            transformers,
            name,
            rev,
            lambda **kw: transformers.AutoImageProcessor.from_pretrained(name, **rev_kw, **code_kw, **kw),
        )
    except WeightsNotCachedError:
        proc = None
    load_report, sha, weights_file = None, None, None
    if opts.weights:
        model = auto.from_config(config)
        load_report, sha = load_local_weights(model, opts, source="hf")
        weights_file = str(opts.weights)
    elif opts.pretrained and (trusted := gate_pickled_weights(name, rev, opts)) is not None:
        model = auto.from_config(config)
        load_report = load_into(model, trusted, strict=opts.strict, source=f"{name} (pytorch_model.bin)")
    elif opts.pretrained:
        model = _cached(transformers, name, rev, lambda **kw: auto.from_pretrained(name, **rev_kw, **code_kw, **kw))
    else:
        model = auto.from_config(config)

    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    names = [str(id2label.get(i, i)) for i in range(max(id2label) + 1)] if id2label else None
    if names and all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        names = None
    loaded = bool(opts.weights) or opts.pretrained
    card = Card(
        source="hf",
        name=name,
        model_id=str(mid),
        weights=rev or ("main" if loaded else None),
        task=task,
        pretrained=loaded,
        license_code="Apache-2.0 (transformers)",
        license_weights=_hub_license(name, rev) if loaded else None,
        class_names=names if loaded else None,
        num_classes=len(names) if names else getattr(config, "num_labels", None),
        weights_file=weights_file,
        weights_sha256=sha,
        extra={"architecture": (config.architectures or ["?"])[0]},
    )
    if proc is not None:
        pre, fields = preprocess_from_processor(proc)
        for k, v in fields.items():
            setattr(card, k, v)
        card.preprocess_source = f"Hugging Face {type(proc).__name__} of {name}"
    else:
        from visiontune.hub.preprocess import IMAGENET_MEAN, IMAGENET_STD

        pre = Preprocess(resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)
        card.preprocess_source = "assumed ImageNet defaults: the repo has no image processor config"
    if task == "segmentation":  # label conventions (transformers #35402, #27224): stated, not guessed
        card.extra.update(
            ignore_index=int(getattr(config, "semantic_loss_ignore_index", 255)),
            reduce_labels=bool(getattr(proc, "do_reduce_labels", False) or getattr(proc, "reduce_labels", False)),
            background=names is not None
            and len(names) > 0
            and names[0].lower() in ("background", "__background__", "unlabeled"),
        )
    if loaded and card.license_weights is None:
        card.license_notes.append("The model repo states no licence in its card; treat as all rights reserved.")
    card = finish(model, card, opts)
    return Pretrained(model, card, pre, native=proc, load_report=load_report)


def list_cached(pattern: str | None = None) -> list[dict]:
    """Hugging Face models already in the local cache (``$HF_HOME/hub``), read from disk only: the
    Hub's own listing is an online API. timm's weight repos (``timm/...``) are listed as ``timm:``
    ids by the timm source instead. Task from each snapshot's ``config.json`` architectures."""
    import fnmatch
    import json

    root = offline.hf_cache_dir()
    pat = glob_pattern(pattern)
    rows = []
    for repo_dir in sorted(root.glob("models--*")) if root.is_dir() else []:
        repo_id = repo_dir.name[len("models--") :].replace("--", "/")
        if repo_id.startswith("timm/") or not fnmatch.fnmatch(repo_id, pat):
            continue
        files = list(repo_dir.glob("snapshots/*/*"))
        task = "-"
        for cfg in (f for f in files if f.name == "config.json"):
            try:
                archs = json.loads(cfg.read_text()).get("architectures") or []
            except (OSError, ValueError):
                continue
            task = task_of(archs)[0]
            break
        refs = sorted(p.name for p in (repo_dir / "refs").glob("*"))
        rows.append(
            {
                "id": f"hf:{repo_id}",
                "task": task,
                "weights": refs,
                "cached": any(f.suffix in (".safetensors", ".bin") for f in files),
            }
        )
    return rows


@register_source
class HuggingFaceSource(Source):
    """``hf:<repo>[@revision]`` or ``hf:/local/folder``: transformers' Auto classes and image processors."""

    name = "hf"
    aliases = ("huggingface",)
    listable = True

    build = staticmethod(build)

    def list_models(self, pattern: str | None, pretrained: bool) -> list[dict]:
        """Cached Hugging Face repos matching ``pattern`` (all of them unless ``pretrained``: cached only)."""
        return [r for r in list_cached(pattern) if r["cached"] or not pretrained]
