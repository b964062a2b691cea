"""The whole request path in one process: the same cores the services call, without gRPC in between.

Used by the benchmark (service path vs in-process) and by tests that check the services add nothing but transport.
"""
from __future__ import annotations

from unitocom.config import Config
from unitocom.messages import Request, Result
from unitocom.stages import transmitter
from unitocom.stages.basestation import BaseStationCore
from unitocom.stages import multiuser
from unitocom.stages.channel import ChannelCore, lossy_packets


def run(req: Request, cfg: Config) -> Result:
    """The Result the three services would return for `req` (a protobuf Request converts with
    `unitocom.stages.request.from_wire`): the same stages, the frames handed over as arrays instead of messages."""
    if not isinstance(req, Request):
        raise TypeError(f"pipeline.run takes a unitocom.messages.Request, not {type(req).__module__}."
                        f"{type(req).__qualname__} "
                        "(convert a protobuf one with unitocom.stages.request.from_wire)")
    prep = transmitter.prepare(req, cfg)
    header = prep.header
    bs = BaseStationCore(header, cfg)
    if multiuser.superposed(header.link):  # users in the same channel uses: added once all have arrived
        ch = multiuser.SuperposedChannel(header.link, header.streams, cfg)
        for frame in prep.frames(cfg.limits.frame_symbols):
            ch.collect(frame)
        for _, received in ch.received(cfg.limits.frame_symbols):
            bs.add(received)
    else:
        ch = ChannelCore(header.link, [s.stream_id for s in header.streams], cfg,
                         lossy_packets(header.link, header.streams))
        for frame in prep.frames(cfg.limits.frame_symbols):
            bs.add(ch.apply(frame))
    result = bs.finish()
    ch.clock.report(result.timings)  # the channel's own time on eq. (2), as the channel service reports it
    result.quality.update(transmitter.finish(result.outputs, prep))
    for u in result.users:
        u.quality.update(prep.user_quality.get(u.user, {}))
    prep.clock.report(result.timings)
    return result
