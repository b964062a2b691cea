"""Admission control: excess work refused at once, health never refused or queued, no work after a deadline."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import admission

SERVICE = "test.Busy"


class Busy:
    """A service whose calls block until released: it saturates on demand."""

    def __init__(self):
        self.release = threading.Event()
        self.started = 0
        self.lock = threading.Lock()

    def work(self, request: bytes, context) -> bytes:
        with self.lock:
            self.started += 1
        self.release.wait(10)
        return request

    def stream(self, request: bytes, context):
        for i in range(3):
            yield bytes([i])


@pytest.fixture
def busy_server():
    svc = Busy()
    gate = admission.Admission("busy", workers=1, queue=1)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=admission.pool_size(1, 1)), interceptors=[gate])
    ident = lambda b: b  # noqa: E731 - raw bytes in and out
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "Work": grpc.unary_unary_rpc_method_handler(svc.work, ident, ident),
        "Stream": grpc.unary_stream_rpc_method_handler(svc.stream, ident, ident)})])
    hs = health.HealthServicer()
    hs.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield svc, gate, channel
    svc.release.set()
    channel.close()
    server.stop(0)


def _work(channel, timeout: float = 10.0):
    return channel.unary_unary(f"/{SERVICE}/Work").future(b"x", timeout=timeout)


def _wait_for(predicate, timeout_s: float = 5.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout_s, "condition not reached"
        time.sleep(0.01)


def test_excess_work_is_refused_and_health_answers_at_once(busy_server):
    svc, gate, channel = busy_server
    computing, waiting = _work(channel), _work(channel)
    _wait_for(lambda: svc.started == 1 and gate.waiting == 1)
    with pytest.raises(grpc.RpcError) as e:
        _work(channel).result()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "busy" in e.value.details() and "1 computing" in e.value.details()
    stub = health_pb2_grpc.HealthStub(channel)
    # Never refused, never queued behind the work: the work is held until `release`, so a check queued behind it
    # would miss its deadline (DEADLINE_EXCEEDED) instead of answering.
    for _ in range(20):
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status == health_pb2.HealthCheckResponse.SERVING
    svc.release.set()
    assert computing.result() == b"x" and waiting.result() == b"x"
    assert svc.started == 2 and gate.waiting == 0


def test_a_call_whose_deadline_passes_in_the_queue_is_never_started(busy_server):
    svc, gate, channel = busy_server
    computing = _work(channel)
    _wait_for(lambda: svc.started == 1)
    with pytest.raises(grpc.RpcError) as e:
        _work(channel, timeout=0.3).result()
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    svc.release.set()
    assert computing.result() == b"x"
    time.sleep(0.1)
    assert svc.started == 1, "the expired call's handler ran"
    assert gate.waiting == 0


def test_streaming_responses_pass_and_release_their_turn(busy_server):
    svc, gate, channel = busy_server
    call = channel.unary_stream(f"/{SERVICE}/Stream")
    for _ in range(3):  # more calls than turns: each must give its turn back when its stream ends
        assert [m for m in call(b"", timeout=5)] == [b"\x00", b"\x01", b"\x02"]
    assert gate.waiting == 0


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        admission.Admission("x", workers=0, queue=1)
