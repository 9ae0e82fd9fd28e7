"""Pieces every source shares: head swap after load, the local-weights path, list patterns."""

from __future__ import annotations

from torch import nn

from visiontune.errors import ConfigError
from visiontune.hub.card import Card
from visiontune.hub.checkpoint import LoadReport, load_into, load_state_dict_file, resolve_weights_path, sha256_file
from visiontune.hub.heads import find_head, replace_head
from visiontune.hub.options import LoadOptions
from visiontune.hub.pretrained import count_params


def glob_pattern(pattern: str | None) -> str:
    """What `models list PATTERN` matches: a glob as given, a plain word as a substring."""
    if not pattern:
        return "*"
    return pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"


def load_local_weights(model: nn.Module, opts: LoadOptions, *, source: str) -> tuple[LoadReport, str]:
    """Fit ``opts.weights`` into ``model`` (exact names, then order-and-shape remapping).

    When a new head will be put on afterwards (``num_classes``), the old head's tensors may be
    missing from the file without failing the strict check.
    """
    assert opts.weights is not None, "callers load local weights only when opts.weights is set"
    path = resolve_weights_path(opts.weights)
    sd = load_state_dict_file(path, trust_pickle=opts.trust_pickle)
    allow: tuple[str, ...] = ()
    if opts.num_classes is not None:
        try:
            head_path, _ = find_head(model)
            allow = (f"{head_path}.*", f"{head_path}")
        except Exception:
            allow = ()
    report = load_into(model, sd, strict=opts.strict, allow_missing=allow, source=str(path))
    return report, sha256_file(path)


def finish(model: nn.Module, card: Card, opts: LoadOptions) -> Card:
    """Swap the head when asked, and fill the card's class/param fields."""
    if opts.num_classes is not None and card.task != "classification" and opts.num_classes != card.num_classes:
        raise ConfigError(
            f"num_classes={opts.num_classes}: {card.model_id} is a {card.task} model, and a new head is put on "
            "classifiers only; fine-tune a detector for new classes with visiontune.detect.adapt_detector or "
            "`visiontune detect-train`"
        )
    if opts.num_classes is not None and card.task == "classification":
        need_new = opts.num_classes != card.num_classes or opts.head
        if need_new:
            head = opts.head or {}
            names = opts.class_names
            spec = replace_head(
                model,
                opts.num_classes,
                dropout=head.get("dropout", 0.0) or 0.0,
                hidden=head.get("hidden"),
                class_names=names,
            )
            card.head = spec
            card.base_id = card.base_id or card.model_id
            card.num_classes = opts.num_classes
            card.class_names = names
            card.metrics = {}  # published metrics belong to the old head
    elif opts.class_names is not None:
        card.class_names = opts.class_names
    if card.class_names is not None and card.num_classes is None:
        card.num_classes = len(card.class_names)
    if not card.pretrained and not opts.describe:
        card.extra["random_weights"] = True  # predict() says so: the outputs mean nothing yet
    card.num_params = count_params(model)
    return card
