"""Deployable artifacts: ONNX / TorchScript export with a sidecar JSON and a parity check.

```python
from visiontune.export import export, load_artifact
res = export("timm:resnet18", "onnx", "resnet18.onnx", images="photos/")   # parity on real images
print(res.parity.summary())
rt = load_artifact("resnet18.onnx")            # ONNX Runtime + the sidecar's preprocessing
rt.predict(["cat.jpg"])[0].label
```

Layout: `core` (the `export` steps), `source` (what is exported), `backends` (one `Backend` per
format, registry ``BACKENDS``), `quantize`, `parity`, `sidecar` (the `Sidecar` record),
`preprocess` (the PIL + NumPy input pipeline), `runtime` (`ExportedModel`).
"""

from visiontune.export.backends import BACKENDS, Backend, ExportOptions, get_backend, register_backend
from visiontune.export.backends.base import unsupported_operator
from visiontune.export.core import ExportResult, default_output, export
from visiontune.export.parity import ParityReport, classification_parity, detection_parity
from visiontune.export.preprocess import preprocess_array
from visiontune.export.runtime import ExportedModel, is_exported_artifact, load_artifact
from visiontune.export.sidecar import Sidecar, is_segmentation_sidecar, read_sidecar, sidecar_path
from visiontune.export.source import resolve_source

__all__ = [
    "BACKENDS",
    "Backend",
    "ExportOptions",
    "ExportResult",
    "ExportedModel",
    "ParityReport",
    "Sidecar",
    "classification_parity",
    "detection_parity",
    "default_output",
    "export",
    "get_backend",
    "is_exported_artifact",
    "is_segmentation_sidecar",
    "load_artifact",
    "preprocess_array",
    "read_sidecar",
    "register_backend",
    "resolve_source",
    "sidecar_path",
    "unsupported_operator",
]

from visiontune._verbs import make_verb  # noqa: E402 - `vt.export(...)` calls the verb

make_verb(__name__)
