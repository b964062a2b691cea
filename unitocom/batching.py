"""Dynamic micro-batching: many threads submit one item each, one worker thread runs them as a batch.

The base station serves each request on its own gRPC worker thread; the MLLM (and the learned receiver) run far
more work per second on a batch of B rows than on B batches of one, because a tiny model's forward is dominated
by per-call overhead (Python, dispatch, small GEMMs), not by arithmetic. A `MicroBatcher` lets the request threads
stay as they are: each calls `submit(item).result()` (or just `batcher(item)`) and blocks until its row is done,
while the worker gathers what has arrived into one call of the batch function.

Policy: the worker takes the first waiting item, then keeps gathering until it holds `max_batch` items or
`max_delay_ms` have passed since that first item was taken, whichever comes first. `max_batch=1` runs every item
alone at once (no waiting), which is the unbatched behaviour through the same code path.

Errors: the batch function returns one entry per item; an entry that is an exception fails that item only. If
the batch function itself raises (or returns the wrong number of entries), every item of that batch gets the
error. No item is ever dropped: `close()` stops new submissions and, by default, runs what is still queued.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("unitocom.batching")


_observer: Callable[[str, int], None] | None = None


def set_observer(fn: Callable[[str, int], None] | None) -> None:
    """Where batch sizes go: fn(stage, size) for every batch run (a service points it at its Prometheus
    histogram; the library itself knows nothing of metrics)."""
    global _observer
    _observer = fn


def observe(stage: str, size: int) -> None:
    """Report one batch of `size` items run for `stage` to the observer, if any."""
    if _observer is not None:
        _observer(stage, size)


class BatcherClosed(RuntimeError):
    """Submitted to a batcher that was closed (the service is shutting down)."""


@dataclass
class _Job(Generic[T]):
    item: T
    future: Future


_STOP = object()  # queued by close(): the worker exits when it reaches it (after the items queued before it)


class MicroBatcher(Generic[T, R]):
    """Gather items submitted from many threads into batches for `fn`.

    fn: list of items -> list of the same length, in the same order; an entry may be an exception instance, which
        is raised to that item's caller only.
    max_batch: most items per call of fn (>= 1).
    max_delay_ms: longest time (milliseconds) the first item of a batch waits for others to join it.
    on_batch: called with each batch's size before fn runs (a metrics hook; must not raise).
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R | BaseException]], max_batch: int = 16,
                 max_delay_ms: float = 5.0, name: str = "batch", on_batch: Callable[[int], None] | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_delay_ms < 0:
            raise ValueError(f"max_delay_ms must be >= 0, got {max_delay_ms}")
        self.fn, self.max_batch, self.max_delay_s = fn, max_batch, max_delay_ms / 1e3
        self.name, self.on_batch = name, on_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed, self._drain = False, True
        self._lock = threading.Lock()  # orders submit() against close(): nothing is queued after _STOP
        self._worker = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._worker.start()

    # -- callers ------------------------------------------------------------------------------------------------
    def submit(self, item: T) -> Future:
        """Queue one item; the Future gets its result (or its exception) when its batch has run."""
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed(f"batcher {self.name} is closed")
            self._queue.put(_Job(item, fut))
        return fut

    def __call__(self, item: T, timeout: float | None = None) -> R:
        """submit(item).result(timeout): the calling thread blocks until its row is done."""
        return self.submit(item).result(timeout)

    def close(self, wait: bool = True, drain: bool = True) -> None:
        """Stop accepting items. drain: run what is already queued (else fail it with BatcherClosed).
        wait: return only once the worker has exited."""
        with self._lock:
            if self._closed:
                already = True
            else:
                already, self._closed = False, True
                self._drain = drain
                self._queue.put(_STOP)
        if wait and not already and threading.current_thread() is not self._worker:
            self._worker.join()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- worker -------------------------------------------------------------------------------------------------
    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The batch that starts with `first`, and whether _STOP was reached while gathering."""
        jobs = [first]
        deadline = time.monotonic() + self.max_delay_s
        while len(jobs) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return jobs, True
            jobs.append(nxt)
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            if self._closed and not self._drain:  # closed without draining: nothing queued runs any more
                self._fail([first], BatcherClosed(f"batcher {self.name} closed before this item ran"))
                break
            jobs, stop = self._gather(first)
            if stop and not self._drain:
                self._fail(jobs, BatcherClosed(f"batcher {self.name} closed before this item ran"))
                break
            self._execute(jobs)
        # After _STOP nothing else can be queued (submit checks _closed under the lock); whatever was queued
        # before it has been taken above, or is taken here when the loop ended early.
        rest = []
        while True:
            try:
                j = self._queue.get_nowait()
            except queue.Empty:
                break
            if j is not _STOP:
                rest.append(j)
        if rest:
            if self._drain:
                for i in range(0, len(rest), self.max_batch):
                    self._execute(rest[i: i + self.max_batch])
            else:
                self._fail(rest, BatcherClosed(f"batcher {self.name} closed before this item ran"))

    def _execute(self, jobs: list[_Job]) -> None:
        # A caller that cancelled its Future (e.g. gave up) is left out; the others run.
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        if self.on_batch is not None:
            try:
                self.on_batch(len(jobs))
            except Exception:  # noqa: BLE001 - a metrics hook must never cost a request
                log.exception("batcher %s: on_batch hook failed", self.name)
        try:
            results = list(self.fn([j.item for j in jobs]))
            if len(results) != len(jobs):
                raise RuntimeError(f"batcher {self.name}: batch function returned {len(results)} results for "
                                   f"{len(jobs)} items")
        except BaseException as e:  # noqa: BLE001 - every caller of this batch must hear of it
            for j in jobs:
                j.future.set_exception(e)
            return
        for j, r in zip(jobs, results):
            if isinstance(r, BaseException):
                j.future.set_exception(r)
            else:
                j.future.set_result(r)

    @staticmethod
    def _fail(jobs: list[_Job], err: BaseException) -> None:
        for j in jobs:
            if j.future.set_running_or_notify_cancel():
                j.future.set_exception(err)


# -- the process's shared batchers ------------------------------------------------------------------------------

_registry: dict[tuple, MicroBatcher] = {}
_registry_lock = threading.Lock()


def shared(stage: str, key: object, fn: Callable[[list], Sequence], max_batch: int,
           max_delay_ms: float) -> MicroBatcher:
    """The process's batcher for (stage, key) under these settings, made on first use: every request thread that
    asks for the same one shares its batches. stage names it in the batch-size metric ("mllm", "receiver");
    key tells apart what cannot share a forward (e.g. two MLLMs)."""
    k = (stage, key, max_batch, max_delay_ms)
    with _registry_lock:
        b = _registry.get(k)
        if b is None or b.closed:
            b = _registry[k] = MicroBatcher(fn, max_batch, max_delay_ms, name=stage,
                                            on_batch=lambda n: observe(stage, n))
        return b


def close_all() -> None:
    """Close every shared batcher, running what is queued (a service calls this after its server drained)."""
    with _registry_lock:
        batchers = list(_registry.values())
        _registry.clear()
    for b in batchers:
        b.close()
