"""The gateway driven from its own OpenAPI schema (schemathesis, property-based): every operation, requests drawn
from the schema (schema-valid ones, and ones that break it).

Found nowhere: a status the operation does not document, an answer that does not match its documented body or
media type, a schema-valid request refused as schema-invalid (422: the schema and the validator disagree), a 5xx
that is not a documented fault upstream, a fault of the services (INTERNAL/UNKNOWN) on a schema-valid request, or
an error message that shows Python's internals.

The default run puts a transmitter behind the gateway that validates each Request with the services' own rules
(unitocom.stages.request) and answers at once, so that 25 draws per operation take seconds; `-m slow` drives the
real services (transmitter, channel, base station) the same way.
"""
from __future__ import annotations

import math
import re
from concurrent import futures

import grpc
import pytest
import schemathesis
from fastapi.testclient import TestClient
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from services.gateway.app import create_app
from unitocom import config, wire
from unitocom.messages import Modality
from unitocom.stages import request as request_stage
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

MAX_EXAMPLES = 25  # per operation: the default suite stays fast
UPSTREAM_FAULTS = {501, 502, 503, 504}  # the 5xx the gateway may answer, each documented with its meaning
PYTHON_INTERNALS = re.compile(r"<[\w.]+ object at 0x|Traceback \(most recent call last\)|<class '")

CONFIG = SchemathesisConfig.from_dict({
    # Random draws (fuzzing), schema-valid and schema-breaking: the exhaustive coverage phase would send hundreds of
    # requests per operation.
    "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}, "fuzzing": {"enabled": True}},
    "generation": {"mode": "all"},
})
SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


class Gateway:
    """The ASGI app under test. The schema is read when this module is imported; the gateway is pointed at a
    transmitter by a fixture once one runs (the schema does not depend on where it runs)."""

    def __init__(self):
        self.app = create_app("127.0.0.1:1")

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


class CheckingTransmitter(pb_grpc.TransmitterServicer):
    """A transmitter that validates like the real one (same code, same statuses) and sends nothing: the result
    echoes the payloads. An image comes back as an exact copy, whose PSNR is infinite, as the real one reports."""

    def __init__(self):
        self.cfg = config.load("tiny")

    def Send(self, request, context):
        try:
            _, payloads = request_stage.validate(request_stage.from_wire(request), self.cfg)
        except request_stage.RequestError as e:
            context.abort(getattr(grpc.StatusCode, e.code.upper()), str(e))
        outputs = [pb.ModalityOutput(modality=wire.enum_to_pb(p.modality), decoded=True,
                                     text=p.value if p.modality == Modality.TEXT else "") for p in payloads]
        quality = {"decoded": 1.0}
        if any(p.modality == Modality.IMAGE for p in payloads):
            quality["psnr_db"] = math.inf
        texts = [o.text for o in outputs if o.modality == pb.TEXT]
        return pb.Result(request_id=request_stage.request_id(request), task=request.task, scheme=request.link.scheme,
                         output_text=texts[0] if texts else "", outputs=outputs, quality=quality,
                         snr_db=request.link.snr_db, channel=request.link.channel)


@pytest.fixture(scope="module")
def checking_transmitter():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_TransmitterServicer_to_server(CheckingTransmitter(), server)
    h = health.HealthServicer()
    h.set("unitocom.v1.Transmitter", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(h, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def check(case, timeout_s: float) -> None:
    response = case.call(timeout=timeout_s)
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance])
    status = response.status_code
    what = f"{case.method} {case.path} ({case.meta.generation.mode.value}) -> {status}: {response.content[:300]!r}"
    positive = case.meta.generation.mode == GenerationMode.POSITIVE
    assert status != 500, what
    if status >= 500:
        assert status in UPSTREAM_FAULTS, what
    if status >= 400 and response.headers.get("content-type", [""])[0].startswith("application/json"):
        err = response.json().get("error")
        assert err is not None and set(err) == {"status", "message"}, what
        assert not PYTHON_INTERNALS.search(err["message"]), what
        if positive:
            assert status != 422, f"a schema-valid request refused as schema-invalid: {what}"
            assert err["status"] not in ("INTERNAL", "UNKNOWN", "DATA_LOSS"), f"the services failed: {what}"


CHECKED = Gateway()
checked_schema = schemathesis.openapi.from_asgi("/openapi.json", CHECKED, config=CONFIG)


@pytest.fixture(scope="module")
def gateway_in_front_of_a_checking_transmitter(checking_transmitter):
    CHECKED.app = create_app(checking_transmitter)
    yield


@checked_schema.parametrize()
@SETTINGS
def test_every_operation_answers_what_its_schema_says(case, gateway_in_front_of_a_checking_transmitter):
    check(case, timeout_s=30)


REAL = Gateway()
real_schema = schemathesis.openapi.from_asgi("/openapi.json", REAL, config=CONFIG)


@pytest.fixture(scope="module")
def gateway_in_front_of_the_services(services):
    cfg, _ = services
    REAL.app = create_app(cfg.address("transmitter").grpc)
    yield


@pytest.mark.slow
@real_schema.parametrize()
@SETTINGS
def test_every_operation_answers_what_its_schema_says_with_the_real_services(case, gateway_in_front_of_the_services):
    check(case, timeout_s=660)  # a drawn timeout_s may be up to 600 s


def test_the_schema_covers_every_operation():
    """The property tests above run for each of these (a route kept out of the schema would not be drawn)."""
    spec = TestClient(create_app("127.0.0.1:1")).get("/openapi.json").json()
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert ops == {("POST", "/v1/send"), ("POST", "/v1/send/form"), ("GET", "/v1/quality"), ("GET", "/v1/options"),
                   ("GET", "/v1/samples/image.png"), ("GET", "/healthz"), ("GET", "/readyz")}
