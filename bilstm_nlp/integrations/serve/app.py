"""The HTTP service: FastAPI routes over the micro-batcher, limits, errors, metrics and the page.

Sits at the end of the flow, beside the CLI: a request's JSON is read and checked here (size,
types, limits), its texts go to the `MicroBatcher`, and its records come back exactly as
`Annotator.records` makes them, the records `annotate -f jsonl` writes. Every error a user can
cause is a 4xx with a JSON body `{"error": ..., "field": ..., "limit": ...}`; nothing a user
sends gives a 500 or a traceback.

The two POST routes are the hot path, so they stay cheap: a well-formed body is checked by a few
type tests (pydantic runs only on a body that fails them, to word the error), the records are
encoded to JSON bytes on the inference thread, and the metrics are a plain ASGI middleware.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ...annotation.annotator import MAX_SENTENCE_TOKENS
from ...annotation.writers.jsonl import JsonlWriter
from ...decode import check_scheme
from ...errors import ConfigError
from ...serialize import (
    describe_model,
    is_onnx_folder,
    load_model,
    read_meta,
    resolve_model_path,
)
from ...text.schemes import normalize_written_scheme
from .batching import BatchStats, Job, MicroBatcher, QueueFull
from .metrics import Metrics, MetricsFolder

logger = logging.getLogger(__name__)

MAX_K = 10
# The names a service listening on a loopback address answers to by default.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# Answered whatever the Host header: they take no input and tell nothing but whether the
# service is up, and orchestrators probe them by address (Kubernetes: the pod's IP).
_PROBES = {"/healthz", "/readyz"}
_ENDPOINTS = {"/v1/annotate", "/v1/tag", "/v1/models", "/healthz", "/readyz", "/metrics", "/"}


@dataclass(frozen=True)
class ServeConfig:
    """The service's settings (the `serve` command's options).

    Attributes:
        models: shipped model names or model folders; the first is the default.
        max_wait_ms: how long a batch waits at most for requests still being read.
        max_batch_tokens: a batch closes at this many tokens (0: batching off).
        max_queue: requests waiting at most before 503.
        max_body_bytes: request bodies above this get 413.
        max_texts: texts (or sentences) per request.
        max_chars: characters per text.
        timeout_s: a request not answered within this gets 503 with Retry-After.
        batch_size: sentences per model batch.
        threads: CPU threads of each ONNX model's session (None: onnxruntime's default); torch
            models use torch's, which the `serve` command sets.
        allowed_hosts: the names a request's Host header may give (`*` any, `*.example.org`
            the subdomains of example.org); any other gets 400, so that a web page whose
            name is made to resolve to this address (DNS rebinding) cannot use the service.
        metrics_folder: where the processes of `serve --workers N` share their figures, so
            that /metrics counts all of them (None: one process).
    """

    models: tuple[str, ...] = ("ner",)
    max_wait_ms: float = 5.0
    max_batch_tokens: int = 4096
    max_queue: int = 1024
    max_body_bytes: int = 1_000_000
    max_texts: int = 64
    max_chars: int = 20_000
    timeout_s: float = 10.0
    batch_size: int = 256
    threads: int | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    metrics_folder: str | None = None

    def check(self) -> None:
        """Refuse limits the service cannot keep (a NaN timeout, a queue of none...).

        Raises:
            ConfigError: the first value out of its range, named as its option.
        """
        ranges = (
            ("--max-wait-ms", self.max_wait_ms, 0, 60_000),
            ("--max-batch-tokens", self.max_batch_tokens, 0, 10_000_000),
            ("--max-queue", self.max_queue, 1, 1_000_000),
            ("--max-body-bytes", self.max_body_bytes, 1, 1 << 31),
            ("--max-texts", self.max_texts, 1, 100_000),
            ("--max-chars", self.max_chars, 1, 100_000_000),
            ("--timeout", self.timeout_s, 0.001, 86_400),
            ("--batch-size", self.batch_size, 1, 100_000),
        )
        for option, value, low, high in ranges:
            # NaN fails both comparisons; inf fails the upper one.
            if not low <= value <= high:
                raise ConfigError(f"{option} must be {low} to {high:,}, got {value}")
        if not self.allowed_hosts:
            raise ConfigError("--allowed-host: give at least one name, or * for any")
        for name in self.allowed_hosts:
            if not _HOST_PATTERN.fullmatch(_unbracketed(name)):
                raise ConfigError(
                    f"--allowed-host {name!r}: expected a host name or address without a "
                    "port (localhost, 10.0.0.5, ::1, *.example.org), or * for any"
                )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        values = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


SCHEME_HELP = (
    "write tags in IOB1, IOB2, BIOES or BILOU, each tag's score being its probability as "
    "written (default: the model's training file's scheme)"
)


class AnnotateRequest(BaseModel):
    """`POST /v1/annotate`: raw texts (`texts`, or one `text`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] | None = None
    text: str | None = None
    model: str | None = Field(None, description="a served model's name (default: the first)")
    k: int = Field(0, ge=0, le=MAX_K, description="k best tag sequences per sentence")
    scheme: str | None = Field(None, description=SCHEME_HELP)


class TagRequest(BaseModel):
    """`POST /v1/tag`: pre-tokenized sentences."""

    model_config = ConfigDict(extra="forbid", strict=True)
    sentences: list[list[str]]
    model: str | None = None
    k: int = Field(0, ge=0, le=MAX_K)
    scheme: str | None = Field(None, description=SCHEME_HELP)


_MAX_MESSAGE = 300


class ApiError(Exception):
    """A request the service refuses: its status and a JSON body naming the field and limit."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        limit: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if len(message) > _MAX_MESSAGE:  # messages quote the request: a 1 MB model name
            message = message[: _MAX_MESSAGE - 1] + "…"
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message}
        if field is not None:
            self.body["field"] = field
        if limit is not None:
            self.body["limit"] = limit
        self.headers = headers


# On every answer: no content sniffing (a JSON error quoting `<script>` stays JSON), the page in
# no other site's frame, and no URL of it passed on to the sites it links to.
_SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


# A host name, an IPv4 or IPv6 address, `*`, or `*.` and a domain.
_HOST_PATTERN = re.compile(r"\*|(\*\.)?[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")


def _unbracketed(name: str) -> str:
    """An IPv6 address as a Host header writes it (`[::1]`) or bare: bare."""
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def host_name(header: str) -> str:
    """The name a Host header gives, without its port, in lower case and without a final dot:
    `LocalHost.:8080` → `localhost`, `[::1]:8080` → `::1`."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 address
        name = header[1:].split("]", 1)[0]
    else:
        name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return name.rstrip(".")


def default_allowed_hosts(host: str) -> tuple[str, ...]:
    """The names a service listening on `host` answers to by default. On a loopback address,
    this machine's only: a page on another site whose name an attacker's DNS points at
    127.0.0.1 then gets 400. On any other address, any name: the service is reached by names
    this process cannot know."""
    address = _unbracketed(host)
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = host.lower().rstrip(".") == "localhost"
    if not loopback:
        return ("*",)
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, address.lower())))


class HostCheck:
    """Whether a Host header names this service (`ServeConfig.allowed_hosts`)."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.any = "*" in allowed
        patterns = [_unbracketed(name).lower().rstrip(".") for name in allowed]
        self.names = {name for name in patterns if not name.startswith("*.")}
        self.domains = tuple(name[1:] for name in patterns if name.startswith("*."))

    def allows(self, header: str | None) -> bool:
        # A request without a Host header (HTTP/1.0) is no browser's: browsers always send it.
        if self.any or header is None:
            return True
        name = host_name(header)
        return name in self.names or name.endswith(self.domains)


# The page runs its own script and style only, talks to this service only, and goes in no
# frame: text the service echoes back cannot become script, whatever a bug in the page did.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class _CountRequests:
    """Requests by endpoint and status, and their latency, into `Metrics`; the security headers
    on every answer; and a 400 to a request whose Host header names another site. A plain ASGI
    middleware (Starlette's `BaseHTTPMiddleware` adds a task and a stream to every request)."""

    def __init__(self, app: Any, metrics: Metrics, hosts: HostCheck) -> None:
        self.app = app
        self.metrics = metrics
        self.hosts = hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception out of the app becomes a 500 further out

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *_SECURITY]}
            await send(message)

        try:
            host = _header(scope, b"host")
            if scope["path"] in _PROBES or self.hosts.allows(host):
                await self.app(scope, receive, send_and_note)
            else:
                await _refused_host(host)(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope["path"] in _ENDPOINTS else "other"
            self.metrics.record_request(path, status, time.perf_counter() - start)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _refused_host(host: str) -> JSONResponse:
    message = (
        f"this service does not answer to the host {host_name(host)!r}; "
        "start it with --allowed-host to add the name"
    )
    return JSONResponse(ApiError(400, message, "host").body, 400)


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """A JSON array of records, each encoded as the JSONL writer writes its line."""
    return b"[" + b",".join(_JSONL.encode(record)[:-1] for record in records) + b"]"


def _answer(model: str, records: bytes) -> Response:
    # The bytes JSONResponse would give for {"model": model, "records": [...]}.
    head = json.dumps(model, ensure_ascii=False).encode()
    return Response(b'{"model":' + head + b',"records":' + records + b"}", 200, None, _JSON)


_JSONL = JsonlWriter()
_JSON = "application/json"


def model_name(name_or_path: str) -> str:
    """The name a model is served under: a shipped name as is, a folder by its last part."""
    return Path(name_or_path).name if Path(name_or_path).exists() else name_or_path


def create_app(config: ServeConfig) -> FastAPI:
    """The FastAPI app; models load at startup, before uvicorn accepts connections.

    Args:
        config: the service's settings.
    Returns:
        The app; the batcher's thread runs from startup to shutdown (after in-flight requests).
    """
    metrics = Metrics()
    shared = MetricsFolder(config.metrics_folder) if config.metrics_folder else None
    state: dict[str, Any] = {"ready": False}
    names = [model_name(m) for m in config.models]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        models = {
            name: load_model(path, threads=config.threads)
            for name, path in zip(names, config.models, strict=True)
        }
        state["info"] = {
            name: _model_info(name, path, models[name])
            for name, path in zip(names, config.models, strict=True)
        }
        batcher = MicroBatcher(
            models,
            max_wait_ms=config.max_wait_ms,
            max_batch_tokens=config.max_batch_tokens,
            max_queue=config.max_queue,
            batch_size=config.batch_size,
            on_batch=lambda s: metrics.record_batch(s.requests, s.items, s.tokens, s.seconds),
            encode=encode_records,
        )
        batcher.start()
        # The models, torch and spaCy are here for good: out of the collector's sight, so the
        # full collections that per-request garbage triggers no longer rescan them (pauses of
        # tens of ms on the event loop otherwise).
        gc.collect()
        gc.freeze()
        if shared is not None:
            shared.start(metrics)
        state.update(batcher=batcher, models=models, ready=True)
        try:
            yield
        finally:
            # uvicorn has answered every request in flight before it runs this.
            state["ready"] = False
            batcher.stop()
            if shared is not None:
                shared.stop(metrics)

    app = _fastapi_with_offline_docs(
        title="bilstm-nlp",
        description="BiLSTM-CRF taggers and a sentence classifier over HTTP, micro-batched.",
        lifespan=lifespan,
    )
    static = Path(str(resources.files(__package__) / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body, status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, error.status_code, error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, 422)

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        # A bug, never the user's input: logged with its traceback, answered without it.
        logger.exception("unhandled error")
        return JSONResponse({"error": "internal error"}, 500)

    app.add_middleware(_CountRequests, metrics=metrics, hosts=HostCheck(config.allowed_hosts))

    async def read(request: Request, kind: type[BaseModel]) -> Any:
        """The body, parsed and typed; the batcher knows a request is on its way meanwhile."""
        _check_content_type(request.headers.get("content-type"))
        batcher = state["batcher"]
        batcher.expect()
        try:
            # Bounded: a client that stops sending would hold its connection, keep every batch
            # waiting for it (`expect`), and keep a SIGTERM from finishing.
            raw = await asyncio.wait_for(
                _read_body(request, config.max_body_bytes), config.timeout_s
            )
        except TimeoutError:
            raise ApiError(408, "the request body did not arrive in time", "body") from None
        except ClientDisconnect:
            raise ApiError(499, "the client closed the connection", "body") from None
        finally:
            batcher.arrived()
        return _parse(kind, raw)

    async def run(
        kind: str, model: str, k: int, items: list[Any], tokens: list[int], scheme: str | None
    ) -> bytes:
        loop = asyncio.get_running_loop()
        # One spelling per scheme, so that `iob2` and `IOB2` requests share batches.
        scheme = normalize_written_scheme(scheme) if scheme is not None else None
        job = Job(model, kind, k, items, tokens, loop.create_future(), loop, scheme=scheme)
        retry = {"Retry-After": "1"}
        try:
            state["batcher"].submit(job)
        except QueueFull:
            raise ApiError(503, "the queue is full; retry later", headers=retry) from None
        try:
            return await asyncio.wait_for(job.future, config.timeout_s)
        except TimeoutError:
            # Still queued: out of the queue, so that the batches behind it are not delayed by
            # work nobody waits for any more.
            state["batcher"].withdraw(job)
            raise ApiError(503, "timed out; retry later", headers=retry) from None

    def pick_model(name: str | None, k: int, needs_tagger: bool, scheme: str | None = None) -> str:
        name = names[0] if name is None else name
        if name not in state["models"]:
            raise ApiError(422, f"unknown model {name!r}; served: {', '.join(names)}", "model")
        if state["models"][name].meta.is_classifier:
            if needs_tagger:
                raise ApiError(422, f"{name!r} is a classifier: send raw text to /v1/annotate")
            if k:
                raise ApiError(422, "k-best tag sequences need a tagger", "k")
        try:
            check_scheme(state["models"][name], scheme)
        except ConfigError as error:
            message = str(error).removeprefix(f"--scheme {scheme}: ")
            raise ApiError(422, message, "scheme") from None
        return name

    annotate_body = {"content": {"application/json": {"schema": _schema(AnnotateRequest)}}}

    @app.post("/v1/annotate", openapi_extra={"requestBody": annotate_body})
    async def annotate(request: Request) -> Response:
        """One record per text, the fields `bilstm-nlp annotate -f jsonl` writes."""
        body = await read(request, AnnotateRequest)
        if (body.texts is None) == (body.text is None):
            raise ApiError(422, "give either texts (a list) or text (a string)", "texts")
        texts = body.texts if body.texts is not None else [body.text]
        field = "texts" if body.texts is not None else "text"
        if not texts:
            raise ApiError(422, "texts is empty", "texts")
        if len(texts) > config.max_texts:
            raise ApiError(422, "too many texts", "texts", config.max_texts)
        for i, text in enumerate(texts):
            where = f"texts[{i}]" if field == "texts" else "text"
            _check_text(text, where, config.max_chars)
        model = pick_model(body.model, body.k, needs_tagger=False, scheme=body.scheme)
        tokens = [estimated_tokens(text) for text in texts]
        return _answer(model, await run("annotate", model, body.k, texts, tokens, body.scheme))

    tag_body = {"content": {"application/json": {"schema": _schema(TagRequest)}}}

    @app.post("/v1/tag", openapi_extra={"requestBody": tag_body})
    async def tag(request: Request) -> Response:
        """Pre-tokenized sentences → tags, probabilities and spans (token offsets)."""
        body = await read(request, TagRequest)
        if not body.sentences:
            raise ApiError(422, "sentences is empty", "sentences")
        if len(body.sentences) > config.max_texts:
            raise ApiError(422, "too many sentences", "sentences", config.max_texts)
        for i, sentence in enumerate(body.sentences):
            if not sentence:
                raise ApiError(422, "the sentence is empty", f"sentences[{i}]")
            if len(sentence) > MAX_SENTENCE_TOKENS:
                raise ApiError(422, "too many tokens", f"sentences[{i}]", MAX_SENTENCE_TOKENS)
            for j, token in enumerate(sentence):
                if not token:
                    raise ApiError(422, "the token is empty", f"sentences[{i}][{j}]")
                _check_text(token, f"sentences[{i}][{j}]", config.max_chars)
        model = pick_model(body.model, body.k, needs_tagger=True, scheme=body.scheme)
        tokens = [len(sentence) for sentence in body.sentences]
        return _answer(model, await run("tag", model, body.k, body.sentences, tokens, body.scheme))

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        """The served models: name, task, labels, scheme and the dev figure of their card."""
        if not state["ready"]:
            raise ApiError(503, "models are loading", headers={"Retry-After": "1"})
        return JSONResponse({"models": list(state["info"].values()), "default": names[0]})

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        """The process answers."""
        return JSONResponse({"status": "ok"})

    @app.api_route("/readyz", methods=["GET", "HEAD"])
    async def readyz() -> JSONResponse:
        """The models are loaded and the batcher runs."""
        if not state["ready"]:
            return JSONResponse({"status": "loading"}, 503)
        return JSONResponse({"status": "ready", "models": names})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Requests, latency, batch sizes and tokens/s in Prometheus' text format, of every
        process of the service (those of other processes as of about a second ago)."""
        others = shared.others() if shared is not None else []
        return PlainTextResponse(metrics.render(others), media_type="text/plain; version=0.0.4")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Content-Security-Policy": _PAGE_CSP})

    return app


def _fastapi_with_offline_docs(**settings: Any) -> FastAPI:
    """FastAPI with /docs (Swagger UI) and /redoc served from this process, or without them.
    FastAPI's own pages load their scripts from a CDN: blank where the service runs offline,
    and another site's code running on the service's origin where it does not."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:  # installed without it, beside the slim runtime
        return FastAPI(docs_url=None, redoc_url=None, **settings)
    # No validator badge: Swagger UI would send the schema to validator.swagger.io.
    return FastAPIOffline(swagger_ui_parameters={"validatorUrl": None}, **settings)


def app_from_environment() -> FastAPI:
    """The app for `uvicorn --factory` in each worker process (`serve --workers N`): settings
    and torch threads come from the environment the `serve` command set."""
    import os

    config = ServeConfig.from_json(os.environ["BILSTM_NLP_SERVE_CONFIG"])
    if not all(is_onnx_folder(resolve_model_path(m)) for m in config.models):
        import torch

        torch.set_num_threads(int(os.environ.get("BILSTM_NLP_SERVE_THREADS", "1")))
    return create_app(config)


def _model_info(name: str, path: str, model: Any) -> dict[str, Any]:
    directory = resolve_model_path(path)
    _, meta = read_meta(directory)
    card = describe_model(directory)
    tags = list(model.vocab.labels.items)
    if meta.scheme is not None:  # span labels, not their B-/I-/E-/S- tags
        labels = sorted({tag.split("-", 1)[1] for tag in tags if "-" in tag})
    else:
        labels = tags
    return {
        "name": name,
        "task": meta.task,
        "kind": "classifier" if model.meta.is_classifier else "tagger",
        "labels": labels,
        "scheme": meta.output_scheme or meta.scheme,
        "dev": card.get("dev"),
        "figure": card.get("figure"),
    }


# The tokenizer splits punctuation off words: "a,a,a," is one white-space word of 6 tokens.
_PUNCTUATION = re.compile(r"[^\w\s]")


def estimated_tokens(text: str) -> int:
    """About how many tokens the tokenizer makes of `text` (and one for its end): its words
    between white space plus its punctuation marks (words alone said 1 for the 15,000 tokens
    of "a,a,a,..."). Cheap, as it runs on the event loop for each request."""
    return len(text.split()) + len(_PUNCTUATION.findall(text)) + 1


def _check_content_type(declared: str | None) -> None:
    """Only a JSON body is read. A web page can send another site a form or plain text without
    asking first (no CORS preflight), but not `application/json`: refusing the others keeps
    pages the user visits from posting to the service."""
    media_type = declared.split(";", 1)[0].strip().lower() if declared else ""
    if media_type != _JSON:
        got = repr(declared) if declared else "none"
        raise ApiError(
            415,
            f"send the body as JSON with Content-Type: application/json (got {got}; "
            "curl: --json BODY, or -H 'Content-Type: application/json' -d BODY)",
            "content-type",
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "request body too large", "body", limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a chunked body without Content-Length
            raise ApiError(413, "request body too large", "body", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(kind: type[BaseModel], raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, f"the body is not UTF-8 (byte {error.start})", "body") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"invalid JSON: {error.msg} at line {error.lineno}", "body") from None
    except ValueError as error:  # an integer of more than 4,300 digits
        raise ApiError(400, f"invalid JSON: {error}", "body") from None
    except RecursionError:
        raise ApiError(400, "invalid JSON: arrays or objects nested too deeply", "body") from None
    if not isinstance(value, dict):
        raise ApiError(422, "the body must be a JSON object", "body")
    if _FAST_CHECKS[kind](value):
        return kind.model_construct(**value)
    try:
        return kind.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
        ).lstrip(".")
        raise ApiError(422, first["msg"], where or "body") from None


def _is_k(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_K  # strict: no bool, no float


def _is_name(value: Any) -> bool:
    return value is None or type(value) is str


def _annotate_ok(value: dict[str, Any]) -> bool:
    """What `AnnotateRequest` would accept as is (the common body), without pydantic."""
    texts = value.get("texts")
    return (
        value.keys() <= {"texts", "text", "model", "k", "scheme"}
        and (texts is None or (type(texts) is list and all(type(t) is str for t in texts)))
        and _is_name(value.get("text"))
        and _is_name(value.get("model"))
        and _is_name(value.get("scheme"))
        and _is_k(value.get("k", 0))
    )


def _tag_ok(value: dict[str, Any]) -> bool:
    """What `TagRequest` would accept as is, without pydantic."""
    sentences = value.get("sentences")
    return (
        value.keys() <= {"sentences", "model", "k", "scheme"}
        and type(sentences) is list
        and all(type(s) is list and all(type(t) is str for t in s) for s in sentences)
        and _is_name(value.get("model"))
        and _is_name(value.get("scheme"))
        and _is_k(value.get("k", 0))
    )


# A body these pass is valid as is; any other goes through pydantic, which words the error.
_FAST_CHECKS = {AnnotateRequest: _annotate_ok, TagRequest: _tag_ok}


def _check_text(text: str, where: str, max_chars: int) -> None:
    if len(text) > max_chars:
        raise ApiError(422, "text too long (characters)", where, max_chars)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        raise ApiError(422, "the text holds an unpaired surrogate", where) from None


def _schema(kind: type[BaseModel]) -> dict[str, Any]:
    return kind.model_json_schema()


__all__ = ["ApiError", "BatchStats", "ServeConfig", "create_app", "app_from_environment"]
