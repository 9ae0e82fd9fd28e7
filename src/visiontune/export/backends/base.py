"""The one interface every export backend implements, and what backends share: errors that name
the unsupported operator, the logits wrapper. (`visiontune.export.quiet` keeps the exporters'
console noise away.)"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from visiontune.errors import ConfigError, ExportError
from visiontune.export.sidecar import Sidecar

DEFAULT_OPSET = 17


@dataclass
class ExportOptions:
    """What a backend needs to know besides the module: the task, the id for messages, the ONNX
    opset, the exporter asked for (``auto`` lets the backend choose), whether the batch dimension
    is dynamic, and the output names (``["logits"]``, or the detector's dict keys in order)."""

    task: str
    model_id: str
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"
    dynamic_batch: bool = True
    output_names: list[str] = field(default_factory=lambda: ["logits"])


class Runner(Protocol):
    """A loaded artifact: preprocessed float32 input -> the outputs in ``sidecar.output.names`` order."""

    def run(self, x: np.ndarray) -> list[np.ndarray]: ...


class Backend(ABC):
    """An artifact format: how to write it from a PyTorch module and how to run it.

    ``export`` writes the artifact at ``path`` (companion files, such as ONNX external data, go
    beside it in the same folder) and returns the exporter used; ``open`` loads a written
    artifact for inference. ``suffixes[0]`` names default outputs.
    """

    name: ClassVar[str]
    label: ClassVar[str]  # for messages: "ONNX", "TorchScript"
    suffixes: ClassVar[tuple[str, ...]]
    runtime: ClassVar[str]  # what runs it: "onnxruntime", "torchscript"
    quantizations: ClassVar[tuple[str, ...]] = ()

    def prepare(self, options: ExportOptions) -> None:
        """Refuse options this backend cannot honour before any work is done (default: none)."""
        return None

    @abstractmethod
    def export(self, module: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions) -> str:
        """Write ``module`` (traced on ``example``) to ``path``; return the exporter used."""

    def quantize(self, src: Path, dst: Path, mode: str, options: ExportOptions) -> None:
        """Write a ``mode``-quantized copy of the artifact ``src`` to ``dst``."""
        raise ConfigError(f"{self.label} artifacts cannot be quantized ({mode!r})")

    def verify(self, path: Path, options: ExportOptions) -> None:
        """Check the written artifact (raise ExportError when it is not valid; default: no check)."""
        return None

    @abstractmethod
    def open(
        self,
        artifact: Path,
        sidecar: Sidecar,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> Runner:
        """Load ``artifact`` for inference (``providers`` / ``threads``: runtime options)."""

    def check_output(self, path: Path) -> None:
        """Refuse an output file name this backend does not write."""
        if path.suffix.lower() not in self.suffixes:
            raise ConfigError(f"output {path}: a {self.name} artifact is named *{self.suffixes[0]}")


class Logits(nn.Module):
    """Makes any classifier return a plain logits tensor (HF outputs, tuples)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the ONNX input name
        out = self.model(input)
        if isinstance(out, torch.Tensor):
            return out
        if hasattr(out, "logits"):
            return out.logits
        return out[0]


_OP_PATTERNS = [
    re.compile(r"Exporting the operator '([\w:.]+)'"),
    re.compile(r"\b(aten\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)"),
    re.compile(r"\b(aten::[A-Za-z0-9_]+)"),
    re.compile(r"[Uu]nsupported (?:operator|op)[:\s]+'?([\w:.]+)'?"),
]


def unsupported_operator(error: BaseException) -> str | None:
    """The operator an exporter error is about, when its message (or a cause's) names one."""
    seen = set()
    e: BaseException | None = error
    texts = []
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    for pat in _OP_PATTERNS:
        for t in texts:
            m = pat.search(t)
            if m:
                return m.group(1)
    return None


def raise_export_error(e: BaseException, fmt: str, model_id: str, opset: int, tried: str) -> None:
    """Raise an ExportError for exporter error ``e`` naming the operator (``.operator``) and what to try."""
    op = unsupported_operator(e)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    if op:
        msg = (
            f"cannot export {model_id} to {fmt}: operator {op} is not supported by the {tried} exporter "
            f"(opset {opset}). Try --opset 18+, --exporter dynamo (ONNX), --format torchscript, or replace "
            f"that op in the model. Exporter said: {first}"
        )
    else:
        msg = f"cannot export {model_id} to {fmt} with the {tried} exporter: {type(e).__name__}: {first}"
    err = ExportError(msg)
    err.operator = op  # type: ignore[attr-defined]
    raise err from e


def clear_folder(folder: Path) -> None:
    """Remove the files a failed exporter left in its (temporary) output folder."""
    for f in folder.iterdir():
        if f.is_file() or f.is_symlink():
            os.unlink(f)
