"""Layer groups (stages) of any backbone, and discriminative learning rates over them.

Groups run from the input to the head; the head is always the last group. Stages are derived from
the model's own structure:

* timm: ``model.group_matcher(coarse=True)`` (stem, one group per stage);
* torchvision: ResNet-style ``layer1..layerN``, ``features[i]`` blocks (MobileNet, EfficientNet,
  ConvNeXt, VGG, Swin ...), ``encoder.layers`` for ViT;
* Hugging Face: the base model's embeddings, each block of its largest block list
  (``encoder.layer`` / ``encoder.stages`` / ``layers``), the final norm / pooler with the last;
* anything else: top-level children split into ``n_generic`` contiguous groups of about equal
  parameter count.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from torch import nn

from visiontune.hub.heads import find_head
from visiontune.hub.pretrained import count_params


@dataclass
class LayerGroups:
    """Parameter names per group, input → head. ``names[-1] == "head"``."""

    names: list[str]
    params: list[list[str]]
    head_path: str
    source: str = field(default="generic")  # how the stages were derived

    @property
    def n_backbone(self) -> int:
        """Number of backbone groups (every group but the head)."""
        return len(self.names) - 1

    def distance_from_head(self, i: int) -> int:
        """How many groups group ``i`` sits below the head (the head itself is 0)."""
        return len(self.names) - 1 - i

    def lrs(self, lr: float, decay: float = 0.1, head_lr: float | None = None) -> list[float]:
        """Learning rate of each group: ``lr * decay ** distance_from_head``; head: ``head_lr or lr``."""
        out = [lr * decay ** self.distance_from_head(i) for i in range(len(self.names))]
        if head_lr is not None:
            out[-1] = head_lr
        return out

    def summary(self, model: nn.Module) -> list[tuple[str, int, int]]:
        """(group, trainable params, total params) for each group."""
        named = dict(model.named_parameters())
        rows = []
        for name, ps in zip(self.names, self.params):
            total = sum(named[p].numel() for p in ps)
            train = sum(named[p].numel() for p in ps if named[p].requires_grad)
            rows.append((name, train, total))
        return rows


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _is_hf(model: nn.Module) -> bool:
    return any(c.__module__.startswith("transformers.") for c in type(model).__mro__)


def _module(model: nn.Module, path: str) -> nn.Module | None:
    m: nn.Module | None = model
    for part in path.split("."):
        m = (
            getattr(m, part, None)
            if not part.isdigit()
            else (m[int(part)] if isinstance(m, (nn.Sequential, nn.ModuleList)) and int(part) < len(m) else None)
        )
        if m is None:
            return None
    return m


def _assign(model: nn.Module, prefixes: list[tuple[str, list[str]]], head_path: str, source: str) -> LayerGroups:
    """Build groups from (group name, [module prefixes]); unmatched params join the group of the
    closest earlier parameter (registration order), or the first group."""
    names = [n for n, _ in prefixes]
    params: list[list[str]] = [[] for _ in prefixes]
    head: list[str] = []
    seen: set[int] = set()
    last_group = 0
    for pname, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if _under(pname, head_path):
            head.append(pname)
            continue
        gi = next((i for i, (_, pres) in enumerate(prefixes) if any(_under(pname, x) for x in pres)), None)
        if gi is None:
            gi = last_group
        params[gi].append(pname)
        last_group = gi
    keep = [i for i, ps in enumerate(params) if ps]
    return LayerGroups([names[i] for i in keep] + ["head"], [params[i] for i in keep] + [head], head_path, source)


def _timm_groups(model: nn.Module, head_path: str) -> LayerGroups | None:
    try:
        from timm.models import group_parameters

        matcher = cast(Callable[..., Any], model.group_matcher)(coarse=True)  # timm models: a method
        grouped = group_parameters(model, matcher)
    except Exception:
        return None
    names: list[str] = []
    params: list[list[str]] = []
    head: list[str] = []
    for plist in grouped.values():
        body: list[str] = []
        for pname in plist:
            (head if _under(pname, head_path) else body).append(pname)
        if body:
            names.append("stem" if not names and len(grouped) > 2 else f"stage{len(names)}")
            params.append(body)
    if len(params) < 2:
        return None
    return LayerGroups(names + ["head"], params + [head], head_path, "timm.group_matcher")


def _torchvision_groups(model: nn.Module, head_path: str) -> LayerGroups | None:
    children = dict(model.named_children())
    layers = sorted((n for n in children if re.fullmatch(r"layer\d+", n)), key=lambda n: int(n[5:]))
    if len(layers) >= 2:  # ResNet, ResNeXt, Wide-ResNet, RegNet-like
        stem = [n for n in children if n not in layers and not _under(head_path, n)]
        return _assign(model, [("stem", stem)] + [(n, [n]) for n in layers], head_path, "torchvision.layerN")
    feats = children.get("features")
    if isinstance(feats, nn.Sequential) and len(feats) >= 3 and not _under(head_path, "features"):
        groups = [(f"features.{i}", [f"features.{i}"]) for i in range(len(feats))]
        return _assign(model, groups, head_path, "torchvision.features")
    enc = _module(model, "encoder.layers")
    if isinstance(enc, (nn.Sequential, nn.ModuleList)) and len(enc) >= 2:  # torchvision ViT
        names = [n for n, _ in enc.named_children()]
        groups = [
            (
                "stem",
                [n for n in children if n not in ("encoder",) and not _under(head_path, n)] + ["encoder.pos_embedding"],
            )
        ]
        groups += [(f"encoder.layers.{n}", [f"encoder.layers.{n}"]) for n in names]
        return _assign(model, groups, head_path, "torchvision.vit")
    return None


def _largest_list(module: nn.Module, prefix: str) -> tuple[str, nn.Module] | None:
    best, best_n = None, 0
    for name, sub in module.named_modules(prefix=prefix):
        if isinstance(sub, (nn.ModuleList, nn.Sequential)) and len(sub) >= 2:
            n = sum(p.numel() for p in sub.parameters())
            if n > best_n:
                best, best_n = (name, sub), n
    return best


def _hf_groups(model: nn.Module, head_path: str) -> LayerGroups | None:
    """Hugging Face: embeddings → each block of the base model's largest block list → final
    norm / pooler (joined to the last block). Works across layouts (``encoder.layer``,
    ``encoder.stages``, transformers 5's flat ``layers``)."""
    base_name = getattr(model, "base_model_prefix", "")
    base = getattr(model, base_name, None) if base_name else None
    if base is None:
        return None
    hit = _largest_list(base, base_name)
    if hit is None:
        return None
    list_path, blocks = hit
    block_names = [f"{list_path}.{n}" for n, _ in blocks.named_children()]
    params: list[list[str]] = [[] for _ in range(len(block_names) + 1)]
    head: list[str] = []
    post: list[str] = []
    seen_blocks = False
    for pname, _ in model.named_parameters():
        if _under(pname, head_path):
            head.append(pname)
        elif _under(pname, list_path):
            seen_blocks = True
            i = next(i for i, b in enumerate(block_names) if _under(pname, b))
            params[i + 1].append(pname)
        elif seen_blocks:
            post.append(pname)
        else:
            params[0].append(pname)
    params[-1] += post
    names = ["stem"] + block_names
    keep = [i for i, ps in enumerate(params) if ps]
    return LayerGroups([names[i] for i in keep] + ["head"], [params[i] for i in keep] + [head], head_path, "hf.blocks")


def _generic_groups(model: nn.Module, head_path: str, n: int) -> LayerGroups:
    units: list[tuple[str, nn.Module]] = [(name, m) for name, m in model.named_children()]

    # expand the biggest unit until there are enough to split
    while len([u for u in units if count_params(u[1])]) < n + 1:
        i = max(range(len(units)), key=lambda j: count_params(units[j][1]) if list(units[j][1].children()) else -1)
        name, m = units[i]
        subs = list(m.named_children())
        if not subs:
            break
        units[i : i + 1] = [(f"{name}.{s}", c) for s, c in subs]
    units = [
        (nme, m) for nme, m in units if count_params(m) and not _under(nme, head_path) and not _under(head_path, nme)
    ]
    total = sum(count_params(m) for _, m in units) or 1
    groups: list[tuple[str, list[str]]] = []
    acc = 0
    for nme, m in units:
        k = min(n - 1, int(acc * n / total))
        while len(groups) <= k:
            groups.append((f"group{len(groups)}", []))
        groups[k][1].append(nme)
        acc += count_params(m)
    return _assign(model, groups or [("body", [""])], head_path, "generic")


def layer_groups(model: nn.Module, head_path: str | None = None, n_generic: int = 4) -> LayerGroups:
    """Derive the layer groups (input → head) of ``model``; ``head_path`` defaults to
    ``visiontune.hub.heads.find_head``'s answer."""
    if head_path is None:
        head_path = find_head(model)[0]
    finders = []
    if _is_hf(model):
        finders.append(lambda: _hf_groups(model, head_path))
    if hasattr(model, "group_matcher"):
        finders.append(lambda: _timm_groups(model, head_path))
    finders.append(lambda: _torchvision_groups(model, head_path))
    for f in finders:
        lg = f()
        if lg is not None and lg.n_backbone >= 1 and lg.params[-1]:
            return lg
    return _generic_groups(model, head_path, n_generic)


def param_groups(
    model: nn.Module,
    groups: LayerGroups,
    lr: float,
    decay: float = 0.1,
    head_lr: float | None = None,
    weight_decay: float = 0.0,
) -> list[dict]:
    """Optimizer parameter groups with discriminative learning rates.

    Each layer group becomes up to two optimizer groups: weights with ``weight_decay``, and biases /
    norm parameters (1-D tensors) without it. Frozen parameters are included too (optimizers skip
    parameters without a gradient), so unfreezing later needs no new optimizer.
    Every group carries ``name`` and ``layer_group`` (index, input → head) keys.
    """
    named = dict(model.named_parameters())
    lrs = groups.lrs(lr, decay, head_lr)
    out: list[dict] = []
    for gi, (gname, plist) in enumerate(zip(groups.names, groups.params)):
        decayed = [named[p] for p in plist if named[p].ndim > 1]
        plain = [named[p] for p in plist if named[p].ndim <= 1]
        for suffix, ps, wd in (("", decayed, weight_decay), ("/no_decay", plain, 0.0)):
            if ps:
                out.append({"params": ps, "lr": lrs[gi], "weight_decay": wd, "name": gname + suffix, "layer_group": gi})
    return out
