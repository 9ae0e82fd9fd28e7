"""`visiontune.load`: one entry point over every hub and every task."""

from __future__ import annotations

import os
import warnings
from typing import Any

from visiontune.errors import ModelIdError
from visiontune.hub.ids import ModelId, parse_model_id
from visiontune.hub.options import LoadOptions
from visiontune.hub.pretrained import Pretrained
from visiontune.hub.registry import get_source, source_names


def dispatch(model_id: str | os.PathLike | ModelId, opts: LoadOptions) -> Pretrained:
    """Build ``model_id`` with ``opts`` through the source its prefix names (no per-source branches)."""
    mid = parse_model_id(model_id)
    return get_source(mid.source).build(mid, opts)


def load(
    model_id: str | os.PathLike | ModelId,
    num_classes: int | None = None,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    *,
    trust_pickle: bool = False,
    trust_remote_code: bool = False,
    strict: bool = True,
    head: dict | None = None,
    class_names: list[str] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Pretrained:
    """Load a model, its preprocessing and its card from any hub, for any task.

    Args:
        model_id: ``source:name[@weights]`` — ``torchvision:resnet50@IMAGENET1K_V2``,
            ``torchvision:fasterrcnn_resnet50_fpn_v2``, ``timm:convnext_tiny.fb_in22k_ft_in1k``,
            ``hf:microsoft/resnet-50``, ``hf:facebook/detr-resnet-50``, ``hub:owner/repo:entrypoint``,
            ``yolo:yolo11n.pt``, ``file:PATH`` or a saved model path. Installed plugins add sources.
        num_classes: put a new classification head for this many classes (classifiers only).
        pretrained: load the source's pretrained weights (from the local cache first; downloaded
            only when the network is reachable). False builds the architecture with random weights
            but keeps the weights' preprocessing on the card.
        weights: a local weights file (safetensors or a tensors-only torch file) to load instead;
            keys are matched by name, then by order and shape (foreign checkpoints).
        trust_pickle: allow unpickling a checkpoint that holds Python objects (runs code from it).
        trust_remote_code: allow running a repository's code (torch.hub's hubconf.py, Hugging Face
            custom architectures).
        strict: fail when any tensor is missing, unused or mis-shaped (the default). With False the
            load goes on and ``Pretrained.load_report`` lists what did not match.
        head: ``{"dropout": p, "hidden": n}`` for a dropout / MLP head with ``num_classes``.
        class_names: names of the classes (of the new head with ``num_classes``).
        model_kwargs: keyword arguments for the source's builder (``timm.create_model``,
            torchvision's builder, the torch.hub entrypoint).

    Returns a `Pretrained`: ``.task``, ``.model``, ``.preprocess``, ``.card``, ``.predict(images)``.
    """
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    opts = LoadOptions(
        num_classes=num_classes,
        pretrained=pretrained,
        weights=os.fspath(weights) if weights is not None else None,
        trust_pickle=trust_pickle,
        trust_remote_code=trust_remote_code,
        strict=strict,
        head=head,
        class_names=list(class_names) if class_names is not None else None,
        model_kwargs=dict(model_kwargs or {}),
    )
    p = dispatch(model_id, opts)
    if p.load_report is not None and not p.load_report.complete:
        warnings.warn(f"partial load of {weights}: {p.load_report.details()}", stacklevel=2)
    return p


def describe(model_id: str | os.PathLike, **kw: Any) -> Pretrained:
    """The card of a model id without downloading or loading its pretrained weights (works
    offline for torchvision and timm; Hugging Face needs the repo's config in the cache). The
    model has random weights: use it for the card and preprocessing only. A local ``weights=``
    file is still read (through the trust gate) so the card describes it."""
    allowed = {"weights", "trust_pickle", "trust_remote_code", "num_classes", "class_names", "strict"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise TypeError(f"describe() got unexpected arguments {unknown}; allowed: {sorted(allowed)}")
    weights = kw.pop("weights", None)
    opts = LoadOptions(weights=os.fspath(weights) if weights is not None else None, describe=True, **kw)
    return dispatch(model_id, opts)


def list_models(pattern: str | None = None, source: str | None = None, pretrained: bool = False) -> list[dict]:
    """Model ids known offline: torchvision's and timm's registries, and the Hugging Face and
    torch.hub models already in the local caches (their online catalogues are open-ended).
    ``cached`` says whether the weights are on disk (None: not checked)."""
    names = [source] if source is not None else source_names()
    listable = [n for n in source_names() if _listable(n)]
    if source is not None and (source not in source_names() or not _listable(source)):
        raise ModelIdError(
            f"cannot list source {source!r}: listable sources are {', '.join(listable)} "
            "(yolo: and file: ids name a file; use `visiontune models info ID` on one)"
        )
    rows: list[dict] = []
    for name in names:
        if _listable(name):
            rows += get_source(name).list_models(pattern, pretrained)
    return rows


def _listable(name: str) -> bool:
    try:
        return bool(get_source(name).listable)
    except ModelIdError:
        return False
