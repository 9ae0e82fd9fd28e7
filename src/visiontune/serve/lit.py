"""The LitServe backend (``--backend litserve``): LitServe's batching loop in inference worker
processes, its uvicorn API processes in front.

LitServe parses JSON / forms in the API process and calls ``decode_request`` in the worker, for
every request of a batch inside one ``try``: one bad image would fail the whole batch. So
``decode_request`` never raises: a bad request becomes a :class:`RequestError` value that
``predict`` skips and ``encode_response`` turns into its own 4xx response, and the good requests
of the same batch are answered as usual. An ASGI guard in the API process answers what LitServe
would turn into a 500 (malformed JSON or multipart, a body over the size limit, an unsupported
Content-Type) and rewrites raw ``image/*`` bodies into the JSON form.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from visiontune.errors import require
from visiontune.serve.app import PREDICT_PATH, error_schema, predict_openapi, read_form
from visiontune.serve.config import ServeConfig
from visiontune.serve.inputs import (
    IMAGE_FIELD,
    RequestError,
    content_kind,
    decode_image,
    parse_doc,
    parse_fields,
    payload_bytes,
)
from visiontune.serve.metrics import metrics, multiprocess_dir, render
from visiontune.serve.runner import TASKS, Runner

if TYPE_CHECKING:
    import litserve as ls
else:
    ls = require("litserve", "serve", "The LitServe backend")  # this module is the LitServe backend


class RequestGuard:
    """ASGI middleware for ``POST /predict`` in LitServe's API processes (see the module doc)."""

    def __init__(self, app: Any, max_body_bytes: int):
        self.app = app
        self.limit = int(max_body_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            scope, body = await self._check(scope, receive)
        except RequestError as e:
            await _send_json(send, e.status, e.to_dict())
            metrics().requests.labels(str(e.status)).inc()
            return
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send_wrapper)
        metrics().requests.labels(str(status["code"])).inc()
        if status["code"] == 200:
            metrics().latency.observe(time.perf_counter() - t0)

    async def _check(self, scope, receive) -> tuple[dict, bytes]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise RequestError(413, f"the body is {int(declared):,} bytes; this server accepts at most {self.limit:,}")
        kind = content_kind(headers.get("content-type", ""))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, "the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise RequestError(413, f"the body is larger than {self.limit:,} bytes, the most this server accepts")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if kind == "json":
            try:
                json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise RequestError(
                    400, f'the body is not valid JSON ({e}); send {{"{IMAGE_FIELD}": "<base64>"}}'
                ) from None
        elif kind == "multipart":
            await _check_form(scope, body)
        else:  # raw image: hand LitServe the JSON form, options from the query string
            from urllib.parse import parse_qsl

            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            doc = {**{k: _json_or_str(v) for k, v in query.items()}, IMAGE_FIELD: payload_bytes(body)}
            body = json.dumps(doc).encode()
            hdrs = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-type", b"content-length")]
            hdrs += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            scope = {**scope, "headers": hdrs}
        return scope, body


def _json_or_str(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


async def _check_form(scope: dict, body: bytes) -> None:
    form = await read_form(scope, body)
    try:
        upload = form.get(IMAGE_FIELD)
        if upload is None or isinstance(upload, str):
            got = ", ".join(form.keys()) or "none"
            raise RequestError(422, f"missing file field '{IMAGE_FIELD}' in the form (got fields: {got})")
    finally:
        await form.close()


async def _send_json(send, status: int, doc: dict) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class VisionLitAPI(ls.LitAPI):
    """One visiontune :class:`Runner` behind LitServe's batching loop."""

    def __init__(self, config: ServeConfig):
        super().__init__(max_batch_size=config.max_batch_size, batch_timeout=config.max_wait, api_path=PREDICT_PATH)
        self.config = config
        self.runner: Runner | None = None

    def setup(self, device):
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
        from PIL import Image

        self.runner.run([self.runner.prepare(Image.new("RGB", (64, 64), (128, 128, 128)))])

    def decode_request(self, request):
        assert self.runner is not None
        try:
            if hasattr(request, "getlist"):  # a starlette FormData, pickled over from the API process
                upload = request.get(IMAGE_FIELD)
                data = upload.file.read()
                fields = {k: v for k, v in request.items() if k != IMAGE_FIELD and isinstance(v, str)}
                options = parse_fields(fields, self.runner.options_model)
            else:  # parsed JSON: parse_doc answers 422 for anything but an object with an image
                data, options = parse_doc(request, self.runner.options_model)
            return self.runner.prepare(decode_image(data, IMAGE_FIELD)), options
        except RequestError as e:
            return e
        except Exception as e:  # never raise here: LitServe would fail every request of the batch
            return RequestError(400, f"cannot read the request ({type(e).__name__}: {e})")

    def batch(self, inputs):
        return list(inputs)

    def predict(self, inputs):
        """Run the model on a batch of decoded requests (one request when LitServe does not batch)."""
        if self.max_batch_size == 1:  # LitServe's unbatched loop: one request, not a list
            return self._predict([inputs])[0]
        return self._predict(inputs)

    def _predict(self, inputs):
        assert self.runner is not None
        good = [i for i, x in enumerate(inputs) if not isinstance(x, RequestError)]
        out: list[Any] = list(inputs)
        if good:
            t0 = time.perf_counter()
            results = self.runner.run([inputs[i][0] for i in good], [inputs[i][1] for i in good])
            metrics().observe_batch(len(good), time.perf_counter() - t0)
            for i, r in zip(good, results):
                out[i] = r
        return out

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        if isinstance(output, RequestError):
            from starlette.responses import JSONResponse

            return JSONResponse(output.to_dict(), status_code=output.status)
        return output


def run_litserve(config: ServeConfig) -> None:
    """Serve ``config`` with LitServe until interrupted."""
    cleanup = multiprocess_dir()  # before prometheus-client is imported anywhere: workers are processes
    try:
        from fastapi.responses import JSONResponse, Response

        api = VisionLitAPI(config)
        server = ls.LitServer(
            api,
            accelerator="cuda" if (config.device or "").startswith("cuda") else "cpu",
            workers_per_device=config.workers,
            timeout=config.timeout,
            healthcheck_path="/litserve/health",
            info_path="/litserve/info",
            middlewares=[(RequestGuard, {"max_body_bytes": config.max_body_bytes})],
        )
        app = server.app

        def workers_ready() -> bool:
            status = getattr(server, "workers_setup_status", None) or {}
            return bool(status) and all(str(v).lower().endswith("ready") for v in status.values())

        @app.get("/health", summary="Liveness: the process answers")
        async def health():
            return {"status": "ok"}

        @app.get("/ready", summary="Readiness: every inference worker has loaded the model")
        async def ready():
            if not workers_ready():
                return JSONResponse({"ready": False, "reason": "inference workers are loading"}, status_code=503)
            return {"ready": True, "model": config.model}

        @app.get("/info", summary="The server's settings")
        async def info():
            return {"server": config.model_dump(exclude={"trust_pickle", "trust_remote_code"}), "backend": "litserve"}

        @app.get("/metrics", summary="Prometheus metrics")
        async def prom():
            body, ctype = render()
            return Response(body, media_type=ctype)

        merged = {"properties": {k: v for t in TASKS.values() for k, v in t.model_json_schema()["properties"].items()}}
        for route in app.routes:
            if getattr(route, "path", None) == PREDICT_PATH:
                route.openapi_extra = predict_openapi(merged)
        base_openapi = app.openapi

        def openapi():
            schema = base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {})["ServeError"] = error_schema()
            return schema

        app.openapi = openapi  # type: ignore[method-assign]
        app.title = "visiontune model server (LitServe)"
        server.run(
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            generate_client_file=False,
            num_api_servers=1,
        )
    finally:
        cleanup()
