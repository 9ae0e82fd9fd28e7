"""`export(model, format=...)`: ONNX / TorchScript artifacts with a sidecar and a parity check."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visiontune.errors import ConfigError, ExportError, VisiontuneError, require
from visiontune.export.parity import ParityReport, classification_parity, detection_parity
from visiontune.export.runtime import ExportedModel, expand_images
from visiontune.export.sidecar import (
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    sidecar_path,
    write_json_atomic,
)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
EXPORTERS = ("auto", "torchscript", "dynamo")
DEFAULT_OPSET = 17
DETECTION_OUTPUTS = ("boxes", "labels", "scores")


@dataclass
class ExportSource:
    """A model normalised for export: module, task, preprocessing dict and provenance."""

    model: nn.Module
    task: str
    preprocessing: dict
    class_names: list[str] | None
    model_id: str
    torch_preprocess: Any = None
    card: dict = field(default_factory=dict)
    output_names: list[str] | None = None


@dataclass
class ExportResult:
    artifact: Path
    sidecar: Path
    format: str
    files: list[Path]
    parity: ParityReport | None
    exporter: str
    quantized: bool
    seconds: float

    def summary(self) -> str:
        files = ", ".join(str(f) for f in self.files)
        s = f"{self.format} ({self.exporter}{', int8 dynamic' if self.quantized else ''}) → {files}"
        if self.parity is not None:
            s += f"\nparity {self.parity.summary()}"
        return s


# -- normalising the input ----------------------------------------------------------------------
def is_torchvision_detector(model: Any) -> bool:
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    return isinstance(model, (GeneralizedRCNN, RetinaNet, SSD, FCOS))


def _detector_preprocessing(module: nn.Module) -> dict:
    """Resize outside the graph to the size the model would resize to itself, so that the
    model's internal resize is the identity: the exported graphs (ONNX, TorchScript) round an
    internal resize differently from eager PyTorch (±1 px), which moves boxes; this way every
    runtime sees the same pixels. The runtime maps boxes back to the original image."""
    t = getattr(module, "transform", None)
    fixed = getattr(t, "fixed_size", None)
    if fixed:  # (width, height), e.g. SSD's 320x320 squash
        resize: Any = [int(fixed[1]), int(fixed[0])]
    else:
        resize = int(t.min_size[-1]) if t is not None else None
    return {
        "resize": resize,
        "crop": None,
        "interpolation": "bilinear",
        "mean": None,
        "std": None,
        "antialias": True,
        "value_range": [0.0, 1.0],
        "channel_order": "RGB",
        "max_size": int(getattr(t, "max_size", 0) or 0) or None,
        "note": "the model normalises inside; boxes are mapped back to the original image size",
    }


def resolve_source(
    model: Any, *, preprocess: Any = None, class_names: Sequence[str] | None = None, model_id: str | None = None
) -> ExportSource:
    """Accept a model id / saved directory, a `visiontune.Pretrained`, a `visiontune.detect.Detector`
    or a bare ``nn.Module`` (classification needs ``preprocess``: a `visiontune.Preprocess` or its dict)."""
    if isinstance(model, (str, os.PathLike)):
        import visiontune as vt

        model = vt.load(str(model))
    card: dict = {}
    task = None
    torch_pre = None
    if hasattr(model, "adapter") and isinstance(getattr(model, "model", None), nn.Module):  # Detector
        module = model.model
        task = "detection"
        class_names = list(class_names or getattr(model, "class_names", []) or []) or None
        model_id = model_id or getattr(model, "model_id", None)
        c = getattr(model, "card", None)
        if c is not None and hasattr(c, "model_dump"):
            card = c.model_dump(mode="json")
    elif hasattr(model, "card") and hasattr(model, "model") and isinstance(model.model, nn.Module):  # Pretrained
        c = model.card
        card = c.model_dump(mode="json") if hasattr(c, "model_dump") else dict(c)
        task = card.get("task", "classification")
        class_names = list(class_names or card.get("class_names") or []) or None
        model_id = model_id or card.get("model_id")
        preprocess = preprocess if preprocess is not None else getattr(model, "preprocess", None)
        module = model.model
    elif isinstance(model, nn.Module):
        module = model
    else:
        raise ConfigError(
            f"cannot export a {type(model).__name__}: pass a model id, a saved model directory, "
            f"a visiontune.Pretrained, a visiontune.detect.Detector or a torch nn.Module"
        )
    if is_torchvision_detector(module):
        task = "detection"
    task = task or "classification"
    if task == "detection":
        if not is_torchvision_detector(module):
            raise ExportError(
                f"{model_id or type(module).__name__}: only torchvision detectors (Faster/Mask R-CNN, "
                f"RetinaNet, FCOS, SSD) export here; Ultralytics models export with their own "
                f"`YOLO(...).export(format='onnx')`"
            )
        pre = _detector_preprocessing(module)
    elif task not in ("classification", "multilabel-classification"):
        raise ExportError(f"{model_id}: exporting {task} models is not supported (classification and detection are)")
    else:
        if preprocess is None:
            raise ConfigError(
                "exporting a bare nn.Module needs preprocess= (a visiontune.Preprocess or its "
                "to_dict()), so the artifact knows its input size and normalisation"
            )
        if isinstance(preprocess, dict):
            from visiontune.hub.preprocess import Preprocess

            preprocess = Preprocess.from_dict(preprocess)
        pre = preprocess.to_dict()
        torch_pre = preprocess
    return ExportSource(module.eval(), task, pre, class_names, model_id or type(module).__name__, torch_pre, card)


# -- exporters ----------------------------------------------------------------------------------
class _Logits(nn.Module):
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


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and deprecation warnings; keep the user's console clean."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch.onnx").setLevel(level)


def _onnx_classifier(
    module: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamic_batch: bool, exporter: str
) -> None:
    wrapped = _Logits(module).eval()
    with _quiet():
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
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None,
            )
        else:
            shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
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


def _onnx_detector(module: nn.Module, example: torch.Tensor, path: Path, *, opset: int, names: list[str]) -> None:
    with _quiet():
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


def _torchscript(module: nn.Module, example: torch.Tensor, path: Path, task: str) -> str:
    with _quiet():
        if task == "detection":
            scripted = torch.jit.script(module)
            how = "torch.jit.script"
        else:
            scripted = torch.jit.trace(_Logits(module).eval(), example, check_trace=False)
            how = "torch.jit.trace"
        torch.jit.save(scripted, str(path))
    return how


def _quantize_int8(src: Path, dst: Path, model_id: str) -> None:
    """ONNX Runtime's pre-processing (shape inference, constant folding into initializers: the
    quantizer needs Conv weights as initializers), then dynamic int8 quantization."""
    require("onnxruntime", "onnx", "int8 quantization")
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    prepped = src.with_name(src.stem + ".prep.onnx")
    logger = logging.getLogger()
    old = logger.level
    logger.setLevel(logging.ERROR)  # the quantizer logs whole tensor protos as warnings
    try:
        with _quiet():
            quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
            quantize_dynamic(str(prepped), str(dst), weight_type=QuantType.QInt8)
    except Exception as e:  # noqa: BLE001 - the quantizer raises plain ValueErrors
        raise ExportError(
            f"int8 quantization of {model_id} failed in onnxruntime.quantization: "
            f"{type(e).__name__}: {e}. Export without --int8"
        ) from e
    finally:
        logger.setLevel(old)


def _raise_export_error(e: BaseException, fmt: str, model_id: str, opset: int, tried: str) -> None:
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


# -- parity images ------------------------------------------------------------------------------
def parity_images(images: Any, limit: int) -> tuple[list, str]:
    """Real images for the parity check: ``images`` (files/folders), else scikit-image's sample
    photos when installed, else seeded random pixels (said so in the report)."""
    if images is not None:
        items = expand_images(images)[:limit]
        return (
            items,
            f"{len(items)} images from {images if isinstance(images, (str, os.PathLike)) else 'the given list'}",
        )
    try:
        from PIL import Image
        from skimage import data as skdata

        items = []
        for name in ("chelsea", "coffee", "astronaut", "rocket", "cat", "immunohistochemistry"):
            if hasattr(skdata, name):
                arr = getattr(skdata, name)()
                items.append(Image.fromarray(arr).convert("RGB"))
        if items:
            return items[:limit], "scikit-image sample photos"
    except Exception:  # noqa: BLE001 - any failure of the optional sample set falls back to random pixels
        pass
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return (
        [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(min(limit, 4))],
        "random pixels (no --images given and scikit-image absent)",
    )


# -- the entry point ----------------------------------------------------------------------------
def default_output(model_id: str, fmt: str, quantize: str | None) -> Path:
    stem = (
        re.sub(
            r"[^A-Za-z0-9_.-]+", "_", model_id.split("/")[-1] if "/" in model_id and ":" not in model_id else model_id
        ).strip("_")
        or "model"
    )
    return Path(f"{stem}{'.int8' if quantize else ''}{FORMATS[fmt]}")


def export(
    model: Any,
    format: str = "onnx",
    output: str | os.PathLike | None = None,
    *,  # noqa: A002
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
    fmt = format.lower()
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize must be 'int8' or None, got {quantize!r}")
    if quantize and fmt != "onnx":
        raise ConfigError("quantize='int8' is ONNX Runtime dynamic quantization: use format='onnx'")
    if fmt == "onnx":
        require("onnx", "onnx", "ONNX export")
    src = resolve_source(model, preprocess=preprocess, class_names=class_names, model_id=model_id)
    if src.task == "detection" and exporter == "dynamo":
        raise ConfigError(
            "detectors export with the TorchScript-based ONNX exporter (exporter='torchscript' or "
            "'auto'): torch.export cannot trace their data-dependent post-processing"
        )
    out = Path(output) if output is not None else default_output(src.model_id, fmt, quantize)
    allowed = (".onnx",) if fmt == "onnx" else (".pt", ".pth", ".ts", ".torchscript")
    if out.suffix.lower() not in allowed:
        raise ConfigError(f"output {out}: a {fmt} artifact is named *{allowed[0]}")
    out.parent.mkdir(parents=True, exist_ok=True)

    module = src.model
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in module.parameters()):
        module = copy.deepcopy(module).float().cpu()  # export on CPU in fp32; the caller's model is untouched
    module = module.eval()
    if src.task == "detection":
        example = torch.rand(3, 320, 320, generator=torch.Generator().manual_seed(0))
        size = None
    else:
        size = _input_hw(input_size, src)
        if input_size is not None:
            _resize_preprocessing(src, size)
        example = torch.randn(2 if dynamic_batch else 1, 3, *size, generator=torch.Generator().manual_seed(0))

    work = out.parent / f".{out.name}.export-{os.getpid()}-{time.time_ns()}"
    work.mkdir()
    try:
        tmp_art = work / out.name
        used = _do_export(module, example, tmp_art, src, fmt, opset, dynamic_batch, exporter)
        if quantize:
            float_dir = work / "float"
            float_dir.mkdir()
            for f in list(work.iterdir()):
                if f.is_file():
                    os.replace(f, float_dir / f.name)
            _quantize_int8(float_dir / out.name, tmp_art, src.model_id)
            shutil.rmtree(float_dir)
        if fmt == "onnx":
            _check_onnx(tmp_art, src.model_id)
        names = _output_names(module, src) if src.task == "detection" else ["logits"]
        doc = _sidecar(src, fmt, used, opset, quantize, dynamic_batch, size, names, tmp_art, work)
        write_json_atomic(sidecar_path(tmp_art), doc)
        report = None
        if parity:
            runtime = ExportedModel.load(tmp_art)
            items, how = parity_images(images, parity_limit)
            if src.task == "detection":
                report = detection_parity(runtime, module, items, inputs=how)
            else:
                report = classification_parity(
                    runtime,
                    module,
                    items,
                    inputs=how,
                    torch_preprocess=src.torch_preprocess,
                    atol=None if quantize else atol,
                    labels=list(labels)[: len(items)] if labels is not None else None,
                )
            del runtime
            doc["parity"] = report.to_dict()
            write_json_atomic(sidecar_path(tmp_art), doc)
            if strict and report.passed is False:
                raise ExportError(
                    f"parity check failed for {src.model_id} → {fmt}: {report.summary()}; "
                    f"nothing was written. Pass strict=False (--no-strict) to keep the artifact anyway"
                )
        files = []
        for f in sorted(work.iterdir(), key=lambda p: p.name.endswith(".visiontune.json")):  # sidecar last
            dest = out.parent / f.name
            os.replace(f, dest)
            files.append(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(out, sidecar_path(out), fmt, files, report, used, bool(quantize), time.time() - t0)


def _input_hw(input_size: Any, src: ExportSource) -> tuple[int, int]:
    if input_size is not None:
        if isinstance(input_size, int):
            return (input_size, input_size)
        vals = [int(v) for v in input_size]
        return (vals[-2], vals[-1]) if len(vals) >= 2 else (vals[0], vals[0])
    crop = src.preprocessing.get("crop")
    if crop:
        return (int(crop[0]), int(crop[1]))
    resize = src.preprocessing.get("resize")
    if isinstance(resize, (list, tuple)):
        return (int(resize[0]), int(resize[1]))
    size = src.card.get("input_size")
    if size:
        return (int(size[-2]), int(size[-1]))
    raise ConfigError(f"{src.model_id}: the input size is unknown (no crop in the preprocessing); pass input_size=")


def _resize_preprocessing(src: ExportSource, size: tuple[int, int]) -> None:
    """An explicit input size changes the preprocessing with it: crop to ``size`` and resize by the
    same crop ratio as before (e.g. 256→224 becomes 73→64), so the sidecar feeds the graph its shape."""
    from visiontune.hub.preprocess import Preprocess

    pre = dict(src.preprocessing)
    crop, resize = pre.get("crop"), pre.get("resize")
    if crop is not None and list(crop) == list(size):
        return
    if isinstance(resize, int) and crop is not None:
        pre["resize"] = int(round(resize * size[0] / crop[0]))
        pre["crop"] = list(size)
    elif isinstance(resize, int):
        pre["resize"], pre["crop"] = int(min(size)), list(size)
    else:
        pre["resize"], pre["crop"] = list(size), None
    src.preprocessing = pre
    src.torch_preprocess = Preprocess.from_dict(pre)


def _do_export(module, example, path, src, fmt, opset, dynamic_batch, exporter) -> str:
    if fmt == "torchscript":
        try:
            return _torchscript(module, example, path, src.task)
        except VisiontuneError:
            raise
        except Exception as e:
            _raise_export_error(e, "TorchScript", src.model_id, opset, "TorchScript")
    if src.task == "detection":
        try:
            _onnx_detector(module, example, path, opset=opset, names=_output_names(module, src))
            return "torchscript-onnx"
        except Exception as e:
            _raise_export_error(e, "ONNX", src.model_id, opset, "TorchScript-based ONNX")
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    first_error: BaseException | None = None
    for which in order:
        try:
            _onnx_classifier(module, example, path, opset=opset, dynamic_batch=dynamic_batch, exporter=which)
            return "torchscript-onnx" if which == "torchscript" else "dynamo-onnx"
        except Exception as e:  # noqa: BLE001 - turned into ExportError below
            for f in path.parent.iterdir():
                f.unlink()
            first_error = first_error or e
            last = (e, which)
    err, which = last
    if first_error is not err and unsupported_operator(first_error) and not unsupported_operator(err):
        err, which = first_error, order[0]
    _raise_export_error(
        err, "ONNX", src.model_id, opset, {"torchscript": "TorchScript-based ONNX", "dynamo": "dynamo ONNX"}[which]
    )
    raise AssertionError("unreachable")


def _output_names(module: nn.Module, src: ExportSource) -> list[str]:
    """Detector outputs in the order the model's dict yields them (SSD: boxes, scores, labels)."""
    if src.output_names:
        return src.output_names
    with torch.inference_mode():
        out = module([torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))])[0]
    names = [k for k in out.keys() if k in DETECTION_OUTPUTS]
    if set(names) != set(DETECTION_OUTPUTS) or len(out) != len(names):
        raise ExportError(
            f"{src.model_id}: detector outputs {list(out)} (masks/keypoints) are not supported for "
            f"export; boxes, labels and scores are"
        )
    src.output_names = names
    return names


def _check_onnx(path: Path, model_id: str) -> None:
    onnx = require("onnx", "onnx", "ONNX export")
    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise ExportError(f"{model_id}: the exported ONNX graph does not pass onnx.checker: {e}") from e


def _sidecar(
    src: ExportSource,
    fmt: str,
    exporter: str,
    opset: int,
    quantize: str | None,
    dynamic_batch: bool,
    size: tuple[int, int] | None,
    names: list[str],
    artifact: Path,
    work: Path,
) -> dict:
    from visiontune import __version__
    from visiontune.hub.checkpoint import sha256_file

    files = sorted(f.name for f in work.iterdir() if f.is_file() and not f.name.endswith(".visiontune.json"))
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
        inp = {
            "name": "input",
            "shape": ["batch" if dynamic_batch else 1, 3, size[0], size[1]],
            "dtype": "float32",
            "layout": "NCHW",
            "value": "preprocessed as 'preprocessing' says",
        }
        output = {
            "type": "logits",
            "names": names,
            "shape": ["batch" if dynamic_batch else 1, len(src.class_names or []) or None],
            "apply": "softmax for probabilities",
            "batch": None if dynamic_batch else 1,
        }
        if src.task == "multilabel-classification":  # several labels per image: sigmoid + per-label cuts
            saved = (src.card.get("extra") or {}).get("thresholds") or {}
            output["apply"] = "sigmoid per label; a label is present when its probability >= its threshold"
            output["thresholds"] = [float(saved.get(c, 0.5)) for c in (src.class_names or [])]
    card = src.card
    versions = {"torch": torch.__version__}
    for mod in ("torchvision", "onnx", "onnxruntime"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "visiontune_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "artifact": artifact.name,
        "artifact_files": files,
        "artifact_sha256": sha256_file(artifact),
        "artifact_format": fmt,
        "exporter": exporter,
        "opset": opset if fmt == "onnx" else None,
        "quantization": "int8 dynamic (onnxruntime quantize_dynamic, QInt8 weights)" if quantize else None,
        "task": src.task,
        "source": {
            "model_id": src.model_id,
            "base_id": card.get("base_id"),
            "weights": card.get("weights"),
            "weights_sha256": card.get("weights_sha256"),
        },
        "license": {
            "code": card.get("license_code"),
            "weights": card.get("license_weights"),
            "notes": card.get("license_notes") or [],
        },
        "num_classes": len(src.class_names) if src.class_names else card.get("num_classes"),
        "class_names": src.class_names,
        "preprocessing": src.preprocessing,
        "input": inp,
        "output": output,
        "versions": versions,
    }
