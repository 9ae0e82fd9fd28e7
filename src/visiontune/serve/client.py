"""`Client`: talk to a ``visiontune serve`` server from Python.

>>> from visiontune.serve import Client
>>> c = Client("http://127.0.0.1:8000").wait_ready()
>>> c.predict(["cat.jpg", "dog.jpg"], topk=3)     # one request per image, sent concurrently
[{"task": "classification", "top": [...], "source": "cat.jpg"}, ...]
"""

from __future__ import annotations

import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from visiontune.errors import ConfigError, VisiontuneError, require
from visiontune.serve.inputs import IMAGE_FIELD, payload_bytes


class ServerError(VisiontuneError):
    """The server answered with an error status; ``status`` and the server's ``message``."""

    def __init__(self, status: int, message: str, source: str | None = None):
        where = f"{source}: " if source else ""
        super().__init__(f"{where}HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.source = source


def _image_bytes(image: Any) -> tuple[bytes, str | None]:
    if isinstance(image, (bytes, bytearray)):
        return bytes(image), None
    if isinstance(image, (str, os.PathLike)):
        p = Path(image)
        try:
            return p.read_bytes(), str(p)
        except OSError as e:
            raise ConfigError(f"{p}: cannot read the image file ({e.strerror or e})") from None
    if hasattr(image, "save"):  # a PIL image: send it losslessly
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue(), None
    raise TypeError(f"cannot send {type(image).__name__}: pass paths, bytes or PIL images")


class Client:
    """HTTP client of one server. ``mode``: ``json`` (base64 body) or ``multipart``."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout: float = 60.0, mode: str = "json"):
        httpx = require("httpx", "serve", "The serve client")
        if mode not in ("json", "multipart"):
            raise ConfigError(f"mode must be 'json' or 'multipart', got {mode!r}")
        self.url = url.rstrip("/")
        self.mode = mode
        self._http = httpx.Client(base_url=self.url, timeout=timeout, limits=httpx.Limits(max_connections=64))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- server state ------------------------------------------------------------------------
    def health(self) -> bool:
        """True when the server process answers ``/health``."""
        try:
            return self._http.get("/health").status_code == 200
        except Exception:
            return False

    def ready(self) -> bool:
        """True when the model is loaded (``/ready`` answers 200)."""
        try:
            return self._http.get("/ready").status_code == 200
        except Exception:
            return False

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.2) -> Client:
        """Block until ``/ready`` answers 200; a ``ServerError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return self
            time.sleep(interval)
        raise ServerError(503, f"{self.url} was not ready within {timeout:g} s")

    def info(self) -> dict:
        """``GET /info``: the model, its task and options, and the server's settings."""
        return self._json(self._http.get("/info"))

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        r = self._http.get("/metrics")
        r.raise_for_status()
        return r.text

    # -- predictions -------------------------------------------------------------------------
    def predict_one(self, image: Any, **options: Any) -> dict:
        """The server's result for one image (path, bytes or PIL); ``options`` such as ``topk``."""
        data, source = _image_bytes(image)
        if self.mode == "json":
            r = self._http.post("/predict", json={IMAGE_FIELD: payload_bytes(data), **options})
        else:
            fields = {k: str(v) if not isinstance(v, (list, dict)) else _dumps(v) for k, v in options.items()}
            r = self._http.post("/predict", files={IMAGE_FIELD: (source or "image", data)}, data=fields)
        out = self._json(r, source)
        if source is not None:
            out["source"] = source
        return out

    def predict(self, images: Any, *, concurrency: int = 8, **options: Any) -> list[dict]:
        """Results for many images, in order; ``concurrency`` requests in flight so the server
        batches them. A failed image raises its :class:`ServerError`."""
        if isinstance(images, (str, os.PathLike, bytes)) or hasattr(images, "save"):
            images = [images]
        images = list(images)
        if concurrency <= 1 or len(images) <= 1:
            return [self.predict_one(im, **options) for im in images]
        with ThreadPoolExecutor(max_workers=min(concurrency, len(images))) as pool:
            return list(pool.map(lambda im: self.predict_one(im, **options), images))

    @staticmethod
    def _json(r: Any, source: str | None = None) -> dict:
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if r.status_code != 200:
            msg = doc.get("error", {}).get("message") if isinstance(doc, dict) and "error" in doc else None
            if msg is None and isinstance(doc, dict):
                msg = str(doc.get("detail", doc))
            raise ServerError(r.status_code, msg or r.text[:300], source)
        if not isinstance(doc, dict):
            raise ServerError(r.status_code, f"expected a JSON object, got {r.text[:200]!r}", source)
        return doc


def _dumps(v: Any) -> str:
    return json.dumps(v)
