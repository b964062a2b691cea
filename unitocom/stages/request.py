"""Validation of a client's Request: every problem becomes a RequestError naming the field and the reason.

The request is the library's `messages.Request`; `from_wire` converts the wire's (protobuf) at the service edge, an
enum number the proto does not define already a RequestError there.

The services turn RequestError into a gRPC status (INVALID_ARGUMENT, UNIMPLEMENTED); nothing here knows gRPC.
"""
from __future__ import annotations

import io
import math
import re
import uuid
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from unitocom import codecs, wire
from unitocom.config import Config, SessionLimits
from unitocom.link.channel import ChannelSpec
from unitocom.messages import LinkSettings, Modality, Request, Session
from unitocom.options import Scheme, Task
from unitocom.stages import access


class RequestError(ValueError):
    """A request the system cannot serve. `code` is the lower-case gRPC status name to answer with."""

    def __init__(self, field: str, reason: str, code: str = "invalid_argument"):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.code = field, reason, code


# (task, scheme) pairs this build serves; others answer UNIMPLEMENTED naming what is missing. A pair whose
# checkpoint is not installed answers FAILED_PRECONDITION when it is used.
SUPPORTED = ({(task, scheme) for task in Task for scheme in (Scheme.TRADITIONAL, Scheme.UNITOCOM, Scheme.VAE)}
             | {(task, Scheme.SEMCOM) for task in (Task.VQA, Task.T2I, Task.ASR)})
MISSING = {
    Scheme.SEMCOM: "vanilla SemCom is task-specific (one deep JSCC system per task, trained for its answer, "
                   "picture or transcript), so it has no reconstruction to give; use vqa, t2i or asr",
}
TASK_INPUTS = {  # which payload modalities each task takes
    Task.RECONSTRUCT: {Modality.TEXT, Modality.IMAGE, Modality.AUDIO},
    Task.VQA: {Modality.IMAGE, Modality.TEXT, Modality.AUDIO},  # the question typed (text) or spoken (audio)
    Task.T2I: {Modality.TEXT},
    Task.ASR: {Modality.AUDIO},
}


MAX_TEXT_COPIES = 8  # link.text_copies (unitocom.options states the same bound to the front ends)
# What a session of each task waits for when its parts do not say (Session.parts empty): the inputs the task
# needs. reconstruct takes any modality, so its sessions must name theirs.
SESSION_PARTS = {Task.VQA: (Modality.IMAGE, Modality.TEXT), Task.T2I: (Modality.TEXT,), Task.ASR: (Modality.AUDIO,)}
# Other part sets a task may name, with what each is: VQA whose question is spoken (issue 17), e.g. a camera and a
# phone. The default set's own description is SESSION_PARTS_WHAT.
SESSION_PARTS_ALSO = {Task.VQA: (((Modality.IMAGE, Modality.AUDIO), "a spoken question"),)}
SESSION_PARTS_WHAT = {Task.VQA: "a typed question"}


def check_vqa_question(modalities: list[Modality | None], scheme: Scheme | None, variant: str = "",
                       where: str = "payloads", users: list[int] | None = None) -> None:
    """A VQA request's question is typed (a text payload) or spoken (an audio payload, issue 17), not both: the
    second question is INVALID_ARGUMENT naming its field (`where[i]`). A spoken question with a scheme or variant
    that has no model to read it is UNIMPLEMENTED, saying why. Checked by the transmitter on the payloads and by
    the base station on the header's streams. `users` (users sharing the channel): each payload's device; every
    user asks its own question, so the rule holds per user."""
    if users and len(set(users)) > 1:
        for u in sorted(set(users)):
            mine = [m if users[i] == u else None for i, m in enumerate(modalities)]
            check_vqa_question(mine, scheme, variant, where)
        return
    text = [i for i, m in enumerate(modalities) if m == Modality.TEXT]
    audio = [i for i, m in enumerate(modalities) if m == Modality.AUDIO]
    for kind, idx in (("typed (text)", text), ("spoken (audio)", audio)):
        if len(idx) > 1:
            raise RequestError(f"{where}[{idx[1]}]", f"a second {kind} question: vqa takes one question")
    if text and audio:
        i, j = sorted((text[0], audio[0]))
        raise RequestError(f"{where}[{j}]", f"vqa takes one question, typed (text) or spoken (audio), not both: "
                                            f"{where}[{i}] is already the {modalities[i].value} question")
    if not audio:
        return
    if scheme == Scheme.SEMCOM:
        raise RequestError(f"{where}[{audio[0]}]", "a spoken question with scheme semcom: vanilla SemCom's VQA "
                           "system (semcom-vqa) is one deep JSCC trained on an image and a typed question, so it has "
                           "no receiver for speech; use unitocom, vae or traditional", code="unimplemented")
    if variant == "resilient":
        raise RequestError("link.variant", "a spoken question with variant resilient: the MLLM that reads spoken "
                           "questions (mllm-<objective>-spoken) was trained without token dropout, and no resilient "
                           "one exists; use variant standard", code="unimplemented")
_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]+$")


def validate_session(session: Session, task: Task | None, scheme: Scheme | None, modalities: list[Modality],
                     limits: SessionLimits, field: str = "session", where: str = "payloads") -> tuple[Modality, ...]:
    """The modalities `session` waits for, all parts together, in Modality order; RequestError naming the field for
    an id that is empty, too long or not plain, parts that are no modality, named twice, not the task's inputs or
    not what the task needs, a wait out of bounds, and a part (`modalities`: its payloads' or streams') that carries
    what the session does not wait for or one modality twice (parts are matched by modality). Checked by the
    transmitter on the Request and again by the base station on the header."""
    sid = session.id
    if not sid:
        raise RequestError(f"{field}.id", "is empty; give every part of the session the same id")
    if len(sid) > limits.max_id_chars:
        raise RequestError(f"{field}.id", f"{len(sid)} characters exceeds the limit of {limits.max_id_chars}")
    if not _SESSION_ID.match(sid):
        shown = sid if len(sid) <= 40 else sid[:40] + "..."
        raise RequestError(f"{field}.id", f"{shown!r}: an id may hold only letters, digits and . _ : -")
    if not (math.isfinite(session.wait_s) and 0.0 <= session.wait_s <= limits.max_wait_s):
        raise RequestError(f"{field}.wait_s", f"must be in [0, {limits.max_wait_s:g}] s (0: the service default), "
                                              f"got {session.wait_s}")
    if scheme == Scheme.SEMCOM:
        raise RequestError(field, "vanilla SemCom is one deep JSCC system over all of a task's inputs at one device, "
                                  "so its parts cannot come from several devices; use unitocom, vae or traditional",
                           code="unimplemented")
    for i, m in enumerate(session.parts):
        if m is None:
            raise RequestError(f"{field}.parts[{i}]", "is unspecified; expected text, image or audio")
    if len(set(session.parts)) != len(session.parts):
        twice = next(m for m in session.parts if session.parts.count(m) > 1)
        raise RequestError(f"{field}.parts", f"names {twice.value} twice; each modality is one part")
    task_name = task.value if task else "task_unspecified"
    if session.parts:
        expected = set(session.parts)
        extra = expected - TASK_INPUTS.get(task, set())
        if extra:
            raise RequestError(f"{field}.parts", f"task {task_name} does not take {_names(extra)} input")
        needs = set(SESSION_PARTS.get(task, ()))
        also = SESSION_PARTS_ALSO.get(task, ())
        if needs and expected != needs and expected not in [set(p) for p, _ in also]:
            options = _names(needs)
            if also:
                options = " or ".join([f"{options} ({SESSION_PARTS_WHAT[task]})"] +
                                      [f"{_names(p)} ({what})" for p, what in also])
            raise RequestError(f"{field}.parts", f"task {task_name} needs {options}, not {_names(expected)}")
    elif task in SESSION_PARTS:
        expected = set(SESSION_PARTS[task])
    else:
        raise RequestError(f"{field}.parts", f"is empty, and {task_name} takes any modality: name the parts the "
                                             "session waits for (e.g. image,text)")
    seen: set[Modality] = set()
    for i, m in enumerate(modalities):
        if m not in expected:
            raise RequestError(f"{where}[{i}]", f"is {m.value if m else 'unspecified'}, but session {sid!r} waits "
                                                f"for {_names(expected)}")
        if m in seen:
            raise RequestError(f"{where}[{i}]", f"a second {m.value}: a session part carries each modality once "
                                                "(parts are matched by modality)")
        seen.add(m)
    return tuple(m for m in Modality if m in expected)


def _names(modalities) -> str:
    """"image, text": modalities in Modality order."""
    return ", ".join(m.value for m in Modality if m in modalities)


@dataclass
class SourcePayload:
    """One decoded input: `value` is str (text), uint8 [H,W,3] (image) or float32 [T] (audio)."""

    modality: Modality
    value: object
    rate_hz: int = 0


def from_wire(message, field: str = ""):
    """A protobuf message (Request, LinkSettings, ...) as the library's dataclass (`unitocom.wire.from_pb`); an enum
    number the proto does not define is a RequestError naming the field."""
    try:
        return wire.from_pb(message, field)
    except wire.WireError as e:
        raise RequestError(*wire.error_field(e)) from None


def channel_spec(link: LinkSettings, cfg: Config) -> ChannelSpec:
    d = cfg.channel
    spec = ChannelSpec(
        model=link.channel.value if link.channel else d.model,
        fading=link.fading.value if link.fading else d.fading,
        block_length=int(link.block_length) or d.block_length,
        rician_k_db=link.rician_k_db if link.rician_k_db else d.rician_k_db,
        csi=link.csi.value if link.csi else d.csi,
        pilots=int(link.pilots) or d.pilots,
        erasure_prob=link.erasure_prob or d.erasure_prob,
    )
    try:
        spec.validate()
    except ValueError as e:
        raise RequestError("link", str(e)) from None
    return spec


def lossy_modalities(link: LinkSettings) -> list[str]:
    """The modalities whose packets link.packet_loss hits (all three when the list is empty)."""
    names = [m.strip() for m in link.lossy_modalities.split(",") if m.strip()]
    return names or ["image", "text", "audio"]


def validate_link(link: LinkSettings, cfg: Config) -> ChannelSpec:
    if not math.isfinite(link.snr_db):
        raise RequestError("link.snr_db", f"must be a finite number of dB, got {link.snr_db}")
    if not -50.0 <= link.snr_db <= 100.0:
        raise RequestError("link.snr_db", f"{link.snr_db} dB is outside [-50, 100] dB")
    if not (math.isfinite(link.erasure_prob) and 0.0 <= link.erasure_prob <= 1.0):
        raise RequestError("link.erasure_prob", f"must be in [0, 1], got {link.erasure_prob}")
    # Bounds as `unitocom.options` states them to every front end; past them 10^(K/10) overflows (1e308 dB).
    if not (math.isfinite(link.rician_k_db) and -50.0 <= link.rician_k_db <= 50.0):
        raise RequestError("link.rician_k_db", f"must be a finite number in [-50, 50] dB, got {link.rician_k_db}")
    if not 0 <= link.pilots <= 64:
        raise RequestError("link.pilots", f"must be in 0..64 (0: the service default), got {link.pilots}")
    if not (math.isfinite(link.packet_loss) and 0.0 <= link.packet_loss <= 1.0):
        raise RequestError("link.packet_loss", f"must be in [0, 1], got {link.packet_loss}")
    if not (math.isfinite(link.packet_burst) and 0.0 <= link.packet_burst <= 1000.0):
        raise RequestError("link.packet_burst", f"must be 0 (i.i.d.) or a mean burst in [1, 1000] packets, "
                                                f"got {link.packet_burst}")
    if link.packet_burst:
        from unitocom.link.erasure import PacketLoss
        try:
            PacketLoss(link.packet_loss, link.packet_burst)
        except ValueError as e:
            raise RequestError("link.packet_burst", str(e)) from None
    if not 0 <= link.tokens_per_packet <= 4096:
        raise RequestError("link.tokens_per_packet", f"must be in 0..4096 (0: the default), got {link.tokens_per_packet}")
    if link.variant not in ("", "standard", "resilient"):
        raise RequestError("link.variant", f"unknown variant {link.variant!r}; expected standard|resilient")
    if link.variant == "resilient" and link.scheme not in (Scheme.UNITOCOM, Scheme.VAE):
        raise RequestError("link.variant", "resilient models exist for the learned schemes unitocom and vae only")
    if not 0 <= link.token_budget <= 4096:
        raise RequestError("link.token_budget", f"must be in 0..4096 (0: every token), got {link.token_budget}")
    if link.token_budget and link.variant != "resilient":
        raise RequestError("link.token_budget", "a token budget needs variant resilient: its importance head picks "
                                                "the tokens and its mask token stands in for the others")
    unknown = set(lossy_modalities(link)) - {"image", "text", "audio"}
    if unknown:
        raise RequestError("link.lossy_modalities", f"unknown modality {sorted(unknown)[0]!r}; expected a comma list "
                                                    "of image, text, audio")
    if link.packing not in ("", "sequential", "aggregated"):
        raise RequestError("link.packing", f"unknown packing {link.packing!r}; expected sequential|aggregated")
    if link.packing == "aggregated" and link.variant != "resilient":
        raise RequestError("link.packing", "aggregated packing needs variant resilient: it is planned with the "
                                           "resilient link's importance head")
    if not 0 <= link.text_copies <= MAX_TEXT_COPIES:
        raise RequestError("link.text_copies", f"must be in 0..{MAX_TEXT_COPIES} (0 or 1: each text sent once), got "
                                               f"{link.text_copies}")
    if link.text_copies > 1 and access.active(link):
        raise RequestError("link.text_copies", "text copies are combined per device; with users sharing the channel "
                                               "they are not modelled")
    _access(access.validate_link, link)  # users sharing the channel (issue 17)
    if link.jpeg_quality and not 1 <= link.jpeg_quality <= 95:
        raise RequestError("link.jpeg_quality", f"must be in 1..95, got {link.jpeg_quality}")
    if link.code_rate and not (math.isfinite(link.code_rate) and 0.0 < link.code_rate < 1.0):
        raise RequestError("link.code_rate", f"must be in (0, 1), got {link.code_rate}")
    if link.modulation and link.modulation not in ("bpsk", "qpsk", "qam16", "qam64"):
        raise RequestError("link.modulation", f"unknown modulation {link.modulation!r}; expected bpsk|qpsk|qam16|qam64")
    return channel_spec(link, cfg)


def _access(check, value) -> None:
    try:
        check(value)
    except access.AccessError as e:
        raise RequestError(e.field, e.reason, e.code) from None


def _plain(message: str) -> str:
    """A library's error text without Python object reprs (`<_io.BytesIO object at 0x7f...>`): a client in another
    language can do nothing with them."""
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", message).strip()


def _head(data: bytes) -> str:
    return f"{len(data)} bytes, starts with 0x{data[:8].hex()}{'...' if len(data) > 8 else ''}"


def _not_an_image(data: bytes, err: Exception | None = None) -> str:
    """Why bytes are not an image, in words a client in any language can act on: the size and first bytes, and
    Pillow's reason unless it is only "cannot identify" (whose text shows a Python object)."""
    what = f"not an image Pillow can read ({_head(data)})"
    if err is None or isinstance(err, UnidentifiedImageError):
        return what
    reason = _plain(str(err))
    return f"{what}: {reason}" if reason else what


def _check_image_size(data: bytes, field: str, max_pixels: int) -> None:
    """Read only the header, so that a decompression bomb is refused before it is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception as e:  # Pillow raises many types for garbage; all mean "not an image"
        raise RequestError(field, _not_an_image(data, e)) from None
    if w * h > max_pixels:
        raise RequestError(field, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")


def decode_payloads(req: Request, cfg: Config) -> list[SourcePayload]:
    lim = cfg.limits
    if not req.payloads:
        raise RequestError("payloads", "a request needs at least one payload")
    out = []
    for i, p in enumerate(req.payloads):
        field = f"payloads[{i}]"
        kind = p.content
        if kind is None:
            raise RequestError(field, "has no content (set text, image or audio)")
        if p.modality not in (None, Modality(kind)):
            raise RequestError(f"{field}.modality", f"is {p.modality.value} but the content is {kind}")
        if kind == "text":
            if not p.text.strip():
                raise RequestError(f"{field}.text", "is empty")
            if len(p.text) > lim.max_text_chars:
                raise RequestError(f"{field}.text", f"{len(p.text)} characters exceeds the limit of {lim.max_text_chars}")
            out.append(SourcePayload(Modality.TEXT, p.text))
        elif kind == "image":
            if not p.image:
                raise RequestError(f"{field}.image", "is empty")
            _check_image_size(p.image, f"{field}.image", lim.max_image_pixels)
            try:
                img = codecs.image_from_bytes(p.image)
            except ValueError as e:
                raise RequestError(f"{field}.image", _plain(str(e))) from None
            out.append(SourcePayload(Modality.IMAGE, img))
        else:
            if not p.audio:
                raise RequestError(f"{field}.audio", "is empty")
            try:
                wave, rate = codecs.audio_from_bytes(p.audio)
            except ValueError as e:
                raise RequestError(f"{field}.audio", f"{_plain(str(e))} ({_head(p.audio)})") from None
            if len(wave) == 0:
                raise RequestError(f"{field}.audio", "has no samples")
            if len(wave) / rate > lim.max_audio_seconds:
                raise RequestError(f"{field}.audio", f"{len(wave) / rate:.1f} s exceeds the limit of {lim.max_audio_seconds} s")
            out.append(SourcePayload(Modality.AUDIO, np.asarray(wave, np.float32), rate))
    return out


def validate(req: Request, cfg: Config) -> tuple[ChannelSpec, list[SourcePayload]]:
    """Check a Request; return the channel spec and decoded payloads, or raise RequestError."""
    if req.task is None:
        raise RequestError("task", "is not set; expected one of reconstruct, vqa, t2i, asr")
    spec = validate_link(req.link, cfg)
    if req.link.scheme is None:
        raise RequestError("link.scheme", "is not set; expected one of traditional, unitocom, vae, semcom")
    payloads = decode_payloads(req, cfg)
    if req.link.text_copies > 1 and not any(p.modality == Modality.TEXT for p in payloads):
        raise RequestError("link.text_copies", f"{req.link.text_copies} copies of each text payload, but this request "
                                               "sends no text (a spoken question is audio)")
    _access(access.validate, req)
    allowed = TASK_INPUTS[req.task]
    for i, p in enumerate(payloads):
        if p.modality not in allowed:
            raise RequestError(f"payloads[{i}]", f"task {req.task.value} does not take "
                               f"{p.modality.value} input")
    if req.session is not None:
        if access.active(req.link):  # one device per part, one group per request: the two do not compose (yet)
            raise RequestError("session", "a session is assembled from single devices' parts; a request of users "
                               "sharing the channel (users, access) cannot be one")
        validate_session(req.session, req.task, req.link.scheme, [p.modality for p in payloads], cfg.sessions)
    if req.task == Task.VQA:  # after the session's checks, which name a part's repeated modality in their terms
        check_vqa_question([p.modality for p in payloads], req.link.scheme, req.link.variant,
                           users=[p.user for p in req.payloads])
    if (req.task, req.link.scheme) not in SUPPORTED:
        why = MISSING.get(req.link.scheme, "the base-station MLLM is not built yet (issue 6)")
        raise RequestError("task", f"{req.task.value} with scheme "
                           f"{req.link.scheme.value} is not available in this build: {why}",
                           code="unimplemented")
    return spec, payloads


def request_id(req: Request) -> str:
    return req.request_id or uuid.uuid4().hex[:16]
