"""Transmitter service (a user device): Send(Request) -> Result.

Validates, source-codes and code-modulates each payload (library: unitocom.stages.transmitter), streams the
symbols through the channel service, and scores what comes back.
"""
from __future__ import annotations

import grpc

from services.common import security
from services.common import server as common
from unitocom import config, wire
from unitocom.stages import transmitter
from unitocom.stages.request import from_wire
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

SERVICE = "transmitter"


class Transmitter(pb_grpc.TransmitterServicer):
    def __init__(self, cfg: config.Config, channel_target: str, tls: security.TlsIdentity | None = None):
        self.cfg, self.target = cfg, channel_target
        # wait-for-ready, retry on UNAVAILABLE, fast reconnect; mutual TLS as "transmitter" to "channel"
        self.stub = pb_grpc.ChannelStub(security.next_hop_channel(channel_target, cfg, tls, peer_name="channel",
                                                                  services=["unitocom.v1.Channel"]))

    def Send(self, request: pb.Request, context: grpc.ServicerContext) -> pb.Result:
        with common.rpc(SERVICE, "Send", context) as call:
            call.describe(request)
            prep = transmitter.prepare(from_wire(request), self.cfg)
            common.check_alive(context, "the uplink to the channel")
            try:
                result = common.call_next_hop(
                    self.stub.Forward, wire.uplink(prep.header, prep.frames(self.cfg.limits.frame_symbols)),
                    context, self.cfg.limits.default_deadline_s)
            except grpc.RpcError as e:
                raise common.next_hop_error("channel", self.target, e) from None
            result.quality.update(transmitter.finish([wire.from_pb(o) for o in result.outputs], prep))
            for u in result.users:  # users sharing the channel: each user's scores
                u.quality.update(prep.user_quality.get(u.user, {}))
            prep.clock.report(result.timings)
            # the device holds the originals: quality is scored here; a session's one answer is counted once, by
            # the part whose call ran the task (every part's call gets the same answer)
            once = (not result.HasField("session") or result.task == pb.RECONSTRUCT  # each device's own score
                    or result.session.answered_by == prep.header.request_id)
            call.observe(result, quality=once)
            return result


def main(argv: list[str] | None = None) -> None:
    ap = common.base_parser(SERVICE)
    ap.add_argument("--channel", default=None, help="channel service host:port (default from the config)")
    args = ap.parse_args(argv)
    cfg = common.config_from_args(args)
    target = args.channel or cfg.address("channel").grpc

    def register(server: grpc.Server) -> None:
        tls = security.next_hop_tls(SERVICE, args.tls_dir)
        pb_grpc.add_TransmitterServicer_to_server(Transmitter(cfg, target, tls), server)

    def warmup() -> None:
        import torch
        torch.set_num_threads(cfg.limits.torch_threads)
        transmitter.prepare(from_wire(common.warm_request(cfg)), cfg)

    common.serve(SERVICE, args, cfg, register, "unitocom.v1.Transmitter", warmup)


if __name__ == "__main__":
    main()
