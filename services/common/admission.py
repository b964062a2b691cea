"""Admission control that never refuses health or reflection, and that does not start work past a deadline.

gRPC's own `maximum_concurrent_rpcs` counts every call, health probes included, and its thread pool runs them
in arrival order: a service busy with 32 calls answered its health probe with RESOURCE_EXHAUSTED (a Kubernetes
probe would restart a pod for being busy), and with 8 workers busy a probe waited behind model work.

Here the server's pool is larger than the work it admits: at most `workers` calls compute at once, at most
`queue` more wait for a turn (beyond that: RESOURCE_EXHAUSTED at once), and exempt methods (health,
reflection) always find a free thread because the pool keeps `RESERVED_THREADS` beyond `workers + queue`.
A call waits for its turn no longer than its deadline (DEADLINE_EXCEEDED; the work is never started), and a
call its client cancelled while it waited is dropped (CANCELLED).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc

from services.common.interceptors import EXEMPT_PREFIXES, wrap_handler

RESERVED_THREADS = 4  # for exempt calls: a health probe needs one thread, never a turn


def pool_size(workers: int, queue: int) -> int:
    """Threads the server needs: every admitted call holds one (computing or waiting), plus the reserve."""
    return workers + queue + RESERVED_THREADS


class Admission(grpc.ServerInterceptor):
    """At most `workers` calls compute, at most `queue` more wait; health and reflection pass untouched.

    `on_state(admitted, computing)` is called on every change (metrics)."""

    def __init__(self, service: str, workers: int, queue: int,
                 on_state: Callable[[int, int], None] | None = None):
        if workers < 1 or queue < 0:
            raise ValueError(f"workers >= 1 and queue >= 0, got {workers}, {queue}")
        self.service, self.workers, self.limit = service, workers, workers + queue
        self._turns = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._admitted = 0
        self._computing = 0
        self._on_state = on_state or (lambda admitted, computing: None)

    @property
    def waiting(self) -> int:
        """Calls admitted that wait for a turn (the backlog no handler has started)."""
        with self._lock:
            return self._admitted - self._computing

    # -- the call's life: admit (or refuse), wait for a turn within the deadline, compute, release -----------
    def _admit(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            if self._admitted >= self.limit:
                full = True
            else:
                full = False
                self._admitted += 1
                self._on_state(self._admitted, self._computing)
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self.service} is busy: {self.limit} calls in flight ({self.workers} computing, "
                          f"{self.limit - self.workers} waiting); retry later")
        remaining = context.time_remaining()
        if not self._turns.acquire(timeout=remaining if remaining is not None else None):
            self._leave(computing=False)
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"{self.service}: the deadline passed while the call waited for a worker "
                          f"({self.workers} busy); its work was not started")
        if not context.is_active():  # the client gave up while the call waited: do not compute for nobody
            self._turns.release()
            self._leave(computing=False)
            context.abort(grpc.StatusCode.CANCELLED, f"{self.service}: cancelled by the client before its turn")
        with self._lock:
            self._computing += 1
            self._on_state(self._admitted, self._computing)

    def _leave(self, computing: bool) -> None:
        with self._lock:
            self._admitted -= 1
            if computing:
                self._computing -= 1
            self._on_state(self._admitted, self._computing)

    def _done(self) -> None:
        self._turns.release()
        self._leave(computing=True)

    # -- wrapping each kind of handler -------------------------------------------------------------------------
    def _unary_response(self, behaviour):
        def run(request_or_iterator, context):
            self._admit(context)
            try:
                return behaviour(request_or_iterator, context)
            finally:
                self._done()
        return run

    def _stream_response(self, behaviour):
        def run(request_or_iterator, context) -> Iterator:
            self._admit(context)
            try:
                yield from behaviour(request_or_iterator, context)
            finally:
                self._done()
        return run

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(EXEMPT_PREFIXES):
            return handler
        return wrap_handler(handler, lambda behaviour, streaming:
                            self._stream_response(behaviour) if streaming else self._unary_response(behaviour))
