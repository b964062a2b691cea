"""The options of one send, defined once.

`unitocom send`'s flags (unitocom/cli.py), the SDK's `client.build_request(**options)`, the HTTP gateway's JSON
body and multipart form and the web page's fields (services/gateway) are all made from `OPTIONS`, so that an option
added here reaches every front end. Plain data: no gRPC and no protobuf here; the SDK maps these values onto the
wire. The enum values are the lower-case names of the `unitocom.v1` protobuf enums (`Task.VQA` is "vqa" as
`unitocom.v1.Task.VQA` is); tests/test_options.py holds them equal.

Bounds are what a front end can refuse before the services are asked (the gateway's schema, the web page's
inputs); the services validate every request again (unitocom/stages/request.py) and say which field is wrong.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Task(StrEnum):
    """What the base station does with the received tokens."""

    RECONSTRUCT = "reconstruct"  # send a payload and get it back as the base station recovered it
    VQA = "vqa"                  # image + question (typed, or spoken: audio) -> answer text
    T2I = "t2i"                  # caption -> generated image
    ASR = "asr"                  # speech -> transcript


class Scheme(StrEnum):
    """The transmission scheme (the letter's section V)."""

    TRADITIONAL = "traditional"  # UTF-8 / JPEG / AMR-WB + Turbo / LDPC + 16-QAM
    UNITOCOM = "unitocom"        # sigma-GenIB tokens + learned SNR-adaptive coding-modulation
    VAE = "vae"                  # UniToCom with a VAE tokenizer
    SEMCOM = "semcom"            # vanilla task-specific deep JSCC, no MLLM


class Channel(StrEnum):
    """The channel model of eq. (2)."""

    AWGN = "awgn"
    RAYLEIGH = "rayleigh"
    RICIAN = "rician"
    NOISELESS = "noiseless"  # h = 1, no noise: the upper bound of Fig. 2 (snr_db is not used)


class Fading(StrEnum):
    BLOCK = "block"  # one h per block_length symbols (0: one h per modality stream)
    FAST = "fast"    # one h per symbol


class Csi(StrEnum):
    PERFECT = "perfect"
    ESTIMATED = "estimated"  # least-squares estimate from `pilots` pilots per fading block


class Modulation(StrEnum):
    """Constellations of the traditional scheme's digital link (unitocom/link/modulation.py)."""

    BPSK = "bpsk"
    QPSK = "qpsk"
    QAM16 = "qam16"
    QAM64 = "qam64"


class Variant(StrEnum):
    """Which learned models read the tokens (issue 16; unitocom scheme)."""

    STANDARD = "standard"    # the letter's: the image link and the MLLM as trained by Algorithm 1
    RESILIENT = "resilient"  # the same tokens on the air; a de-tokenizer and MLLM trained with token dropout, a
    #                          learned mask token for lost tokens, an importance head for token budgets


class Packing(StrEnum):
    """Which image tokens share a packet (issue 16; variant resilient)."""

    SEQUENTIAL = "sequential"  # the token grid's raster order, tokens_per_packet at a time
    AGGREGATED = "aggregated"  # important tokens and neighbours spread over packets (models.resilience.aggregate)


class Access(StrEnum):
    """How users sharing the channel use it (issue 17; `unitocom.link.multiaccess`)."""

    ORTHOGONAL = "orthogonal"  # each user in its own resource block of one frame, at power P: no interference
    SUPERPOSED = "superposed"  # every user in the same channel uses at its power share; SIC at the base station


ENUMS: dict[str, type[StrEnum]] = {"task": Task, "scheme": Scheme, "channel": Channel, "fading": Fading,
                                   "csi": Csi, "modulation": Modulation, "variant": Variant, "packing": Packing,
                                   "access": Access}

UINT32_MAX = 2**32 - 1
# The largest seed: the wire takes 64 bits, but JSON clients (JavaScript) hold integers exactly only up to 2**53 - 1.
MAX_SEED = 2**53 - 1


@dataclass(frozen=True)
class Option:
    """One send option.

    type: str, int, float, bool (a switch: a flag without a value on the command line), bytes (a file's content: a
    path on the command line, base64 in JSON, a file part in a form) or one of the StrEnums above. default None means
    "not given" (payloads; `modulation`: the service's default; `session_id`: no session). kind says where the value
    goes: "payload" (a Request payload), "label" (ground truth the services score against), "task", "link"
    (LinkSettings), "session" (the Request's Session: parts of one request sent by several devices) or "call" (how
    the call is made, not part of the Request).
    ge/gt/le/lt bound numbers; finite refuses NaN and infinities. advanced: the web page groups it under
    "Advanced".
    """

    name: str
    type: type
    default: Any
    help: str
    kind: str = "link"
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = False
    advanced: bool = False

    @property
    def enum(self) -> type[StrEnum] | None:
        return self.type if isinstance(self.type, type) and issubclass(self.type, StrEnum) else None

    @property
    def choices(self) -> list[str] | None:
        return [m.value for m in self.enum] if self.enum else None

    @property
    def flag(self) -> str:
        """The command-line flag: `--snr-db` for snr_db."""
        return "--" + self.name.replace("_", "-")

    @property
    def bounds_text(self) -> str:
        """The bounds in words, e.g. "finite, in [-50, 100]" or ">= 0"; empty when unbounded."""
        lo = (f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None)
        hi = (f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None)
        if lo and hi:
            text = f"in {lo}, {hi}"
        elif lo:
            text = (">= " if lo[0] == "[" else "> ") + lo[1:]
        elif hi:
            text = ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
        else:
            text = ""
        return ", ".join(t for t in ("finite" if self.finite else "", text) if t)

    def check(self, value: Any) -> Any:
        """value converted to this option's type (enum names to enum members); ValueError naming the option."""
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"{self.name}: must be given (default {self.default!r})")
        if self.enum is not None:
            try:
                return self.enum(value)
            except ValueError:
                raise ValueError(f"{self.name}: unknown value {value!r}; expected one of {self.choices}") from None
        if self.type is bytes:
            if not isinstance(value, (bytes, bytearray)):
                raise ValueError(f"{self.name}: must be bytes, got {type(value).__name__}")
            return bytes(value)
        if self.type is str:
            if not isinstance(value, str):
                raise ValueError(f"{self.name}: must be a string, got {type(value).__name__}")
            return value
        if self.type is bool:
            if not isinstance(value, bool):  # 0/1 or "yes" would be a guess at what the caller meant
                raise ValueError(f"{self.name}: must be true or false, got {type(value).__name__}")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real too
            raise ValueError(f"{self.name}: must be a number, got {type(value).__name__}")
        if self.type is int and not isinstance(value, numbers.Integral):
            if not (math.isfinite(value) and float(value).is_integer()):
                raise ValueError(f"{self.name}: must be an integer, got {value}")
        v = self.type(value)
        if self.finite and not math.isfinite(v):
            raise ValueError(f"{self.name}: must be finite, got {v}")
        if ((self.ge is not None and not v >= self.ge) or (self.gt is not None and not v > self.gt)
                or (self.le is not None and not v <= self.le) or (self.lt is not None and not v < self.lt)):
            raise ValueError(f"{self.name}: must be {self.bounds_text}, got {v}")
        return v

    def describe(self) -> dict:
        """A JSON-able view (what the gateway's /v1/options answers for the web page)."""
        t = "enum" if self.enum else {str: "string", int: "integer", float: "number", bool: "boolean",
                                      bytes: "file"}[self.type]
        d = {"name": self.name, "type": t, "default": self.default, "help": self.help, "kind": self.kind,
             "advanced": self.advanced}
        if self.enum:
            d["choices"] = self.choices
        for k in ("ge", "gt", "le", "lt"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


OPTIONS: tuple[Option, ...] = (
    # What is sent.
    Option("text", str, None, "text payload (or the caption of t2i)", kind="payload"),
    Option("question", str, None, "question text (vqa; a spoken question goes as audio instead)", kind="payload"),
    Option("image", bytes, None, "image file (any format Pillow reads)", kind="payload"),
    Option("audio", bytes, None, "audio file (WAV or FLAC): speech for asr, or the spoken question of vqa",
           kind="payload"),
    Option("task", Task, Task.RECONSTRUCT, "what the base station does with the tokens", kind="task"),
    # The link.
    Option("scheme", Scheme, Scheme.TRADITIONAL, "transmission scheme"),
    Option("snr_db", float, 20.0, "Es/N0 in dB against the power constraint P", finite=True, ge=-50.0, le=100.0),
    Option("channel", Channel, Channel.AWGN, "channel model"),
    Option("fading", Fading, Fading.BLOCK, "block: one h per block of symbols; fast: one h per symbol"),
    Option("block_length", int, 0, "symbols per fading block (0: one h per stream)", ge=0, le=UINT32_MAX,
           advanced=True),
    Option("rician_k_db", float, 0.0, "Rician K factor in dB (0: the service default, 10 dB)", finite=True,
           ge=-50.0, le=50.0, advanced=True),
    Option("csi", Csi, Csi.PERFECT, "channel state at the receiver: perfect, or estimated (LS from pilots)",
           advanced=True),
    # The channel draws pilots x symbols noise samples with fast fading: the bound keeps that in memory.
    Option("pilots", int, 0, "pilots per fading block with csi estimated (0: the service default, 8)", ge=0, le=64,
           advanced=True),
    Option("erasure_prob", float, 0.0, "probability that a symbol frame is lost", finite=True, ge=0.0, le=1.0,
           advanced=True),
    Option("packet_loss", float, 0.0, "token packets: fraction of packets lost (i.i.d., or bursty with "
           "packet_burst)", finite=True, ge=0.0, le=1.0, advanced=True),
    Option("packet_burst", float, 0.0, "mean run of consecutive lost packets (Gilbert channel; 0: i.i.d. losses)",
           finite=True, ge=0.0, le=1000.0, advanced=True),
    Option("lossy_modalities", str, "", "the modalities whose packets packet_loss hits, a comma list of image, "
           "text, audio (empty: all), e.g. image: the picture's packets are lost and the question arrives",
           advanced=True),
    Option("tokens_per_packet", int, 0, "tokens per packet (learned schemes; 0: the default, 4; traditional: one "
           "code block per packet)", ge=0, le=4096, advanced=True),
    Option("variant", Variant, None, "learned models that read the tokens (unitocom): standard, or resilient "
           "(mask token for lost tokens, dropout-trained de-tokenizer and MLLM; not given: standard)",
           advanced=True),
    Option("token_budget", int, 0, "image tokens sent per picture, the most important first (variant resilient; "
           "0: all)", ge=0, le=4096, advanced=True),
    Option("packing", Packing, None, "which image tokens share a packet (variant resilient): sequential (grid "
           "order), or aggregated (important tokens and neighbours spread over packets); not given: sequential",
           advanced=True),
    Option("jpeg_quality", int, 0, "JPEG quality 1..95 (traditional; 0: the service default, 75)", ge=0, le=95,
           advanced=True),
    Option("modulation", Modulation, None, "constellation (traditional; not given: the service default, qam16)",
           advanced=True),
    Option("code_rate", float, 0.0, "LDPC / Turbo code rate (traditional; 0: the service default, 1/2)",
           finite=True, ge=0.0, lt=1.0, advanced=True),
    Option("seed", int, 0, "seed of the channel draws (reproducible runs)", ge=0, le=MAX_SEED),
    # Users sharing the channel (issue 17). The front ends send the payloads given from each of the K devices
    # (`client.build_request`); the SDK's `client.build_users_request` gives each user its own.
    Option("users", int, 0, "K user devices transmitting in one access group, each sending the payloads given "
           "with its own channel draw h_k (0 or 1: one device)", ge=0, le=8, advanced=True),
    Option("access", Access, None, "how the users share the channel: orthogonal (each user alone in its own "
           "resource block of one frame, at power P: sum_k N_k channel uses) or superposed (all users in the same "
           "N channel uses at power shares p_k, y = sum_k h_k sqrt(p_k) z_k + n, successive interference "
           "cancellation at the base station, strongest first); not given: orthogonal", advanced=True),
    Option("user_powers", str, "", "superposed access: each user's transmit power as a share of the budget P, a "
           "comma list of K numbers > 0 summing to at most 1, e.g. 0.8,0.2 (empty: 4^-k shares, 6 dB apart)",
           advanced=True),
    # Time diversity for text (issue 12): a question crosses one fade; sent again over another, the base station
    # combines the two before reading it (`unitocom.link.diversity`).
    Option("text_copies", int, 0, "send each text payload (a question, a caption) this many times, each copy over "
           "its own fade, combined by maximal-ratio combining at the base station before it reads the text; every "
           "copy costs the text's channel uses again (0 or 1: once)", ge=0, le=8, advanced=True),
    # IQ capture (issue 17): a link option because the channel, which reads only the header's link, does the recording.
    Option("capture", bool, False, "record this request's IQ at the channel (z, h, h_est, z_hat per channel use) as "
           "a SigMF recording; the result says where (replay it with `unitocom replay PATH`). The channel service "
           "must have a capture directory (`unitocom up --capture DIR`): without one the request is refused with "
           "FAILED_PRECONDITION", advanced=True),
    # Ground truth the services score against.
    Option("answer", str, "", "ground-truth answer (vqa; scored by the services; with users K, each user's)",
           kind="label"),
    Option("transcript", str, "", "ground-truth transcript (asr; scored by the services; with users K, each "
           "user's)", kind="label"),
    # Sessions (issue 17): parts of one request sent by several devices, each with its own link settings.
    Option("session_id", str, None, "assemble this request with the parts other devices send under the same id "
           "(1..128 of letters, digits and . _ : -): the base station waits for the session's parts, runs the task "
           "once and answers every part's call with the same answer (not given: no session)", kind="session",
           advanced=True),
    Option("session_parts", str, "", "the modalities the session waits for, all devices together, a comma list of "
           "image, text, audio (empty: the task's inputs; vqa: image,text)", kind="session", advanced=True),
    Option("session_partial", bool, False, "when the session's deadline passes with parts missing, answer with "
           "what arrived and a note saying what is missing (default: DEADLINE_EXCEEDED naming the missing parts)",
           kind="session", advanced=True),
    Option("session_wait_s", float, 0.0, "seconds the base station waits for the session's other parts after the "
           "first one arrived; the part that opens the session sets it (0: the service default, 30 s); a part's "
           "call never waits past its own timeout_s", kind="session", finite=True, ge=0.0, le=600.0, advanced=True),
    # The call.
    Option("timeout_s", float, 120.0, "deadline in seconds, propagated along the chain", kind="call",
           finite=True, gt=0.0, le=600.0),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
# What a Request carries (the SDK's build_request takes these); `timeout_s` belongs to the call.
REQUEST_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.kind != "call")
PAYLOADS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.kind == "payload")
LABELS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.kind == "label")


def resolve(values: dict[str, Any], options: tuple[Option, ...] = OPTIONS, check_bounds: bool = True) -> dict:
    """Every option's value: the given ones converted (enum names to members), defaults for the rest.
    TypeError for a name that is no option (as a function call would); ValueError naming a bad value.
    check_bounds=False converts and checks types and enums only (the SDK leaves ranges to the services)."""
    known = {o.name: o for o in options}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; the options are {sorted(known)}")
    out = {}
    for name, o in known.items():
        if name not in values:
            out[name] = o.default
        elif check_bounds:
            out[name] = o.check(values[name])
        else:
            out[name] = Option(o.name, o.type, o.default, o.help).check(values[name])
    return out


# Other spellings of a flag: --timeout (older) for --timeout-s; --session for --session-id (what one types).
ALIASES: dict[str, list[str]] = {"timeout_s": ["--timeout"], "session_id": ["--session"]}


def add_flags(parser, names: tuple[str, ...] | None = None) -> None:
    """Command-line flags for the options (all, or `names`) on an argparse parser: `unitocom send`'s, and the link
    options of `unitocom eval`. Types and choices are checked there; ranges are the services' (they answer
    INVALID_ARGUMENT naming the field)."""
    for o in OPTIONS if names is None else tuple(BY_NAME[n] for n in names):
        flags = [o.flag] + ALIASES.get(o.name, [])
        bounds = f"; {o.bounds_text}" if o.bounds_text else ""
        if o.type is bool:
            parser.add_argument(*flags, dest=o.name, action="store_true", help=o.help)
        elif o.type is bytes:
            parser.add_argument(*flags, dest=o.name, metavar="PATH", help=f"{o.help}: a file path")
        elif o.enum is not None:
            default = f"default {o.default}" if o.default is not None else "default: the service's"
            parser.add_argument(*flags, dest=o.name, choices=o.choices, default=o.default,
                                help=f"{o.help} ({default})")
        elif o.type is str:
            parser.add_argument(*flags, dest=o.name, default=o.default, help=o.help)
        else:
            parser.add_argument(*flags, dest=o.name, type=o.type, default=o.default,
                                help=f"{o.help} (default {o.default:g}{bounds})")


def describe() -> list[dict]:
    """Every option as JSON-able dicts, in order."""
    return [o.describe() for o in OPTIONS]
