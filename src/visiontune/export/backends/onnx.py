"""ONNX: torch.onnx (TorchScript-based or dynamo exporter), checked with onnx.checker, run with
ONNX Runtime; int8 dynamic quantization through onnxruntime.quantization."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from visiontune.errors import ConfigError, ExportError, require
from visiontune.export.backends.base import (
    Backend,
    ExportOptions,
    Logits,
    clear_folder,
    raise_export_error,
    unsupported_operator,
)
from visiontune.export.quantize import QUANTIZATIONS, quantize_onnx
from visiontune.export.quiet import quiet
from visiontune.export.sidecar import Sidecar

_TRIED = {"torchscript": "TorchScript-based ONNX", "dynamo": "dynamo ONNX"}


class OnnxRunner:
    """An ONNX Runtime session fed through the sidecar's input name."""

    def __init__(self, session: Any, input_name: str):
        self.session, self.input_name = session, input_name

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Outputs of the graph for one preprocessed input, in graph order."""
        return list(self.session.run(None, {self.input_name: x}))


class OnnxBackend(Backend):
    """``format="onnx"``: classifiers with either exporter (``auto``: TorchScript-based first,
    dynamo when it cannot convert an operator), torchvision detectors with the TorchScript-based one."""

    name: ClassVar[str] = "onnx"
    label: ClassVar[str] = "ONNX"
    suffixes: ClassVar[tuple[str, ...]] = (".onnx",)
    runtime: ClassVar[str] = "onnxruntime"
    quantizations: ClassVar[tuple[str, ...]] = QUANTIZATIONS

    def prepare(self, options: ExportOptions) -> None:
        """Needs the onnx package; detectors cannot go through torch.export."""
        require("onnx", "onnx", "ONNX export")
        if options.task == "detection" and options.exporter == "dynamo":
            raise ConfigError(
                "detectors export with the TorchScript-based ONNX exporter (exporter='torchscript' or "
                "'auto'): torch.export cannot trace their data-dependent post-processing"
            )

    def export(self, module: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions) -> str:
        """Write ``path`` (+ ``path.data`` with the dynamo exporter); return which exporter wrote it."""
        if options.task == "detection":
            try:
                _detector(module, example, path, opset=options.opset, names=options.output_names)
                return "torchscript-onnx"
            except Exception as e:
                raise_export_error(e, "ONNX", options.model_id, options.opset, _TRIED["torchscript"])
        order = ["torchscript", "dynamo"] if options.exporter == "auto" else [options.exporter]
        failed: list[tuple[Exception, str]] = []
        for which in order:
            try:
                _classifier(module, example, path, opset=options.opset, dynamic=options.dynamic_batch, exporter=which)
                return "torchscript-onnx" if which == "torchscript" else "dynamo-onnx"
            except Exception as e:  # noqa: BLE001 - turned into ExportError below
                clear_folder(path.parent)
                failed.append((e, which))
        err, which = failed[-1]
        first, first_which = failed[0]
        if first is not err and unsupported_operator(first) and not unsupported_operator(err):
            err, which = first, first_which  # the error that names an operator says more
        raise_export_error(err, "ONNX", options.model_id, options.opset, _TRIED[which])
        raise AssertionError("unreachable")

    def verify(self, path: Path, options: ExportOptions) -> None:
        """onnx.checker on the written graph."""
        onnx = require("onnx", "onnx", "ONNX export")
        try:
            onnx.checker.check_model(str(path))
        except Exception as e:
            raise ExportError(f"{options.model_id}: the exported ONNX graph does not pass onnx.checker: {e}") from e

    def quantize(self, src: Path, dst: Path, mode: str, options: ExportOptions) -> None:
        """ONNX Runtime dynamic quantization (`visiontune.export.quantize`)."""
        quantize_onnx(src, dst, mode, options.model_id)

    def open(
        self,
        artifact: Path,
        sidecar: Sidecar,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> OnnxRunner:
        """An ONNX Runtime session (CPU unless ``providers`` says otherwise)."""
        ort = require("onnxruntime", "onnx", "Running an ONNX model")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(artifact), sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ConfigError(
                f"{artifact}: ONNX Runtime cannot load it ({type(e).__name__}: {e}). "
                f"If it has a .onnx.data file, keep that file beside it"
            ) from e
        return OnnxRunner(session, sidecar.input.name)


def _classifier(module: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamic: bool, exporter: str):
    wrapped = Logits(module).eval()
    with quiet():
        if exporter == "torchscript":
            torch.onnx.export(
                wrapped,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                do_constant_folding=True,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
            )
        else:
            shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
            torch.onnx.export(
                wrapped,
                (example,),
                str(path),
                dynamo=True,
                opset_version=max(opset, 18),
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=shapes,
                external_data=True,
                optimize=True,
            )


def _detector(module: nn.Module, example: torch.Tensor, path: Path, *, opset: int, names: list[str]) -> None:
    with quiet():
        torch.onnx.export(
            module,
            ([example],),
            str(path),
            dynamo=False,
            opset_version=max(opset, 11),
            do_constant_folding=True,
            input_names=["image"],
            output_names=names,
            dynamic_axes={"image": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in names}},
        )
