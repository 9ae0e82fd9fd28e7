"""Post-training quantization of exported ONNX graphs (ONNX Runtime dynamic int8)."""

from __future__ import annotations

from pathlib import Path

from visiontune.errors import ConfigError, ExportError, require
from visiontune.export.quiet import quiet

#: the quantization modes export(quantize=...) accepts
QUANTIZATIONS = ("int8",)


def quantize_onnx(src: Path, dst: Path, mode: str, model_id: str) -> None:
    """Write a ``mode``-quantized copy of the ONNX graph ``src`` to ``dst``: ONNX Runtime's
    pre-processing (shape inference, constant folding into initializers: the quantizer needs Conv
    weights as initializers), then dynamic quantization (int8 weights, activations quantized at
    run time). Raises ExportError naming the model when the quantizer fails."""
    if mode not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {QUANTIZATIONS} or None, got {mode!r}")
    require("onnxruntime", "onnx", "int8 quantization")
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    prepped = src.with_name(src.stem + ".prep.onnx")
    try:
        with quiet(""):  # "": the root logger, where the quantizer logs tensor protos as warnings
            quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
            quantize_dynamic(str(prepped), str(dst), weight_type=QuantType.QInt8)
    except Exception as e:  # noqa: BLE001 - the quantizer raises plain ValueErrors
        raise ExportError(
            f"int8 quantization of {model_id} failed in onnxruntime.quantization: "
            f"{type(e).__name__}: {e}. Export without --int8"
        ) from e
