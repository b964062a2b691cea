"""The base station's core: gather each stream's received frames, equalise, demodulate, decode, run the task.

Stages timed (`unitocom.timing`): each scheme's receiver (equalise, then decode or detokenize) per stream, then
for the MLLM tasks the MLLM's own (`stages/mllm.py`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unitocom import wire
from unitocom.config import Config
from unitocom import schemes
from unitocom.messages import Modality, ModalityOutput, StreamHeader
from unitocom.options import Scheme, Task
from unitocom.stages import mllm
from unitocom.stages.request import RequestError
from unitocom.timing import Clock
from unitocom.v1 import unitocom_pb2 as pb

SERVICE = "basestation"


@dataclass
class _Stream:
    header: StreamHeader
    y: list[np.ndarray] = field(default_factory=list)
    h_est: list[np.ndarray] = field(default_factory=list)
    noise_var: float = 0.0
    est_error_var: float = 0.0
    erased: bool = False
    next_seq: int = 0
    done: bool = False


class BaseStationCore:
    def __init__(self, header: pb.RequestHeader, cfg: Config):
        if not header.streams:
            raise RequestError("header.streams", "a request header must describe at least one stream")
        self.header, self.cfg = header, cfg
        try:  # the library's StreamHeaders; an enum number the proto does not define names its field
            streams = [wire.from_pb(s, f"header.streams[{s.stream_id}]") for s in header.streams]
        except wire.WireError as e:
            raise RequestError(*wire.error_field(e)) from None
        self.streams = {s.stream_id: _Stream(s) for s in streams}
        if len(self.streams) != len(streams):
            raise RequestError("header.streams", "stream ids must be unique")
        for s in streams:
            try:
                schemes.for_scheme(s.scheme)
            except ValueError as e:
                raise RequestError(f"header.streams[{s.stream_id}].scheme", str(e)) from None
        self.clock = Clock(SERVICE)

    def add(self, frame: pb.SymbolFrame) -> None:
        s = self.streams.get(frame.stream_id)
        if s is None:
            raise RequestError("frame.stream_id", f"{frame.stream_id} is not a stream of this request")
        if s.done or frame.seq != s.next_seq:
            raise RequestError("frame.seq", f"stream {frame.stream_id}: expected frame {s.next_seq}, got {frame.seq}")
        try:
            y = wire.from_tensor(frame.symbols, "frame.symbols", pb.COMPLEX64, 1)
            h = wire.runs_decode(wire.from_tensor(frame.csi.h_est, "frame.csi.h_est", pb.COMPLEX64, 1),
                                 wire.from_tensor(frame.csi.h_est_runs, "frame.csi.h_est_runs", pb.INT32, 1),
                                 len(y), "frame.csi.h_est_runs")
        except wire.WireError as e:
            raise RequestError(str(e).split(":")[0], str(e).split(": ", 1)[-1]) from None
        s.y.append(y)
        s.h_est.append(h)
        s.noise_var = frame.csi.noise_var
        s.est_error_var = frame.csi.h_est_error_var
        s.erased |= frame.csi.erased
        s.next_seq += 1
        s.done = frame.last

    def finish(self) -> pb.Result:
        link = self.header.link
        result = pb.Result(request_id=self.header.request_id, task=self.header.task, scheme=link.scheme,
                           snr_db=link.snr_db, channel=link.channel or pb.AWGN)
        received: list[mllm.Received] = []
        outputs: list[ModalityOutput] = []
        for sid, s in self.streams.items():
            if not s.done:
                raise RequestError("frames", f"stream {sid} ended after {s.next_seq} frames without its last frame")
            y, h = np.concatenate(s.y), np.concatenate(s.h_est)
            if len(y) != s.header.num_symbols:
                raise RequestError("frames", f"stream {sid}: {len(y)} symbols received, header says {s.header.num_symbols}")
            out = schemes.for_scheme(s.header.scheme).decode(s.header, y, h, s.noise_var, s.erased, self.cfg,
                                                             est_error_var=s.est_error_var, clock=self.clock)
            outputs.append(out)
            result.channel_uses += len(y)
            received.append(mllm.Received(s.header, out, y, h, s.noise_var, s.erased, s.est_error_var))
        texts = [o.text for o in outputs if o.modality == Modality.TEXT]
        result.output_text = texts[0] if texts else ""
        if self.header.task != pb.RECONSTRUCT:
            try:
                task = wire.enum_from_pb(Task, self.header.task, "header.task")
                scheme = wire.enum_from_pb(Scheme, link.scheme, "header.link.scheme")
            except wire.WireError as e:
                raise RequestError(*wire.error_field(e)) from None
            text, generated, quality, notes = mllm.run(task, wire.from_pb(self.header.label), received, scheme,
                                                       self.cfg, seed=int(link.seed), clock=self.clock)
            result.output_text = text
            outputs.extend(generated)
            for k, v in quality.items():
                result.quality[k] = v
            for note in notes:
                for o in outputs:
                    if o.modality != Modality.TEXT and not o.decoded:
                        o.note = f"{o.note}; {note}" if o.note else note
        result.outputs.extend(wire.to_pb(o) for o in outputs)
        self.clock.report(result.timings)
        return result
