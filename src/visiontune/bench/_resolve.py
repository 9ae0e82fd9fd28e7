"""Load a model for measuring: pretrained weights when cached, else the bare architecture.

The only seam between bench/export and the hub: everything goes through ``visiontune.load``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visiontune.errors import OfflineError, WeightsNotCachedError

RANDOM_INIT = "random init (weights not cached)"
PRETRAINED = "pretrained"


@dataclass
class Resolved:
    pretrained: Any  # visiontune.Pretrained
    weights_status: str
    note: str | None = None


def load_for_bench(model_id: str, *, allow_random: bool = True, trust_pickle: bool = False) -> Resolved:
    """``visiontune.load(model_id)``; if the weights are not cached (offline), the same
    architecture with random weights, so latency / FLOPs / memory can still be measured. The card
    then still describes the default weights (``visiontune.hub.loader.describe``), so their
    published metrics and preprocessing stay known."""
    import visiontune as vt
    from visiontune.hub.loader import describe

    try:
        p = vt.load(model_id, trust_pickle=trust_pickle)
        status = PRETRAINED if getattr(p.card, "pretrained", True) else "random init"
        return Resolved(p, status)
    except (WeightsNotCachedError, OfflineError) as e:
        if not allow_random:
            raise
        note = str(e).splitlines()[0]
    try:
        p = describe(model_id, trust_pickle=trust_pickle)  # the weights' card, a randomly initialised model
    except (WeightsNotCachedError, OfflineError):
        p = vt.load(model_id, pretrained=False, trust_pickle=trust_pickle)
    return Resolved(p, RANDOM_INIT, note=note)


_TOP1_KEYS = ("acc@1", "top1", "top-1", "top1_acc", "accuracy_top1", "top_1")


def published_top1(card: Any) -> tuple[float | None, str | None]:
    """(top-1 in percent, metric key) from the card's published metrics, ImageNet first."""
    metrics: dict = dict(getattr(card, "metrics", None) or {})
    extra = getattr(card, "extra", None) or {}
    metrics.update({k: v for k, v in (extra.get("published_metrics") or {}).items() if k not in metrics})
    found = []
    for key, value in metrics.items():
        leaf = key.lower().rsplit("/", 1)[-1]
        if leaf in _TOP1_KEYS and isinstance(value, (int, float)):
            found.append((0 if "imagenet" in key.lower() else 1, key, float(value)))
    if not found:
        return None, None
    _, key, value = sorted(found)[0]
    return (value * 100.0 if value <= 1.0 else value), key
