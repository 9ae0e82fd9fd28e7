"""`visiontune.load`: one entry point over every hub."""

from __future__ import annotations

import os
from typing import Any

from visiontune.hub.ids import ModelId, parse_model_id
from visiontune.hub.pretrained import Pretrained
from visiontune.hub.sources._common import LoadOptions


def _dispatch(model_id: str | ModelId, opts: LoadOptions) -> Pretrained:
    if isinstance(model_id, os.PathLike):
        model_id = os.fspath(model_id)
    mid = model_id if isinstance(model_id, ModelId) else parse_model_id(model_id)
    if mid.source == "torchvision":
        from visiontune.hub.sources import tv as src
    elif mid.source == "timm":
        from visiontune.hub.sources import timm_src as src
    elif mid.source == "hf":
        from visiontune.hub.sources import hf as src
    elif mid.source == "hub":
        from visiontune.hub.sources import torchhub as src
    elif mid.source == "yolo":
        from visiontune.hub.sources import yolo as src
    else:
        from visiontune.hub.sources import files

        return files.build(mid, opts, _dispatch)
    return src.build(mid, opts)


def load(
    model_id: str,
    num_classes: int | None = None,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    *,
    trust_pickle: bool = False,
    trust_remote_code: bool = False,
    strict: bool = True,
    head: dict | None = None,
    class_names: list[str] | None = None,
    **extra: Any,
) -> Pretrained:
    """Load a model, its preprocessing and its card from any hub.

    Args:
        model_id: ``source:name[@weights]`` — ``torchvision:resnet50@IMAGENET1K_V2``,
            ``timm:convnext_tiny.fb_in22k_ft_in1k``, ``hf:microsoft/resnet-50``,
            ``hub:owner/repo:entrypoint``, ``yolo:yolo11n.pt``, ``file:PATH`` or a saved model path.
        num_classes: put a new classification head for this many classes.
        pretrained: load the source's pretrained weights (from the local cache first; downloaded
            only when the network is reachable). False builds the architecture with random weights
            but keeps the weights' preprocessing on the card.
        weights: a local weights file (safetensors or a tensors-only torch file) to load instead;
            keys are matched by name, then by order and shape (foreign checkpoints).
        trust_pickle: allow unpickling a checkpoint that holds Python objects (runs code from it).
        trust_remote_code: allow torch.hub to run a repository's hubconf.py.
        strict: fail when any tensor is missing, unused or mis-shaped (the default). With False the
            load goes on and ``Pretrained.load_report`` lists what did not match.
        head: ``{"dropout": p, "hidden": n}`` for a dropout / MLP head with ``num_classes``.
        class_names: names of the new classes (with ``num_classes``).
    """
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    opts = LoadOptions(
        num_classes=num_classes,
        pretrained=pretrained,
        weights=str(weights) if weights is not None else None,
        trust_pickle=trust_pickle,
        trust_remote_code=trust_remote_code,
        strict=strict,
        head=head,
        class_names=list(class_names) if class_names is not None else None,
        extra=extra,
    )
    p = _dispatch(model_id, opts)
    if p.load_report is not None and not p.load_report.complete:
        import warnings

        warnings.warn(f"partial load of {weights}: {p.load_report.details()}", stacklevel=2)
    return p


def describe(model_id: str, **kw: Any) -> Pretrained:
    """The card of a model id without downloading or loading its weights (works offline for
    torchvision and timm; Hugging Face needs the repo's config in the cache). The returned
    object's model has random weights: use it for the card and preprocessing only."""
    return load(model_id, describe=True, **kw)


def list_models(pattern: str | None = None, source: str | None = None, pretrained: bool = False) -> list[dict]:
    """Model ids known offline: torchvision's and timm's registries, and the Hugging Face and
    torch.hub models already in the local caches (their online catalogues are open-ended).
    ``cached`` says whether the weights are on disk (None: not checked)."""
    from visiontune.errors import ModelIdError

    listable = ("torchvision", "timm", "hf", "hub")
    if source is not None and source not in listable:
        raise ModelIdError(
            f"cannot list source {source!r}: listable sources are {', '.join(listable)} "
            "(yolo: and file: ids name a file; use `visiontune models info ID` on one)"
        )
    rows: list[dict] = []
    if source in (None, "torchvision"):
        from visiontune.hub.sources import tv

        rows += tv.list_models(pattern, pretrained)
    if source in (None, "timm"):
        from visiontune.hub.sources import timm_src

        rows += timm_src.list_models(pattern, pretrained)
    if source in (None, "hf"):
        from visiontune.hub.sources import hf

        rows += [r for r in hf.list_cached(pattern) if r["cached"] or not pretrained]
    if source in (None, "hub"):
        from visiontune.hub.sources import torchhub

        rows += torchhub.list_cached(pattern)
    return rows
