"""The whole request path in one process: the same cores the services call, without gRPC in between.

Used by the benchmark (service path vs in-process) and by tests that check the services add nothing but transport.
"""
from __future__ import annotations

from unitocom import wire
from unitocom.config import Config
from unitocom.stages import transmitter
from unitocom.stages.basestation import BaseStationCore
from unitocom.stages.channel import ChannelCore
from unitocom.stages.request import from_wire
from unitocom.v1 import unitocom_pb2 as pb


def run(req: pb.Request, cfg: Config) -> pb.Result:
    prep = transmitter.prepare(from_wire(req), cfg)
    header = prep.header
    ch = ChannelCore(header.link, [s.stream_id for s in header.streams], cfg)
    bs = BaseStationCore(wire.to_pb(header), cfg)
    for frame in prep.frames(cfg.limits.frame_symbols):
        bs.add(wire.fill_frame(pb.SymbolFrame(), ch.apply(frame)))
    result = bs.finish()
    ch.clock.report(result.timings)  # the channel's own time on eq. (2), as the channel service reports it
    result.quality.update(transmitter.finish([wire.from_pb(o) for o in result.outputs], prep))
    prep.clock.report(result.timings)
    return result
