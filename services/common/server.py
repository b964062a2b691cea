"""What every UniToCom service shares: a gRPC server with health, reflection, message caps and a concurrency
limit, a Prometheus /metrics endpoint, error mapping to precise statuses, and graceful shutdown on SIGTERM.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from unitocom import config as config_mod
from unitocom.stages.request import RequestError
from unitocom.v1 import unitocom_pb2 as pb

log = logging.getLogger("unitocom.service")

# Buckets from 1 ms to 60 s: a tiny CPU preset and a GPU both land inside.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUESTS = Counter("unitocom_requests_total", "RPCs handled, by outcome", ["service", "method", "code"])
RPC_SECONDS = Histogram("unitocom_rpc_seconds", "RPC wall time", ["service", "method"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("unitocom_stage_seconds", "Time per processing stage", ["service", "stage"],
                          buckets=LATENCY_BUCKETS)
CHANNEL_USES = Counter("unitocom_channel_uses_total", "Complex symbols handled", ["service"])
IN_FLIGHT = Gauge("unitocom_requests_in_flight", "RPCs being served now (queue depth)", ["service"])

_GRPC_CODES = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
}


def observe_timings(service: str, timings) -> None:
    for t in timings:
        if t.service == service:
            STAGE_SECONDS.labels(service, t.stage).observe(t.seconds)


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code, self.details = code, details


@contextmanager
def rpc(service: str, method: str, context: grpc.ServicerContext):
    """Count and time one RPC; turn RequestError and next-hop failures into precise statuses."""
    IN_FLIGHT.labels(service).inc()
    t0 = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        yield
    except RequestError as e:
        code = _GRPC_CODES.get(e.code, grpc.StatusCode.INVALID_ARGUMENT)
        context.abort(code, str(e))
    except Abort as e:
        code = e.code
        context.abort(e.code, e.details)
    except Exception:
        code = grpc.StatusCode.INTERNAL
        log.exception("%s.%s failed", service, method)
        context.abort(grpc.StatusCode.INTERNAL, f"{service}: internal error in {method} (see the service log)")
    finally:
        IN_FLIGHT.labels(service).dec()
        RPC_SECONDS.labels(service, method).observe(time.perf_counter() - t0)
        REQUESTS.labels(service, method, code.name).inc()


def next_hop_error(name: str, target: str, err: grpc.RpcError) -> Abort:
    """Map a failed call to the next service: UNAVAILABLE names the hop; its own statuses pass through."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return Abort(code, f"{name} at {target} is unavailable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Abort(code, f"deadline exceeded waiting for {name} at {target}")
    return Abort(code, details)


def remaining(context: grpc.ServicerContext, default_s: float) -> float:
    """The caller's deadline, propagated to the next hop (or the configured default when it set none)."""
    t = context.time_remaining()
    return default_s if t is None else max(0.001, t)


def channel_options(cfg: config_mod.Config) -> list[tuple[str, int]]:
    n = cfg.limits.max_message_bytes
    return [("grpc.max_send_message_length", n), ("grpc.max_receive_message_length", n)]


def base_parser(name: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=f"UniToCom {name} service (gRPC)")
    ap.add_argument("--preset", default="tiny", help="model preset (tiny | paper)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    ap.add_argument("--port", type=int, default=None, help="gRPC port (default from the config)")
    ap.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port (0: none)")
    ap.add_argument("--max-message-bytes", type=int, default=None,
                    help="cap on one gRPC message (larger ones get RESOURCE_EXHAUSTED)")
    ap.add_argument("--log-level", default="INFO")
    return ap


def config_from_args(args: argparse.Namespace) -> config_mod.Config:
    cfg = config_mod.load(args.preset)
    if args.max_message_bytes:
        cfg = cfg.replace(limits=dataclasses.replace(cfg.limits, max_message_bytes=args.max_message_bytes))
    return cfg


def serve(name: str, args: argparse.Namespace, cfg: config_mod.Config,
          register: Callable[[grpc.Server], None], service_full_name: str, warmup: Callable[[], None]) -> None:
    """Run until SIGTERM/SIGINT. Health reports NOT_SERVING until `warmup` has run, and again while draining."""
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    addr = cfg.address(name)
    port = args.port if args.port is not None else addr.port
    metrics_port = args.metrics_port if args.metrics_port is not None else addr.metrics_port
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=cfg.limits.max_workers),
                         options=channel_options(cfg), maximum_concurrent_rpcs=cfg.limits.max_concurrent_rpcs)
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (service_full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    for svc in ("", service_full_name):
        health_servicer.set(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
    bound = server.add_insecure_port(f"{args.host}:{port}")
    if bound == 0:
        raise SystemExit(f"{name}: cannot bind {args.host}:{port}")
    if metrics_port:
        start_http_server(metrics_port, addr=args.host)
    server.start()
    log.info("listening on %s:%d, metrics on %s", args.host, bound, metrics_port or "off")
    warmup()
    for svc in ("", service_full_name):
        health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    log.info("SERVING")

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: draining for up to %.1f s", signum, cfg.limits.grace_s)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(cfg.limits.grace_s).wait()
    log.info("stopped")


def warm_request(cfg: config_mod.Config) -> pb.Request:
    """A small real request that exercises codecs and decoders once, so the first client call is not the slow one."""
    return pb.Request(task=pb.RECONSTRUCT, payloads=[pb.Payload(text="warm-up")],
                      link=pb.LinkSettings(scheme=pb.TRADITIONAL, snr_db=30.0))
