"""TorchScript: ``torch.jit.trace`` for classifiers, ``torch.jit.script`` for torchvision
detectors; run with ``torch.jit.load``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from visiontune.errors import ConfigError, VisiontuneError
from visiontune.export.backends.base import Backend, ExportOptions, Logits, raise_export_error
from visiontune.export.quiet import quiet
from visiontune.export.sidecar import Sidecar


class TorchScriptRunner:
    """A loaded TorchScript module; detectors take one CHW image, classifiers an NCHW batch."""

    def __init__(self, module: Any, task: str, output_names: list[str]):
        self.module, self.task, self.output_names = module, task, output_names

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Outputs for one preprocessed input, in ``output_names`` order for detectors."""
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "RCNN always returns a (Losses, Detections) tuple"
            t = torch.from_numpy(x)
            out = self.module([t]) if self.task == "detection" else self.module(t)
        if self.task != "detection":
            return [out.float().numpy()]
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list):
            out = out[1]  # a scripted torchvision detector returns (losses, detections)
        det = out[0]
        return [det[k].numpy() for k in self.output_names]


class TorchScriptBackend(Backend):
    """``format="torchscript"``: one ``.pt`` file that ``torch.jit.load`` runs without visiontune."""

    name: ClassVar[str] = "torchscript"
    label: ClassVar[str] = "TorchScript"
    suffixes: ClassVar[tuple[str, ...]] = (".pt", ".pth", ".ts", ".torchscript")
    runtime: ClassVar[str] = "torchscript"

    def export(self, module: nn.Module, example: torch.Tensor, path: Path, options: ExportOptions) -> str:
        """Trace (classifier) or script (detector) ``module`` and save it at ``path``."""
        try:
            with quiet():
                if options.task == "detection":
                    scripted = torch.jit.script(module)
                    how = "torch.jit.script"
                else:
                    scripted = torch.jit.trace(Logits(module).eval(), example, check_trace=False)
                    how = "torch.jit.trace"
                torch.jit.save(scripted, str(path))
            return how
        except VisiontuneError:
            raise
        except Exception as e:
            raise_export_error(e, self.label, options.model_id, options.opset, self.label)
            raise AssertionError("unreachable") from e

    def open(
        self,
        artifact: Path,
        sidecar: Sidecar,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> TorchScriptRunner:
        """``torch.jit.load`` on the CPU (``providers`` / ``threads`` do not apply)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still supported
                module = torch.jit.load(str(artifact), map_location="cpu")
        except Exception as e:
            raise ConfigError(f"{artifact}: torch.jit.load failed ({type(e).__name__}: {e})") from e
        return TorchScriptRunner(module.eval(), sidecar.task, list(sidecar.output.names))
