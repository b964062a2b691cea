from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    INT32: _ClassVar[DType]
    COMPLEX64: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    FLOAT16: _ClassVar[DType]
    INT64: _ClassVar[DType]

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    TEXT: _ClassVar[Modality]
    IMAGE: _ClassVar[Modality]
    AUDIO: _ClassVar[Modality]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    RECONSTRUCT: _ClassVar[Task]
    VQA: _ClassVar[Task]
    T2I: _ClassVar[Task]
    ASR: _ClassVar[Task]

class Scheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEME_UNSPECIFIED: _ClassVar[Scheme]
    TRADITIONAL: _ClassVar[Scheme]
    UNITOCOM: _ClassVar[Scheme]
    VAE: _ClassVar[Scheme]
    SEMCOM: _ClassVar[Scheme]

class ChannelModel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_MODEL_UNSPECIFIED: _ClassVar[ChannelModel]
    AWGN: _ClassVar[ChannelModel]
    RAYLEIGH: _ClassVar[ChannelModel]
    RICIAN: _ClassVar[ChannelModel]
    NOISELESS: _ClassVar[ChannelModel]

class Fading(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FADING_UNSPECIFIED: _ClassVar[Fading]
    BLOCK: _ClassVar[Fading]
    FAST: _ClassVar[Fading]

class CsiMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CSI_MODE_UNSPECIFIED: _ClassVar[CsiMode]
    PERFECT: _ClassVar[CsiMode]
    ESTIMATED: _ClassVar[CsiMode]
DTYPE_UNSPECIFIED: DType
FLOAT32: DType
INT32: DType
COMPLEX64: DType
UINT8: DType
FLOAT16: DType
INT64: DType
MODALITY_UNSPECIFIED: Modality
TEXT: Modality
IMAGE: Modality
AUDIO: Modality
TASK_UNSPECIFIED: Task
RECONSTRUCT: Task
VQA: Task
T2I: Task
ASR: Task
SCHEME_UNSPECIFIED: Scheme
TRADITIONAL: Scheme
UNITOCOM: Scheme
VAE: Scheme
SEMCOM: Scheme
CHANNEL_MODEL_UNSPECIFIED: ChannelModel
AWGN: ChannelModel
RAYLEIGH: ChannelModel
RICIAN: ChannelModel
NOISELESS: ChannelModel
FADING_UNSPECIFIED: Fading
BLOCK: Fading
FAST: Fading
CSI_MODE_UNSPECIFIED: CsiMode
PERFECT: CsiMode
ESTIMATED: CsiMode

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "raw")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., raw: _Optional[bytes] = ...) -> None: ...

class Payload(_message.Message):
    __slots__ = ("modality", "text", "image", "audio", "user")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    text: str
    image: bytes
    audio: bytes
    user: int
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., text: _Optional[str] = ..., image: _Optional[bytes] = ..., audio: _Optional[bytes] = ..., user: _Optional[int] = ...) -> None: ...

class LinkSettings(_message.Message):
    __slots__ = ("scheme", "snr_db", "channel", "fading", "seed", "block_length", "rician_k_db", "csi", "pilots", "erasure_prob", "jpeg_quality", "code_rate", "modulation", "packet_loss", "packet_burst", "tokens_per_packet", "variant", "token_budget", "packing", "lossy_modalities", "users", "access", "user_powers", "capture", "text_copies")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FADING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BLOCK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    RICIAN_K_DB_FIELD_NUMBER: _ClassVar[int]
    CSI_FIELD_NUMBER: _ClassVar[int]
    PILOTS_FIELD_NUMBER: _ClassVar[int]
    ERASURE_PROB_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    CODE_RATE_FIELD_NUMBER: _ClassVar[int]
    MODULATION_FIELD_NUMBER: _ClassVar[int]
    PACKET_LOSS_FIELD_NUMBER: _ClassVar[int]
    PACKET_BURST_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_PACKET_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    LOSSY_MODALITIES_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    USER_POWERS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FIELD_NUMBER: _ClassVar[int]
    TEXT_COPIES_FIELD_NUMBER: _ClassVar[int]
    scheme: Scheme
    snr_db: float
    channel: ChannelModel
    fading: Fading
    seed: int
    block_length: int
    rician_k_db: float
    csi: CsiMode
    pilots: int
    erasure_prob: float
    jpeg_quality: int
    code_rate: float
    modulation: str
    packet_loss: float
    packet_burst: float
    tokens_per_packet: int
    variant: str
    token_budget: int
    packing: str
    lossy_modalities: str
    users: int
    access: str
    user_powers: _containers.RepeatedScalarFieldContainer[float]
    capture: bool
    text_copies: int
    def __init__(self, scheme: _Optional[_Union[Scheme, str]] = ..., snr_db: _Optional[float] = ..., channel: _Optional[_Union[ChannelModel, str]] = ..., fading: _Optional[_Union[Fading, str]] = ..., seed: _Optional[int] = ..., block_length: _Optional[int] = ..., rician_k_db: _Optional[float] = ..., csi: _Optional[_Union[CsiMode, str]] = ..., pilots: _Optional[int] = ..., erasure_prob: _Optional[float] = ..., jpeg_quality: _Optional[int] = ..., code_rate: _Optional[float] = ..., modulation: _Optional[str] = ..., packet_loss: _Optional[float] = ..., packet_burst: _Optional[float] = ..., tokens_per_packet: _Optional[int] = ..., variant: _Optional[str] = ..., token_budget: _Optional[int] = ..., packing: _Optional[str] = ..., lossy_modalities: _Optional[str] = ..., users: _Optional[int] = ..., access: _Optional[str] = ..., user_powers: _Optional[_Iterable[float]] = ..., capture: _Optional[bool] = ..., text_copies: _Optional[int] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("answer", "transcript", "caption")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    answer: str
    transcript: str
    caption: str
    def __init__(self, answer: _Optional[str] = ..., transcript: _Optional[str] = ..., caption: _Optional[str] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "parts", "partial", "wait_s")
    ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    id: str
    parts: _containers.RepeatedScalarFieldContainer[Modality]
    partial: bool
    wait_s: float
    def __init__(self, id: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[Modality, str]]] = ..., partial: _Optional[bool] = ..., wait_s: _Optional[float] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("request_id", "task", "payloads", "link", "label", "session", "user_labels")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    USER_LABELS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task: Task
    payloads: _containers.RepeatedCompositeFieldContainer[Payload]
    link: LinkSettings
    label: Label
    session: Session
    user_labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, request_id: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., payloads: _Optional[_Iterable[_Union[Payload, _Mapping]]] = ..., link: _Optional[_Union[LinkSettings, _Mapping]] = ..., label: _Optional[_Union[Label, _Mapping]] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., user_labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class StreamHeader(_message.Message):
    __slots__ = ("stream_id", "modality", "scheme", "num_symbols", "source_codec", "channel_code", "code_rate", "modulation", "info_block_bits", "payload_bytes", "token_shape", "tokenizer", "preprocessing", "audio_rate_hz", "num_samples", "packet_symbols", "sent_tokens", "symbol_gain_db", "user", "power", "copy", "copy_of")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    NUM_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CODEC_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_RATE_FIELD_NUMBER: _ClassVar[int]
    MODULATION_FIELD_NUMBER: _ClassVar[int]
    INFO_BLOCK_BITS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHAPE_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    AUDIO_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PACKET_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    SENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_GAIN_DB_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    POWER_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    COPY_OF_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    modality: Modality
    scheme: Scheme
    num_symbols: int
    source_codec: str
    channel_code: str
    code_rate: float
    modulation: str
    info_block_bits: int
    payload_bytes: int
    token_shape: _containers.RepeatedScalarFieldContainer[int]
    tokenizer: str
    preprocessing: str
    audio_rate_hz: int
    num_samples: int
    packet_symbols: int
    sent_tokens: _containers.RepeatedScalarFieldContainer[int]
    symbol_gain_db: float
    user: int
    power: float
    copy: int
    copy_of: int
    def __init__(self, stream_id: _Optional[int] = ..., modality: _Optional[_Union[Modality, str]] = ..., scheme: _Optional[_Union[Scheme, str]] = ..., num_symbols: _Optional[int] = ..., source_codec: _Optional[str] = ..., channel_code: _Optional[str] = ..., code_rate: _Optional[float] = ..., modulation: _Optional[str] = ..., info_block_bits: _Optional[int] = ..., payload_bytes: _Optional[int] = ..., token_shape: _Optional[_Iterable[int]] = ..., tokenizer: _Optional[str] = ..., preprocessing: _Optional[str] = ..., audio_rate_hz: _Optional[int] = ..., num_samples: _Optional[int] = ..., packet_symbols: _Optional[int] = ..., sent_tokens: _Optional[_Iterable[int]] = ..., symbol_gain_db: _Optional[float] = ..., user: _Optional[int] = ..., power: _Optional[float] = ..., copy: _Optional[int] = ..., copy_of: _Optional[int] = ...) -> None: ...

class Csi(_message.Message):
    __slots__ = ("h", "h_runs", "h_est", "h_est_runs", "noise_var", "snr_db", "erased", "h_est_error_var")
    H_FIELD_NUMBER: _ClassVar[int]
    H_RUNS_FIELD_NUMBER: _ClassVar[int]
    H_EST_FIELD_NUMBER: _ClassVar[int]
    H_EST_RUNS_FIELD_NUMBER: _ClassVar[int]
    NOISE_VAR_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    H_EST_ERROR_VAR_FIELD_NUMBER: _ClassVar[int]
    h: Tensor
    h_runs: Tensor
    h_est: Tensor
    h_est_runs: Tensor
    noise_var: float
    snr_db: float
    erased: bool
    h_est_error_var: float
    def __init__(self, h: _Optional[_Union[Tensor, _Mapping]] = ..., h_runs: _Optional[_Union[Tensor, _Mapping]] = ..., h_est: _Optional[_Union[Tensor, _Mapping]] = ..., h_est_runs: _Optional[_Union[Tensor, _Mapping]] = ..., noise_var: _Optional[float] = ..., snr_db: _Optional[float] = ..., erased: _Optional[bool] = ..., h_est_error_var: _Optional[float] = ...) -> None: ...

class SymbolFrame(_message.Message):
    __slots__ = ("stream_id", "seq", "last", "symbols", "csi")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    CSI_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    seq: int
    last: bool
    symbols: Tensor
    csi: Csi
    def __init__(self, stream_id: _Optional[int] = ..., seq: _Optional[int] = ..., last: _Optional[bool] = ..., symbols: _Optional[_Union[Tensor, _Mapping]] = ..., csi: _Optional[_Union[Csi, _Mapping]] = ...) -> None: ...

class RequestHeader(_message.Message):
    __slots__ = ("request_id", "task", "link", "label", "streams", "transmitter_s", "session", "user_labels")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    TRANSMITTER_S_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    USER_LABELS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task: Task
    link: LinkSettings
    label: Label
    streams: _containers.RepeatedCompositeFieldContainer[StreamHeader]
    transmitter_s: float
    session: Session
    user_labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, request_id: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., link: _Optional[_Union[LinkSettings, _Mapping]] = ..., label: _Optional[_Union[Label, _Mapping]] = ..., streams: _Optional[_Iterable[_Union[StreamHeader, _Mapping]]] = ..., transmitter_s: _Optional[float] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., user_labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class Uplink(_message.Message):
    __slots__ = ("header", "frame")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    frame: SymbolFrame
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., frame: _Optional[_Union[SymbolFrame, _Mapping]] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("service", "stage", "seconds")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    service: str
    stage: str
    seconds: float
    def __init__(self, service: _Optional[str] = ..., stage: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class ModalityOutput(_message.Message):
    __slots__ = ("modality", "decoded", "note", "text", "image_png", "audio_wav", "channel_uses", "blocks", "block_errors", "erased", "user")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    DECODED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PNG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_WAV_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_USES_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    decoded: bool
    note: str
    text: str
    image_png: bytes
    audio_wav: bytes
    channel_uses: int
    blocks: int
    block_errors: int
    erased: bool
    user: int
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., decoded: _Optional[bool] = ..., note: _Optional[str] = ..., text: _Optional[str] = ..., image_png: _Optional[bytes] = ..., audio_wav: _Optional[bytes] = ..., channel_uses: _Optional[int] = ..., blocks: _Optional[int] = ..., block_errors: _Optional[int] = ..., erased: _Optional[bool] = ..., user: _Optional[int] = ...) -> None: ...

class SessionPart(_message.Message):
    __slots__ = ("request_id", "modality", "scheme", "snr_db", "channel", "channel_uses", "decoded", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_USES_FIELD_NUMBER: _ClassVar[int]
    DECODED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    modality: Modality
    scheme: Scheme
    snr_db: float
    channel: ChannelModel
    channel_uses: int
    decoded: bool
    note: str
    def __init__(self, request_id: _Optional[str] = ..., modality: _Optional[_Union[Modality, str]] = ..., scheme: _Optional[_Union[Scheme, str]] = ..., snr_db: _Optional[float] = ..., channel: _Optional[_Union[ChannelModel, str]] = ..., channel_uses: _Optional[int] = ..., decoded: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class SessionReport(_message.Message):
    __slots__ = ("id", "arrived", "missing", "complete", "answered_by", "waited_s", "note")
    ID_FIELD_NUMBER: _ClassVar[int]
    ARRIVED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    WAITED_S_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    arrived: _containers.RepeatedCompositeFieldContainer[SessionPart]
    missing: _containers.RepeatedScalarFieldContainer[Modality]
    complete: bool
    answered_by: str
    waited_s: float
    note: str
    def __init__(self, id: _Optional[str] = ..., arrived: _Optional[_Iterable[_Union[SessionPart, _Mapping]]] = ..., missing: _Optional[_Iterable[_Union[Modality, str]]] = ..., complete: _Optional[bool] = ..., answered_by: _Optional[str] = ..., waited_s: _Optional[float] = ..., note: _Optional[str] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("request_id", "task", "scheme", "output_text", "outputs", "timings", "channel_uses", "quality", "snr_db", "channel", "session", "users", "capture")
    class QualityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_USES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task: Task
    scheme: Scheme
    output_text: str
    outputs: _containers.RepeatedCompositeFieldContainer[ModalityOutput]
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    channel_uses: int
    quality: _containers.ScalarMap[str, float]
    snr_db: float
    channel: ChannelModel
    session: SessionReport
    users: _containers.RepeatedCompositeFieldContainer[UserResult]
    capture: CaptureReport
    def __init__(self, request_id: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., scheme: _Optional[_Union[Scheme, str]] = ..., output_text: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[ModalityOutput, _Mapping]]] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., channel_uses: _Optional[int] = ..., quality: _Optional[_Mapping[str, float]] = ..., snr_db: _Optional[float] = ..., channel: _Optional[_Union[ChannelModel, str]] = ..., session: _Optional[_Union[SessionReport, _Mapping]] = ..., users: _Optional[_Iterable[_Union[UserResult, _Mapping]]] = ..., capture: _Optional[_Union[CaptureReport, _Mapping]] = ...) -> None: ...

class CaptureReport(_message.Message):
    __slots__ = ("path", "bytes", "note")
    PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    path: str
    bytes: int
    note: str
    def __init__(self, path: _Optional[str] = ..., bytes: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class UserResult(_message.Message):
    __slots__ = ("user", "output_text", "quality", "channel_uses", "power", "sinr_db", "sic_order", "residual_db")
    class QualityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    USER_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_USES_FIELD_NUMBER: _ClassVar[int]
    POWER_FIELD_NUMBER: _ClassVar[int]
    SINR_DB_FIELD_NUMBER: _ClassVar[int]
    SIC_ORDER_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_DB_FIELD_NUMBER: _ClassVar[int]
    user: int
    output_text: str
    quality: _containers.ScalarMap[str, float]
    channel_uses: int
    power: float
    sinr_db: float
    sic_order: int
    residual_db: float
    def __init__(self, user: _Optional[int] = ..., output_text: _Optional[str] = ..., quality: _Optional[_Mapping[str, float]] = ..., channel_uses: _Optional[int] = ..., power: _Optional[float] = ..., sinr_db: _Optional[float] = ..., sic_order: _Optional[int] = ..., residual_db: _Optional[float] = ...) -> None: ...
