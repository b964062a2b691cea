"""The pipeline's stages, named once, and the clock that times them.

`STAGES` is the one list of stage names: the services report only these (a Result carries
StageTiming(service, stage, seconds) from every hop), `services/common/metrics.py` observes them into
`unitocom_stage_seconds{service,stage,scheme}`, and the README's stage table and the Grafana dashboard's `stage`
variable list exactly these (tests/test_stage_timings.py checks both). A name not in the list raises, so a new
stage is added here, with its meaning, or not at all.

A `Clock` belongs to one service and one request; a stage that runs several times in a request (one pass per
modality stream) is summed, so each service reports each of its stages at most once per request.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from unitocom.messages import StageTiming

# In pipeline order: name -> what is timed (where it runs).
STAGE_MEANINGS: dict[str, str] = {
    "validate": "request validation: payloads decoded and checked against the task and the link settings "
                "(transmitter)",
    "source_encode": "source coding or tokenization: UTF-8 / JPEG / AMR-WB encoding, or the learned tokenizer F_m "
                     "(transmitter; base station when it tokenizes a decoded payload for the MLLM)",
    "channel_encode": "channel coding and modulation: CRC + Turbo / LDPC + QAM mapping, or the learned T "
                      "(transmitter)",
    "channel": "the channel emulator, eq. (2): z_hat = h z + n on every frame (channel)",
    "equalise": "equalisation and demodulation: MMSE equalisation + demapping to LLRs, or LMMSE + the learned R "
                "(base station)",
    "decode": "channel decoding + CRC, then source decoding (UTF-8 / JPEG / AMR-WB) (base station, traditional)",
    "mllm_prefill": "MLLM forward pass over the prompt: received tokens + question, or the caption (base station)",
    "mllm_generate": "MLLM generation after the prompt: autoregressive text decoding, or the next-token diffusion "
                     "sampling loop of image tokens (base station)",
    "detokenize": "the de-tokenizer F^-1: tokens -> image / waveform / text (base station, learned schemes and "
                  "generated images)",
    "score": "task quality: against the originals (transmitter, reconstruct) or the label (base station, MLLM tasks)",
}
STAGES: tuple[str, ...] = tuple(STAGE_MEANINGS)


class UnknownStage(ValueError):
    pass


def check(name: str) -> str:
    if name not in STAGE_MEANINGS:
        raise UnknownStage(f"{name!r} is not a stage of unitocom.timing.STAGES {STAGES}")
    return name


class Clock:
    """One service's stage timings for one request (seconds per stage, in the order the stages first ran)."""

    def __init__(self, service: str):
        self.service = service
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        check(name)
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        check(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    @contextmanager
    def split(self, first: str, second: str) -> Iterator[Callable[[], None]]:
        """Time one call in two stages: `first` until the yielded mark() is called, `second` after it (all of it
        `first` if mark() is never called). For a step that lives inside a library call, e.g. an MLLM's prefill
        inside its generation loop."""
        check(first), check(second)
        t0 = time.perf_counter()
        marked: list[float] = []

        def mark() -> None:
            if not marked:
                marked.append(time.perf_counter())
        try:
            yield mark
        finally:
            end = time.perf_counter()
            at = marked[0] if marked else end
            self.add(first, at - t0)
            if marked:
                self.add(second, end - at)

    def report(self, into) -> None:
        """Append one (service, stage, seconds) entry per stage to `into`: a list (the library's
        `messages.Result.timings`) gets `messages.StageTiming`s; anything else needs `.add(**fields)` (the protobuf
        Result's repeated StageTiming field, which a service adds to at the edge)."""
        if isinstance(into, list):
            into.extend(StageTiming(service=self.service, stage=name, seconds=s) for name, s in self.seconds.items())
            return
        for name, s in self.seconds.items():
            into.add(service=self.service, stage=name, seconds=s)


class _NotTimed(Clock):
    """For callers that do not report timings (training, evaluation): checks names, keeps nothing."""

    def __init__(self):
        super().__init__("")

    def add(self, name: str, seconds: float) -> None:
        check(name)


NOT_TIMED: Clock = _NotTimed()
