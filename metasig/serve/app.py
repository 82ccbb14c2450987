"""The HTTP application: V2 inference protocol routes, Triton's repository API, a SageMaker-style
`/invocations`, `/metrics`, and the middleware that every request passes (auth, access log, metrics).

Parsing, prediction and encoding of small requests run on the event loop (a worker-thread hop
costs more than a one-row prediction); larger ones, and every model load, run in a worker thread
so the loop keeps answering (protocol.py keeps those threads from holding the GIL for long).
"""

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from importlib import metadata

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from metasig.serve import protocol
from metasig.serve.cache import LoadFailed, ModelCache, TooLarge
from metasig.serve.metrics import Metrics
from metasig.serve.model import ServedModel, size_before_load
from metasig.serve.protocol import ProtocolError
from metasig.serve.repository import BadName, NotFound, Repository

log = logging.getLogger("metasig.serve")
access_log = logging.getLogger("metasig.serve.access")

INLINE_VALUES = 20_000  # predict on the event loop up to this many input values
INLINE_BYTES = 256 * 1024  # parse (and inflate) bodies up to this size on the event loop
CLIENT_GONE = 499  # status recorded for a request whose client disconnected (nginx's convention)
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping"})
TARGET_HEADER = "x-amzn-sagemaker-target-model"


@dataclass
class Settings:
    registry: str = "results/registry"
    max_models: int = 64
    max_memory_mb: float | None = 1024
    token: str | None = None
    max_body_mb: float = 16
    body_timeout: float = 30  # seconds for the whole request body to arrive
    failure_ttl: float = 30  # seconds a failed or over-budget load is remembered


def _version():
    try:
        return metadata.version("metasig")
    except metadata.PackageNotFoundError:
        return "unknown"


def error(status, message, headers=None):
    return Response(json.dumps({"error": message}), status, headers=headers, media_type="application/json")


def ok(doc, status=200):
    return Response(json.dumps(doc, separators=(",", ":")), status, media_type="application/json")


class Server:
    """State shared by the routes: repository, model cache, metrics, settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.repo = Repository(settings.registry)
        self.metrics = Metrics()
        max_bytes = None if settings.max_memory_mb is None else int(settings.max_memory_mb * 2**20)
        self.cache = ModelCache(
            ServedModel.load,
            settings.max_models,
            max_bytes,
            self.metrics,
            sizer=size_before_load,
            failure_ttl=settings.failure_ttl,
        )
        self.max_body = int(settings.max_body_mb * 2**20)
        self.metrics.registered.set(sum(len(v) for v in self.repo.entries.values()))

    def _sync_index(self):
        # Called on every request: one stat(); a changed index is re-read and models that left
        # it are dropped from memory.
        if self.repo.refresh():
            self.cache.unload(keep=self.repo.keys())
            self.cache.forget_failures()
            self.metrics.registered.set(sum(len(v) for v in self.repo.entries.values()))

    def resolve(self, request, name, version=None):
        self._sync_index()
        entry = self.repo.resolve(name, version)
        request.state.model = entry.name  # metrics label: only names from index.json
        return entry

    async def read_body(self, request):
        limit = self.max_body
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ProtocolError("Content-Length is not a number")
            if int(length) > limit:
                raise ProtocolError(f"request body of {int(length)} bytes exceeds the limit of {limit} bytes", 413)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity", "gzip", "deflate"):
            raise ProtocolError(f"unsupported Content-Encoding {encoding[:40]!r} (use gzip, deflate or none)", 415)
        chunks, total = [], 0
        try:
            async with asyncio.timeout(self.settings.body_timeout):  # a slow body must not hold a connection
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > limit:
                        raise ProtocolError(f"request body exceeds the limit of {limit} bytes", 413)
                    chunks.append(chunk)
        except TimeoutError:
            raise ProtocolError(
                f"request body not received within {self.settings.body_timeout:g} s ({total} bytes arrived)", 408
            ) from None
        body = b"".join(chunks)
        if encoding in ("", "identity"):
            return body
        return await self.off_loop(len(body) > INLINE_BYTES // 8, protocol.inflate, body, limit, encoding)

    async def off_loop(self, large, fn, *args):
        """fn(*args) in a worker thread if the work is large, else right here on the loop."""
        if large:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    async def predict(self, model, X):
        return await self.off_loop(X.size > INLINE_VALUES, model.predict, X)

    async def parse(self, request, body):
        header = request.headers.get(protocol.HEADER)
        return await self.off_loop(len(body) > INLINE_BYTES, protocol.parse_infer, body, header)

    async def answer(self, model, parsed, results):
        large = sum(v.size for v in results.values()) > INLINE_VALUES
        content, headers = await self.off_loop(large, protocol.encode_response, model, parsed, results)
        return Response(content, headers=headers)


def endpoint(fn):
    """Turn every known failure into a JSON error; anything else is a 500 that leaves the server up."""

    async def wrapper(request):
        server = request.app.state.server
        try:
            return await fn(server, request)
        except ClientDisconnect:  # nobody to answer; not a server error
            log.info("client went away during %s %s", request.method, request.url.path)
            return Response(status_code=CLIENT_GONE)
        except ProtocolError as exc:
            # 408: a client too slow to send its body does not keep the connection. (Not 413: a
            # client still sending would get a broken pipe instead of the message.)
            slow = {"connection": "close"} if exc.status == 408 else None
            return error(exc.status, exc.message, headers=slow)
        except BadName as exc:
            return error(400, str(exc))
        except NotFound as exc:
            return error(404, str(exc))
        except TooLarge as exc:
            return error(507, str(exc))
        except LoadFailed as exc:
            return error(503, str(exc).replace(str(server.repo.root) + "/", ""))
        except Exception:
            log.exception("internal error on %s %s", request.method, request.url.path)
            return error(500, "internal server error (logged on the server)")

    wrapper.__name__ = fn.__name__
    return wrapper


# ---- health and metadata ----------------------------------------------------------------------


@endpoint
async def live(server, request):
    return ok({"live": True})


@endpoint
async def ready(server, request):
    server._sync_index()
    if not server.repo.loaded_once:
        return error(503, f"registry index {server.repo.index_path.name} not readable yet")
    return ok({"ready": True})


@endpoint
async def server_metadata(server, request):
    return ok(
        {
            "name": "metasig",
            "version": _version(),
            "extensions": ["model_repository", "binary_tensor_data", "sagemaker_invocations"],
        }
    )


@endpoint
async def list_models(server, request):
    server._sync_index()
    models = await anyio.to_thread.run_sync(server.repo.listing)  # reads each new version's features.json
    for m in models:
        m["loaded"] = [v for v in m["versions"] if (m["name"], v) in server.cache]
    return ok({"models": models})


@endpoint
async def model_metadata(server, request):
    p = request.path_params
    entry = server.resolve(request, p["name"], p.get("version"))
    model = await server.cache.get(entry)
    return ok(model.metadata(server.repo.versions(entry.name)))


@endpoint
async def model_config(server, request):
    p = request.path_params
    entry = server.resolve(request, p["name"], p.get("version"))
    model = await server.cache.get(entry)
    return ok(
        {
            "name": entry.name,
            "platform": model.metadata([])["platform"],
            "max_batch_size": 0,
            "input": [{"name": f, "data_type": "TYPE_FP64", "dims": [-1]} for f in model.features],
            "output": [
                {"name": o["name"], "data_type": "TYPE_" + o["datatype"], "dims": o["shape"]} for o in model.outputs
            ],
        }
    )


@endpoint
async def model_ready(server, request):
    p = request.path_params
    entry = server.resolve(request, p["name"], p.get("version"))
    if entry.key not in server.cache:
        return error(
            400,
            f"model {entry.name!r} version {entry.version!r} is not loaded; it loads on its first "
            f"inference or with POST /v2/repository/models/{entry.name}/load",
        )
    return ok({"name": entry.name, "version": entry.version, "ready": True})


# ---- inference --------------------------------------------------------------------------------


@endpoint
async def infer(server, request):
    p = request.path_params
    entry = server.resolve(request, p["name"], p.get("version"))
    body = await server.read_body(request)
    parsed = await server.parse(request, body)
    model = await server.cache.get(entry)
    X = protocol.assemble(model, parsed)
    return await server.answer(model, parsed, await server.predict(model, X))


@endpoint
async def invocations(server, request):
    target = request.headers.get(TARGET_HEADER)
    if not target:
        raise ProtocolError(f"name the model in the {TARGET_HEADER} header (e.g. nsclc.survival.metagene_19.coxph)")
    name, _, version = target.strip().lstrip("/").removesuffix(".tar.gz").partition("/")
    entry = server.resolve(request, name, version or None)
    body = await server.read_body(request)
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media == "text/csv":
        model = await server.cache.get(entry)
        X = await server.off_loop(len(body) > INLINE_BYTES, protocol.parse_csv, body, model)
        results = await server.predict(model, X)
        content = await server.off_loop(len(X) > INLINE_VALUES, protocol.encode_csv, model, results)
        return Response(content, media_type="text/csv")
    if media not in ("application/json", "application/octet-stream", ""):
        raise ProtocolError(f"unsupported Content-Type {media[:60]!r}: send text/csv or a V2 JSON request", 415)
    parsed = await server.parse(request, body)
    model = await server.cache.get(entry)
    results = await server.predict(model, protocol.assemble(model, parsed))
    return await server.answer(model, parsed, results)


# ---- repository API (as Triton's) ---------------------------------------------------------------


async def _optional_json(server, request):
    body = await server.read_body(request)
    if not body.strip():
        return {}
    doc = protocol.loads_json(body)
    if not isinstance(doc, dict):
        raise ProtocolError("request body must be a JSON object")
    return doc


@endpoint
async def repository_index(server, request):
    doc = await _optional_json(server, request)
    only_ready = doc.get("ready", False)
    if not isinstance(only_ready, bool):
        raise ProtocolError("'ready' must be true or false")
    server._sync_index()
    rows = []
    for name, versions in sorted(server.repo.entries.items()):
        for version in versions:
            loaded = (name, version) in server.cache
            if only_ready and not loaded:
                continue
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "state": "READY" if loaded else "UNAVAILABLE",
                    "reason": "" if loaded else "not loaded (loads on first request)",
                }
            )
    return ok(rows)


@endpoint
async def repository_load(server, request):
    entry = server.resolve(request, request.path_params["name"])
    doc = await _optional_json(server, request)
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    if "config" in params or any(str(k).startswith("file:") for k in params):
        raise ProtocolError(
            "uploading a model or its config is not supported: models come only from the "
            "registry (publish them through the workflow's gate)"
        )
    await server.cache.get(entry)
    return ok({})


@endpoint
async def repository_unload(server, request):
    entry = server.resolve(request, request.path_params["name"])
    await _optional_json(server, request)
    server.cache.unload(entry.name)
    return ok({})


@endpoint
async def metrics(server, request):
    server._sync_index()
    body, media = server.metrics.render()
    return Response(body, headers={"content-type": media})


# ---- middleware ---------------------------------------------------------------------------------


class Observe:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): bearer-token check, one JSON access
    log line per request and the request metrics."""

    def __init__(self, app, server):
        self.app, self.server = app, server
        token = server.settings.token
        self.expected = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if self.expected is not None and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
                await error(
                    401, "missing or wrong bearer token (Authorization: Bearer <token>)", {"www-authenticate": "Bearer"}
                )(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            model = state.get("model", "")
            self.server.metrics.observe(model, status[0], elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "method": scope.get("method"),
                            "path": scope.get("path", "")[:256],
                            "model": model or None,
                            "status": status[0],
                            "latency_ms": round(elapsed * 1000, 3),
                            "client": (scope.get("client") or [None])[0],
                        }
                    )
                )

    def _authorized(self, scope):
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credentials = value.strip().partition(b" ")
                # the scheme is case-insensitive (RFC 9110 section 11.1); the token is not
                return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.expected)
        return False


async def _not_found(request, exc):
    return error(
        exc.status_code, "no such endpoint" if exc.status_code == 404 else str(exc.detail), headers=exc.headers
    )


def create_app(settings: Settings):
    server = Server(settings)
    names = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models", list_models),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", repository_unload, methods=["POST"]),
        Route("/ping", live),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/metrics", metrics),
    ]
    for base in (names, versioned):
        routes += [
            Route(base, model_metadata),
            Route(base + "/ready", model_ready),
            Route(base + "/config", model_config),
            Route(base + "/infer", infer, methods=["POST"]),
        ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found})
    app.state.server = server
    app.add_middleware(Observe, server=server)
    return app
