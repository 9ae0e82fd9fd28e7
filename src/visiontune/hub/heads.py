"""Head surgery for any architecture: find the classifier, replace it for N classes.

Handles timm (``get_classifier`` / ``reset_classifier``), torchvision (``fc``, ``classifier[-1]``,
``heads.head``, ``head``), Hugging Face image classifiers (``classifier``, updating the config's
labels) and a generic fallback (the last ``nn.Linear`` in registration order).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from visiontune.errors import VisiontuneError

CANDIDATE_PATHS = (
    "fc",
    "classifier",
    "head",
    "heads.head",
    "head.fc",
    "classif",
    "last_linear",
    "heads",
    "classifier.fc",
    "head.l",
    "linear",
)


def _get(model: nn.Module, path: str) -> nn.Module | None:
    m: Any = model
    for part in path.split("."):
        if part.lstrip("-").isdigit() and isinstance(m, (nn.Sequential, nn.ModuleList)):
            idx = int(part)
            if not -len(m) <= idx < len(m):
                return None
            m = m[idx]
        else:
            m = getattr(m, part, None)
        if m is None:
            return None
    return m if isinstance(m, nn.Module) else None


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = _get(model, parent_path) if parent_path else model
    if parent is None:
        raise VisiontuneError(f"cannot set {path}: no parent module")
    if last.lstrip("-").isdigit() and isinstance(parent, nn.Sequential):
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def _last_linear(mod: nn.Module, prefix: str) -> tuple[str, nn.Linear | nn.Conv2d] | None:
    if isinstance(mod, nn.Linear):
        return prefix, mod
    found: tuple[str, nn.Linear | nn.Conv2d] | None = None
    for name, sub in mod.named_modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)) and name:
            if isinstance(sub, nn.Conv2d) and sub.kernel_size != (1, 1):
                continue
            found = (f"{prefix}.{name}" if prefix else name, sub)
    return found


def find_head(model: nn.Module) -> tuple[str, nn.Module]:
    """Return (attribute path, module) of the final classification layer."""
    # timm models say where their classifier is.
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and isinstance(cfg.get("classifier"), str):
        m = _get(model, cfg["classifier"])
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            return cfg["classifier"], m
    for path in CANDIDATE_PATHS:
        m = _get(model, path)
        if m is None or isinstance(m, nn.Identity):
            continue
        if isinstance(m, nn.Linear):
            return path, m
        if isinstance(m, nn.Module):
            hit = _last_linear(m, path)
            if hit is not None:
                return hit
    # generic fallback: the last Linear in registration order
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (name, m)
    if last is None:
        raise VisiontuneError(
            f"cannot find a classification head in {type(model).__name__}: no nn.Linear layer. "
            "Pass the model with an explicit head, or use it as a feature extractor."
        )
    return last


def _features_in(head: nn.Module) -> int:
    if isinstance(head, nn.Linear):
        return head.in_features
    if isinstance(head, nn.Conv2d):
        return head.in_channels
    raise VisiontuneError(f"unsupported head type {type(head).__name__}")


def build_head(in_features: int, num_classes: int, dropout: float = 0.0, hidden: int | None = None) -> nn.Module:
    """A linear head, optionally with dropout before it and one hidden layer (MLP)."""
    layers: list[nn.Module] = []
    if hidden:
        layers += [nn.Linear(in_features, hidden), nn.GELU()]
        in_features = hidden
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_features, num_classes))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def replace_head(
    model: nn.Module,
    num_classes: int,
    *,
    dropout: float = 0.0,
    hidden: int | None = None,
    class_names: list[str] | None = None,
) -> dict:
    """Replace the classifier by a new one for ``num_classes``; returns the head spec to record."""
    if num_classes < 1:
        raise VisiontuneError(f"num_classes must be ≥ 1, got {num_classes}")
    path, old = find_head(model)
    in_features = _features_in(old)
    if isinstance(old, nn.Conv2d):  # 1x1 conv classifiers (e.g. squeezenet, mobilenetv3 timm conv_head variants)
        if dropout or hidden:
            raise VisiontuneError(f"{path} is a 1x1 conv classifier: dropout/MLP heads are not supported on it")
        new: nn.Module = nn.Conv2d(in_features, num_classes, kernel_size=1, bias=old.bias is not None)
    else:
        new = build_head(in_features, num_classes, dropout, hidden)
    _set(model, path, new)
    if hasattr(model, "num_classes"):
        try:
            setattr(model, "num_classes", num_classes)  # noqa: B010 - nn.Module's typed __setattr__ rejects an int
        except Exception:  # pragma: no cover - read-only property on some models
            pass
    config = getattr(model, "config", None)  # Hugging Face
    if config is not None and hasattr(config, "num_labels"):
        config.num_labels = num_classes
        names = class_names or [f"LABEL_{i}" for i in range(num_classes)]
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
    return {"path": path, "in_features": in_features, "num_classes": num_classes, "dropout": dropout, "hidden": hidden}


def apply_head_spec(model: nn.Module, spec: dict, class_names: list[str] | None = None) -> None:
    """Rebuild a recorded head (used when a saved model is reloaded)."""
    replace_head(
        model,
        spec["num_classes"],
        dropout=spec.get("dropout") or 0.0,
        hidden=spec.get("hidden"),
        class_names=class_names,
    )
