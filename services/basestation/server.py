"""Base-station service: Receive(stream Uplink) -> Result. Equalise, demodulate, decode, run the task."""
from __future__ import annotations

import logging

import grpc

from services.common import server as common
from services.common import uplink
from unitocom import config, options, pipeline, wire
from unitocom.stages import mllm
from unitocom.stages.basestation import BaseStationCore
from unitocom.stages.request import RequestError, from_wire
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

SERVICE = "basestation"


class BaseStation(pb_grpc.BaseStationServicer):
    def __init__(self, cfg: config.Config):
        self.cfg = cfg

    def Receive(self, request_iterator, context: grpc.ServicerContext) -> pb.Result:
        with common.rpc(SERVICE, "Receive", context) as call:
            first = uplink.header(request_iterator)
            call.describe(first.header)
            # every enum of the header checked as it arrives: an unknown number names its field
            core = BaseStationCore(from_wire(first.header, "header"), self.cfg)
            for msg in request_iterator:
                frame = uplink.frame_of(msg)
                core.check(frame.stream_id, frame.seq)  # an unexpected frame is named before its arrays are read
                try:
                    received = wire.frame_from_pb(frame, csi=True)
                except wire.WireError as e:
                    raise RequestError(*wire.error_field(e)) from None
                core.add(received)
            common.check_alive(context, "decoding and the task")  # the MLLM's seconds are not spent for nobody
            result = wire.to_pb(core.finish())
            common.check_alive(context, "returning the result")  # counted CANCELLED, not OK, when nobody took it
            call.observe(result)
            return result


def main(argv: list[str] | None = None) -> None:
    ap = common.base_parser(SERVICE)
    ap.add_argument("--device", default="cpu", help="where the MLLM runs: cpu | cuda | cuda:N (bf16 on CUDA)")
    args = ap.parse_args(argv)
    cfg = common.config_from_args(args)
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise SystemExit(f"basestation: --device {args.device} but torch sees no CUDA device")
    cfg = cfg.replace(device=args.device)

    def register(server: grpc.Server) -> None:
        pb_grpc.add_BaseStationServicer_to_server(BaseStation(cfg), server)

    def warmup() -> None:
        import torch
        torch.set_num_threads(cfg.limits.torch_threads)
        pipeline.run(from_wire(common.warm_request(cfg)), cfg)  # loads and exercises every decoder once
        for scheme in (options.Scheme.UNITOCOM, options.Scheme.VAE):  # and the MLLMs that are installed, so no request pays for loading
            try:
                mllm.assistant(scheme, cfg)
            except RequestError as e:
                logging.getLogger("unitocom.service").warning("%s", e)

    common.serve(SERVICE, args, cfg, register, "unitocom.v1.BaseStation", warmup)


if __name__ == "__main__":
    main()
