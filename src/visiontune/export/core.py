"""`export(model, format=...)`: an artifact written by a backend, its sidecar, and a parity check.

The steps live in their own modules: `visiontune.export.source` (what is exported),
`visiontune.export.backends` (how each format is written and run), `visiontune.export.quantize`,
`visiontune.export.parity` and `visiontune.export.sidecar` (the `Sidecar` record). This module
runs them in order inside a temporary folder, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visiontune import __version__
from visiontune.data.hashing import sha256_file
from visiontune.errors import ConfigError, ExportError
from visiontune.export.backends import BACKENDS, Backend, ExportOptions, get_backend
from visiontune.export.backends.base import DEFAULT_OPSET
from visiontune.export.parity import ParityReport, classification_parity, detection_parity, parity_images
from visiontune.export.runtime import ExportedModel
from visiontune.export.sidecar import SIDECAR_SUFFIX, Sidecar, sidecar_path
from visiontune.export.source import (
    ExportSource,
    detector_output_names,
    input_hw,
    resize_preprocessing,
    resolve_source,
)

#: what ``exporter=`` accepts (a backend uses the ones that apply to it)
EXPORTERS = ("auto", "torchscript", "dynamo")


@dataclass
class ExportResult:
    """What `export` wrote: the artifact, its sidecar, every file, and the parity report."""

    artifact: Path
    sidecar: Path
    format: str
    files: list[Path]
    parity: ParityReport | None
    exporter: str
    quantized: bool
    seconds: float

    def summary(self) -> str:
        """One line per fact: format and exporter, the files, the parity verdict."""
        files = ", ".join(str(f) for f in self.files)
        s = f"{self.format} ({self.exporter}{', int8 dynamic' if self.quantized else ''}) → {files}"
        if self.parity is not None:
            s += f"\nparity {self.parity.summary()}"
        return s


def default_output(model_id: str, fmt: str, quantize: str | None, model: Any = None) -> Path:
    """Where an export goes without ``output``: beside a saved model directory
    (``runs/x/model`` → ``runs/x/model[.int8].onnx``), else ``<model name>[.int8]<suffix>`` in
    the current folder."""
    suffix = f"{'.int8' if quantize else ''}{get_backend(fmt).suffixes[0]}"
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        folder = Path(model) if Path(model).name else Path(model).resolve()
        return folder.parent / f"{folder.name}{suffix}"
    stem = (
        re.sub(
            r"[^A-Za-z0-9_.-]+", "_", model_id.split("/")[-1] if "/" in model_id and ":" not in model_id else model_id
        ).strip("_")
        or "model"
    )
    return Path(f"{stem}{suffix}")


def export(
    model: Any,
    format: str = "onnx",  # noqa: A002
    output: str | os.PathLike | None = None,
    *,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    dynamic_batch: bool = True,
    input_size: int | Sequence[int] | None = None,
    preprocess: Any = None,
    class_names: Sequence[str] | None = None,
    model_id: str | None = None,
    images: Any = None,
    labels: Sequence[int] | None = None,
    parity: bool = True,
    parity_limit: int = 16,
    atol: float = 1e-4,
    strict: bool = True,
) -> ExportResult:
    """Export a classifier or a torchvision detector to ONNX or TorchScript.

    Writes ``output`` (+ ``output.data`` for the dynamo exporter's external weights) and the
    sidecar ``output.visiontune.json``. All files are written to a temporary folder and moved in
    place at the end: a failed export leaves nothing behind.

    ``quantize="int8"``: ONNX Runtime dynamic quantization (int8 weights, activations quantized
    at run time) of the ONNX graph, for CPU inference. ``exporter``: "torchscript" (the
    TorchScript-based ONNX exporter; one file; reliable dynamic batch; the only one for
    detectors), "dynamo" (``torch.export``-based; writes ``.onnx`` + ``.onnx.data``), or "auto"
    (torchscript, then dynamo if the first one cannot convert an operator).
    ``parity``: run the artifact and the PyTorch model on ``images`` (default: scikit-image's
    sample photos) and record the differences (``labels``: class index per image, to add both
    top-1 accuracies to the report); with ``strict`` a float export that exceeds
    ``atol`` or changes a top-1 raises ExportError and keeps nothing.
    """
    t0 = time.time()
    backend = get_backend(format)
    fmt = backend.name
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if quantize is not None and quantize not in backend.quantizations:
        offered = {name: b.quantizations for name, b in BACKENDS.items() if b.quantizations}
        if any(quantize in q for q in offered.values()):
            names = [name for name, q in offered.items() if quantize in q]
            raise ConfigError(f"quantize={quantize!r} needs format={names[0]!r} ({fmt} artifacts are not quantized)")
        known = sorted({m for q in offered.values() for m in q})
        raise ConfigError(f"quantize must be one of {known} or None, got {quantize!r}")
    src = resolve_source(model, preprocess=preprocess, class_names=class_names, model_id=model_id)
    options = ExportOptions(src.task, src.model_id, opset=opset, exporter=exporter, dynamic_batch=dynamic_batch)
    backend.prepare(options)
    out = Path(output) if output is not None else default_output(src.model_id, fmt, quantize, model)
    backend.check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    module = src.model
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in module.parameters()):
        module = copy.deepcopy(module).float().cpu()  # export on CPU in fp32; the caller's model is untouched
    module = module.eval()
    if src.task == "detection":
        example = torch.rand(3, 320, 320, generator=torch.Generator().manual_seed(0))
        size = None
        options.output_names = detector_output_names(module, src)
    else:
        size = input_hw(input_size, src)
        if input_size is not None:
            resize_preprocessing(src, size)
        example = torch.randn(2 if dynamic_batch else 1, 3, *size, generator=torch.Generator().manual_seed(0))

    work = out.parent / f".{out.name}.export-{os.getpid()}-{time.time_ns()}"
    work.mkdir()
    try:
        tmp_art = work / out.name
        used = backend.export(module, example, tmp_art, options)
        if quantize:
            float_dir = work / "float"
            float_dir.mkdir()
            for f in list(work.iterdir()):
                if f.is_file():
                    os.replace(f, float_dir / f.name)
            backend.quantize(float_dir / out.name, tmp_art, quantize, options)
            shutil.rmtree(float_dir)
        backend.verify(tmp_art, options)
        sidecar = build_sidecar(src, backend, used, options, quantize, size, tmp_art)
        sidecar.write_for(tmp_art)
        report = None
        if parity:
            report = _parity(tmp_art, module, src, images, parity_limit, labels, None if quantize else atol)
            sidecar.parity = report.to_dict()
            sidecar.write_for(tmp_art)
            if strict and report.passed is False:
                raise ExportError(
                    f"parity check failed for {src.model_id} → {fmt}: {report.summary()}; "
                    f"nothing was written. Pass strict=False (--no-strict) to keep the artifact anyway"
                )
        files = []
        for f in sorted(work.iterdir(), key=lambda p: p.name.endswith(SIDECAR_SUFFIX)):  # sidecar last
            dest = out.parent / f.name
            os.replace(f, dest)
            files.append(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(out, sidecar_path(out), fmt, files, report, used, bool(quantize), time.time() - t0)


def _parity(artifact: Path, module: nn.Module, src: ExportSource, images, limit, labels, atol) -> ParityReport:
    runtime = ExportedModel.load(artifact)
    try:
        items, how = parity_images(images, limit)
        if src.task == "detection":
            return detection_parity(runtime, module, items, inputs=how)
        return classification_parity(
            runtime,
            module,
            items,
            inputs=how,
            torch_preprocess=src.torch_preprocess,
            atol=atol,
            labels=list(labels)[: len(items)] if labels is not None else None,
        )
    finally:
        del runtime


def _package_versions() -> dict[str, str]:
    versions: dict[str, str] = {"torch": str(torch.__version__)}
    for dist in ("torchvision", "onnx", "onnxruntime"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def build_sidecar(
    src: ExportSource,
    backend: Backend,
    exporter: str,
    options: ExportOptions,
    quantize: str | None,
    size: tuple[int, int] | None,
    artifact: Path,
) -> Sidecar:
    """The `Sidecar` of an artifact just written at ``artifact`` (its folder holds only its files)."""
    files = sorted(f.name for f in artifact.parent.iterdir() if f.is_file() and not f.name.endswith(SIDECAR_SUFFIX))
    names = options.output_names
    if src.task == "detection":
        inp = {
            "name": "image",
            "shape": [3, "height", "width"],
            "dtype": "float32",
            "layout": "CHW",
            "value": "RGB in [0, 1], one image per call, any size",
        }
        output = {
            "type": "detections",
            "names": names,
            "boxes": "x1, y1, x2, y2 in pixels of the preprocessed image; scale by original/preprocessed size",
            "scores": "float",
            "labels": "int64 index into class_names",
            "batch": 1,
        }
    else:
        assert size is not None, "a classifier export always has an input size"
        batch = "batch" if options.dynamic_batch else 1
        inp = {
            "name": "input",
            "shape": [batch, 3, size[0], size[1]],
            "dtype": "float32",
            "layout": "NCHW",
            "value": "preprocessed as 'preprocessing' says",
        }
        output = {
            "type": "logits",
            "names": names,
            "shape": [batch, len(src.class_names or []) or None],
            "apply": "softmax for probabilities",
            "batch": None if options.dynamic_batch else 1,
        }
        if src.task == "multilabel-classification":  # several labels per image: sigmoid + per-label cuts
            saved = (src.card.get("extra") or {}).get("thresholds") or {}
            output["apply"] = "sigmoid per label; a label is present when its probability >= its threshold"
            output["thresholds"] = [float(saved.get(c, 0.5)) for c in (src.class_names or [])]
    card = src.card
    return Sidecar(
        visiontune_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        artifact=artifact.name,
        artifact_files=files,
        artifact_sha256=sha256_file(artifact),
        artifact_format=backend.name,
        exporter=exporter,
        opset=options.opset if backend.name == "onnx" else None,
        quantization="int8 dynamic (onnxruntime quantize_dynamic, QInt8 weights)" if quantize else None,
        task=src.task,
        source={
            "model_id": src.model_id,
            "base_id": card.get("base_id"),
            "weights": card.get("weights"),
            "weights_sha256": card.get("weights_sha256"),
        },
        license={
            "code": card.get("license_code"),
            "weights": card.get("license_weights"),
            "notes": card.get("license_notes") or [],
        },
        num_classes=len(src.class_names) if src.class_names else card.get("num_classes"),
        class_names=src.class_names,
        preprocessing=src.preprocessing,
        input=inp,
        output=output,
        versions=_package_versions(),
    )
