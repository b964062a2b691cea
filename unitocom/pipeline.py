"""The whole request path in one process: the same cores the services call, without gRPC in between.

Used by the benchmark (service path vs in-process) and by tests that check the services add nothing but transport.
"""
from __future__ import annotations

import time

from unitocom.config import Config
from unitocom.stages import transmitter
from unitocom.stages.basestation import BaseStationCore
from unitocom.stages.channel import ChannelCore
from unitocom.v1 import unitocom_pb2 as pb


def run(req: pb.Request, cfg: Config) -> pb.Result:
    prep = transmitter.prepare(req, cfg)
    channel_s = 0.0
    uplink = prep.uplink(cfg.limits.frame_symbols)
    header = next(uplink).header
    ch, bs = ChannelCore(header, cfg), BaseStationCore(header, cfg)
    for msg in uplink:
        t0 = time.perf_counter()
        frame = ch.apply(msg.frame)
        channel_s += time.perf_counter() - t0
        bs.add(frame)
    result = bs.finish()
    result.timings.append(pb.StageTiming(service="channel", stage="channel", seconds=channel_s))
    return transmitter.finish(result, prep)
