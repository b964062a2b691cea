"""Channel emulator service: applies eq. (2), z_hat = h*z + n, to every frame and reports the CSI it applied.

Forward: client stream in, forwarded as a stream to the base station, its Result returned.
Apply:   bidirectional, frames back to the caller (simulations and benchmarks).
"""
from __future__ import annotations

import grpc

from services.common import server as common
from services.common import uplink
from unitocom import config
from unitocom.stages.channel import ChannelCore
from unitocom.stages.request import RequestError
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

SERVICE = "channel"


class Channel(pb_grpc.ChannelServicer):
    def __init__(self, cfg: config.Config, basestation_target: str):
        self.cfg, self.target = cfg, basestation_target
        self.stub = pb_grpc.BaseStationStub(grpc.insecure_channel(basestation_target,
                                                                  options=common.channel_options(cfg)))

    def _frames(self, first: pb.Uplink, request_iterator, core: ChannelCore, state: dict):
        """Corrupt frames as they stream by; a bad frame ends the stream and is reported by the caller."""
        yield first
        for msg in request_iterator:
            up = pb.Uplink()
            try:
                core.apply(uplink.frame_of(msg), up.frame)  # written in place: no copy of the frame into the message
            except RequestError as e:
                state["error"] = e
                return
            yield up

    def Forward(self, request_iterator, context: grpc.ServicerContext) -> pb.Result:
        with common.rpc(SERVICE, "Forward", context) as call:
            first = uplink.header(request_iterator)
            call.describe(first.header)
            core = ChannelCore(first.header, self.cfg)
            state = {"error": None}
            try:
                result = self.stub.Receive(self._frames(first, request_iterator, core, state),
                                           timeout=common.remaining(context, self.cfg.limits.default_deadline_s))
            except grpc.RpcError as e:
                if state["error"] is not None:
                    raise state["error"] from None
                raise common.next_hop_error("basestation", self.target, e) from None
            if state["error"] is not None:
                raise state["error"]
            core.clock.report(result.timings)  # stage `channel`: eq. (2) on every frame
            call.observe(result)
            return result

    def Apply(self, request_iterator, context: grpc.ServicerContext):
        with common.rpc(SERVICE, "Apply", context) as call:
            first = uplink.header(request_iterator)
            call.describe(first.header)
            core = ChannelCore(first.header, self.cfg)
            yield first
            for msg in request_iterator:
                up = pb.Uplink()
                core.apply(uplink.frame_of(msg), up.frame)
                yield up
            call.channel_uses(core.symbols)


def main(argv: list[str] | None = None) -> None:
    ap = common.base_parser(SERVICE)
    ap.add_argument("--basestation", default=None, help="base station host:port (default from the config)")
    args = ap.parse_args(argv)
    cfg = common.config_from_args(args)
    target = args.basestation or cfg.address("basestation").grpc

    def register(server: grpc.Server) -> None:
        pb_grpc.add_ChannelServicer_to_server(Channel(cfg, target), server)

    def warmup() -> None:
        import numpy as np
        from unitocom import wire
        core = ChannelCore(pb.RequestHeader(link=pb.LinkSettings(snr_db=10.0, channel=pb.RAYLEIGH)), cfg)
        core.apply(pb.SymbolFrame(symbols=wire.to_tensor(np.ones(64, np.complex64)), last=True))

    common.serve(SERVICE, args, cfg, register, "unitocom.v1.Channel", warmup)


if __name__ == "__main__":
    main()
