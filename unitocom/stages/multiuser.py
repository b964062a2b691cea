"""Users sharing the channel (issue 17) at each hop: what the request must be, what each device sends, what the
channel adds, how the base station separates the users. The maths is `unitocom.link.multiaccess`'s.

A request of K users carries each user's payloads (`Payload.user`), `link.users` = K, `link.access` and, for
superposed access, `link.user_powers`. Why one request and not K: the users of one access group are scheduled
together, so the channel must see all of their streams before it can add them, and the base station must
decode them together (SIC); one uplink per group is the simplest carrier of that. Each device's stream still
travels separately on it (its own StreamHeader with `user` and `power`, its own frames), as each device makes it:

- transmitter (`assign`): every payload is coded as its device codes it alone; the device scales its symbols to
  its power (superposed: sqrt(p_k); orthogonal: P). A user's streams, in stream order, are its signal.
- channel (`SuperposedChannel`): orthogonal users go through the channel as separate streams do today (each
  its own block of channel uses, its own h_k and noise); superposed users are gathered, each stream through its
  own gains h, and added in the same channel uses with one noise. Each stream is sent on with the received
  signal over its own channel uses and its own user's CSI.
- base station (`finish`): orthogonal: each stream decoded as a single user's; superposed: SIC, strongest user
  first. Then each user's task runs on its own streams; the Result has one UserResult per user.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from unitocom import wire
from unitocom.config import Config, noise_variance
from unitocom.link import multiaccess as ma
from unitocom.link.channel import FadingChannel
from unitocom.messages import (Csi, Label, LinkSettings, Modality, ModalityOutput, Request, RequestHeader, Result,
                               StreamHeader, SymbolFrame, UserResult)
from unitocom.options import Channel, Scheme, Task
# `active` and `superposed` are also what the hops ask (`multiuser.superposed(link)`)
from unitocom.stages.access import (ORTHOGONAL, SUPERPOSED, active, powers, superposed,  # noqa: F401
                                    user_count, users_mean)
from unitocom.stages.request import RequestError, validate_link
from unitocom.timing import Clock

# --- transmitter -----------------------------------------------------------------------------------------------

def assign(streams, request: Request) -> None:
    """Tag each encoded stream (`schemes.Encoded`, stream i from payload i) with its user and power, and scale its
    symbols by sqrt(power): the device's own power control (superposed: its share p_k of P)."""
    if not active(request.link):
        return
    p = powers(request.link)
    for s, payload in zip(streams, request.payloads):
        k = payload.user
        s.header.user, s.header.power = k, float(p[k])
        if p[k] != 1.0:
            s.symbols = (s.symbols * np.float32(math.sqrt(p[k]))).astype(np.complex64)


def user_signals(streams: list[StreamHeader]) -> dict[int, list[tuple[StreamHeader, int]]]:
    """user -> its streams in stream order with each one's first channel use in the user's signal."""
    out: dict[int, list[tuple[StreamHeader, int]]] = {}
    for s in sorted(streams, key=lambda s: s.stream_id):
        lst = out.setdefault(int(s.user), [])
        start = lst[-1][1] + int(lst[-1][0].num_symbols) if lst else 0
        lst.append((s, start))
    return out


# --- channel ---------------------------------------------------------------------------------------------------

class SuperposedChannel:
    """One per superposed request at the channel: gathers every stream's frames, then adds the users' signals in
    the same channel uses with one noise (`multiaccess.superpose`) and hands back each stream's received frames,
    each with the received signal over that stream's channel uses and its own gains as CSI."""

    def __init__(self, link: LinkSettings, streams: list[StreamHeader], cfg: Config):
        self.spec = validate_link(link, cfg)
        if not streams:
            raise RequestError("header.streams", "a superposed request needs its streams described in the header")
        k = user_count(link)
        for i, s in enumerate(streams):
            if s.user >= k:
                raise RequestError(f"header.streams[{i}].user", f"{s.user} is not a user of this request "
                                                                f"(link.users = {link.users})")
        self.link, self.cfg = link, cfg
        self.headers = {s.stream_id: s for s in streams}
        if len(self.headers) != len(streams):
            raise RequestError("header.streams", "stream ids must be unique")
        total = sum(int(s.num_symbols) for s in streams)
        if total > cfg.limits.max_superposed_symbols:  # held until every stream has arrived: bounded
            raise RequestError("header.streams", f"{total} symbols to hold for superposition exceed the channel's "
                               f"limit of {cfg.limits.max_superposed_symbols}", code="resource_exhausted")
        self.parts: dict[int, list[np.ndarray]] = {sid: [] for sid in self.headers}
        self.counts = {sid: 0 for sid in self.headers}
        self.noise_var = noise_variance(link.snr_db)
        self.symbols = 0
        self.clock = Clock("channel")

    def check_stream(self, stream_id: int) -> None:
        if stream_id not in self.headers:
            raise RequestError("frame.stream_id", f"{stream_id} is not a stream of this request's header")

    def collect(self, frame: SymbolFrame) -> None:
        """One transmitted frame, kept until every stream has arrived (the users are added in the same uses)."""
        self.check_stream(frame.stream_id)
        z = np.asarray(frame.symbols)
        n = self.counts[frame.stream_id] + len(z)
        if n > self.headers[frame.stream_id].num_symbols:  # the header bounds what is kept
            raise RequestError("frame.symbols", f"stream {frame.stream_id}: more symbols than its header's "
                                                f"{self.headers[frame.stream_id].num_symbols}")
        if not np.isfinite(np.sum(z.view(np.float32) if z.dtype == np.complex64 else z, dtype=np.float64)):
            raise RequestError("frame.symbols", "z must contain only finite values")
        self.parts[frame.stream_id].append(z)
        self.counts[frame.stream_id] = n

    def received(self, frame_symbols: int) -> Iterator[tuple[np.ndarray, SymbolFrame]]:
        """(sent symbols, received frame) for every stream, in frames of at most frame_symbols."""
        with self.clock.stage("channel"):
            for sid, h in self.headers.items():
                if self.counts[sid] != h.num_symbols:
                    raise RequestError("frames", f"stream {sid}: {self.counts[sid]} symbols sent, header says "
                                                 f"{h.num_symbols}")
            sent = {sid: (np.concatenate(p) if p else np.zeros(0, np.complex64)) for sid, p in self.parts.items()}
            signals, gains, places = [], [], []
            seed = int(self.link.seed)
            for user, lst in sorted(user_signals(list(self.headers.values())).items()):
                # each stream through its own gains (eq. (2)'s h_m per stream), seeded as a single user's stream
                hs = [FadingChannel(self.spec, self.link.snr_db, (seed, s.stream_id)).gains(int(s.num_symbols))[0]
                      for s, _ in lst]
                signals.append(np.concatenate([sent[s.stream_id] for s, _ in lst]))
                gains.append(np.concatenate(hs))
                places.extend((s, start, h) for (s, start), h in zip(lst, hs))
            n = max(len(x) for x in signals)
            rng = np.random.default_rng([seed, 0x5B1C])  # the one noise of the group
            noise = (rng.standard_normal((n, 2)) @ np.array([1.0, 1j])) * math.sqrt(self.noise_var / 2.0)
            y = ma.superpose(signals, gains, noise)
            self.symbols = sum(len(x) for x in signals)
        for s, start, h in places:
            ys = y[start:start + int(s.num_symbols)]
            for seq, last, (chunk, hc) in _frames_with_gains(ys, h, frame_symbols):
                hv, runs = wire.runs_encode(hc)
                csi = Csi(h=hv, h_runs=runs, h_est=hv, h_est_runs=runs, noise_var=self.noise_var,
                          snr_db=self.link.snr_db)
                i0 = seq * frame_symbols
                yield (sent[s.stream_id][i0:i0 + len(chunk)],
                       SymbolFrame(stream_id=s.stream_id, seq=seq, last=last, symbols=chunk, csi=csi))

    def packet_counts(self) -> tuple[int, int]:
        return 0, 0  # superposed access refuses packet losses


def _frames_with_gains(y: np.ndarray, h: np.ndarray, frame_symbols: int):
    """wire.frames of the received symbols and of their gains, side by side."""
    for (seq, last, chunk), (_, _, hc) in zip(wire.frames(y, frame_symbols), wire.frames(h, frame_symbols)):
        yield seq, last, (chunk, hc)


# --- base station ----------------------------------------------------------------------------------------------

@dataclass
class _Decoded:
    """One stream after the receiver: its output, what the MLLM reads, and the (whitened) symbols it came from."""

    output: ModalityOutput
    tokens: object  # learned: R's tokens; traditional: None
    y: np.ndarray
    g: np.ndarray
    noise_var: float
    raw: tuple[int, int] | None = None  # traditional: (bit errors, bits) before channel decoding, when known


def _decode_stream(header: StreamHeader, y: np.ndarray, g: np.ndarray, noise_var: float, cfg: Config,
                   clock: Clock, link: LinkSettings) -> tuple[_Decoded, np.ndarray | None]:
    """Decode one stream from its (equalisable) symbols and gains -> (_Decoded, its re-modulated symbols at the
    device's scale P, for SIC; None where the scheme cannot re-modulate)."""
    from unitocom import schemes
    from unitocom.schemes import learned, traditional
    if header.scheme == Scheme.TRADITIONAL:
        out, res = traditional.decode_bits(header, y, g, noise_var, False, cfg, clock=clock)
        x_hat = traditional.remodulate(header, res, cfg)
        raw = None
        if res.ok:  # the decoded codewords are the sent ones (CRC): count the channel's bit errors against them
            z = y / np.where(np.abs(g) > 0, g, 1)
            sent_bits = traditional.hard_bits(header, x_hat, cfg)
            raw = (int(np.sum(traditional.hard_bits(header, z, cfg) != sent_bits)), int(sent_bits.size))
        return _Decoded(out, None, y, g, noise_var, raw), x_hat
    if header.scheme in (Scheme.UNITOCOM, Scheme.VAE) and header.modality in learned.BATCHED_MODALITIES:
        (r,) = learned.decode_batch([learned.StreamJob(header, y, g, noise_var, False, 0.0, clock)])
        if isinstance(r, BaseException):
            raise r
        out, tokens = r
        return _Decoded(out, tokens, y, g, noise_var), learned.remodulate(header, tokens, link.snr_db)
    if header.scheme in (Scheme.UNITOCOM, Scheme.VAE) and header.modality == Modality.AUDIO:
        # one clip's chunks (their count is the clip's): not batched; the MLLM runs R again on y if it reads them
        out, tokens = learned.decode_with_tokens(header, y, g, noise_var, False, cfg, clock=clock)
        return _Decoded(out, None, y, g, noise_var), learned.remodulate(header, tokens, link.snr_db)
    out = schemes.for_scheme(header.scheme).decode(header, y, g, noise_var, False, cfg, clock=clock)
    return _Decoded(out, None, y, g, noise_var), None


def finish(core) -> Result:
    """The base station's Result for a request of users sharing the channel (`core` a BaseStationCore that has
    every frame): each user's streams decoded (orthogonal: alone; superposed: SIC), each user's task run."""
    header: RequestHeader = core.header
    link, cfg, clock = header.link, core.cfg, core.clock
    k_users = user_count(link)
    arrays, noise = {}, {}
    for sid, s in core.streams.items():
        if not s.done:
            raise RequestError("frames", f"stream {sid} ended after {s.next_seq} frames without its last frame")
        y, h = np.concatenate(s.y), np.concatenate(s.h_est)
        if len(y) != s.header.num_symbols:
            raise RequestError("frames", f"stream {sid}: {len(y)} symbols received, header says {s.header.num_symbols}")
        # what the channel reported must be numbers: SIC whitens by it, and a decoder would fail on it mid-request
        if not (math.isfinite(s.noise_var) and s.noise_var >= 0):
            raise RequestError("frame.csi.noise_var", f"stream {sid}: must be a finite number >= 0, got {s.noise_var}")
        if not (np.isfinite(y).all() and np.isfinite(h).all()):
            raise RequestError("frames", f"stream {sid}: received symbols and channel estimates must be finite")
        arrays[sid], noise[sid] = (y, h), s.noise_var
    by_user = user_signals([s.header for s in core.streams.values()])
    for i, s in enumerate(header.streams):
        if s.user >= k_users:
            raise RequestError(f"header.streams[{i}].user", f"{s.user} is not a user of this request")
        if not (math.isfinite(s.power) and 0.0 < s.power <= 1.0 + ma.POWER_TOLERANCE):
            raise RequestError(f"header.streams[{i}].power", f"must be a share of P in (0, 1], got {s.power}")
    decoded: dict[int, _Decoded] = {}
    users = {k: UserResult(user=k) for k in range(k_users)}
    if link.access == SUPERPOSED:
        _superposed(core, arrays, noise, by_user, decoded, users)
    else:
        for k, lst in by_user.items():
            sinrs = []
            for s, _ in lst:
                y, h = arrays[s.stream_id]
                g = h * np.float32(math.sqrt(s.power))
                decoded[s.stream_id], _ = _decode_stream(s, y, g, noise[s.stream_id], cfg, clock, link)
                sinrs.append(float(np.mean(np.abs(g) ** 2)) / max(noise[s.stream_id], 1e-30))
            users[k].sinr_db = 10.0 * math.log10(max(np.mean(sinrs), 1e-30))
    result = Result(request_id=header.request_id, task=header.task, scheme=link.scheme, snr_db=link.snr_db,
                    channel=link.channel or Channel.AWGN)
    lengths = []
    for k, lst in sorted(by_user.items()):
        u = users[k]
        u.power = float(lst[0][0].power)
        u.channel_uses = sum(int(s.num_symbols) for s, _ in lst)
        lengths.append(u.channel_uses)
        outputs = []
        for s, _ in lst:
            d = decoded[s.stream_id]
            d.output.user = k
            outputs.append(d.output)
        raw = [decoded[s.stream_id].raw for s, _ in lst if s.scheme == Scheme.TRADITIONAL]
        if raw and all(r is not None for r in raw):
            errors, bits = sum(r[0] for r in raw), sum(r[1] for r in raw)
            u.quality.update(raw_ber=errors / max(bits, 1), raw_bits=float(bits), raw_bit_errors=float(errors))
        texts = [o.text for o in outputs if o.modality == Modality.TEXT]
        u.output_text = texts[0] if texts else ""
        if header.task != Task.RECONSTRUCT:
            from unitocom.stages import mllm
            from unitocom.stages.mllm import Received
            received = [Received(s, decoded[s.stream_id].output, decoded[s.stream_id].y, decoded[s.stream_id].g,
                                 decoded[s.stream_id].noise_var, False, 0.0, decoded[s.stream_id].tokens)
                        for s, _ in lst]
            # each user's own task, scored against its own label (user_labels; with one user, the request's)
            label = header.user_labels[k] if header.user_labels else header.label if k_users == 1 else Label()
            text, generated, quality, notes = mllm.run(header.task, label, received, link.scheme, cfg,
                                                       seed=int(link.seed), clock=clock)
            u.output_text = text
            for o in generated:
                o.user = k
            outputs.extend(generated)
            u.quality.update(quality)
            for note in notes:
                for o in outputs:
                    if o.modality != Modality.TEXT and not o.decoded:
                        o.note = f"{o.note}; {note}" if o.note else note
        result.outputs.extend(outputs)
    result.users = [users[k] for k in range(k_users)]
    if header.task != Task.RECONSTRUCT:  # the request's score: the users' mean of each (reconstruct: the device's)
        result.quality.update(users_mean([u.quality for u in result.users], skip=("raw_bits", "raw_bit_errors")))
    result.output_text = result.users[0].output_text if result.users else ""
    result.channel_uses = ma.frame_uses(lengths, link.access or ORTHOGONAL)
    clock.report(result.timings)
    return result


def _superposed(core, arrays, noise, by_user, decoded, users) -> None:
    """SIC over the superposed users: rebuild the frame's received signal and each user's effective gains
    sqrt(p_k) h_k from the streams, then `multiaccess.sic` with each user's streams decoded and re-modulated."""
    link, cfg, clock = core.header.link, core.cfg, core.clock
    n = max(start + int(s.num_symbols) for lst in by_user.values() for s, start in lst)
    y = np.zeros(n, np.complex64)
    k_users = user_count(link)
    gains: list[np.ndarray] = [np.zeros(0, np.complex64)] * k_users
    noise_var = max(noise.values())
    for k, lst in by_user.items():
        gs = []
        for s, start in lst:
            ys, hs = arrays[s.stream_id]
            y[start:start + len(ys)] = ys  # every stream carries the same received signal over its own uses
            gs.append(hs * np.float32(math.sqrt(s.power)))
        gains[k] = np.concatenate(gs)
    if not noise_var > 0:
        raise RequestError("frame.csi.noise_var", "superposed access needs the noise variance of the channel")

    def decode(k: int, yk: np.ndarray, gk: np.ndarray, nv: float) -> np.ndarray:
        parts = []
        for s, start in by_user.get(k, []):
            sl = slice(start, start + int(s.num_symbols))
            d, x_hat = _decode_stream(s, yk[sl], gk[sl], nv, cfg, clock, link)
            decoded[s.stream_id] = d
            if x_hat is None:
                raise RequestError("link.access", f"stream {s.stream_id} cannot be re-modulated for SIC",
                                   code="unimplemented")
            parts.append(x_hat)
        return np.concatenate(parts) if parts else np.zeros(0, np.complex64)

    for step in ma.sic(y, gains, noise_var, decode):
        u = users[step.user]
        u.sinr_db, u.sic_order, u.residual_db = step.sinr_db, step.order, step.residual_db
