"""Freezing strategies: which layer groups train, at which epoch.

* ``linear``  — only the head trains; the backbone is frozen and kept in eval mode (BatchNorm
  statistics and dropout untouched). With a feature cache the backbone runs once.
* ``partial`` — the head and the last ``n_stages`` backbone groups train.
* ``full``    — everything trains (discriminative learning rates still apply).
* ``gradual`` — the head trains first; at each milestone epoch one more group, from the head
  toward the input, starts training.

In every strategy, normalisation layers whose parameters are all frozen stay in eval mode.
"""

from __future__ import annotations

from torch import nn

from visiontune.adapt.groups import LayerGroups
from visiontune.errors import ConfigError
from visiontune.hub.pretrained import count_params

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def default_milestones(epochs: int, n_backbone: int) -> list[int]:
    """One milestone per backbone group, spread evenly over epochs 1 .. epochs-1 (at most one
    per epoch, so with fewer epochs than groups the groups nearest the input stay frozen)."""
    m = min(n_backbone, max(epochs - 1, 0))
    if m == 0:
        return []
    return sorted({max(1, min(epochs - 1, round(i * epochs / (m + 1)))) for i in range(1, m + 1)})


def n_trainable_backbone(
    strategy: str, n_backbone: int, epoch: int = 0, n_stages: int = 2, milestones: list[int] | None = None
) -> int:
    """How many backbone groups (counted from the head) train at ``epoch``."""
    if strategy == "linear":
        return 0
    if strategy == "full":
        return n_backbone
    if strategy == "partial":
        return min(n_stages, n_backbone)
    if strategy == "gradual":
        ms = milestones if milestones is not None else []
        return min(n_backbone, sum(1 for m in ms if epoch >= m))
    raise ConfigError(f"unknown strategy {strategy!r}; one of linear, partial, full, gradual")


def set_trainable(model: nn.Module, groups: LayerGroups, n_backbone_trainable: int) -> list[str]:
    """Set ``requires_grad``: the head and the last ``n_backbone_trainable`` groups train.
    Returns the names of the training groups."""
    named = dict(model.named_parameters())
    first = groups.n_backbone - n_backbone_trainable
    training = []
    for i, (gname, plist) in enumerate(zip(groups.names, groups.params)):
        on = i >= first
        for p in plist:
            named[p].requires_grad_(on)
        if on:
            training.append(gname)
    return training


def freeze_frozen_norms(model: nn.Module) -> int:
    """Put normalisation layers whose parameters are all frozen in eval mode (call after
    ``model.train()``). Returns how many were switched."""
    n = 0
    for m in model.modules():
        if isinstance(m, NORM_TYPES) and m.training:
            ps = list(m.parameters(recurse=False))
            # affine-free norms carry no trainable state to decide by: leave them to the model
            if ps and not any(p.requires_grad for p in ps):
                m.eval()
                n += 1
    return n


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; the total is `visiontune.hub.pretrained.count_params`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad), count_params(model)
