"""The library's data model: plain dataclasses for what the schemes and stages read and write.

They mirror the `unitocom.v1` messages the library needs (Request with its Payloads, LinkSettings and Label;
RequestHeader, StreamHeader, SymbolFrame, Csi; Result with its ModalityOutputs and StageTimings) field for field,
with enums as the `unitocom.options` StrEnums (lower-case names of the proto enums), None for a proto enum's
UNSPECIFIED and for a oneof member that is not set. Protobuf stays at the service edge: `unitocom.wire.to_pb` /
`from_pb` (and `frame_from_pb` / `fill_frame` for the frames' arrays) convert, so the wire format is the .proto's
and nothing here imports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from unitocom.options import Channel, Csi, Fading, Scheme, Task


class Modality(StrEnum):
    """What a payload or a stream carries (`unitocom.v1.Modality`, lower case)."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"


@dataclass
class LinkSettings:
    """How a request crosses the link. Zero / empty / None: the configuration's default."""

    scheme: Scheme | None = None
    snr_db: float = 0.0
    channel: Channel | None = None
    fading: Fading | None = None
    seed: int = 0
    block_length: int = 0
    rician_k_db: float = 0.0
    csi: Csi | None = None
    pilots: int = 0
    erasure_prob: float = 0.0
    jpeg_quality: int = 0  # 1..95
    code_rate: float = 0.0
    modulation: str = ""  # bpsk | qpsk | qam16 | qam64
    packet_loss: float = 0.0  # token packets: long-run fraction lost, 0..1
    packet_burst: float = 0.0  # mean run of consecutive lost packets (Gilbert); 0: i.i.d.
    tokens_per_packet: int = 0  # learned schemes (0: the default, 4)
    variant: str = ""  # learned schemes: standard | resilient ("": standard)
    token_budget: int = 0  # image tokens sent per picture, most important first (resilient; 0: all)
    packing: str = ""  # sequential | aggregated: which image tokens share a packet (resilient; "": sequential)
    lossy_modalities: str = ""  # comma list (image,text,audio) whose packets packet_loss hits ("": all)
    # users sharing the channel (issue 17; `unitocom.link.multiaccess`)
    users: int = 0  # K devices in one access group (0 or 1: one device)
    access: str = ""  # orthogonal | superposed ("": orthogonal)
    user_powers: list[float] = field(default_factory=list)  # superposed: shares of P, sum <= 1 (empty: default)
    capture: bool = False  # record this request's IQ at the channel (issue 17; a service without --capture refuses)
    text_copies: int = 0  # each text payload sent this many times over independent fades, MRC at the receiver (0, 1: once)


@dataclass
class Label:
    """Ground truth a request may carry, scored against at the base station."""

    answer: str = ""  # VQA
    transcript: str = ""  # ASR
    caption: str = ""  # T2I


@dataclass
class Payload:
    """One input as the client sent it: at most one of text, image, audio is set (the proto's oneof `content`)."""

    modality: Modality | None = None
    text: str | None = None
    image: bytes | None = None  # any format Pillow decodes (PNG, JPEG, ...)
    audio: bytes | None = None  # WAV or FLAC
    user: int = 0  # users sharing the channel: the device that sends it

    @property
    def content(self) -> str | None:
        """The name of the member that is set ("text", "image", "audio"), or None."""
        return next((k for k in ("text", "image", "audio") if getattr(self, k) is not None), None)


@dataclass
class Session:
    """A request assembled from parts sent by several devices under one id (issue 17; `stages.session`)."""

    id: str = ""
    parts: list[Modality] = field(default_factory=list)  # the modalities awaited, all parts together; []: the task's
    partial: bool = False  # parts missing at the deadline: answer with what arrived and a note (else DEADLINE_EXCEEDED)
    wait_s: float = 0.0  # the wait for the other parts after the first arrived (the opener's); 0: the service default


@dataclass
class Request:
    """What a client asks for."""

    request_id: str = ""  # empty: the transmitter assigns one
    task: Task | None = None
    payloads: list[Payload] = field(default_factory=list)
    link: LinkSettings = field(default_factory=LinkSettings)
    label: Label = field(default_factory=Label)
    session: Session | None = None  # None: answered on its own
    # users sharing the channel: user k's label, one per user (empty: their answers come back unscored)
    user_labels: list[Label] = field(default_factory=list)


@dataclass
class StreamHeader:
    """What the receiver needs to undo one modality stream's source and channel coding."""

    stream_id: int = 0
    modality: Modality | None = None
    scheme: Scheme | None = None
    num_symbols: int = 0  # channel uses of this stream
    # traditional
    source_codec: str = ""  # utf8 | jpeg | amrwb
    channel_code: str = ""  # ldpc | turbo | none
    code_rate: float = 0.0
    modulation: str = ""
    info_block_bits: int = 0
    payload_bytes: int = 0
    # learned
    token_shape: list[int] = field(default_factory=list)  # the token array's shape before coding-modulation
    tokenizer: str = ""  # checkpoint name used by the transmitter
    preprocessing: str = ""
    audio_rate_hz: int = 0
    num_samples: int = 0  # audio: samples at audio_rate_hz before chunking (the last chunk's padding is cut)
    packet_symbols: int = 0  # channel uses per packet: the channel loses whole packets (0: not packetised)
    # image tokens sent (budget, aggregated packing): grid positions in the order sent (empty: all, in grid order)
    sent_tokens: list[int] = field(default_factory=list)
    symbol_gain_db: float = 0.0  # scale that brought the sent tokens' symbols to power P (the receiver undoes it)
    user: int = 0  # users sharing the channel: the device that sent it
    power: float = 0.0  # its transmit power, share of P (symbols scaled by sqrt(power)); 0: P
    copy: int = 0  # link.text_copies: this stream is copy k >= 1 of stream copy_of (0: the stream itself)
    copy_of: int = 0


@dataclass
class RequestHeader:
    """Everything about the request except the payloads, sent first on every uplink stream."""

    request_id: str = ""
    task: Task | None = None
    link: LinkSettings = field(default_factory=LinkSettings)
    label: Label = field(default_factory=Label)
    streams: list[StreamHeader] = field(default_factory=list)
    transmitter_s: float = 0.0  # time the transmitter spent before the first frame
    session: Session | None = None  # the request's session, as the client asked for it
    user_labels: list[Label] = field(default_factory=list)  # users sharing the channel: user k's label


@dataclass
class ModalityOutput:
    """One modality as the base station recovered (or generated) it."""

    modality: Modality | None = None
    decoded: bool = False  # False: the payload could not be recovered (e.g. a JPEG broken by the channel)
    note: str = ""  # why not, or what was done
    text: str = ""
    image_png: bytes = b""
    audio_wav: bytes = b""
    channel_uses: int = 0
    blocks: int = 0  # channel-code blocks (traditional)
    block_errors: int = 0  # blocks whose CRC failed
    erased: bool = False
    user: int = 0  # users sharing the channel: the device whose payload this is


@dataclass
class UserResult:
    """One user of a request whose users share the channel (issue 17)."""

    user: int = 0
    output_text: str = ""
    quality: dict[str, float] = field(default_factory=dict)
    channel_uses: int = 0  # channel uses this user's signal occupied
    power: float = 0.0  # transmit power, share of P
    sinr_db: float = 0.0  # mean SINR its decoder was given
    sic_order: int = 0  # superposed: place in the cancellation order (0: first)
    residual_db: float = 0.0  # superposed: estimated power left after cancelling it, dB against its own


@dataclass
class StageTiming:
    """Time one service spent in one stage of one request (`unitocom.timing.STAGES`)."""

    service: str = ""  # transmitter | channel | basestation
    stage: str = ""
    seconds: float = 0.0


@dataclass
class SessionPart:
    """One part of a session as the base station received it."""

    request_id: str = ""
    modality: Modality | None = None
    scheme: Scheme | None = None
    snr_db: float = 0.0
    channel: Channel | None = None
    channel_uses: int = 0
    decoded: bool = False
    note: str = ""


@dataclass
class SessionReport:
    """What became of a request's session: the same on every part's call except `waited_s`."""

    id: str = ""
    arrived: list[SessionPart] = field(default_factory=list)  # the parts that arrived, in order of arrival
    missing: list[Modality] = field(default_factory=list)  # expected parts not there at the deadline
    complete: bool = False
    answered_by: str = ""  # request id of the call that ran the task (once per session)
    waited_s: float = 0.0  # this call's wait at the base station for the other parts
    note: str = ""  # what a partial answer lacks: the missing parts and what the task read instead


@dataclass
class CaptureReport:
    """Where the channel put a request's IQ recording (`unitocom.capture`), for `unitocom replay`."""

    path: str = ""  # the .sigmf-meta on the channel's host; empty: not kept (note says why)
    bytes: int = 0  # size on disk, data and metadata
    note: str = ""  # why it was not kept, or why it was recorded unasked


@dataclass
class Result:
    """What comes back for a request: the base station's outputs, with the timings and quality every hop adds."""

    request_id: str = ""
    task: Task | None = None
    scheme: Scheme | None = None
    output_text: str = ""  # VQA answer, ASR transcript, or recovered text
    outputs: list[ModalityOutput] = field(default_factory=list)
    timings: list[StageTiming] = field(default_factory=list)  # `timing.Clock.report` appends to it
    channel_uses: int = 0  # complex symbols sent, all streams
    quality: dict[str, float] = field(default_factory=dict)  # psnr_db, jpeg_psnr_db, exact_match, wer, ...
    snr_db: float = 0.0
    channel: Channel | None = None
    # A session's answer (output_text, quality, generated outputs) is the same on every part's call; outputs and
    # channel_uses are this call's own streams (session.arrived lists every part).
    session: SessionReport | None = None
    users: list[UserResult] = field(default_factory=list)  # users sharing the channel, in user order
    capture: CaptureReport | None = None  # set by a channel that recorded the request's IQ


@dataclass
class Csi:
    """The channel state the channel applied to one frame (`unitocom.v1.Csi`): gains run-length coded
    (`wire.runs_encode`), numpy arrays, not copied. At the receiver (`wire.frame_from_pb(csi=True)`) the true
    gains h, h_runs stay empty: it knows only its estimate."""

    h: np.ndarray = field(default_factory=lambda: np.zeros(0, np.complex64))  # complex64 [B] true gains
    h_runs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # int32 [B]
    h_est: np.ndarray = field(default_factory=lambda: np.zeros(0, np.complex64))  # complex64 [B'] (h: perfect CSI)
    h_est_runs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # int32 [B']
    noise_var: float = 0.0  # N0 of the complex noise
    snr_db: float = 0.0
    erased: bool = False  # the whole frame was lost
    h_est_error_var: float = 0.0  # variance of h_est - h; 0 with perfect CSI


@dataclass
class SymbolFrame:
    """One frame of a stream's channel symbols (`unitocom.v1.SymbolFrame`): a numpy array, not a copy of it."""

    stream_id: int = 0
    seq: int = 0  # frame index within the stream, from 0
    last: bool = False  # last frame of the stream
    symbols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.complex64))  # complex64 [n]
    csi: Csi | None = None  # set by the channel
