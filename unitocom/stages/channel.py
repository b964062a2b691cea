"""The channel emulator's core: eq. (2) on every frame of every modality stream, with its own h_m per stream."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from unitocom import wire
from unitocom.config import Config
from unitocom.link.channel import FadingChannel
from unitocom.link.erasure import PacketLoss, PacketLossStream
from unitocom.messages import Csi, LinkSettings, SymbolFrame
from unitocom.stages.request import RequestError, validate_link
from unitocom.timing import Clock


SERVICE = "channel"


def lossy_packets(link: LinkSettings, streams) -> dict[int, int]:
    """{stream id: channel uses per packet} of the streams (the header's StreamHeaders) whose packets
    link.packet_loss may hit: those of link.lossy_modalities (every packetised stream when it is empty)."""
    from unitocom.stages.request import lossy_modalities
    lossy = set(lossy_modalities(link))
    return {s.stream_id: s.packet_symbols for s in streams
            if s.packet_symbols and s.modality is not None and s.modality.value in lossy}


class ChannelCore:
    """One per request: holds a FadingChannel per stream so block fading persists across that stream's frames.
    `link` and `stream_ids` are the request header's (no stream ids: any stream is accepted).
    `clock` holds the time spent applying eq. (2) (stage `channel`), transport not counted."""

    def __init__(self, link: LinkSettings, stream_ids: Iterable[int], cfg: Config,
                 packet_symbols: dict[int, int] | None = None):
        """`packet_symbols`: channel uses per packet of each stream (its header's); with link.packet_loss the
        channel loses whole packets of those streams (the receiver sees zeros and an h_est of 0 there: it knows
        which packets are missing, as a real one does from sequence numbers and CRCs)."""
        self.spec = validate_link(link, cfg)
        self.packet_symbols = {k: int(v) for k, v in (packet_symbols or {}).items() if v}
        self.packet_loss = PacketLoss(link.packet_loss, link.packet_burst or None) if link.packet_loss else None
        self.losses: dict[int, PacketLossStream] = {}
        self.offsets: dict[int, int] = {}
        self.packets_lost: dict[int, int] = {}
        self.snr_db = link.snr_db
        self.seed = int(link.seed)
        self.known = set(stream_ids)
        self.channels: dict[int, FadingChannel] = {}
        self.symbols = 0
        self.clock = Clock(SERVICE)

    def packet_counts(self) -> tuple[int, int]:
        """(packets sent, packets lost) over the packetised streams so far."""
        sent = sum(-(-self.offsets.get(sid, 0) // ps) for sid, ps in self.packet_symbols.items())
        return sent, sum(self.packets_lost.values())

    def _lose_packets(self, stream_id: int, res):
        """Zero the symbols (and the receiver's h_est) of this frame's lost packets; counts them per stream."""
        n, start = len(res.y), self.offsets.get(stream_id, 0)
        self.offsets[stream_id] = start + n
        ps = self.packet_symbols.get(stream_id)
        if self.packet_loss is None or not ps or n == 0:
            return res
        stream = self.losses.get(stream_id)
        if stream is None:
            stream = self.losses[stream_id] = PacketLossStream(
                self.packet_loss, np.random.default_rng([self.seed, stream_id, 0x9AC7]))
        packet = (start + np.arange(n)) // ps
        lost = stream.upto(int(packet[-1]) + 1)
        mask = lost[packet]
        first_new = (start + ps - 1) // ps  # packets that begin in this frame are counted here
        self.packets_lost[stream_id] = self.packets_lost.get(stream_id, 0) + int(lost[first_new:packet[-1] + 1].sum())
        if not mask.any():
            return res
        y, h_est = res.y.copy(), res.h_est.copy()
        y[mask] = 0
        h_est[mask] = 0
        return dataclasses.replace(res, y=y, h_est=h_est)

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
            res = self._lose_packets(frame.stream_id, res)
            self.symbols += len(z)
            h, h_runs = wire.runs_encode(res.h)
            e, e_runs = (h, h_runs) if res.h_est is res.h else wire.runs_encode(res.h_est)
            csi = Csi(h=h, h_runs=h_runs, h_est=e, h_est_runs=e_runs, noise_var=res.noise_var, snr_db=self.snr_db,
                      erased=res.erased, h_est_error_var=res.est_error_var)
        return SymbolFrame(stream_id=frame.stream_id, seq=frame.seq, last=frame.last, symbols=res.y, csi=csi)
