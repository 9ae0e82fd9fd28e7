"""Deployable artifacts: ONNX / TorchScript export with a sidecar JSON and a parity check.

```python
from visiontune.export import export, load_artifact
res = export("timm:resnet18", "onnx", "resnet18.onnx", images="photos/")   # parity on real images
print(res.parity.summary())
rt = load_artifact("resnet18.onnx")            # ONNX Runtime + the sidecar's preprocessing
rt.predict(["cat.jpg"])[0].label
```
"""

from visiontune.export.core import ExportResult, export, resolve_source, unsupported_operator
from visiontune.export.parity import ParityReport, classification_parity, detection_parity
from visiontune.export.runtime import ExportedModel, load_artifact
from visiontune.export.sidecar import preprocess_array, read_sidecar, sidecar_path

__all__ = [
    "ExportResult",
    "ExportedModel",
    "ParityReport",
    "classification_parity",
    "detection_parity",
    "export",
    "load_artifact",
    "preprocess_array",
    "read_sidecar",
    "resolve_source",
    "sidecar_path",
    "unsupported_operator",
]

from visiontune._verbs import make_verb  # noqa: E402 - `vt.export(...)` calls the verb

make_verb(__name__)
