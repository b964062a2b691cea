"""HTTP gateway: the transmitter's Send for clients that speak HTTP, a web page, and the accuracy-vs-SNR curve.

Every call goes through the client SDK (unitocom.client), the one place that knows the protos: the JSON
endpoint takes the options of `unitocom send` and answers what `unitocom send --json` prints, plus the
reconstructed media base64-coded. gRPC statuses become HTTP statuses (INVALID_ARGUMENT 400, UNIMPLEMENTED 501,
UNAVAILABLE 503, DEADLINE_EXCEEDED 504, ...) with the service's message in {"error": {"status", "message"}}.
"""
from __future__ import annotations

import base64
import binascii
import functools
import pathlib
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field

from unitocom import client, prometheus

STATIC = pathlib.Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 32 * 1024 * 1024

HTTP_STATUS = {  # gRPC status -> HTTP status (google.rpc code mapping; upstream faults are 502)
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409, "ABORTED": 409, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504, "INTERNAL": 502, "UNKNOWN": 502, "DATA_LOSS": 502,
}

HTTP_REQUESTS = Counter("unitocom_http_requests_total", "HTTP requests answered by the gateway",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("unitocom_http_request_seconds", "HTTP request wall time in the gateway", ["route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0))


class SendBody(BaseModel):
    """The options of `unitocom send`; media as base64 strings."""

    text: str | None = Field(None, description="text payload")
    question: str | None = Field(None, description="question text (VQA)")
    image_b64: str | None = Field(None, description="image file, base64 (any format Pillow reads)")
    audio_b64: str | None = Field(None, description="audio file, base64 (WAV or FLAC)")
    task: str = Field("reconstruct", description="reconstruct | vqa | t2i | asr")
    scheme: str = Field("traditional", description="traditional | unitocom | vae | semcom")
    snr_db: float = Field(20.0, description="Es/N0 in dB against the power constraint P")
    channel: str = Field("awgn", description="awgn | rayleigh | rician")
    fading: str = Field("block", description="block | fast")
    block_length: int = Field(0, ge=0, description="symbols per fading block (0: one h per stream)")
    csi: str = Field("perfect", description="perfect | estimated")
    jpeg_quality: int = Field(0, ge=0, le=95, description="JPEG quality 1..95 (traditional; 0: default)")
    seed: int = Field(0, ge=0, description="seed of the channel draws")
    answer: str = Field("", description="ground-truth answer (scored by the services)")
    transcript: str = Field("", description="ground-truth transcript (scored by the services)")
    timeout_s: float = Field(120.0, gt=0, le=600, description="deadline, propagated along the chain")


class ApiError(Exception):
    def __init__(self, http_status: int, status: str, message: str):
        super().__init__(message)
        self.http_status, self.status, self.message = http_status, status, message


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


def create_app(transmitter: str = "127.0.0.1:50051", prometheus_url: str = "") -> FastAPI:
    tx = client.Client(transmitter)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        tx.close()

    app = FastAPI(title="UniToCom gateway", version="0.1.0", lifespan=lifespan,
                  description="HTTP front of the UniToCom testbed: send text, an image or audio through the "
                              "transmitter, channel emulator and base station, and read the result. The web page "
                              "is at /, the metrics at /metrics.")
    app.state.transmitter, app.state.prometheus_url = transmitter, prometheus_url.rstrip("/")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", None) or ("/static" if request.url.path.startswith("/static/") else "other")
        HTTP_REQUESTS.labels(path, request.method, str(response.status_code)).inc()
        HTTP_SECONDS.labels(path).observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError):
        return JSONResponse({"error": {"status": e.status, "message": e.message}}, status_code=e.http_status)

    def send(body: SendBody, image: bytes | None, audio: bytes | None) -> dict:
        if not (body.text or image or audio):
            raise ApiError(400, "INVALID_ARGUMENT", "give at least one of text, image, audio")
        try:
            req = client.build_request(
                text=body.text or None, question=body.question or None, image=image, audio=audio, task=body.task,
                scheme=body.scheme, snr_db=body.snr_db, channel=body.channel, fading=body.fading, seed=body.seed,
                block_length=body.block_length, csi=body.csi, jpeg_quality=body.jpeg_quality,
                answer=body.answer, transcript=body.transcript)
        except ValueError as e:
            raise ApiError(400, "INVALID_ARGUMENT", str(e)) from None
        try:
            result = tx.send(req, timeout_s=body.timeout_s)
        except client.RpcError as e:
            status, message = client.error_status(e)
            raise ApiError(HTTP_STATUS.get(status, 502), status, message) from None
        return client.result_to_json(result)

    @app.post("/v1/send", summary="Send payloads (JSON)", tags=["send"],
              description="The JSON twin of `unitocom send --json`: the same options in, the same object out, plus "
                          "`image_png_b64` / `audio_wav_b64` per output.")
    def send_json(body: SendBody) -> dict:
        return send(body, _b64("image_b64", body.image_b64), _b64("audio_b64", body.audio_b64))

    @app.post("/v1/send/form", summary="Send payloads (multipart form)", tags=["send"],
              description="The same as /v1/send with files uploaded as multipart/form-data (what the web page posts).")
    async def send_form(
        text: str | None = Form(None), question: str | None = Form(None),
        image: UploadFile | None = File(None, description="image file"),
        audio: UploadFile | None = File(None, description="WAV or FLAC file"),
        task: str = Form("reconstruct"), scheme: str = Form("traditional"), snr_db: float = Form(20.0),
        channel: str = Form("awgn"), fading: str = Form("block"), block_length: int = Form(0, ge=0),
        csi: str = Form("perfect"), jpeg_quality: int = Form(0, ge=0, le=95), seed: int = Form(0, ge=0),
        answer: str = Form(""), transcript: str = Form(""), timeout_s: float = Form(120.0, gt=0, le=600),
    ) -> dict:
        async def read(f: UploadFile | None, name: str) -> bytes | None:
            if f is None or not f.filename:
                return None
            data = await f.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise ApiError(413, "RESOURCE_EXHAUSTED", f"{name}: more than {MAX_UPLOAD_BYTES} bytes")
            return data or None
        body = SendBody(text=text, question=question, task=task, scheme=scheme, snr_db=snr_db, channel=channel,
                        fading=fading, block_length=block_length, csi=csi, jpeg_quality=jpeg_quality, seed=seed,
                        answer=answer, transcript=transcript, timeout_s=timeout_s)
        img, aud = await read(image, "image"), await read(audio, "audio")
        from starlette.concurrency import run_in_threadpool  # the gRPC call blocks: keep the event loop free
        return await run_in_threadpool(send, body, img, aud)

    @app.get("/v1/quality", summary="Task quality versus SNR by scheme (from Prometheus)", tags=["observe"])
    def quality(metric: str = Query("exact_match", description="exact_match | decoded | wer | psnr_db | ..."),
                channel: str = Query("", description="awgn | rayleigh | rician; empty: all")) -> dict:
        if not app.state.prometheus_url:
            raise ApiError(503, "UNAVAILABLE", "no Prometheus configured (start the gateway with --prometheus-url, "
                                               "or `unitocom up --with-prometheus --with-gateway`)")
        try:
            return prometheus.quality_curves(app.state.prometheus_url, metric, channel)
        except ValueError as e:
            raise ApiError(400, "INVALID_ARGUMENT", str(e)) from None
        except prometheus.PrometheusError as e:
            raise ApiError(503, "UNAVAILABLE", str(e)) from None

    @app.get("/v1/options", summary="Values each option takes", tags=["send"])
    def options() -> dict:
        return {**client.choices(), "prometheus": bool(app.state.prometheus_url)}

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

    @app.get("/readyz", summary="The transmitter behind the gateway is SERVING", tags=["health"])
    def readyz() -> JSONResponse:
        status = client.health(transmitter, "unitocom.v1.Transmitter")
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
