"""The channel emulator's core: eq. (2) on every frame of every modality stream, with its own h_m per stream."""
from __future__ import annotations

from unitocom import wire
from unitocom.config import Config
from unitocom.link.channel import FadingChannel
from unitocom.stages.request import RequestError, validate_link
from unitocom.v1 import unitocom_pb2 as pb


class ChannelCore:
    """One per request: holds a FadingChannel per stream so block fading persists across that stream's frames."""

    def __init__(self, header: pb.RequestHeader, cfg: Config):
        self.spec = validate_link(header.link, cfg)
        self.snr_db = header.link.snr_db
        self.seed = int(header.link.seed)
        self.known = {s.stream_id for s in header.streams}
        self.channels: dict[int, FadingChannel] = {}
        self.symbols = 0

    def apply(self, frame: pb.SymbolFrame) -> pb.SymbolFrame:
        if self.known and frame.stream_id not in self.known:
            raise RequestError("frame.stream_id", f"{frame.stream_id} is not a stream of this request's header")
        try:
            z = wire.from_tensor(frame.symbols, "frame.symbols", expect_dtype=pb.COMPLEX64, expect_ndim=1)
        except wire.WireError as e:
            raise RequestError("frame.symbols", str(e)) from None
        ch = self.channels.get(frame.stream_id)
        if ch is None:
            ch = self.channels[frame.stream_id] = FadingChannel(self.spec, self.snr_db, (self.seed, frame.stream_id))
        out = ch(z, prefetch_next=not frame.last)
        self.symbols += len(z)
        h, h_runs = wire.runs_encode(out.h)
        e, e_runs = (h, h_runs) if out.h_est is out.h else wire.runs_encode(out.h_est)
        csi = pb.Csi(h=wire.to_tensor(h), h_runs=wire.to_tensor(h_runs), h_est=wire.to_tensor(e),
                     h_est_runs=wire.to_tensor(e_runs), noise_var=out.noise_var, snr_db=self.snr_db, erased=out.erased,
                     h_est_error_var=out.est_error_var)
        return pb.SymbolFrame(stream_id=frame.stream_id, seq=frame.seq, last=frame.last,
                              symbols=wire.to_tensor(out.y), csi=csi)
