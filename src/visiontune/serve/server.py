"""`serve(model, ...)`: run a model server until interrupted (``visiontune serve`` calls it)."""

from __future__ import annotations

import os

from visiontune.errors import ConfigError, require
from visiontune.serve.app import create_app
from visiontune.serve.config import CONFIG_ENV, ServeConfig
from visiontune.serve.metrics import multiprocess_dir


def serve(model: str | os.PathLike | ServeConfig, **settings) -> None:
    """Serve ``model`` over HTTP: ``POST /predict``, ``GET /health``, ``/ready``, ``/info``,
    ``/metrics``, ``/docs`` and ``/openapi.json``. Blocks until Ctrl-C / SIGTERM.

    ``settings`` are :class:`ServeConfig` fields (``port``, ``workers``, ``max_batch_size``,
    ``max_wait``, ``timeout``, ``max_body_bytes``, ``backend``, ...).
    """
    config = model if isinstance(model, ServeConfig) else ServeConfig.make(str(model), **settings)
    if config.backend == "litserve":
        from visiontune.serve.lit import run_litserve  # imports litserve, an optional package

        if config.port < 1024:
            raise ConfigError(f"port: LitServe needs a port from 1024 to 65535, got {config.port}")
        run_litserve(config)
        return
    uvicorn = require("uvicorn", "serve", "Serving models over HTTP")
    os.environ[CONFIG_ENV] = config.to_env()
    common = {"host": config.host, "port": config.port, "log_level": config.log_level, "access_log": False}
    if config.workers == 1:
        uvicorn.run(create_app(config), **common)
        return
    cleanup = multiprocess_dir()  # each worker process writes its metrics there; /metrics sums them
    try:
        uvicorn.run("visiontune.serve.app:create_app", factory=True, workers=config.workers, **common)
    finally:
        cleanup()
