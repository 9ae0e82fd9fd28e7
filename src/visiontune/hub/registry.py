"""The registries behind ``visiontune.load``: sources (front doors) and architecture builders.

Sources — each front door (torchvision, timm, hf, hub, yolo, file) is a :class:`Source` that
registers itself with :func:`register_source`, the way torchvision's ``register_model`` and timm's
``_registry`` do. The loader looks a source up by the id's prefix; it has no per-source branches.
Built-in sources are imported on first use (``import visiontune`` stays cheap). Third-party
sources plug in through the ``visiontune.sources`` entry-point group::

    # pyproject.toml of a plugin
    [project.entry-points."visiontune.sources"]
    acme = "acme_models.visiontune:AcmeSource"      # a Source subclass (or instance)

Architecture builders — a model that has no hub id of its own (a composed detector, a fine-tuned
detector with new anchors) is saved with a *recipe*, a JSON-able dict whose ``builder`` names a
function registered here (:func:`register_architecture`, or the ``visiontune.architectures``
entry-point group) that rebuilds the untrained architecture. Saved models reload through the
file source, which looks the builder up here.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

from visiontune.errors import ConfigError, ModelIdError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from visiontune.hub.ids import ModelId
    from visiontune.hub.options import LoadOptions
    from visiontune.hub.pretrained import Pretrained

SOURCE_GROUP = "visiontune.sources"
ARCHITECTURE_GROUP = "visiontune.architectures"

#: Built-in sources: name -> (module that registers it, aliases). Imported on first use.
BUILTIN_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "torchvision": ("visiontune.hub.sources.tv", ("tv",)),
    "timm": ("visiontune.hub.sources.timm_src", ()),
    "hf": ("visiontune.hub.sources.hf", ("huggingface",)),
    "hub": ("visiontune.hub.sources.torchhub", ("torchhub",)),
    "yolo": ("visiontune.hub.sources.yolo", ("ultralytics",)),
    "file": ("visiontune.hub.sources.files", ()),
}

#: Built-in architecture builders: recipe ``builder`` -> "module:function". Imported on first use.
BUILTIN_ARCHITECTURES: dict[str, str] = {
    "torchvision": "visiontune.detect.models:build_from_recipe",
    "composed": "visiontune.detect.compose:build_from_recipe",
    "segmenter": "visiontune.segment.compose:build_from_recipe",
}


class Source:
    """One front door of ``visiontune.load``.

    Subclasses set ``name`` (the id prefix) and ``aliases``, implement :meth:`build`, and may
    override :meth:`parse` (the part of the id after ``name:``), :meth:`list_models` (with
    ``listable = True``) and :meth:`names` (architecture names, for "did you mean" hints).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    listable: ClassVar[bool] = False

    def parse(self, rest: str, text: str) -> tuple[str, str | None]:
        """The part of the id after ``name:`` -> (name, weights tag or None). Default grammar:
        ``name[@weights]``."""
        return split_weights(rest, text, self.name)

    def build(self, mid: ModelId, opts: LoadOptions) -> Pretrained:
        """Build the model, its preprocessing and its card."""
        raise NotImplementedError

    def list_models(self, pattern: str | None, pretrained: bool) -> list[dict]:
        """Rows ``{"id", "task", "weights", "cached"}`` of the models this source knows offline."""
        return []

    def names(self) -> list[str]:
        """Architecture names this source knows offline (for suggestions); may be empty."""
        return []


def split_weights(rest: str, text: str, source: str) -> tuple[str, str | None]:
    """``name[@weights]`` -> (name, weights or None), with errors that quote the whole id."""
    name, at, weights = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not name:
        raise ModelIdError(f"model id {text!r} has no model name after '{source}:'")
    if at and not weights:
        raise ModelIdError(f"model id {text!r} ends with '@' but names no weights")
    return name, weights or None


_sources: dict[str, Source] = {}
_aliases: dict[str, str] = {alias: name for name, (_, al) in BUILTIN_SOURCES.items() for alias in al}
_architectures: dict[str, Callable[..., Any]] = {}


def register_source(source: type[Source] | Source) -> Any:
    """Register a source (a :class:`Source` subclass or instance); usable as a class decorator."""
    inst = source() if isinstance(source, type) else source
    if not isinstance(inst, Source) or not inst.name:
        raise TypeError(f"register_source needs a Source with a name, got {source!r}")
    _sources[inst.name] = inst
    for alias in inst.aliases:
        _aliases[alias] = inst.name
    return source


def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def canonical_source(name: str) -> str | None:
    """The registered name for ``name`` (aliases resolved, case-insensitive), or None if unknown.
    Imports nothing."""
    n = name.lower()
    n = _aliases.get(n, n)
    if n in _sources or n in BUILTIN_SOURCES or n in _entry_points(SOURCE_GROUP):
        return n
    return None


def source_names() -> list[str]:
    """Every source name: the built-in ones first, then registered and installed plugins."""
    others = sorted({*_sources, *_entry_points(SOURCE_GROUP)} - set(BUILTIN_SOURCES))
    return [*BUILTIN_SOURCES, *others]


def get_source(name: str) -> Source:
    """The source registered as ``name`` (or an alias), importing it on first use."""
    canon = canonical_source(name)
    if canon is None:
        raise ModelIdError(f"unknown model source {name!r}; known: {', '.join(source_names())}" + suggest(name))
    if canon not in _sources:
        if canon in BUILTIN_SOURCES:
            importlib.import_module(BUILTIN_SOURCES[canon][0])
        else:
            register_source(_entry_points(SOURCE_GROUP)[canon].load())
        if canon not in _sources:  # pragma: no cover - a built-in module that forgot to register
            raise ModelIdError(f"source module for {canon!r} did not register a Source named {canon!r}")
    return _sources[canon]


def close_matches(name: str, known: list[str], n: int = 3) -> list[str]:
    """The entries of ``known`` closest to ``name`` (difflib), best first; for "did you mean" hints."""
    lowered = {k.lower(): k for k in known}
    return [lowered[h] for h in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)]


def suggest(name: str, known: list[str] | None = None, prefix: str = "") -> str:
    """`` Did you mean 'x'?`` for the closest of ``known`` (default: the source names), or ''."""
    hits = close_matches(name, known if known is not None else source_names())
    return (" Did you mean " + " or ".join(f"'{prefix}{h}'" for h in hits) + "?") if hits else ""


# -- architectures ---------------------------------------------------------------------------------
def register_architecture(name: str, builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``builder(recipe, trust_pickle=False) -> nn.Module`` for recipes with ``builder: name``."""
    _architectures[name] = builder
    return builder


def build_architecture(recipe: dict, *, trust_pickle: bool = False) -> nn.Module:
    """Rebuild the (untrained) architecture a recipe describes."""
    if not isinstance(recipe, dict) or not recipe.get("builder"):
        raise ConfigError(f"an architecture recipe needs a 'builder' key, got {recipe!r}")
    name = str(recipe["builder"])
    fn = _architectures.get(name)
    if fn is None:
        if name in BUILTIN_ARCHITECTURES:
            module, _, attr = BUILTIN_ARCHITECTURES[name].partition(":")
            fn = register_architecture(name, getattr(importlib.import_module(module), attr))
        elif name in (eps := _entry_points(ARCHITECTURE_GROUP)):
            fn = register_architecture(name, eps[name].load())
        else:
            known = sorted({*BUILTIN_ARCHITECTURES, *_architectures, *eps})
            raise ConfigError(f"unknown architecture builder {name!r} in recipe; known: {', '.join(known)}")
    return fn(recipe, trust_pickle=trust_pickle)
