"""What every UniToCom service shares: a gRPC server with health, reflection, message caps and a concurrency
limit, a Prometheus /metrics endpoint, error mapping to precise statuses, and graceful shutdown on SIGTERM.
"""
from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common import admission, metrics, security
from unitocom import config as config_mod
from unitocom.stages.request import RequestError
from unitocom.v1 import unitocom_pb2 as pb

log = logging.getLogger("unitocom.service")

_GRPC_CODES = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    # a session's (unitocom.stages.session): its table full, its or the part's deadline passed, its caller gone,
    # or its task failed in the call that ran it for every part; a superposed group over the channel's memory cap
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "cancelled": grpc.StatusCode.CANCELLED,
    "internal": grpc.StatusCode.INTERNAL,
}


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code, self.details = code, details


@contextmanager
def rpc(service: str, method: str, context: grpc.ServicerContext):
    """Count and time one RPC; turn RequestError and next-hop failures into precise statuses.

    Yields a `metrics.Call`: the handler `describe`s it with the request (scheme, task, modality label the
    counters) and `observe`s the Result (stage latencies, channel uses, quality)."""
    call = metrics.Call(service, method)
    metrics.IN_FLIGHT.labels(service).inc()
    t0 = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        yield call
    except RequestError as e:
        code = _GRPC_CODES.get(e.code, grpc.StatusCode.INVALID_ARGUMENT)
        context.abort(code, str(e))
    except Abort as e:
        code = e.code
        if code == grpc.StatusCode.UNAVAILABLE:
            # a next hop lost mid-call, after this service's own retries to it: a negative pushback tells the
            # caller's retry policy not to try again, or the hops' retries would multiply (5 x 5 attempts)
            context.set_trailing_metadata((("grpc-retry-pushback-ms", "-1"),))
        context.abort(e.code, e.details)
    except Exception:
        code = grpc.StatusCode.INTERNAL
        log.exception("%s.%s failed", service, method)
        context.abort(grpc.StatusCode.INTERNAL, f"{service}: internal error in {method} (see the service log)")
    finally:
        metrics.IN_FLIGHT.labels(service).dec()
        metrics.record_request(call, code.name, time.perf_counter() - t0)


def next_hop_error(name: str, target: str, err: grpc.RpcError) -> Abort:
    """Map a failed call to the next service: UNAVAILABLE names the hop; its own statuses pass through."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return Abort(code, f"{name} at {target} is unavailable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and details in ("", "Deadline Exceeded"):
        # gRPC's own timer fired: name the hop. A hop's own DEADLINE_EXCEEDED (a session whose part never came)
        # says more than that, and passes through below.
        return Abort(code, f"deadline exceeded waiting for {name} at {target}")
    return Abort(code, details)


def check_alive(context: grpc.ServicerContext, before: str) -> None:
    """Stop a call's work between stages once nobody waits for it: the client cancelled (CANCELLED) or its
    deadline passed (DEADLINE_EXCEEDED). Checked at stage boundaries: a stage already running finishes."""
    if not context.is_active():
        raise Abort(grpc.StatusCode.CANCELLED, f"cancelled by the caller before {before}")
    t = context.time_remaining()
    if t is not None and t <= 0:
        raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the deadline passed before {before}; not started")


def call_next_hop(method, request, context: grpc.ServicerContext, default_deadline_s: float):
    """Call the next service within the caller's deadline (less a margin, `security.next_hop_timeout`), and
    cancel that call when the caller cancels ours (gRPC Python does not propagate cancellation by itself: the next
    hop would compute for nobody)."""
    future = method.future(request, timeout=security.next_hop_timeout(context, default_deadline_s))
    context.add_callback(future.cancel)
    return future.result()


def channel_options(cfg: config_mod.Config) -> list[tuple[str, int | str]]:
    n = cfg.limits.max_message_bytes
    # round_robin: a next hop named `dns:///basestation.unitocom.svc.cluster.local:50053` (a headless Kubernetes
    # Service, one A record per replica) gets every replica connected and each RPC sent to the next one. With one
    # address it behaves as the default pick_first. Servers ignore the option.
    return [("grpc.max_send_message_length", n), ("grpc.max_receive_message_length", n),
            ("grpc.lb_policy_name", "round_robin")]


def base_parser(name: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=f"UniToCom {name} service (gRPC)")
    ap.add_argument("--preset", default="tiny", help="model preset (tiny | paper)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    ap.add_argument("--port", type=int, default=None, help="gRPC port (default from the config)")
    ap.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port (0: none)")
    ap.add_argument("--max-message-bytes", type=int, default=None,
                    help="cap on one gRPC message (larger ones get RESOURCE_EXHAUSTED)")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--warmup-timeout", type=float, default=None, metavar="S",
                    help="exit non-zero when the warm-up (model loading, one request through every path) has not "
                         "finished after S seconds, so that a supervisor restarts the process (default from the "
                         "config: 600)")
    ap.add_argument("--image-tokens", type=_positive_int, default=None, metavar="N",
                    help="image tokens S_v (default: the preset's): the transmitter sends with image-<objective>-sN "
                         "and the base station reads them with mllm-<objective>-sN.safetensors (give the same N to "
                         "both; Fig. 3)")
    ap.add_argument("--mllm-path", default=None,
                    help="base station: the MLLM file to run instead of the installed one (e.g. runs/fig3/s16/"
                         "mllm.safetensors)")
    ap.add_argument("--spoken-mllm-path", default=None,
                    help="base station: the MLLM file that reads VQA requests whose question is spoken (audio), "
                         "instead of the installed mllm-<objective>-spoken.safetensors")
    add_security_args(ap)
    return ap


def add_security_args(ap: argparse.ArgumentParser) -> None:
    """--tls-dir and --auth-tokens (services/common/security.py does the work)."""
    ap.add_argument("--tls-dir", default=None, metavar="DIR",
                    help="serve TLS and call the next hop over mutual TLS with the certificates in DIR (ca.pem, "
                         "<service>.pem, <service>-key.pem; make them with `unitocom certs --out DIR`). The "
                         "channel then admits only the transmitter's certificate, the base station only the "
                         "channel's. Default: plaintext, for local experiments only")
    ap.add_argument("--auth-tokens", default=None, metavar="FILE",
                    help="transmitter: admit only clients sending metadata 'authorization: Bearer <token>' with a "
                         "token of FILE (one per line, # comments); missing: UNAUTHENTICATED, unknown: "
                         "PERMISSION_DENIED. Health is exempt")
    ap.add_argument("--health-port", type=int, default=0, metavar="PORT",
                    help="also answer grpc.health.v1 (and nothing else) in plaintext on PORT, on its own threads: "
                         "for Kubernetes gRPC probes, which cannot speak TLS (0: none, the default)")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def config_from_args(args: argparse.Namespace) -> config_mod.Config:
    cfg = config_mod.load(args.preset, image_tokens=getattr(args, "image_tokens", None),
                          mllm_path=getattr(args, "mllm_path", None),
                          spoken_mllm_path=getattr(args, "spoken_mllm_path", None))
    if args.max_message_bytes:
        cfg = cfg.replace(limits=dataclasses.replace(cfg.limits, max_message_bytes=args.max_message_bytes))
    if getattr(args, "warmup_timeout", None) is not None:
        if not args.warmup_timeout > 0:
            raise SystemExit(f"--warmup-timeout must be positive, got {args.warmup_timeout}")
        cfg = cfg.replace(limits=dataclasses.replace(cfg.limits, warmup_timeout_s=args.warmup_timeout))
    return cfg


def _warm_up_or_exit(name: str, warmup: Callable[[], None], timeout_s: float) -> None:
    """Run `warmup`; exit the process non-zero when it raises or is still running after `timeout_s` (a stuck
    warm-up, e.g. a lock or a hung device, would otherwise leave a process that never serves and never exits,
    so no supervisor would restart it). A thread cannot be stopped, hence os._exit for the stuck case."""
    error: list[BaseException] = []

    def run() -> None:
        try:
            warmup()
        except BaseException as e:  # noqa: BLE001 - whatever it was, this process must not stay up half-made
            log.exception("warm-up failed")
            error.append(e)

    t = threading.Thread(target=run, name="warm-up", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        msg = f"{name}: warm-up still running after {timeout_s:g} s (--warmup-timeout); exiting so that it is restarted"
        log.error(msg)
        print(msg, file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(3)
    if error:
        e = error[0]
        raise SystemExit(f"{name}: warm-up failed ({type(e).__name__}: {e}); exiting so that it is restarted")


def serve(name: str, args: argparse.Namespace, cfg: config_mod.Config,
          register: Callable[[grpc.Server], None], service_full_name: str, warmup: Callable[[], None]) -> None:
    """Run until SIGTERM/SIGINT. `warmup` runs before the port opens, so no call reaches the service before it
    reports SERVING (a call racing the warm-up's lazy imports once failed INTERNAL); a warm-up that raises exits
    the process non-zero, so the supervisor (launcher, compose, Kubernetes) restarts it instead of keeping a
    process alive that answers nothing. Health reports NOT_SERVING again while draining."""
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    addr = cfg.address(name)
    port = args.port if args.port is not None else addr.port
    metrics_port = args.metrics_port if args.metrics_port is not None else addr.metrics_port
    workers = cfg.limits.max_workers
    queue = max(0, cfg.limits.max_concurrent_rpcs - workers)
    gate = admission.Admission(name, workers, queue)
    metrics.watch_admission(name, gate)
    metrics.service_info(name, cfg.preset.name)
    creds, guard = security.plan(name, getattr(args, "tls_dir", None), getattr(args, "auth_tokens", None))
    # no maximum_concurrent_rpcs: it counted health probes too; `gate` refuses excess work and exempts them.
    # The guard runs first: a caller refused for who it is never takes a place in the queue.
    executor = futures.ThreadPoolExecutor(max_workers=admission.pool_size(workers, queue))
    server = grpc.server(executor, options=channel_options(cfg), interceptors=[guard, gate])
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (service_full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    for svc in ("", service_full_name):
        health_servicer.set(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
    bound = (server.add_secure_port(f"{args.host}:{port}", creds) if creds is not None
             else server.add_insecure_port(f"{args.host}:{port}"))
    if bound == 0:
        raise SystemExit(f"{name}: cannot bind {args.host}:{port}")
    if metrics_port:
        start_http_server(metrics_port, addr=args.host)
    _warm_up_or_exit(name, warmup, cfg.limits.warmup_timeout_s)
    # What warm-up loaded (models, codecs, stubs) lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it, which paused every thread (health answers too) for 100 ms and more.
    gc.collect()
    gc.freeze()
    health_server = _health_only_server(health_servicer, args.host, getattr(args, "health_port", 0))
    server.start()
    log.info("listening on %s:%d (%s), metrics on %s", args.host, bound, "TLS" if creds else "plaintext",
             metrics_port or "off")
    for svc in ("", service_full_name):
        health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    log.info("SERVING")

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: draining for up to %.1f s", signum, cfg.limits.grace_s)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `kill -USR1 PID` writes every thread's stack to the log (stderr) and the service goes on: what a process
    # that is slow to answer or to stop is doing, without a debugger
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop.wait()
    t0 = time.monotonic()
    health_servicer.enter_graceful_shutdown()
    server.stop(cfg.limits.grace_s).wait()
    log.info("drained in %.2f s", time.monotonic() - t0)
    if health_server is not None:
        health_server.stop(0)
    log.info("stopped")


def _health_only_server(servicer: health.HealthServicer, host: str, port: int) -> grpc.Server | None:
    """A plaintext server with the service's HealthServicer alone (the same statuses: SERVING once warm,
    NOT_SERVING while draining), for probes that cannot speak TLS; its own two threads, so a busy service still
    answers it. Health says nothing a caller could misuse, so it needs neither TLS nor identity."""
    if not port:
        return None
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, s)
    if s.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot bind the health port {host}:{port}")
    s.start()
    return s


def warm_request(cfg: config_mod.Config) -> pb.Request:
    """A small real request that exercises codecs and decoders once, so the first client call is not the slow one."""
    return pb.Request(task=pb.RECONSTRUCT, payloads=[pb.Payload(text="warm-up")],
                      link=pb.LinkSettings(scheme=pb.TRADITIONAL, snr_db=30.0))
