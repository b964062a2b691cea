"""The user device: validate, source-code/tokenize and code-modulate each payload into its own symbol stream.

`prepare` produces the uplink (a RequestHeader then SymbolFrames); `finish` scores the outputs the base
station sends back against what was sent (the device still holds its originals).
"""
from __future__ import annotations

import dataclasses
import functools
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from PIL import Image

from unitocom import codecs, wire
from unitocom.config import Config
from unitocom import schemes
from unitocom.messages import Label, Modality, ModalityOutput, Request, RequestHeader, SymbolFrame
from unitocom.options import Scheme, Task
from unitocom.stages.request import SourcePayload, request_id, validate
from unitocom.timing import Clock

SERVICE = "transmitter"


@dataclass
class Prepared:
    header: RequestHeader
    streams: list[schemes.Encoded]
    payloads: list[SourcePayload]
    cfg: Config
    clock: Clock = field(default_factory=lambda: Clock(SERVICE))
    users: list[int] = field(default_factory=list)  # users sharing the channel: payload i's user
    user_quality: dict[int, dict[str, float]] = field(default_factory=dict)  # set by finish, per user

    def frames(self, frame_symbols: int) -> Iterator[SymbolFrame]:
        """Every stream's symbols in frames of at most `frame_symbols` (views, not copies); the uplink sends
        `header` first, then these (`wire.uplink`)."""
        for s in self.streams:
            for seq, last, chunk in wire.frames(s.symbols, frame_symbols):
                yield SymbolFrame(stream_id=s.header.stream_id, seq=seq, last=last, symbols=chunk)


def prepare(request: Request, cfg: Config) -> Prepared:
    """Raises RequestError for anything the system cannot serve."""
    t0 = time.perf_counter()
    clock = Clock(SERVICE)
    with clock.stage("validate"):
        _, payloads = validate(request, cfg)
    link = request.link
    scheme = schemes.for_scheme(link.scheme)
    # Each scheme times its own steps: source_encode (codec or tokenizer F) and channel_encode (code + QAM, or T).
    streams = [scheme.encode(i, p, link, cfg, clock=clock, task=request.task) for i, p in enumerate(payloads)]
    streams += text_copies(streams, int(link.text_copies))
    for s in streams:
        s.header.packet_symbols = packet_symbols(s.header, link, cfg)
    from unitocom.stages import multiuser
    multiuser.assign(streams, request)  # users sharing the channel: each stream's user and power
    label, user_labels = request.label, list(request.user_labels)
    if request.task == Task.T2I:
        # The device knows the caption it asked for: the base station scores the picture against it, not against
        # the caption it received (which the channel may have changed; a broken one named no pairs and went unscored).
        # Users sharing the channel: each user's picture against its own device's caption.
        users = [p.user for p in request.payloads]
        if multiuser.active(link) and multiuser.user_count(link) > 1:
            user_labels = user_labels or [Label() for _ in range(multiuser.user_count(link))]
            user_labels = [u if u.caption else dataclasses.replace(u, caption=next(
                (p.value for p, user in zip(payloads, users) if user == k and p.modality == Modality.TEXT), ""))
                for k, u in enumerate(user_labels)]
        elif not label.caption:
            label = dataclasses.replace(label, caption=next(p.value for p in payloads if p.modality == Modality.TEXT))
    header = RequestHeader(request_id=request_id(request), task=request.task, link=request.link, label=label,
                           streams=[s.header for s in streams], transmitter_s=time.perf_counter() - t0,
                           session=request.session, user_labels=user_labels)
    return Prepared(header, streams, payloads, cfg, clock,
                    users=[p.user for p in request.payloads] if multiuser.active(link) else [])


def text_copies(streams: list[schemes.Encoded], copies: int) -> list[schemes.Encoded]:
    """The repeats of each text stream that link.text_copies asks for (copies - 1 each; none for 0 or 1): the same
    symbols as new streams, ids after the last, each header naming the stream it repeats. The channel draws each
    stream's own h, so each copy crosses its own fade; the base station combines them (`link.diversity.mrc`)."""
    out: list[schemes.Encoded] = []
    next_id = max((s.header.stream_id for s in streams), default=-1) + 1
    for s in streams:
        if s.header.modality != Modality.TEXT:
            continue
        for k in range(1, copies):
            header = dataclasses.replace(s.header, stream_id=next_id, copy=k, copy_of=s.header.stream_id,
                                         token_shape=list(s.header.token_shape),
                                         sent_tokens=list(s.header.sent_tokens))
            out.append(dataclasses.replace(s, header=header))
            next_id += 1
    return out


def packet_symbols(header, link, cfg: Config) -> int:
    """Channel uses per packet of a stream: `tokens_per_packet` tokens of a learned stream (token_shape
    [..., d]: the last axis is one token's), or one LDPC/Turbo code block of a traditional one (its CRC tells the
    receiver whether it arrived). 0 when the stream cannot be cut so (a stream of no symbols)."""
    n = int(header.num_symbols)
    if n == 0:
        return 0
    if header.scheme == Scheme.TRADITIONAL:
        from unitocom.schemes.traditional import code_blocks
        blocks = code_blocks(header, cfg)
        return n // blocks if blocks else n
    tokens = (len(header.sent_tokens) or int(np.prod(header.token_shape[:-1]))) if len(header.token_shape) > 1 else 0
    if tokens <= 0 or n % tokens:
        return n
    return (n // tokens) * (link.tokens_per_packet or cfg.channel.tokens_per_packet)


def finish(outputs: list[ModalityOutput], prep: Prepared) -> dict[str, float]:
    """The quality of what came back (the Result's outputs) against what was sent, to add to the Result's
    quality, with `prep.clock`'s timings (stage `score`) after it."""
    # Reconstruction is scored here, against the originals the device still holds; the MLLM tasks are
    # scored by the base station against the request's label.
    if prep.header.task != Task.RECONSTRUCT:
        return {}
    with prep.clock.stage("score"):
        if not prep.users:
            return score(outputs, prep)
        # Users sharing the channel: each user's outputs against its own payloads (prep.user_quality), and the
        # users' mean of each score as the request's.
        for k in sorted(set(prep.users)):
            mine = [i for i, u in enumerate(prep.users) if u == k]
            sub = dataclasses.replace(prep, payloads=[prep.payloads[i] for i in mine],
                                      streams=[prep.streams[i] for i in mine], users=[])
            prep.user_quality[k] = score([o for o in outputs if o.user == k], sub)
        from unitocom.stages.access import users_mean
        return users_mean(list(prep.user_quality.values()))


def score(result_outputs: list[ModalityOutput], prep: Prepared) -> dict[str, float]:
    q: dict[str, float] = {}
    outputs = {o.modality: o for o in result_outputs}
    # Each scheme says what its output is compared with (the input, or the input resized to the preset).
    if result_outputs:
        q["decoded"] = float(all(o.decoded for o in result_outputs))
    for p, s in zip(prep.payloads, prep.streams):
        out = outputs.get(p.modality)
        if out is None:
            continue
        if p.modality == Modality.TEXT and "exact_match" not in q:
            q["exact_match"] = float(out.decoded and out.text == p.value)
        elif p.modality == Modality.IMAGE and "psnr_db" not in q:
            if s.source is not None:
                q["jpeg_psnr_db"] = codecs.psnr_db(s.reference, s.source)
            if out.decoded and out.image_png:
                img = np.asarray(Image.open(io.BytesIO(out.image_png)).convert("RGB"))
                if img.shape == s.reference.shape:
                    q["psnr_db"] = codecs.psnr_db(s.reference, img)
        elif p.modality == Modality.AUDIO and "mel_distance_db" not in q and out.decoded and out.audio_wav:
            got, rate = sf.read(io.BytesIO(out.audio_wav), dtype="float32")
            q["mel_distance_db"] = _mel_distance_db(p.value, p.rate_hz, got, rate, prep.cfg)
            if s.source is not None:  # a codec's clean decode: the waveform SNR then is the channel's damage
                q["audio_snr_db"] = _audio_snr_db(s.source[0], got)
    return q


@functools.lru_cache(maxsize=8)
def _mel_frontend(rate_hz: int, n_fft: int, hop: int, mels: int):
    """One per analysis setting for the process, not one per request (it holds the mel filterbank)."""
    from unitocom.models.audio_tokenizer import MelFrontend
    return MelFrontend(rate_hz, n_fft, hop, mels)


def _mel_distance_db(reference: np.ndarray, ref_rate_hz: int, got: np.ndarray, rate_hz: int, cfg: Config) -> float:
    """Log-mel distance of the received speech from the input as sent (resampled to the output's rate), in the
    preset's mel analysis: the same score for every scheme, codec and channel damage together."""
    from unitocom.data.loaders import resample
    from unitocom.metrics.scores import logmel_distance_db
    ref = np.asarray(reference, np.float32)
    ref = ref.mean(axis=1) if ref.ndim == 2 else ref
    if int(ref_rate_hz) != int(rate_hz):
        ref = resample(ref, int(ref_rate_hz), int(rate_hz))
    t = cfg.preset.tokenizer
    return logmel_distance_db(ref, got, _mel_frontend(int(rate_hz), t.audio_n_fft, t.audio_hop, t.audio_mels))


def _audio_snr_db(reference: np.ndarray, got: np.ndarray) -> float:
    """SNR of received speech against the codec's own clean decode (the channel's damage, not the codec's).
    Corrupted AMR frames can change the decoded length; the shorter one bounds the comparison and the
    missing remainder counts as error."""
    n = min(len(got), len(reference))
    err = np.sum((reference[:n] - got[:n]) ** 2) + np.sum(reference[n:] ** 2)
    return float(10 * np.log10(np.sum(reference ** 2) / max(err, 1e-12)))
