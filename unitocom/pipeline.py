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
    prep = transmitter.prepare(req, cfg)
    uplink = prep.uplink(cfg.limits.frame_symbols)
    header = next(uplink).header
    ch = ChannelCore(from_wire(header.link, "link"), [s.stream_id for s in header.streams], cfg)
    bs = BaseStationCore(header, cfg)
    for msg in uplink:
        bs.add(wire.fill_frame(pb.SymbolFrame(), ch.apply(wire.frame_from_pb(msg.frame))))
    result = bs.finish()
    ch.clock.report(result.timings)  # the channel's own time on eq. (2), as the channel service reports it
    return transmitter.finish(result, prep)
