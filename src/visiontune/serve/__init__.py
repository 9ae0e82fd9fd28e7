"""visiontune.serve — any visiontune model behind an HTTP server with dynamic batching, and
batch prediction over folders or manifests of any size.

>>> from visiontune.serve import serve, Client, predict_batch
>>> serve("timm:resnet18", port=8000, max_batch_size=16, max_wait=0.01)   # blocks
>>> Client("http://127.0.0.1:8000").predict(["cat.jpg"], topk=3)
>>> predict_batch("timm:resnet18", "photos/", out="preds.parquet").summary()

See docs/deploy.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "serve": "visiontune.serve.server",
    "ServeConfig": "visiontune.serve.config",
    "Client": "visiontune.serve.client",
    "ServerError": "visiontune.serve.client",
    "Runner": "visiontune.serve.runner",
    "MicroBatcher": "visiontune.serve.batcher",
    "create_app": "visiontune.serve.app",
    "predict_batch": "visiontune.serve.batch",
    "BatchPredictResult": "visiontune.serve.batch",
    "read_predictions": "visiontune.serve.batch",
    "iter_rows": "visiontune.serve.batch",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from visiontune.serve.app import create_app  # noqa: F401
    from visiontune.serve.batch import BatchPredictResult, iter_rows, predict_batch, read_predictions  # noqa: F401
    from visiontune.serve.batcher import MicroBatcher  # noqa: F401
    from visiontune.serve.client import Client, ServerError  # noqa: F401
    from visiontune.serve.config import ServeConfig  # noqa: F401
    from visiontune.serve.runner import Runner  # noqa: F401
    from visiontune.serve.server import serve  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'visiontune.serve' has no attribute {name!r}")
