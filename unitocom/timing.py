"""Per-stage wall-clock timings that travel back in the Result (StageTiming) and feed the latency histograms."""
from __future__ import annotations

import time
from contextlib import contextmanager

from unitocom.v1 import unitocom_pb2 as pb


@contextmanager
def stage(timings: list[pb.StageTiming], service: str, name: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings.append(pb.StageTiming(service=service, stage=name, seconds=time.perf_counter() - t0))
