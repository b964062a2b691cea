"""The letter's traditional scheme: UTF-8 / JPEG / AMR-WB source coding, Turbo (text) or LDPC (image, audio)
channel coding with a CRC per block, Gray 16-QAM, power-normalised to P.

`encode` turns one payload into symbols plus the control header the receiver needs (stages source_encode,
channel_encode); `decode` undoes it from the received symbols and the CSI (equalise: MMSE + demapping to LLRs;
decode: channel decoding + CRC, then the source decoder). A payload the channel broke is a result
(`decoded=False` and why), never an exception: that is the cliff effect the letter's Fig. 2 shows.
"""
from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from PIL import Image

from unitocom import codecs
from unitocom.config import Config
from unitocom.link.digital import DecodeResult, DigitalLink
from unitocom.messages import LinkSettings, Modality, ModalityOutput, StreamHeader
from unitocom.options import Scheme
from unitocom.schemes.encoded import Encoded
from unitocom.stages.request import RequestError, SourcePayload
from unitocom.timing import NOT_TIMED, Clock

AMR_RATE_HZ = 16000  # AMR-WB is defined at 16 kHz


def _link(header: StreamHeader, cfg: Config) -> DigitalLink:
    d = cfg.digital
    iterations = d.ldpc_iterations if header.channel_code == "ldpc" else d.turbo_iterations
    return _cached_link(header.channel_code, header.code_rate, header.modulation, header.info_block_bits, iterations)


def code_blocks(header: StreamHeader, cfg: Config) -> int:
    """How many LDPC/Turbo code blocks a traditional stream's payload takes (its packets, issue 16)."""
    return _link(header, cfg).num_blocks(int(header.payload_bytes))


@functools.lru_cache(maxsize=64)
def _cached_link(code: str, rate: float, modulation: str, k: int, iterations: int) -> DigitalLink:
    """Building the 5G LDPC parity-check structures costs tens of ms: build each configuration once per
    process (DigitalLink's encode/decode are safe to call from several threads)."""
    return DigitalLink(code=code, rate=rate, modulation=modulation, k=k, iterations=iterations)


def encode(stream_id: int, payload: SourcePayload, link: LinkSettings, cfg: Config,
           clock: Clock = NOT_TIMED, task=None) -> Encoded:
    """`task` is unused: this link carries any task's payload alike (SemCom's does not, `schemes.semcom`)."""
    d = cfg.digital
    m = payload.modality
    with clock.stage("source_encode"):  # with the clean decode the transmitter scores against
        if m == Modality.TEXT:
            data, codec, code, k = codecs.utf8_encode(payload.value), "utf8", d.text_code, d.turbo_k
            source = payload.value
        elif m == Modality.IMAGE:
            data = codecs.jpeg_encode(payload.value, quality=int(link.jpeg_quality or d.jpeg_quality))
            codec, code, k = "jpeg", d.media_code, d.ldpc_k
            source = codecs.jpeg_decode(data).value
        else:
            data = codecs.amrwb_encode(payload.value, payload.rate_hz, bitrate=d.amr_wb_bitrate)
            codec, code, k = "amrwb", d.media_code, d.ldpc_k
            source = codecs.amrwb_decode(data).value
    header = StreamHeader(
        stream_id=stream_id, modality=m, scheme=Scheme.TRADITIONAL, source_codec=codec, channel_code=code,
        code_rate=link.code_rate or d.code_rate, modulation=link.modulation or d.modulation, info_block_bits=k,
        payload_bytes=len(data), audio_rate_hz=AMR_RATE_HZ if m == Modality.AUDIO else 0,
    )
    with clock.stage("channel_encode"):
        try:
            link_ = _link(header, cfg)
        except ValueError as e:  # a rate or modulation this code cannot do: the request's fault, said precisely
            raise RequestError("link.code_rate" if "rate" in str(e) else "link.modulation", str(e)) from None
        symbols = link_.encode(data)
    header.num_symbols = len(symbols)
    return Encoded(header, symbols, reference=payload.value, source=source)


# The source codec of each modality (the letter's section V); a stream header must name it.
SOURCE_CODECS = {Modality.TEXT: "utf8", Modality.IMAGE: "jpeg", Modality.AUDIO: "amrwb"}


@dataclass
class BlockJob:
    """One stream's LLRs for decode_blocks: the code blocks of concurrent requests' streams that share a code
    configuration (the same cached DigitalLink) are decoded in one call."""

    link: DigitalLink
    llr: np.ndarray  # float [blocks, n]
    num_bytes: int


def decode_blocks(jobs: list[BlockJob]) -> list:
    """-> per job its DecodeResult (or the exception of its group): one decoder call per code configuration."""
    results: list = [None] * len(jobs)
    groups: dict[int, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault(id(j.link), []).append(i)
    for idx in groups.values():
        link_ = jobs[idx[0]].link
        try:
            for i, r in zip(idx, link_.decode_llrs_many([jobs[i].llr for i in idx], [jobs[i].num_bytes for i in idx])):
                results[i] = r
        except Exception as e:  # noqa: BLE001 - this group's error, raised to its requests only
            for i in idx:
                results[i] = e
    return results


def decode(header: StreamHeader, y: np.ndarray, h_est: np.ndarray, noise_var: float, erased: bool,
           cfg: Config, est_error_var: float = 0.0, clock: Clock = NOT_TIMED,
           block_decoder: Callable[[BlockJob], object] | None = None) -> ModalityOutput:
    """`block_decoder`: where the code blocks are decoded (the base station's batcher, `decode_blocks`); by
    default here, alone."""
    return decode_bits(header, y, h_est, noise_var, erased, cfg, est_error_var, clock, block_decoder)[0]


def remodulate(header: StreamHeader, decoded: DecodeResult, cfg: Config) -> np.ndarray:
    """The stream's symbols as the transmitter made them from the decoded payload (`decode_bits`): what successive
    interference cancellation subtracts (`link.multiaccess.sic`); exact when every block passed its CRC."""
    return _link(header, cfg).encode(decoded.payload)


def hard_bits(header: StreamHeader, symbols: np.ndarray, cfg: Config) -> np.ndarray:
    """Hard decisions (nearest constellation point, Gray labels) of equalised symbols: the channel-level bits
    before channel decoding, to count the raw BER against `remodulate`'s symbols."""
    return _link(header, cfg).modulator.hard(symbols)


def decode_bits(header: StreamHeader, y: np.ndarray, h_est: np.ndarray, noise_var: float, erased: bool,
                cfg: Config, est_error_var: float = 0.0, clock: Clock = NOT_TIMED,
                block_decoder: Callable[[BlockJob], object] | None = None) -> tuple[ModalityOutput, DecodeResult]:
    """`decode`, with the channel decoder's result (the payload's bytes, best effort where blocks failed)."""
    out = ModalityOutput(modality=header.modality, channel_uses=len(y), erased=erased)
    codec = SOURCE_CODECS.get(header.modality)
    if header.source_codec != codec:  # a hand-made header: decoding it as another codec would answer nonsense
        raise RequestError(f"header.streams[{header.stream_id}].source_codec",
                           f"{header.source_codec!r} is not the {header.modality} codec of this scheme ({codec!r})")
    try:
        link_ = _link(header, cfg)
    except ValueError as e:  # only a hand-made header gets here: the transmitter checked its own
        raise RequestError(f"header.streams[{header.stream_id}]", str(e)) from None
    num_bytes = int(header.payload_bytes)
    with clock.stage("equalise"):
        llr = link_.demodulate(y, h_est, noise_var, num_bytes, est_error_var=est_error_var)
    with clock.stage("decode"):
        res = (link_.decode_llrs(llr, num_bytes) if block_decoder is None
               else block_decoder(BlockJob(link_, llr, num_bytes)))
        out.blocks, out.block_errors = res.blocks, res.block_errors
        if header.source_codec == "utf8":
            r = codecs.utf8_decode(res.payload)
            out.text = r.value if r.value is not None else ""
        elif header.source_codec == "jpeg":
            r = codecs.jpeg_decode(res.payload)
            if r.ok:
                buf = io.BytesIO()
                Image.fromarray(r.value).save(buf, format="PNG")
                out.image_png = buf.getvalue()
        else:
            r = codecs.amrwb_decode(res.payload)
            if r.ok:
                wave, rate = r.value
                buf = io.BytesIO()
                sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
                out.audio_wav = buf.getvalue()
    out.decoded = r.ok
    notes = []
    if erased:
        notes.append("frames erased by the channel")
    if res.block_errors:
        notes.append(f"{res.block_errors}/{res.blocks} {header.channel_code} blocks failed their CRC")
    if not r.ok:
        notes.append(f"{header.source_codec} decoding failed: {r.error}")
    out.note = "; ".join(notes)
    return out, res
