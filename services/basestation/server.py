"""Base-station service: Receive(stream Uplink) -> Result. Equalise, demodulate, decode, run the task.

Dynamic batching is on by default (--batch-max 16, --batch-delay-ms 10; --no-batching for one request at a time):
concurrent requests share the learned receiver's and the MLLM's forwards (unitocom.batching: VQA answers, ASR
transcripts, T2I images, learned image and text streams), batch sizes go to unitocom_batch_size{stage}. A request waiting for its batch holds a worker thread, so the pool is raised to
2 x --batch-max unless --workers says otherwise.

Sessions (issue 17): a request whose header names a session is one part of a request that several devices send;
the base station keeps the table of open sessions (unitocom.stages.session; --max-sessions, --session-wait), decodes
each part as it arrives, runs the task once when the last part is there and answers every part's call with it.
Parts are matched here, in this process: with several base-station replicas, every part of a session must reach
the same one."""
from __future__ import annotations

import dataclasses
import logging

import grpc

from services.common import metrics, security
from services.common import server as common
from services.common import uplink
from unitocom import batching, config, options, pipeline, wire
from unitocom.stages import mllm
from unitocom.stages.basestation import BaseStationCore
from unitocom.stages.session import SessionTable
from unitocom.stages.request import RequestError, from_wire
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

SERVICE = "basestation"


class BaseStation(pb_grpc.BaseStationServicer):
    def __init__(self, cfg: config.Config, sessions: SessionTable):
        self.cfg, self.sessions = cfg, sessions

    def Receive(self, request_iterator, context: grpc.ServicerContext) -> pb.Result:
        with common.rpc(SERVICE, "Receive", context) as call:
            first = uplink.header(request_iterator)
            call.describe(first.header)
            # every enum of the header checked as it arrives: an unknown number names its field; a session part
            # the table would refuse is refused before its frames are read
            core = BaseStationCore(from_wire(first.header, "header"), self.cfg, self.sessions)
            for msg in request_iterator:
                frame = uplink.frame_of(msg)
                core.check(frame.stream_id, frame.seq)  # an unexpected frame is named before its arrays are read
                try:
                    received = wire.frame_from_pb(frame, csi=True)
                except wire.WireError as e:
                    raise RequestError(*wire.error_field(e)) from None
                core.add(received)
            common.check_alive(context, "decoding and the task")  # the MLLM's seconds are not spent for nobody
            if core.header.session is None:
                result = wire.to_pb(core.finish())
            else:  # one part of a session: wait for the others within this call's deadline (less a margin to answer)
                wait_s = security.next_hop_timeout(context, self.cfg.sessions.max_wait_s)
                result = wire.to_pb(core.finish_session(wait_s, context.is_active))
            call.packets_received(core.packets_lost, core.packets_concealed)
            common.check_alive(context, "returning the result")  # counted CANCELLED, not OK, when nobody took it
            call.observe(result)
            return result


DEFAULT_BATCH_MAX = 16
# 10 ms: measured with bench/bench_batching.py (16 clients, 2 shared cores): 5 ms -> 8.8 requests per batch,
# 7.0 ms of base-station CPU per request; 10 ms -> 11.9, 6.6 ms; 15 ms -> 14.1, 6.0 ms, p99 no better. A lone
# request waits this long for company.
DEFAULT_BATCH_DELAY_MS = 10.0


def batch_limits(cfg: config.Config, args) -> config.Config:
    """cfg with the batching flags applied: batch_max / batch_delay_ms, and enough worker threads to fill a batch.
    Each request holds a worker thread while it waits for its batch, so with fewer workers than batch_max the
    batches could never fill; twice batch_max lets the next batch gather while one runs (capped by the
    concurrency limit: more workers than admitted calls would never be used)."""
    batch_max = 1 if args.no_batching else args.batch_max
    workers = args.workers
    if workers is None:
        workers = min(max(cfg.limits.max_workers, 2 * batch_max), cfg.limits.max_concurrent_rpcs)
    limits = dataclasses.replace(cfg.limits, batch_max=batch_max, batch_delay_ms=args.batch_delay_ms,
                                 max_workers=workers)
    return cfg.replace(limits=limits)


def warm_vqa_request() -> pb.Request:
    """A small learned-scheme VQA request (a 32 px picture and a question) for the warm-up."""
    from unitocom.demo import photograph
    return pb.Request(task=pb.VQA, payloads=[pb.Payload(modality=pb.IMAGE, image=photograph(32)),
                                             pb.Payload(modality=pb.TEXT, text="What color is the large thing?")],
                      link=pb.LinkSettings(scheme=pb.UNITOCOM, snr_db=20.0))


def main(argv: list[str] | None = None) -> None:
    ap = common.base_parser(SERVICE)
    ap.add_argument("--device", default="cpu", help="where the MLLM runs: cpu | cuda | cuda:N (bf16 on CUDA)")
    ap.add_argument("--batch-max", type=common._positive_int, default=DEFAULT_BATCH_MAX, metavar="N",
                    help=f"dynamic batching: most concurrent requests whose MLLM (and learned receiver) work runs as one forward "
                         f"(default {DEFAULT_BATCH_MAX}; 1: no batching)")
    ap.add_argument("--batch-delay-ms", type=float, default=DEFAULT_BATCH_DELAY_MS, metavar="MS",
                    help=f"dynamic batching: longest wait of a batch's first request for others to join "
                         f"(default {DEFAULT_BATCH_DELAY_MS:g} ms)")
    ap.add_argument("--no-batching", action="store_true", help="every request alone (same as --batch-max 1)")
    ap.add_argument("--workers", type=common._positive_int, default=None, metavar="N",
                    help="worker threads (default: the config's, raised to 2 x --batch-max so that batches can "
                         "fill, at most the concurrency limit)")
    limits = config.SessionLimits()
    ap.add_argument("--max-sessions", type=common._positive_int, default=limits.max_open, metavar="N",
                    help="sessions (requests assembled from several devices' parts) open at once; a part that would "
                         f"open one more is refused with RESOURCE_EXHAUSTED (default {limits.max_open}: each open "
                         "session holds up to two worker threads while its parts wait)")
    ap.add_argument("--session-wait", type=float, default=limits.default_wait_s, metavar="S",
                    help="seconds a session waits for its other parts after the first arrived, when the request does "
                         f"not say (its session_wait_s); at most {limits.max_wait_s:g} (default {limits.default_wait_s:g})")
    args = ap.parse_args(argv)
    if args.batch_delay_ms < 0:
        ap.error(f"--batch-delay-ms must be >= 0, got {args.batch_delay_ms:g}")
    if not 0 < args.session_wait <= limits.max_wait_s:
        ap.error(f"--session-wait must be in (0, {limits.max_wait_s:g}] s, got {args.session_wait:g}")
    cfg = batch_limits(common.config_from_args(args), args)
    cfg = cfg.replace(sessions=dataclasses.replace(cfg.sessions, max_open=args.max_sessions,
                                                   default_wait_s=args.session_wait))
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise SystemExit(f"basestation: --device {args.device} but torch sees no CUDA device")
    cfg = cfg.replace(device=args.device)

    sessions = SessionTable(cfg.sessions)
    sessions.observer = metrics.session_observer(SERVICE, sessions)

    def register(server: grpc.Server) -> None:
        pb_grpc.add_BaseStationServicer_to_server(BaseStation(cfg, sessions), server)

    def warmup() -> None:
        import torch
        torch.set_num_threads(cfg.limits.torch_threads)
        pipeline.run(from_wire(common.warm_request(cfg)), cfg)  # loads and exercises every decoder once
        for scheme in (options.Scheme.UNITOCOM, options.Scheme.VAE):  # and the MLLMs that are installed, so no request pays for loading
            try:
                mllm.assistant(scheme, cfg)
            except RequestError as e:
                logging.getLogger("unitocom.service").warning("%s", e)
        try:  # the spoken-question MLLM (issue 17), when installed; a spoken VQA request without it is refused
            mllm.assistant(options.Scheme.UNITOCOM, cfg, spoken=True)
        except RequestError as e:
            logging.getLogger("unitocom.service").warning("%s", e)
        if cfg.limits.batch_max > 1:  # the batched VQA path once (its lazy imports, its batcher's thread)
            try:
                pipeline.run(from_wire(warm_vqa_request()), cfg)
            except RequestError as e:
                logging.getLogger("unitocom.service").warning("batched VQA warm-up skipped: %s", e)
        batching.set_observer(metrics.batch_observer(SERVICE))  # from here on: the warm-up's batch not counted

    logging.getLogger("unitocom.service").info("batching: at most %d requests per forward, %g ms delay, %d workers",
                                               cfg.limits.batch_max, cfg.limits.batch_delay_ms,
                                               cfg.limits.max_workers)
    sessions.start_sweeper()  # an abandoned session leaves the table at its deadline, traffic or not
    try:
        common.serve(SERVICE, args, cfg, register, "unitocom.v1.BaseStation", warmup)
    finally:
        sessions.close()
        batching.close_all()  # after the server has drained: the requests it waited for were answered


if __name__ == "__main__":
    main()
