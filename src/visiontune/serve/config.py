"""`ServeConfig`: every setting of ``visiontune serve`` in one validated object."""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visiontune.errors import ConfigError

#: Environment variable that hands the config to worker processes.
CONFIG_ENV = "VISIONTUNE_SERVE_CONFIG"


class ServeConfig(BaseModel):
    """Settings of one model server.

    ``backend``: ``fastapi`` (FastAPI/uvicorn with visiontune's asyncio micro-batcher, the
    default: see docs/deploy.md for the measurement) or ``litserve`` (LitServe's batching loop
    and inference worker processes).
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(..., description="Hub id, saved model directory, or exported .onnx/.pt with its sidecar.")
    weights: str | None = None
    pretrained: bool = True
    trust_pickle: bool = False
    trust_remote_code: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="Server processes, each with its own model copy.")
    max_batch_size: int = Field(16, ge=1, le=1024)
    max_wait: float = Field(0.01, ge=0.0, le=10.0, description="Seconds a request waits for others to batch with.")
    max_queue: int = Field(1024, ge=1, description="Requests waiting per worker before 503s.")
    timeout: float = Field(30.0, gt=0.0, description="Seconds before a request is answered 504.")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Larger request bodies get a 413.")
    threads: int | None = Field(None, ge=1, description="torch / ONNX Runtime threads per worker (None: default).")
    device: str | None = None
    backend: Literal["fastapi", "litserve"] = "fastapi"
    log_level: str = "warning"

    def to_env(self) -> str:
        """JSON for :data:`CONFIG_ENV`."""
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServeConfig:
        """The config a parent process put in :data:`CONFIG_ENV`."""
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise ConfigError(f"${CONFIG_ENV} is not set: start the server with `visiontune serve MODEL`")
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as e:
            raise ConfigError(f"${CONFIG_ENV} is not a valid serve config: {e}") from None

    @classmethod
    def make(cls, model: str, **kwargs) -> ServeConfig:
        """Validate keyword settings; a bad value is a ConfigError naming the field."""
        try:
            return cls(model=str(model), **kwargs)
        except ValidationError as e:
            parts = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5]]
            raise ConfigError("invalid serve settings: " + "; ".join(parts)) from None
