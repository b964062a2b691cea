"""The channel emulator's core: eq. (2) on every frame of every modality stream, with its own h_m per stream."""
from __future__ import annotations

from unitocom import wire
from unitocom.config import Config
from unitocom.link.channel import FadingChannel
from unitocom.stages.request import RequestError, from_wire, validate_link
from unitocom.timing import Clock
from unitocom.v1 import unitocom_pb2 as pb


SERVICE = "channel"


class ChannelCore:
    """One per request: holds a FadingChannel per stream so block fading persists across that stream's frames.
    `clock` holds the time spent applying eq. (2) (stage `channel`), transport not counted."""

    def __init__(self, header: pb.RequestHeader, cfg: Config):
        self.spec = validate_link(from_wire(header.link, "link"), cfg)
        self.snr_db = header.link.snr_db
        self.seed = int(header.link.seed)
        self.known = {s.stream_id for s in header.streams}
        self.channels: dict[int, FadingChannel] = {}
        self.symbols = 0
        self.clock = Clock(SERVICE)

    def apply(self, frame: pb.SymbolFrame, out: pb.SymbolFrame | None = None) -> pb.SymbolFrame:
        """The received frame, written into `out` when given (a field of the message to send: no extra copy)."""
        if self.known and frame.stream_id not in self.known:
            raise RequestError("frame.stream_id", f"{frame.stream_id} is not a stream of this request's header")
        try:
            z = wire.from_tensor(frame.symbols, "frame.symbols", expect_dtype=pb.COMPLEX64, expect_ndim=1)
        except wire.WireError as e:
            raise RequestError("frame.symbols", str(e)) from None
        ch = self.channels.get(frame.stream_id)
        if ch is None:
            ch = self.channels[frame.stream_id] = FadingChannel(self.spec, self.snr_db, (self.seed, frame.stream_id))
        with self.clock.stage("channel"):
            res = ch(z, prefetch_next=not frame.last)
            self.symbols += len(z)
            out = pb.SymbolFrame() if out is None else out
            out.stream_id, out.seq, out.last = frame.stream_id, frame.seq, frame.last
            wire.fill_tensor(out.symbols, res.y)
            h, h_runs = wire.runs_encode(res.h)
            e, e_runs = (h, h_runs) if res.h_est is res.h else wire.runs_encode(res.h_est)
            csi = out.csi
            for field, value in (("h", h), ("h_runs", h_runs), ("h_est", e), ("h_est_runs", e_runs)):
                wire.fill_tensor(getattr(csi, field), value)
            csi.noise_var, csi.snr_db, csi.erased, csi.h_est_error_var = (res.noise_var, self.snr_db, res.erased,
                                                                          res.est_error_var)
        return out
