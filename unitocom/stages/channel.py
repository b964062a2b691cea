"""The channel emulator's core: eq. (2) on every frame of every modality stream, with its own h_m per stream."""
from __future__ import annotations

from collections.abc import Iterable

from unitocom import wire
from unitocom.config import Config
from unitocom.link.channel import FadingChannel
from unitocom.messages import Csi, LinkSettings, SymbolFrame
from unitocom.stages.request import RequestError, validate_link
from unitocom.timing import Clock


SERVICE = "channel"


class ChannelCore:
    """One per request: holds a FadingChannel per stream so block fading persists across that stream's frames.
    `link` and `stream_ids` are the request header's (no stream ids: any stream is accepted).
    `clock` holds the time spent applying eq. (2) (stage `channel`), transport not counted."""

    def __init__(self, link: LinkSettings, stream_ids: Iterable[int], cfg: Config):
        self.spec = validate_link(link, cfg)
        self.snr_db = link.snr_db
        self.seed = int(link.seed)
        self.known = set(stream_ids)
        self.channels: dict[int, FadingChannel] = {}
        self.symbols = 0
        self.clock = Clock(SERVICE)

    def check_stream(self, stream_id: int) -> None:
        """RequestError for a stream the header did not announce (checked before the frame's symbols are read)."""
        if self.known and stream_id not in self.known:
            raise RequestError("frame.stream_id", f"{stream_id} is not a stream of this request's header")

    def apply(self, frame: SymbolFrame) -> SymbolFrame:
        """The received frame: y = h z + n and the CSI applied (numpy arrays; the service writes them into the
        message it sends, `wire.fill_frame`)."""
        self.check_stream(frame.stream_id)
        z = frame.symbols
        ch = self.channels.get(frame.stream_id)
        if ch is None:
            ch = self.channels[frame.stream_id] = FadingChannel(self.spec, self.snr_db, (self.seed, frame.stream_id))
        with self.clock.stage("channel"):
            try:
                res = ch(z, prefetch_next=not frame.last)
            except ValueError as e:  # NaN or inf symbols, a frame that is not 1-D: the sender's fault, said so
                raise RequestError("frame.symbols", str(e)) from None
            self.symbols += len(z)
            h, h_runs = wire.runs_encode(res.h)
            e, e_runs = (h, h_runs) if res.h_est is res.h else wire.runs_encode(res.h_est)
            csi = Csi(h=h, h_runs=h_runs, h_est=e, h_est_runs=e_runs, noise_var=res.noise_var, snr_db=self.snr_db,
                      erased=res.erased, h_est_error_var=res.est_error_var)
        return SymbolFrame(stream_id=frame.stream_id, seq=frame.seq, last=frame.last, symbols=res.y, csi=csi)
