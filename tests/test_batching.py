"""Dynamic batching at the base station (issue 13): the micro-batcher, batched VQA equal to unbatched on the
committed checkpoints, and the service answering concurrent requests with batching on."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from unitocom.batching import BatcherClosed, MicroBatcher


# -- the micro-batcher --------------------------------------------------------------------------------------------

def _recording(fn=lambda xs: [x * 10 for x in xs]):
    sizes: list[int] = []

    def batch(xs):
        sizes.append(len(xs))
        return fn(xs)
    return batch, sizes


def test_each_caller_gets_its_own_result_in_order():
    fn, sizes = _recording()
    b = MicroBatcher(fn, max_batch=4, max_delay_ms=50)
    futs = [b.submit(i) for i in range(10)]
    assert [f.result(5) for f in futs] == [i * 10 for i in range(10)]
    b.close()
    assert sum(sizes) == 10 and max(sizes) <= 4


def test_max_batch_bounds_every_batch_and_full_batches_do_not_wait():
    gate = threading.Event()
    fn, sizes = _recording()

    def slow_first(xs):
        gate.wait(5)  # hold the worker so that the rest queue up behind the first batch
        return fn(xs)
    b = MicroBatcher(slow_first, max_batch=3, max_delay_ms=10_000)
    futs = [b.submit(i) for i in range(7)]
    t0 = time.monotonic()
    gate.set()
    assert [f.result(5) for f in futs[:6]] == [0, 10, 20, 30, 40, 50]
    # the full batches did not sit out the 10 s delay
    assert time.monotonic() - t0 < 5
    assert all(s <= 3 for s in sizes)
    b.close(drain=True)  # the 7th (waiting for company) runs on close, not lost
    assert futs[6].result(5) == 60


def test_max_delay_bounds_the_wait_of_a_lone_item():
    fn, sizes = _recording()
    b = MicroBatcher(fn, max_batch=16, max_delay_ms=30)
    t0 = time.monotonic()
    assert b(7, timeout=5) == 70
    waited = time.monotonic() - t0
    b.close()
    assert 0.025 <= waited < 2.0, waited
    assert sizes == [1]


def test_batch_of_one_does_not_wait():
    b = MicroBatcher(lambda xs: xs, max_batch=1, max_delay_ms=10_000)
    t0 = time.monotonic()
    assert b("x", timeout=5) == "x"
    assert time.monotonic() - t0 < 1.0
    b.close()


def test_a_per_item_exception_fails_only_that_item():
    def fn(xs):
        return [ValueError(f"bad {x}") if x < 0 else x for x in xs]
    b = MicroBatcher(fn, max_batch=8, max_delay_ms=50)
    futs = [b.submit(x) for x in (1, -2, 3)]
    assert futs[0].result(5) == 1 and futs[2].result(5) == 3
    with pytest.raises(ValueError, match="bad -2"):
        futs[1].result(5)
    b.close()


def test_a_failing_batch_function_fails_every_item_of_the_batch_and_the_worker_goes_on():
    calls = []

    def fn(xs):
        calls.append(list(xs))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return xs
    b = MicroBatcher(fn, max_batch=8, max_delay_ms=50)
    futs = [b.submit(x) for x in range(3)]
    for f in futs:
        with pytest.raises(RuntimeError, match="boom"):
            f.result(5)
    assert b(9, timeout=5) == 9  # the worker survived
    b.close()


def test_a_wrong_number_of_results_is_an_error_for_every_item():
    b = MicroBatcher(lambda xs: xs[:-1], max_batch=4, max_delay_ms=50)
    futs = [b.submit(x) for x in range(2)]
    for f in futs:
        with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
            f.result(5)
    b.close()


def test_concurrent_submitters_are_batched_together_and_all_answered():
    fn, sizes = _recording(lambda xs: [(x, len(xs)) for x in xs])
    b = MicroBatcher(fn, max_batch=16, max_delay_ms=20)
    with ThreadPoolExecutor(32) as pool:
        out = list(pool.map(lambda i: b(i, timeout=10), range(200)))
    b.close()
    assert [x for x, _ in out] == list(range(200))
    assert sum(sizes) == 200 and max(sizes) <= 16
    assert max(sizes) > 1  # 32 threads at once: some batches had company


def test_close_refuses_new_items_and_drains_or_fails_the_queued_ones():
    gate = threading.Event()
    b = MicroBatcher(lambda xs: (gate.wait(5), xs)[1], max_batch=1, max_delay_ms=0)
    futs = [b.submit(i) for i in range(3)]
    closer = threading.Thread(target=b.close)  # drains: waits for the gate
    closer.start()
    time.sleep(0.05)
    with pytest.raises(BatcherClosed):
        b.submit(99)
    gate.set()
    closer.join(5)
    assert [f.result(5) for f in futs] == [0, 1, 2]

    gate.clear()
    b2 = MicroBatcher(lambda xs: (gate.wait(5), xs)[1], max_batch=1, max_delay_ms=0)
    first = b2.submit("running")
    time.sleep(0.05)  # the worker holds the first item
    queued = [b2.submit(i) for i in range(3)]
    closer = threading.Thread(target=b2.close, kwargs={"drain": False})
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(5)
    assert first.result(5) == "running"
    for f in queued:
        with pytest.raises(BatcherClosed):
            f.result(5)


def test_a_cancelled_item_is_left_out_of_its_batch():
    gate = threading.Event()
    seen = []

    def fn(xs):
        gate.wait(5)
        seen.extend(xs)
        return xs
    b = MicroBatcher(fn, max_batch=1, max_delay_ms=0)
    first = b.submit("a")
    time.sleep(0.05)
    second = b.submit("b")
    assert second.cancel()
    gate.set()
    assert first.result(5) == "a"
    b.close()
    assert seen == ["a"]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        MicroBatcher(lambda xs: xs, max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda xs: xs, max_delay_ms=-1)
