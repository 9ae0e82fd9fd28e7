"""The HTTP app: FastAPI + uvicorn, with visiontune's asyncio micro-batcher in each process.

Per request, in the server process: the body is read under a size limit, parsed (JSON base64,
multipart or a raw image), the image decoded and preprocessed in a thread (a bad one is a 4xx
here and never reaches the model), then the prepared tensor waits in the :class:`MicroBatcher`
for at most ``max_wait`` seconds to share a model call with others. The model loads in a
background thread: ``/health`` answers at once, ``/ready`` once the model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from visiontune import __version__
from visiontune.errors import require
from visiontune.serve.batcher import MicroBatcher, QueueFull
from visiontune.serve.config import ServeConfig
from visiontune.serve.inputs import (
    IMAGE_FIELD,
    RequestError,
    content_kind,
    decode_image,
    parse_fields,
    parse_json,
)
from visiontune.serve.metrics import metrics, render
from visiontune.serve.runner import TASKS, Runner

PREDICT_PATH = "/predict"


def predict_openapi(options_schema: dict | None = None) -> dict:
    """OpenAPI ``requestBody`` / ``responses`` of ``POST /predict`` (shared by both backends)."""
    opts = options_schema or {"type": "object"}
    props = {IMAGE_FIELD: {"type": "string", "format": "byte", "description": "The image file, base64."}}
    props.update(opts.get("properties", {}))
    err = {"application/json": {"schema": {"$ref": "#/components/schemas/ServeError"}}}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "required": [IMAGE_FIELD], "properties": props}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [IMAGE_FIELD],
                        "properties": {**props, IMAGE_FIELD: {"type": "string", "format": "binary"}},
                    }
                },
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {"description": "The task's result (classification top-k or detections) as JSON."},
            "400": {"description": "Not an image, truncated or corrupt, malformed body.", "content": err},
            "413": {"description": "Body or image too large (decompression bomb).", "content": err},
            "415": {"description": "Unsupported Content-Type.", "content": err},
            "422": {"description": "Missing or unknown field, wrong option value.", "content": err},
            "503": {"description": "Model still loading, or the queue is full.", "content": err},
            "504": {"description": "Not answered within the server's timeout.", "content": err},
        },
    }


def error_schema() -> dict:
    """The JSON schema of the server's error responses."""
    return {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
            }
        },
    }


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, or a 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is {int(declared):,} bytes; this server accepts at most {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is larger than {limit:,} bytes, the most this server accepts")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_request(request: Any, body: bytes, options_model) -> tuple[bytes, Any]:
    """(image bytes, options) of a ``/predict`` request; a 4xx :class:`RequestError` otherwise."""
    kind = content_kind(request.headers.get("content-type", ""))
    if kind == "json":
        return parse_json(body, options_model)
    if kind == "raw":
        return body, parse_fields(dict(request.query_params), options_model)
    form = await read_form(request.scope, body)
    try:
        upload = form.get(IMAGE_FIELD)
        if upload is None or isinstance(upload, str):
            got = ", ".join(form.keys()) or "none"
            raise RequestError(422, f"missing file field '{IMAGE_FIELD}' in the form (got fields: {got})")
        data = await upload.read()
        fields = {k: v for k, v in form.items() if k != IMAGE_FIELD and isinstance(v, str)}
        return data, parse_fields(fields, options_model)
    finally:
        await form.close()


async def read_form(scope: dict, body: bytes) -> Any:
    """Parse an already-read multipart body (at most one file); a 400 naming the problem."""
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request

    async def once():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(scope, once).form(max_files=1, max_fields=32)
    except MultiPartException as e:
        raise RequestError(400, f"malformed multipart body ({e.message})") from None
    except Exception as e:  # python-multipart's own parse errors
        raise RequestError(400, f"malformed multipart body ({type(e).__name__}: {e})") from None


class _State:
    def __init__(self, config: ServeConfig, runner: Runner | None):
        self.config = config
        self.runner = runner
        self.error: str | None = None
        self.batcher: MicroBatcher | None = None
        self.loaded = threading.Event()
        if runner is not None:
            self.loaded.set()

    def load(self) -> None:
        try:
            c = self.config
            self.runner = Runner.load(
                c.model,
                weights=c.weights,
                pretrained=c.pretrained,
                trust_pickle=c.trust_pickle,
                trust_remote_code=c.trust_remote_code,
                device=c.device,
                threads=c.threads,
            )
            self.runner.run([self.runner.prepare(_warmup_image())])  # first call allocates; not a user's
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.loaded.set()

    def run_batch(self, items: list[tuple[Any, Any]]) -> list[dict]:
        assert self.runner is not None
        return self.runner.run([x for x, _ in items], [o for _, o in items])


def _warmup_image():
    from PIL import Image

    return Image.new("RGB", (64, 64), (128, 128, 128))


def create_app(config: ServeConfig | None = None, runner: Runner | None = None):
    """The FastAPI app for ``config`` (default: from ``$VISIONTUNE_SERVE_CONFIG``, as uvicorn
    worker processes get it). Pass a loaded ``runner`` to skip loading (tests, embedding)."""
    fastapi = require("fastapi", "serve", "Serving models over HTTP")
    from fastapi.responses import JSONResponse, Response

    config = config or ServeConfig.from_env()
    state = _State(config, runner)
    m = metrics()
    # torch's thread count is per thread: the model thread gets the configured number, the
    # request threads one each (a team of OpenMP threads per request thread oversubscribes the CPU)
    model_threads = config.threads or torch.get_num_threads()
    prep_pool = ThreadPoolExecutor(
        max_workers=max(2, min(8, 2 * (os.cpu_count() or 1))),
        thread_name_prefix="visiontune-decode",
        initializer=torch.set_num_threads,
        initargs=(1,),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.batcher = MicroBatcher(
            state.run_batch,
            max_batch_size=config.max_batch_size,
            max_wait=config.max_wait,
            max_queue=config.max_queue,
            on_batch=m.observe_batch,
            thread_init=lambda: torch.set_num_threads(model_threads),
        )
        await state.batcher.start()
        if not state.loaded.is_set():
            threading.Thread(target=state.load, name="visiontune-load", daemon=True).start()
        try:
            yield
        finally:
            await state.batcher.stop()
            prep_pool.shutdown(wait=False, cancel_futures=True)

    app = fastapi.FastAPI(
        title="visiontune model server",
        description=f"`{config.model}` behind dynamic batching. POST an image to {PREDICT_PATH}.",
        version=_version(),
        lifespan=lifespan,
    )

    def error(e: RequestError) -> JSONResponse:
        m.requests.labels(str(e.status)).inc()
        return JSONResponse(e.to_dict(), status_code=e.status)

    async def predict(request):
        t0 = time.perf_counter()
        try:
            if state.runner is None:
                if state.error:
                    raise RequestError(503, f"the model failed to load: {state.error}")
                raise RequestError(503, "the model is still loading; retry when GET /ready answers 200")
            runner = state.runner
            body = await read_body(request, config.max_body_bytes)
            data, options = await parse_request(request, body, runner.options_model)
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(prep_pool, lambda: runner.prepare(decode_image(data, IMAGE_FIELD)))
            assert state.batcher is not None
            m.queue_depth.inc()
            try:
                result = await asyncio.wait_for(state.batcher.submit((prepared, options)), config.timeout)
            except asyncio.TimeoutError:
                raise RequestError(504, f"no answer within the server's timeout of {config.timeout:g} s") from None
            except QueueFull as e:
                raise RequestError(503, f"server busy: {e}; retry later") from None
            finally:
                m.queue_depth.dec()
        except RequestError as e:
            return error(e)
        m.requests.labels("200").inc()
        m.latency.observe(time.perf_counter() - t0)
        return JSONResponse(result)

    predict.__annotations__ = {"request": fastapi.Request}  # resolved here: fastapi is an optional import
    if runner is not None:
        options_schema = runner.options_model.model_json_schema()
    else:  # the task is known once the model has loaded: describe every task's options
        options_schema = {
            "properties": {k: v for t in TASKS.values() for k, v in t.model_json_schema()["properties"].items()}
        }
    app.add_api_route(
        PREDICT_PATH,
        predict,
        methods=["POST"],
        summary="Predict on one image",
        openapi_extra=predict_openapi(options_schema),
    )

    @app.get("/health", summary="Liveness: the process answers")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: the model is loaded and answering")
    async def ready():
        m.ready.set(1 if state.runner is not None else 0)
        if state.runner is None:
            reason = f"model failed to load: {state.error}" if state.error else "model is loading"
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return {"ready": True, "model": state.runner.model_id, "task": state.runner.task}

    @app.get("/info", summary="The model, its task, options and the server's settings")
    async def info():
        doc: dict[str, Any] = {"server": config.model_dump(exclude={"trust_pickle", "trust_remote_code"})}
        doc["server"]["pid"] = os.getpid()
        if state.runner is not None:
            doc["model"] = state.runner.describe()
        if state.batcher is not None:
            s = state.batcher.stats
            doc["batches"] = {"count": s.batches, "items": s.items, "mean_size": round(s.mean_size, 3)}
        return doc

    @app.get("/metrics", summary="Prometheus metrics")
    async def prom():
        body, ctype = render()
        return Response(body, media_type=ctype)

    base_openapi = app.openapi

    def openapi():
        schema = base_openapi()
        schema.setdefault("components", {}).setdefault("schemas", {})["ServeError"] = error_schema()
        schema["info"]["x-tasks"] = sorted(TASKS)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.visiontune = state
    return app


def _version() -> str:
    return __version__
