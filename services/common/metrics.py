"""Every Prometheus metric a UniToCom service exports, and how a call fills them in.

Naming follows Prometheus conventions: base units in the name (`_seconds`), counters end in `_total`, ratios are
0..1 (`unitocom_quality_ratio`), figures in decibels say so (`unitocom_quality_decibels`). Labels are generic
(scheme, task, modality, stage, metric) so that learned schemes and new tasks land in the same series families
without a change here, and every label has a bounded set of values:

    service     transmitter | channel | basestation                       (fixed)
    method      the gRPC method                                          (fixed by the protos)
    scheme      traditional | unitocom | vae | semcom | unspecified      (proto enum)
    task        reconstruct | vqa | t2i | asr | unspecified              (proto enum)
    modality    the sorted set of payload modalities, "image+text"       (at most 7 values + none)
    channel     awgn | rayleigh | rician | noiseless                     (proto enum)
    code        the gRPC status name                                     (17 values)
    stage       validate | source_encode | channel_encode | channel | equalise | decode | mllm_prefill |
                mllm_generate | detokenize | score       (unitocom.timing.STAGES, fixed; anything else "other")
                (unitocom_batch_size: mllm | receiver | channel_decode, the batched stages of unitocom.batching)
    metric      keys of Result.quality (exact_match, psnr_db, ...)        (capped at MAX_NAMES, then dropped)
    snr_bucket  SNR floored to 5 dB steps, clamped to [-10, 40] dB       (11 values)
    loss_bucket link.packet_loss in percent, floored to 10 % steps          (11 values: 0, 10, ..., 100)
    event       opened | completed | partial | expired | failed | rejected (unitocom_sessions_total; fixed)
"""
from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram, Summary

from unitocom.timing import STAGES
from unitocom.v1 import unitocom_pb2 as pb

log = logging.getLogger("unitocom.metrics")

# 1 ms .. 120 s: a text request on the tiny CPU preset takes a few ms per stage, an LDPC-decoded image or the
# paper-size MLLM on CPU takes seconds, a GPU sits in between; all land inside the buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Channel uses of one request: a short text with Turbo coding is a few hundred symbols, a 256x256 image a few
# hundred thousand, a long clip millions.
SYMBOL_BUCKETS = tuple(float(4 ** k) for k in range(3, 13))  # 64 .. 16.7 M
# Tokens per stream: the letter's images are 32 tokens, text a few dozen, audio hundreds to thousands.
TOKEN_BUCKETS = (1.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0)
BYTE_BUCKETS = tuple(float(4 ** k) for k in range(3, 13))  # 64 B .. 16 MiB

SNR_BUCKET_DB = 5
SNR_BUCKET_MIN_DB, SNR_BUCKET_MAX_DB = -10, 40
MAX_NAMES = 32  # distinct quality-metric names one process will label with

REQUESTS = Counter("unitocom_requests_total", "RPCs handled, by outcome",
                   ["service", "method", "scheme", "task", "modality", "code"])
RPC_SECONDS = Histogram("unitocom_rpc_seconds", "RPC wall time inside the service",
                        ["service", "method", "scheme", "task"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("unitocom_stage_seconds", "Time per pipeline stage, summed per request and service: "
                          + ", ".join(STAGES), ["service", "stage", "scheme"], buckets=LATENCY_BUCKETS)
CHANNEL_USES = Counter("unitocom_channel_uses_total", "Complex symbols handled", ["service", "scheme", "modality"])
PACKETS = Counter("unitocom_packets_total", "Token packets (or code blocks), by outcome: sent and lost (at the "
                  "channel, link.packet_loss); lost and concealed (at the base station: lost packets whose tokens "
                  "a resilient reader's learned mask token stood in for)", ["service", "scheme", "outcome"])
REQUEST_CHANNEL_USES = Histogram("unitocom_request_channel_uses", "Complex symbols sent per request, all streams",
                                 ["service", "scheme", "task"], buckets=SYMBOL_BUCKETS)
STREAM_TOKENS = Histogram("unitocom_stream_tokens", "Tokens carried by one modality stream (learned schemes)",
                          ["service", "scheme", "modality"], buckets=TOKEN_BUCKETS)
STREAM_PAYLOAD_BYTES = Histogram("unitocom_stream_payload_bytes", "Source-coded bytes of one modality stream "
                                 "(traditional scheme)", ["service", "scheme", "modality"], buckets=BYTE_BUCKETS)
IN_FLIGHT = Gauge("unitocom_requests_in_flight", "RPCs being served now", ["service"])
QUEUE_DEPTH = Gauge("unitocom_queue_depth", "RPCs admitted and waiting for a turn to compute (health and reflection never wait)", ["service"])
WORKERS = Gauge("unitocom_worker_threads", "RPCs that may compute at once (admission control; health and reflection are not counted)", ["service"])
QUALITY_LABELS = ["scheme", "task", "channel", "metric", "snr_bucket", "loss_bucket"]
QUALITY_RATIO = Summary("unitocom_quality_ratio", "Task quality as a ratio 0..1 (exact_match, decoded, wer, ...); "
                        "mean = _sum / _count", QUALITY_LABELS)
QUALITY_DECIBELS = Summary("unitocom_quality_decibels", "Task quality in dB (psnr_db, audio_snr_db, mel_distance_db, ...); "
                           "mean = _sum / _count", QUALITY_LABELS)
# Rows per batch of the base station's dynamic batching (unitocom.batching): 1 .. the largest --batch-max.
BATCH_BUCKETS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0)
BATCH_SIZE = Histogram("unitocom_batch_size", "Items run by one batched forward of the base station's dynamic "
                       "batching, by stage: mllm (requests per MLLM generation: VQA answers, ASR transcripts, T2I "
                       "images), receiver (learned image and text streams per R + de-tokenizer pass), channel_decode "
                       "(traditional streams whose LDPC/Turbo code blocks go through one decoder call)", ["service", "stage"], buckets=BATCH_BUCKETS)
# Sessions of the base station (unitocom.stages.session.EVENTS): requests assembled from several devices' parts.
SESSIONS = Counter("unitocom_sessions_total", "Sessions (one request assembled from several devices' parts) by "
                   "event: opened (its first part arrived), completed (answered with every part), partial (answered "
                   "at its deadline with parts missing), expired (its deadline passed: DEADLINE_EXCEEDED), failed "
                   "(its task failed), rejected (a part refused because the session table was full)",
                   ["service", "event"])
SESSIONS_OPEN = Gauge("unitocom_sessions_open", "Sessions waiting for their parts now (at most the base station's "
                      "--max-sessions)", ["service"])
INFO = Gauge("unitocom_service_info", "Always 1; labels say what runs", ["service", "preset", "version"])

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _NameCap:
    """At most MAX_NAMES distinct label values from free-form names; a runaway name source cannot blow up the
    series count (it gets `fallback`, or None: drop)."""

    def __init__(self, fallback: str | None):
        self.seen: set[str] = set()
        self.fallback = fallback
        self.lock = threading.Lock()

    def __call__(self, name: str) -> str | None:
        with self.lock:
            if name in self.seen:
                return name
            if _NAME_RE.match(name) and len(self.seen) < MAX_NAMES:
                self.seen.add(name)
                return name
        log.warning("label value %r not recorded (bad name or more than %d names)", name, MAX_NAMES)
        return self.fallback


_quality_name = _NameCap(None)


def enum_label(enum, value: int) -> str:
    """`TRADITIONAL` -> "traditional"; a value this build does not know -> "unknown" (bounded either way)."""
    try:
        return enum.Name(value).lower()
    except ValueError:
        return "unknown"


def scheme_label(value: int) -> str:
    return "unspecified" if value == 0 else enum_label(pb.Scheme, value)


def task_label(value: int) -> str:
    return "unspecified" if value == 0 else enum_label(pb.Task, value)


def channel_label(value: int) -> str:
    return "awgn" if value == 0 else enum_label(pb.ChannelModel, value)  # 0: the service default, AWGN


def modality_label(modalities) -> str:
    names = sorted({enum_label(pb.Modality, m) for m in modalities if m})
    return "+".join(names) if names else "none"


def snr_bucket(snr_db: float) -> str:
    """Floor to 5 dB steps, clamped to [-10, 40]: 7.5 -> "5", -3 -> "-5", 55 -> "40", NaN -> "nan"."""
    if not math.isfinite(snr_db):
        return "nan"
    b = int(math.floor(snr_db / SNR_BUCKET_DB) * SNR_BUCKET_DB)
    return str(min(max(b, SNR_BUCKET_MIN_DB), SNR_BUCKET_MAX_DB))


def loss_bucket(packet_loss: float) -> str:
    """link.packet_loss in percent floored to 10 % steps: 0.25 -> "20", 1 -> "100"; out of [0, 1] or NaN -> "nan"."""
    if not (math.isfinite(packet_loss) and 0.0 <= packet_loss <= 1.0):
        return "nan"
    return str(int(math.floor(round(packet_loss * 100, 9) / 10) * 10))


@dataclass
class Call:
    """One RPC's labels, filled in as the handler learns them (`describe`), and its observations."""

    service: str
    method: str
    scheme: str = "unspecified"
    task: str = "unspecified"
    modality: str = "none"
    channel: str = "awgn"
    snr_db: float = math.nan
    packet_loss: float = 0.0
    streams: list = field(default_factory=list)

    def describe(self, msg) -> "Call":
        """Take scheme, task, channel, SNR and modalities from a Request or a RequestHeader."""
        link = msg.link
        self.scheme, self.task = scheme_label(link.scheme), task_label(msg.task)
        self.channel, self.snr_db = channel_label(link.channel), link.snr_db
        self.packet_loss = link.packet_loss
        if isinstance(msg, pb.Request):
            self.modality = modality_label(p.modality or _payload_modality(p) for p in msg.payloads)
        else:
            self.streams = list(msg.streams)
            self.modality = modality_label(s.modality for s in msg.streams)
        return self

    def observe(self, result: pb.Result, *, quality: bool = False) -> None:
        """Stage timings this service reported, channel uses, per-stream sizes; quality where asked (once per
        request, at the service that returns the Result to the client)."""
        observe_timings(self.service, result.timings, self.scheme)
        by_modality: dict[str, int] = {}
        for o in result.outputs:
            m = enum_label(pb.Modality, o.modality)
            by_modality[m] = by_modality.get(m, 0) + o.channel_uses
        if not by_modality and result.channel_uses:
            by_modality[self.modality] = result.channel_uses
        for m, n in by_modality.items():
            CHANNEL_USES.labels(self.service, self.scheme, m).inc(n)
        REQUEST_CHANNEL_USES.labels(self.service, self.scheme, self.task).observe(result.channel_uses)
        for s in self.streams:
            m = enum_label(pb.Modality, s.modality)
            if s.token_shape:
                STREAM_TOKENS.labels(self.service, self.scheme, m).observe(math.prod(s.token_shape))
            if s.payload_bytes:
                STREAM_PAYLOAD_BYTES.labels(self.service, self.scheme, m).observe(s.payload_bytes)
        if quality:
            self.observe_quality(result)

    def observe_quality(self, result: pb.Result) -> None:
        # The request's own link settings; a Call never described falls back to what the Result echoes.
        described = math.isfinite(self.snr_db)
        bucket = snr_bucket(self.snr_db if described else result.snr_db)
        channel = self.channel if described else channel_label(result.channel)
        for key, value in result.quality.items():
            name = _quality_name(key)
            if name is None or not math.isfinite(value):
                continue
            family = QUALITY_DECIBELS if name.endswith("_db") else QUALITY_RATIO
            family.labels(self.scheme, self.task, channel, name, bucket, loss_bucket(self.packet_loss)).observe(value)

    def packets(self, sent: int, lost: int) -> None:
        """Packets the channel carried for this request and how many of them it lost."""
        if sent:
            PACKETS.labels(self.service, self.scheme, "sent").inc(sent)
            PACKETS.labels(self.service, self.scheme, "lost").inc(lost)

    def packets_received(self, lost: int, concealed: int) -> None:
        """At the receiver: the lost packets it saw, and those a resilient reader concealed (a learned mask token
        stood in for their tokens; nothing is resent, so this is the only recovery there is)."""
        if lost:
            PACKETS.labels(self.service, self.scheme, "lost").inc(lost)
            PACKETS.labels(self.service, self.scheme, "concealed").inc(concealed)

    def channel_uses(self, n: int) -> None:
        """Symbols handled where no Result is seen (the channel's Apply)."""
        CHANNEL_USES.labels(self.service, self.scheme, self.modality).inc(n)


def _payload_modality(p: pb.Payload) -> int:
    kind = p.WhichOneof("content")
    return {"text": pb.TEXT, "image": pb.IMAGE, "audio": pb.AUDIO}.get(kind, 0)


def stage_label(name: str) -> str:
    """A stage of unitocom.timing.STAGES as it is; anything else (a peer built from other code) "other"."""
    return name if name in STAGES else "other"


def observe_timings(service: str, timings, scheme: str = "unspecified") -> None:
    """Observe the stages `service` itself reported (the Result carries every hop's; each hop counts its own)."""
    for t in timings:
        if t.service == service:
            STAGE_SECONDS.labels(service, stage_label(t.stage), scheme).observe(t.seconds)


def record_request(call: Call, code_name: str, seconds: float) -> None:
    REQUESTS.labels(call.service, call.method, call.scheme, call.task, call.modality, code_name).inc()
    RPC_SECONDS.labels(call.service, call.method, call.scheme, call.task).observe(seconds)


def watch_admission(service: str, gate) -> None:
    """Queue depth = calls admitted and waiting for a turn to compute (`admission.Admission`); read at scrape
    time. Health and reflection are never queued, so they are not counted."""
    WORKERS.labels(service).set(gate.workers)
    QUEUE_DEPTH.labels(service).set_function(lambda: gate.waiting)


def batch_observer(service: str):
    """fn(stage, size) for unitocom.batching.set_observer: batch sizes into unitocom_batch_size."""
    def observe(stage: str, size: int) -> None:
        BATCH_SIZE.labels(service, stage).observe(size)
    return observe


def session_observer(service: str, table):
    """fn(event) for a unitocom.stages.session.SessionTable: its events into unitocom_sessions_total (every event
    at 0 from the start, so that rates and alerts see a series before the first session); the open count read at
    scrape time."""
    from unitocom.stages.session import EVENTS
    for e in EVENTS:
        SESSIONS.labels(service, e)
    SESSIONS_OPEN.labels(service).set_function(lambda: table.open_count)

    def observe(event: str) -> None:
        SESSIONS.labels(service, event).inc()
    return observe


def service_info(service: str, preset: str) -> None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        v = version("unitocom")
    except PackageNotFoundError:
        v = "dev"
    INFO.labels(service, preset, v).set(1)
