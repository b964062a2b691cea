"""Channel emulator service: applies eq. (2), z_hat = h*z + n, to every frame and reports the CSI it applied.

Forward: client stream in, forwarded as a stream to the base station, its Result returned.
Apply:   bidirectional, frames back to the caller (simulations and benchmarks).
"""
from __future__ import annotations

import grpc

from services.common import security
from services.common import server as common
from services.common import uplink
from unitocom import capture, config, wire
from unitocom.stages import multiuser
from unitocom.stages.channel import ChannelCore, lossy_packets
from unitocom.stages.request import RequestError, from_wire
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

SERVICE = "channel"


def _core(header: pb.RequestHeader, cfg: config.Config) -> ChannelCore | multiuser.SuperposedChannel:
    """The request's ChannelCore, from its header's link settings and stream ids (users in the same channel uses:
    a SuperposedChannel, which adds them once all have arrived)."""
    link = from_wire(header.link, "link")
    streams = [from_wire(s, f"header.streams[{i}]") for i, s in enumerate(header.streams)]
    if multiuser.superposed(link):
        return multiuser.SuperposedChannel(link, streams, cfg)
    return ChannelCore(link, [s.stream_id for s in streams], cfg, lossy_packets(link, streams))


def _superposed(core: multiuser.SuperposedChannel, request_iterator, frame_symbols: int, rec):
    """Superposed users: every transmitted frame gathered, then the received frames of every stream (Uplinks)."""
    for msg in request_iterator:
        frame = uplink.frame_of(msg)
        core.check_stream(frame.stream_id)
        try:
            core.collect(wire.frame_from_pb(frame))
        except wire.WireError as e:
            raise RequestError("frame.symbols", str(e)) from None
    for sent, received in core.received(frame_symbols):
        if rec is not None:
            rec.add(sent, received)
        up = pb.Uplink()
        wire.fill_frame(up.frame, received)
        yield up


def _apply(core: ChannelCore, message: pb.Uplink, out: pb.SymbolFrame, rec: capture.Recording | None) -> None:
    """Eq. (2) on the message's frame, written into `out` (a field of the message to send: no extra copy), and
    into the request's IQ recording when the service captures."""
    frame = uplink.frame_of(message)
    core.check_stream(frame.stream_id)  # an unknown stream is named before its symbols are read
    try:
        sent = wire.frame_from_pb(frame)
    except wire.WireError as e:
        raise RequestError("frame.symbols", str(e)) from None
    received = core.apply(sent)
    if rec is not None:
        rec.add(sent.symbols, received)
    wire.fill_frame(out, received)


# --capture-mode: which requests a channel with a capture directory records. "all" is what --capture DIR alone
# has always meant (recordings of every request); "requested" records only the requests whose link.capture asks.
CAPTURE_MODES = ("all", "requested")


class Channel(pb_grpc.ChannelServicer):
    def __init__(self, cfg: config.Config, basestation_target: str, tls: security.TlsIdentity | None = None,
                 recorder: capture.Recorder | None = None, capture_mode: str = "all"):
        if capture_mode not in CAPTURE_MODES:
            raise ValueError(f"capture_mode: {capture_mode!r}; expected one of {CAPTURE_MODES}")
        self.cfg, self.target, self.recorder, self.capture_mode = cfg, basestation_target, recorder, capture_mode
        # wait-for-ready, retry on UNAVAILABLE, fast reconnect; mutual TLS as "channel" to "basestation"
        self.stub = pb_grpc.BaseStationStub(security.next_hop_channel(
            basestation_target, cfg, tls, peer_name="basestation", services=["unitocom.v1.BaseStation"]))

    def _recording(self, header: pb.RequestHeader) -> capture.Recording | None:
        """The request's recording, or None when it is not recorded. A request that asks for capture (link.capture)
        where the service has no capture directory is refused before anything is forwarded: answering without the
        recording it asked for would look like success."""
        asked = header.link.capture
        if self.recorder is None:
            if asked:
                raise RequestError("link.capture", "this channel service has no capture directory, so it cannot "
                                   "record the request's IQ; start it with --capture DIR (`unitocom up --capture "
                                   "DIR`), or send without capture", code="failed_precondition")
            return None
        if asked or self.capture_mode == "all":
            return self.recorder.start(from_wire(header, "header"))
        return None

    def _report(self, rec: capture.Recording, asked: bool) -> pb.CaptureReport:
        """Write the recording and say where it went (Result.capture), so the caller can replay it."""
        path = rec.close()
        notes = []
        if path is None:
            notes.append(f"not kept: its {rec.nbytes / 2**20:.3g} MiB of samples exceed the channel's disk cap "
                         f"(--capture-max-mb {self.recorder.max_bytes / 2**20:g})")
        if not asked:
            notes.append("recorded unasked: this channel service records every request (--capture-mode all)")
        if path is None:
            return pb.CaptureReport(note="; ".join(notes))
        path = path.resolve()
        size = sum(p.stat().st_size for p in (path, path.with_suffix(".sigmf-data")) if p.exists())
        return pb.CaptureReport(path=str(path), bytes=size, note="; ".join(notes))

    def _frames(self, first: pb.Uplink, request_iterator, core: ChannelCore, state: dict, rec):
        """Corrupt frames as they stream by; a bad frame ends the stream and is reported by the caller."""
        yield first
        if isinstance(core, multiuser.SuperposedChannel):
            try:
                yield from _superposed(core, request_iterator, self.cfg.limits.frame_symbols, rec)
            except RequestError as e:
                state["error"] = e
            return
        for msg in request_iterator:
            up = pb.Uplink()
            try:
                _apply(core, msg, up.frame, rec)
            except RequestError as e:
                state["error"] = e
                return
            yield up

    def Forward(self, request_iterator, context: grpc.ServicerContext) -> pb.Result:
        with common.rpc(SERVICE, "Forward", context) as call:
            first = uplink.header(request_iterator)
            call.describe(first.header)
            core = _core(first.header, self.cfg)
            rec = self._recording(first.header)
            state = {"error": None}
            try:
                result = common.call_next_hop(self.stub.Receive,
                                              self._frames(first, request_iterator, core, state, rec),
                                              context, self.cfg.limits.default_deadline_s)
            except grpc.RpcError as e:
                if state["error"] is not None:
                    raise state["error"] from None
                raise common.next_hop_error("basestation", self.target, e) from None
            if state["error"] is not None:
                raise state["error"]
            if rec is not None:  # what crossed the channel, whatever the base station made of it
                result.capture.CopyFrom(self._report(rec, first.header.link.capture))
            core.clock.report(result.timings)  # stage `channel`: eq. (2) on every frame
            call.packets(*core.packet_counts())
            call.observe(result)
            return result

    def Apply(self, request_iterator, context: grpc.ServicerContext):
        with common.rpc(SERVICE, "Apply", context) as call:
            first = uplink.header(request_iterator)
            call.describe(first.header)
            core = _core(first.header, self.cfg)
            rec = self._recording(first.header)
            yield first
            if isinstance(core, multiuser.SuperposedChannel):
                yield from _superposed(core, request_iterator, self.cfg.limits.frame_symbols, rec)
            for msg in request_iterator:  # (none left after the superposed users)
                up = pb.Uplink()
                _apply(core, msg, up.frame, rec)
                yield up
            if rec is not None:  # Apply returns no Result: the recording is <request_id>.sigmf-meta in the directory
                rec.close()
            call.channel_uses(core.symbols)


def main(argv: list[str] | None = None) -> None:
    ap = common.base_parser(SERVICE)
    ap.add_argument("--basestation", default=None, help="base station host:port (default from the config)")
    ap.add_argument("--capture", default=None, metavar="DIR",
                    help="record what crosses the channel (z, h, h_est, z_hat per channel use) as one SigMF "
                         "recording per request in DIR, readable by GNU Radio and other SDR tools; replay one "
                         "with `unitocom replay`. Which requests: --capture-mode. Without DIR a request that asks "
                         "for capture (request option `capture`) is refused with FAILED_PRECONDITION")
    ap.add_argument("--capture-mode", choices=CAPTURE_MODES, default="all",
                    help="with --capture DIR: all (default, as before the request option): every request is "
                         "recorded; requested: only requests that ask (request option `capture`). Either way the "
                         "result's capture field says where the recording went")
    ap.add_argument("--capture-max-mb", type=float, default=1024.0,
                    help="disk cap of --capture DIR in MiB: the oldest recordings are deleted first (default 1024)")
    ap.add_argument("--capture-sample-rate", type=float, default=capture.DEFAULT_SAMPLE_RATE_HZ, metavar="HZ",
                    help="core:sample_rate written into recordings; nominal, one sample per channel use "
                         "(default 1e6)")
    args = ap.parse_args(argv)
    cfg = common.config_from_args(args)
    target = args.basestation or cfg.address("basestation").grpc
    recorder = None
    if args.capture:
        recorder = capture.Recorder(args.capture, max_bytes=int(args.capture_max_mb * 2**20),
                                    sample_rate_hz=args.capture_sample_rate)

    def register(server: grpc.Server) -> None:
        tls = security.next_hop_tls(SERVICE, args.tls_dir)
        pb_grpc.add_ChannelServicer_to_server(Channel(cfg, target, tls, recorder, args.capture_mode), server)

    def warmup() -> None:
        import numpy as np
        from unitocom.messages import LinkSettings, SymbolFrame
        from unitocom.options import Channel as ChannelModel
        core = ChannelCore(LinkSettings(snr_db=10.0, channel=ChannelModel.RAYLEIGH), [], cfg)
        wire.fill_frame(pb.SymbolFrame(), core.apply(SymbolFrame(symbols=np.ones(64, np.complex64), last=True)))

    common.serve(SERVICE, args, cfg, register, "unitocom.v1.Channel", warmup)


if __name__ == "__main__":
    main()
