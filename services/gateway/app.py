"""HTTP gateway: the transmitter's Send for clients that speak HTTP, a web page, and the accuracy-vs-SNR curve.

Every call goes through the client SDK (unitocom.client), the one place that knows the protos. The request options
are those of `unitocom send`, made from the one definition in unitocom.options: the JSON body (`SendBody`, media
base64-coded), the multipart form (`SendForm`, media as file parts) and the web page's fields (`/v1/options`).
The answer is what `unitocom send --json` prints, plus the reconstructed media base64-coded.

Every error has one body, `{"error": {"status", "message"}}` (`ErrorBody`), and every status an operation can answer
is in the OpenAPI schema: gRPC statuses become HTTP statuses (INVALID_ARGUMENT 400, RESOURCE_EXHAUSTED 429,
UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, faults upstream 502, ...), a request that does not match
the schema is 422 INVALID_ARGUMENT naming the field, an upload over the limit 413.
"""
from __future__ import annotations

import base64
import binascii
import functools
import math
import pathlib
import re
import threading
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from unitocom import client, options, prometheus

STATIC = pathlib.Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
# A whole request body: two files base64-coded (4/3 larger) and the other fields.
MAX_BODY_BYTES = 2 * (MAX_UPLOAD_BYTES * 4 // 3 + 4) + 1024 * 1024

HTTP_STATUS = {  # gRPC status -> HTTP status (google.rpc code mapping; faults upstream are 502)
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409, "ABORTED": 409, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504, "INTERNAL": 502, "UNKNOWN": 502, "DATA_LOSS": 502,
}
# What each HTTP error status means here; the gRPC statuses behind it are appended from HTTP_STATUS.
ERROR_MEANING = {
    400: "The services refuse a value (the message names the field), a checkpoint the request needs is not "
         "installed, or the body is not a form or JSON request.",
    401: "The services want credentials.",
    403: "The services refuse these credentials.",
    404: "Not found upstream.",
    409: "A conflict upstream.",
    413: "A file (or the whole body) is larger than the gateway takes.",
    422: "The request does not match this schema: a missing, unknown or mistyped field, a value out of its range or "
         "not one of its enum's values. The message names the field.",
    429: "The services are at capacity: retry later.",
    499: "The call was cancelled.",
    501: "This task with this scheme is not built (the message says what is missing).",
    502: "A fault in the services behind the gateway.",
    503: "The transmitter or a hop behind it is unreachable (or, for /v1/quality, Prometheus).",
    504: "The deadline (timeout_s) passed before the result came back.",
}

HTTP_REQUESTS = Counter("unitocom_http_requests_total", "HTTP requests answered by the gateway",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("unitocom_http_request_seconds", "HTTP request wall time in the gateway", ["route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0))


# ---- schema ------------------------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    status: str = Field(description="gRPC status name, e.g. INVALID_ARGUMENT, UNAVAILABLE, DEADLINE_EXCEEDED")
    message: str = Field(description="what went wrong, naming the field where one is at fault")


class ErrorBody(BaseModel):
    """Every error answer of the gateway."""

    error: ErrorDetail


def error_responses(*codes: int) -> dict[int, dict]:
    """`responses=` for a route: each status with ErrorBody and what it means (and the gRPC statuses behind it)."""
    out = {}
    for code in sorted(codes):
        grpc_names = [k for k, v in HTTP_STATUS.items() if v == code]
        behind = f" gRPC {', '.join(grpc_names)}." if grpc_names else ""
        out[code] = {"model": ErrorBody, "description": ERROR_MEANING[code] + behind}
    return out


SEND_ERRORS = error_responses(*sorted(set(HTTP_STATUS.values()) | {413, 422}))

# Standard base64 with its padding, as the schema says it (so that a client knows before it sends).
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

METRIC = "^[A-Za-z0-9_]+$"
PATTERN_WORDS = {BASE64: "not valid base64 (the standard alphabet, padded with =)",
                 METRIC: "must be a quality key: letters, digits and _ (exact_match, psnr_db, ...)"}

# A file part of the form. A part sent without a file name arrives as a string and is taken as the file's bytes,
# so that every request the schema allows is read.
FilePart = Annotated[UploadFile | str | None, WithJsonSchema(
    {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"})]


def _field(o: options.Option, **extra) -> Any:
    bounds = {k: getattr(o, k) for k in ("ge", "gt", "le", "lt") if getattr(o, k) is not None}
    if o.finite:
        bounds["allow_inf_nan"] = False
    return Field(o.default, description=o.help, **bounds, **extra)


def _empty_is_none(v: Any) -> Any:
    return None if v == "" else v


def _drop_null(schema: dict) -> None:
    """The field's schema without its `null` branch."""
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches


def _model(name: str, doc: str, files: str) -> type[BaseModel]:
    """A pydantic model of every option; `files` says how file options travel: "base64" (JSON) or "parts" (form)."""
    fields: dict[str, Any] = {}
    for o in options.OPTIONS:
        if o.type is bytes and files == "base64":
            fields[f"{o.name}_b64"] = (str | None, Field(None, description=f"{o.help}, base64-coded", pattern=BASE64,
                                                         json_schema_extra={"contentEncoding": "base64"}))
        elif o.type is bytes:
            fields[o.name] = (FilePart, Field(None, description=f"{o.help}, as a file part"))
        elif o.default is None and files == "parts":
            # A form has no null: leave the field out (or empty, as the web page's "service default" does).
            fields[o.name] = (Annotated[o.type | None, BeforeValidator(_empty_is_none)],
                              _field(o, json_schema_extra=_drop_null))
        elif o.default is None:
            fields[o.name] = (o.type | None, _field(o))
        else:
            fields[o.name] = (o.type, _field(o))
    # At least one payload, said in the schema (so that clients and API testers know it) and checked by the model:
    # a non-empty string, or a file part at all (its content has no length in the schema; an empty file is 400).
    payload_fields = [f"{o.name}_b64" if o.type is bytes and files == "base64" else o.name for o in options.OPTIONS
                      if o.kind == "payload" and o.name != "question"]
    file_parts = {o.name for o in options.OPTIONS if o.type is bytes and files == "parts"}
    one_of_them = [{"required": [f]} if f in file_parts else
                   {"required": [f], "properties": {f: {"type": "string", "minLength": 1}}} for f in payload_fields]

    def given(body, f: str) -> bool:
        v = getattr(body, f)
        return v is not None if f in file_parts else v not in (None, "")

    def at_least_one_payload(body):
        if not any(given(body, f) for f in payload_fields):
            raise ValueError(f"give at least one of {', '.join(payload_fields)}")
        return body

    return create_model(name, __doc__=doc, __config__=ConfigDict(extra="forbid", json_schema_extra={
                            "anyOf": one_of_them}),
                        __validators__={"at_least_one_payload": model_validator(mode="after")(at_least_one_payload)},
                        **fields)


# /v1/quality's channel filter: a channel model, or empty for all.
QualityChannel = Literal[("",) + tuple(c.value for c in options.Channel)]

SendBody = _model("SendBody", "The options of `unitocom send` (unitocom.options); files as base64 strings.", "base64")
SendForm = _model("SendForm", "The options of `unitocom send` (unitocom.options); files as file parts.", "parts")


class Output(BaseModel):
    model_config = ConfigDict(extra="allow")
    modality: str
    decoded: bool
    note: str
    text: str | None
    channel_uses: int
    blocks: int
    block_errors: int
    erased: bool
    image_png_bytes: int
    audio_wav_bytes: int
    image_png_b64: str | None = Field(description="the received image, PNG, base64")
    audio_wav_b64: str | None = Field(description="the received audio, WAV, base64")


class SendResult(BaseModel):
    """What `unitocom send --json` prints, plus the media base64-coded per output."""

    model_config = ConfigDict(extra="allow")
    request_id: str
    task: str
    scheme: str
    snr_db: float
    channel: str
    output: str = Field(description="the answer, transcript or recovered text")
    outputs: list[Output]
    channel_uses: int
    timings_s: dict[str, float] = Field(description="seconds per service.stage")
    quality: dict[str, float | None] = Field(description="scores (psnr_db, exact_match, wer, ...); null where "
                                                          "not finite (the PSNR of an exact copy is infinite)")
    session: dict | None = Field(None, description="with session_id: the session's parts that arrived (each "
                                 "device's request id, modality, link, whether it decoded), those missing, the "
                                 "request id that ran the task (answered_by), this call's wait and a partial "
                                 "answer's note")
    capture: dict | None = Field(None, description="when the channel recorded the request's IQ (option capture): "
                                 "path (the .sigmf-meta on the channel's host, for `unitocom replay`; empty: not "
                                 "kept), bytes, and a note saying why it was not kept or was recorded unasked")


class Readiness(BaseModel):
    transmitter: str
    status: str = Field(description="SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN or UNREACHABLE")


class ApiError(Exception):
    def __init__(self, http_status: int, status: str, message: str):
        super().__init__(message)
        self.http_status, self.status, self.message = http_status, status, message


def _error(http_status: int, status: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=http_status)


def _validation_message(errors) -> str:
    """Pydantic's errors in one line, each with its field: `snr_db: Input should be less than or equal to 100`.
    The offending input is not echoed (it may be a file); nothing of Python's internals is either."""
    parts: dict[str, str] = {}
    for e in errors:
        # Field names and list indexes only: pydantic also puts the union member it tried there (str-enum[...]).
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "form")
                       and re.fullmatch(r"\w+", str(x)))
        msg = "is not an option" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
        if e.get("type") == "string_pattern_mismatch":
            msg = PATTERN_WORDS.get((e.get("ctx") or {}).get("pattern"), msg)
        if e.get("type") == "value_error":  # our own validators' words, without pydantic's "Value error, "
            msg = str((e.get("ctx") or {}).get("error", msg))
        if e.get("type") == "json_invalid":  # loc holds the character offset
            loc, msg = "", f"the body is not valid JSON ({(e.get('ctx') or {}).get('error', 'cannot parse')})"
        parts.setdefault(loc, f"{loc}: {msg}" if loc else msg)  # the first reason per field
    return "; ".join(parts.values()) or "invalid request"


def _finite(x: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _b64(field: str, value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "INVALID_ARGUMENT", f"{field}: not valid base64") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "RESOURCE_EXHAUSTED", f"{field}: {len(data)} bytes, more than {MAX_UPLOAD_BYTES}")
    return data


def _part_bytes(value: str) -> bytes:
    """The bytes of a form part that came without a file name. Starlette decoded it as UTF-8, or as Latin-1 (which
    keeps every byte) when it was not UTF-8: binary data such as an image is the second case."""
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return value.encode("utf-8")


async def _read_part(value: UploadFile | str | None, name: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        data = _part_bytes(value)
    elif not value.filename:  # a browser's empty file input
        return None
    else:
        data = await value.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "RESOURCE_EXHAUSTED", f"{name}: more than {MAX_UPLOAD_BYTES} bytes")
    return data or None


# ---- app ---------------------------------------------------------------------------------------------------------

class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused 413 before it is read. A declared
    Content-Length over the limit is refused by the `count` middleware without reading anything; a body without
    one (chunked) is counted as it arrives and cut off as soon as it passes the limit, so the gateway never holds
    more than `max_bytes` of it (Starlette itself would read a JSON body whole, whatever its size).

    Cut off means: the app is told the client went away (its body read ends there, nothing more is read), its
    answer to that is dropped, and the 413 goes out instead."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received, refused, started = 0, False, False

        async def counted():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message):
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, guarded)
        if refused and not started:
            response = _error(413, "RESOURCE_EXHAUSTED", f"the body is more than {self.max_bytes} bytes")
            await response(scope, receive, send)


class _Transmitter:
    """The gRPC client to the transmitter, opened on first use and closed when the app's lifespan ends; a lifespan
    that starts again (a server or test client entering the app anew) opens a fresh one. `tls`, `token`: how the
    gateway reaches a transmitter that wants TLS and bearer tokens (unitocom.client.Client)."""

    def __init__(self, target: str, tls: client.Tls | None = None, token: str | None = None):
        self.target, self.tls, self.token = target, tls, token
        self._client, self._lock = None, threading.Lock()

    def send(self, request, timeout_s: float, token: str | None = None):
        with self._lock:
            if self._client is None:
                self._client = client.Client(self.target, tls=self.tls, token=self.token)
            c = self._client
        return c.send(request, timeout_s=timeout_s, token=token)

    def close(self) -> None:
        with self._lock:
            c, self._client = self._client, None
        if c is not None:
            c.close()


def _bearer(request: Request) -> str | None:
    """The HTTP caller's own bearer token (`Authorization: Bearer <token>`), passed on to the transmitter."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def create_app(transmitter: str = "127.0.0.1:50051", prometheus_url: str = "", tls: client.Tls | None = None,
               token: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The gateway app. `tls`: reach the transmitter over TLS; `token`: the bearer token the gateway sends for
    callers that bring none of their own (an HTTP `Authorization: Bearer` header is passed on as it is);
    `max_body_bytes`: the largest request body read."""
    tx = _Transmitter(transmitter, tls, token)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        tx.close()

    app = FastAPI(title="UniToCom gateway", version="0.1.0", lifespan=lifespan,
                  description="HTTP front of the UniToCom testbed: send text, an image or audio through the "
                              "transmitter, channel emulator and base station, and read the result. The web page "
                              "is at /, the metrics at /metrics. Every error answers "
                              '`{"error": {"status", "message"}}` with a gRPC status name.')
    app.state.transmitter, app.state.prometheus_url = transmitter, prometheus_url.rstrip("/")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.max_body_bytes = max_body_bytes
    # Added before `count`, so inside it: count sees (and counts) the 413; nothing between them reads the body.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        size = request.headers.get("content-length", "")
        if size.isdigit() and int(size) > max_body_bytes:
            response = _error(413, "RESOURCE_EXHAUSTED", f"the body is {size} bytes, more than {max_body_bytes}")
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", None) or ("/static" if request.url.path.startswith("/static/") else "other")
        HTTP_REQUESTS.labels(path, request.method, str(response.status_code)).inc()
        HTTP_SECONDS.labels(path).observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError):
        return _error(e.http_status, e.status, e.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError):
        return _error(422, "INVALID_ARGUMENT", _validation_message(e.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException):
        # Starlette's own answers (unknown path 404, wrong method 405, a body it cannot parse 400), same shape.
        names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED"}
        try:
            name = names.get(e.status_code) or HTTPStatus(e.status_code).name
        except ValueError:
            name = "UNKNOWN"
        return _error(e.status_code, name, str(e.detail))

    def send(body: BaseModel, image: bytes | None, audio: bytes | None, token: str | None = None) -> dict:
        if not (body.text or image or audio):
            raise ApiError(400, "INVALID_ARGUMENT", "give at least one of text, image, audio")
        values = {o.name: getattr(body, o.name) for o in options.REQUEST_OPTIONS if o.type is not bytes}
        values.update(text=body.text or None, question=body.question or None, image=image, audio=audio)
        try:
            req = client.build_request(**values)
        except ValueError as e:
            raise ApiError(400, "INVALID_ARGUMENT", str(e)) from None
        try:
            result = tx.send(req, timeout_s=body.timeout_s, token=token)
        except client.RpcError as e:
            status, message = client.error_status(e)
            raise ApiError(HTTP_STATUS.get(status, 502), status, message) from None
        return _finite(client.result_to_json(result))

    @app.post("/v1/send", summary="Send payloads (JSON)", tags=["send"], response_model=None,
              responses={200: {"model": SendResult, "description": "the result"}, **SEND_ERRORS},
              description="The JSON twin of `unitocom send --json`: the same options in (files base64-coded as "
                          "`image_b64` / `audio_b64`), the same object out, plus `image_png_b64` / `audio_wav_b64` "
                          "per output. Give at least one of text, image, audio.")
    def send_json(body: SendBody, request: Request) -> JSONResponse:
        return JSONResponse(send(body, _b64("image_b64", body.image_b64), _b64("audio_b64", body.audio_b64),
                                 _bearer(request)))

    @app.post("/v1/send/form", summary="Send payloads (multipart form)", tags=["send"], response_model=None,
              responses={200: {"model": SendResult, "description": "the result"}, **SEND_ERRORS},
              description="The same as /v1/send with the files as multipart/form-data parts (what the web page "
                          "posts).")
    async def send_form(body: Annotated[SendForm, Form(media_type="multipart/form-data")],
                        request: Request) -> JSONResponse:
        img, aud = await _read_part(body.image, "image"), await _read_part(body.audio, "audio")
        # The gRPC call blocks: keep the event loop free.
        return JSONResponse(await run_in_threadpool(send, body, img, aud, _bearer(request)))

    @app.get("/v1/quality", summary="Task quality versus SNR by scheme (from Prometheus)", tags=["observe"],
             responses=error_responses(400, 422, 503))
    def quality(metric: str = Query("exact_match", pattern=METRIC,
                                    description="a quality key: exact_match | decoded | wer | psnr_db | ..."),
                channel: QualityChannel = Query("", description="channel model; empty: all")) -> dict:
        if not app.state.prometheus_url:
            raise ApiError(503, "UNAVAILABLE", "no Prometheus configured (start the gateway with --prometheus-url, "
                                               "or `unitocom up --with-prometheus --with-gateway`)")
        try:
            return _finite(prometheus.quality_curves(app.state.prometheus_url, metric, str(channel)))
        except ValueError as e:
            raise ApiError(400, "INVALID_ARGUMENT", str(e)) from None
        except prometheus.PrometheusError as e:
            raise ApiError(503, "UNAVAILABLE", str(e)) from None

    @app.get("/v1/options", summary="The send options: names, types, defaults, bounds, values", tags=["send"])
    def send_options() -> dict:
        return {"options": options.describe(), **client.choices(), "prometheus": bool(app.state.prometheus_url)}

    @app.get("/v1/samples/image.png", summary="A sample photograph to send", tags=["send"],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def sample_image() -> Response:
        return Response(_sample_image(), media_type="image/png")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="The gateway runs", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="The transmitter behind the gateway is SERVING", tags=["health"],
             response_model=Readiness,
             responses={503: {"model": Readiness, "description": "the transmitter is not SERVING"}})
    def readyz() -> JSONResponse:
        status = client.health(transmitter, "unitocom.v1.Transmitter", tls=tls)
        return JSONResponse({"transmitter": transmitter, "status": status},
                            status_code=200 if status == "SERVING" else 503)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


@functools.lru_cache(maxsize=1)
def _sample_image() -> bytes:
    from unitocom.demo import photograph
    return photograph(128)
