"""The base station's core: gather each stream's received frames, equalise, demodulate, decode, run the task.

Stages timed (`unitocom.timing`): each scheme's receiver (equalise, then decode or detokenize) per stream, then
for the MLLM tasks the MLLM's own (`stages/mllm.py`), or with scheme semcom the task receivers' (`stages/semcom.py`).

Dynamic batching (cfg.limits.batch_max > 1, the base-station service's default): the learned image and text
streams of concurrent requests are decoded together (`learned.decode_batch` behind the shared "receiver"
batcher), their received tokens go on to the MLLM without a second R; a learned VQA request goes whole to one
batcher (decode and answer); VQA answers, ASR transcripts and T2I images are generated together (the "mllm"
batchers in `stages/mllm.py`). Each request's thread waits for its own row; its answers equal the unbatched ones
(tests/test_batching.py)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from unitocom import batching, wire
from unitocom.config import Config, checkpoint_preset
from unitocom import schemes
from unitocom.schemes import traditional
from unitocom.messages import (Label, Modality, ModalityOutput, RequestHeader, Result, SessionPart,
                               SessionReport, StreamHeader, SymbolFrame)
from unitocom.options import Channel, Scheme, Task
from unitocom.stages import mllm
from unitocom.stages import session as sessions
from unitocom.stages.request import MISSING, RequestError, check_vqa_question, validate_session
from unitocom.timing import Clock

# schemes whose streams name the checkpoint they were made with (header.tokenizer)
LEARNED_SCHEMES = (Scheme.UNITOCOM, Scheme.VAE, Scheme.SEMCOM)

SERVICE = "basestation"


@dataclass
class _Stream:
    header: StreamHeader
    y: list[np.ndarray] = field(default_factory=list)
    h_est: list[np.ndarray] = field(default_factory=list)
    noise_var: float = 0.0
    est_error_var: float = 0.0
    erased: bool = False
    next_seq: int = 0
    done: bool = False


def lost_packets(header: StreamHeader, h_est: np.ndarray) -> tuple[int, int]:
    """(packets lost, packets) of a stream: lost are those whose every symbol came with h_est = 0 (the receiver's
    knowledge of a missing packet, `stages.channel`)."""
    ps = min(int(header.packet_symbols), len(h_est))  # a header's word is not a size to allocate
    if not ps:
        return 0, 0
    packets = -(-len(h_est) // ps)
    if np.all(h_est != 0):
        return 0, packets
    zero = np.ones(packets * ps, bool)
    zero[:len(h_est)] = h_est == 0
    return int(zero.reshape(packets, ps).all(axis=1).sum()), packets


# What must be equal between a stream and a copy of it: everything its receiver reads.
_COPY_FIELDS = ("modality", "scheme", "num_symbols", "source_codec", "channel_code", "code_rate", "modulation",
                "info_block_bits", "payload_bytes", "token_shape", "tokenizer", "audio_rate_hz", "num_samples",
                "sent_tokens", "symbol_gain_db", "user", "power")


def copies_of(streams: list[StreamHeader]) -> dict[int, list[int]]:
    """{stream id: the ids of its copies} for the streams that have copies (StreamHeader.copy >= 1 names the stream
    it repeats in copy_of). RequestError naming the field where a copy names no stream of the request, a copy, or a
    stream it does not match (a receiver reads the combined stream with the original's header)."""
    by_id = {s.stream_id: s for s in streams}
    out: dict[int, list[int]] = {}
    for i, s in enumerate(streams):
        if not s.copy:
            continue
        field = f"header.streams[{i}]"
        original = by_id.get(s.copy_of)
        if original is None or original.copy:
            raise RequestError(f"{field}.copy_of", f"{s.copy_of} is not a stream of this request that is sent "
                               "itself (a copy repeats an original stream)")
        differ = [f for f in _COPY_FIELDS if getattr(s, f) != getattr(original, f)]
        if differ:
            raise RequestError(f"{field}.{differ[0]}", f"a copy of stream {s.copy_of} must have its {differ[0]}")
        out.setdefault(s.copy_of, []).append(s.stream_id)
    for sid, ids in out.items():
        numbers = sorted(by_id[k].copy for k in ids)
        if numbers != list(range(1, len(ids) + 1)):
            raise RequestError("header.streams", f"stream {sid}'s copies must be numbered 1..{len(ids)}, got {numbers}")
    return out


def _packet_note(header: StreamHeader, lost: int, packets: int) -> str:
    what = "tokens" if header.scheme != Scheme.TRADITIONAL else "code blocks"
    return f"{lost} of {packets} packets lost by the channel (their {what} read as erasures)" if lost else ""


def _resilient(header: StreamHeader) -> bool:
    """A learned stream read with a mask token for its lost tokens (`TokenLink.fill_lost`: the links' resilient
    companions)."""
    if header.scheme not in (Scheme.UNITOCOM, Scheme.VAE):
        return False
    from unitocom.schemes import learned
    return learned.model(header.tokenizer).spec.resilient


@dataclass
class Decoded:
    """A request's streams as the base station decoded them, before the task: each stream's output and what the
    MLLM reads of it; `answer`: the VQA answer when the batched receiver already generated it with the decoding."""

    outputs: list[ModalityOutput]
    received: list[mllm.Received]
    channel_uses: int
    answer: str | None = None


@dataclass
class Answer:
    """The task's answer: output text, generated outputs (t2i's image), quality against the label, and notes for
    the inputs the task read blank."""

    text: str
    generated: list[ModalityOutput]
    quality: dict[str, float]
    notes: list[str]


@dataclass
class SessionAnswer:
    """A session's answer, made once by the call that ran the task and shared with every part's call."""

    answer: Answer
    report: SessionReport


def run_task(header: RequestHeader, received: list[mllm.Received], cfg: Config, clock: Clock,
             answer: str | None = None) -> Answer:
    """Eq. (3) on received streams: the MLLM (or, with scheme semcom, the task receivers) answers header.task.
    reconstruct has nothing to run: its answer is the first received text."""
    link = header.link
    texts = [r.output.text for r in received if r.header.modality == Modality.TEXT]
    if header.task == Task.RECONSTRUCT:
        return Answer(texts[0] if texts else "", [], {}, [])
    if link.scheme == Scheme.SEMCOM:  # task-specific receivers, no MLLM
        from unitocom.stages import semcom
        return Answer(*semcom.run(header.task, header.label, received, cfg, seed=int(link.seed), clock=clock))
    return Answer(*mllm.run(header.task, header.label, received, link.scheme, cfg, seed=int(link.seed), clock=clock,
                            answer=answer, resilient=link.variant == "resilient"))


class BaseStationCore:
    """One per request. `header` is the library's RequestHeader: its enums were checked where it was converted
    (`wire.from_pb` at the service edge names an unknown number's field); here, that it has streams with unique ids
    and a scheme this build implements for each. A header with a session is checked against the session table
    (`table`, the service's) before any frame is read: `finish_session` then answers it."""

    def __init__(self, header: RequestHeader, cfg: Config, table: sessions.SessionTable | None = None):
        if not header.streams:
            raise RequestError("header.streams", "a request header must describe at least one stream")
        self.header, self.cfg = header, cfg
        self.streams = {s.stream_id: _Stream(s) for s in header.streams}
        if len(self.streams) != len(header.streams):
            raise RequestError("header.streams", "stream ids must be unique")
        self.copies = copies_of(header.streams)  # the streams that repeat another (link.text_copies)
        for i, s in enumerate(header.streams):
            try:
                schemes.for_scheme(s.scheme)
            except ValueError as e:
                raise RequestError(f"header.streams[{i}].scheme", str(e)) from None
            if s.scheme in LEARNED_SCHEMES and checkpoint_preset(s.tokenizer) != cfg.preset.name:
                # never decode with another preset's weights: a tiny tokenizer's stream is not a paper stream
                raise RequestError(f"header.streams[{i}].tokenizer",
                                   f"{s.tokenizer!r} is a checkpoint of the {checkpoint_preset(s.tokenizer)} preset; "
                                   f"this base station serves the {cfg.preset.name} preset (start the transmitter "
                                   f"with --preset {cfg.preset.name})", code="failed_precondition")
        if header.task == Task.RECONSTRUCT and header.link.scheme == Scheme.SEMCOM:
            raise RequestError("header.task", MISSING[Scheme.SEMCOM], code="unimplemented")
        originals = [s for s in header.streams if not s.copy]
        if header.task == Task.VQA:  # one question, typed or spoken: refused before any frame is read
            check_vqa_question([s.modality for s in originals], header.link.scheme, header.link.variant,
                               "header.streams", users=[s.user for s in originals])
        self.table, self.expected = table, ()
        from unitocom.stages import access
        try:
            access.check_labels(header.link, header.label, header.user_labels, "header.")
        except access.AccessError as e:
            raise RequestError(e.field, e.reason, code=e.code) from None
        if self.copies and access.active(header.link):
            raise RequestError("header.streams", "copies of a stream are combined per device; with users sharing the "
                               "channel they are not modelled (link.text_copies)")
        if header.session is not None:
            if access.active(header.link):
                raise RequestError("header.session", "a session is assembled from single devices' parts; a request "
                                   "of users sharing the channel cannot be one")
            if table is None:  # the in-process pipeline: one request, nobody to assemble it with
                raise RequestError("header.session", "sessions are assembled by the base-station service; this "
                                   "base station keeps no session table", code="unimplemented")
            self.expected = validate_session(header.session, header.task, header.link.scheme,
                                             [s.modality for s in originals], cfg.sessions, "header.session",
                                             "header.streams")
            table.check(header, self.expected, self.modalities)
        self.clock = Clock(SERVICE)
        # lost packets of this request's streams, and those of them a resilient reader concealed (its mask token
        # stood in for their tokens): the service counts them (`unitocom_packets_total`)
        self.packets_lost = self.packets_concealed = 0

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(s.modality for s in self.header.streams if not s.copy)

    @property
    def resilient(self) -> bool:
        """The request asked for the models trained with token dropout (issue 16)."""
        return self.header.link.variant == "resilient"

    def check(self, stream_id: int, seq: int) -> None:
        """RequestError unless frame `seq` of stream `stream_id` is the one expected next (a service checks this
        before it reads the frame's arrays)."""
        s = self.streams.get(stream_id)
        if s is None:
            raise RequestError("frame.stream_id", f"{stream_id} is not a stream of this request")
        if s.done or seq != s.next_seq:
            raise RequestError("frame.seq", f"stream {stream_id}: expected frame {s.next_seq}, got {seq}")

    def add(self, frame: SymbolFrame) -> None:
        """One received frame, with the Csi the channel applied (only its estimate side is read)."""
        self.check(frame.stream_id, frame.seq)
        if frame.csi is None:
            raise RequestError("frame.csi", "a received frame must carry the channel state")
        s, csi = self.streams[frame.stream_id], frame.csi
        try:
            h = wire.runs_decode(csi.h_est, csi.h_est_runs, len(frame.symbols), "frame.csi.h_est_runs")
        except wire.WireError as e:
            raise RequestError(*wire.error_field(e)) from None
        s.y.append(frame.symbols)
        s.h_est.append(h)
        s.noise_var = csi.noise_var
        s.est_error_var = csi.h_est_error_var
        s.erased |= csi.erased
        s.next_seq += 1
        s.done = frame.last

    def _decode_batched(self, arrays: dict[int, tuple[np.ndarray, np.ndarray]]
                        ) -> tuple[dict[int, tuple[ModalityOutput, object]], str | None]:
        """With dynamic batching on (cfg.limits.batch_max > 1), the streams decoded with other requests' streams:
        stream id -> (ModalityOutput, received tokens), and the VQA answer when it came with them. A learned VQA
        request (one image and one question stream) goes whole to the VQA batcher (decode and answer in one
        batch); otherwise the learned image and text streams, all of this request's at once, to the receiver
        batcher. Other streams (traditional, audio) are left to decode here, one by one. This thread waits."""
        limits = self.cfg.limits
        if limits.batch_max <= 1:
            return {}, None
        from unitocom.schemes import learned
        jobs = {}
        for sid, s in self._originals().items():
            if s.header.scheme in (Scheme.UNITOCOM, Scheme.VAE) and s.header.modality in learned.BATCHED_MODALITIES:
                y, h = arrays[sid]
                jobs[sid] = learned.StreamJob(s.header, y, h, s.noise_var, s.erased, s.est_error_var, self.clock)
        modality = {sid: self.streams[sid].header.modality for sid in jobs}
        scheme = self.header.link.scheme
        if (self.header.task == Task.VQA and len(jobs) == len(self._originals()) == 2
                and sorted(modality.values()) == sorted([Modality.IMAGE, Modality.TEXT])
                and all(self.streams[sid].header.scheme == scheme for sid in jobs)):
            image = next(sid for sid in jobs if modality[sid] == Modality.IMAGE)
            question = next(sid for sid in jobs if modality[sid] == Modality.TEXT)
            req = mllm.VqaRequest(jobs[image], jobs[question], self.clock)
            # a bound on the wait, so that a stuck batch cannot hold worker threads for ever
            decoded_image, decoded_question, answer = mllm.vqa_batcher(scheme, self.cfg, self.resilient)(
                req, timeout=limits.default_deadline_s)
            return {image: decoded_image, question: decoded_question}, answer
        receiver = batching.shared("receiver", "learned", learned.decode_batch, limits.batch_max,
                                   limits.batch_delay_ms)
        futures = {sid: receiver.submit(job) for sid, job in jobs.items()}
        return {sid: f.result(timeout=limits.default_deadline_s) for sid, f in futures.items()}, None

    def _originals(self) -> dict[int, _Stream]:
        """The streams to decode: all but the copies, which are combined into the stream they repeat."""
        return {sid: s for sid, s in self.streams.items() if not s.header.copy}

    def _combine_copies(self, arrays: dict[int, tuple[np.ndarray, np.ndarray]]
                        ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[int, str]]:
        """Each stream with copies (link.text_copies) combined with them by maximal-ratio combining
        (`link.diversity.mrc`): stream id -> (y, h_est) of the combined stream, read as one stream with gain
        sqrt(sum |h_k|^2) and the same noise; an erased copy adds nothing. -> (arrays, notes per combined stream)."""
        from unitocom.link.diversity import mrc
        notes = {}
        for sid, copies in self.copies.items():
            members = [sid, *copies]
            streams = [self.streams[k] for k in members]
            ys = np.stack([arrays[k][0] for k in members])
            hs = np.stack([np.zeros_like(arrays[k][1]) if s.erased else arrays[k][1] for k, s in zip(members, streams)])
            arrays[sid] = mrc(ys, hs)
            self.streams[sid].erased = all(s.erased for s in streams)
            g = np.mean(np.abs(hs) ** 2, axis=1)  # each copy's mean |h|^2
            notes[sid] = (f"sent {len(members)} times over independent fades, maximal-ratio combined before the "
                          f"receiver (|h|^2 of the copies {', '.join(f'{v:.2f}' for v in g)}; combined {g.sum():.2f})")
        return {sid: a for sid, a in arrays.items() if not self.streams[sid].header.copy}, notes

    def _block_decoder(self):
        """The code blocks of this stream decoded with other requests' blocks of the same code (one LDPC/Turbo
        decoder call per batch, `traditional.decode_blocks`); this thread waits for its own."""
        limits = self.cfg.limits
        blocks = batching.shared("channel_decode", "traditional", traditional.decode_blocks, limits.batch_max,
                                 limits.batch_delay_ms)
        return lambda job: blocks.submit(job).result(timeout=limits.default_deadline_s)

    def decode(self) -> Decoded:
        """Every stream of this request equalised and decoded (with other requests' streams under dynamic
        batching): what the task reads. RequestError for a stream that did not arrive whole."""
        received: list[mllm.Received] = []
        outputs: list[ModalityOutput] = []
        channel_uses = 0
        arrays = {}
        for sid, s in self.streams.items():
            if not s.done:
                raise RequestError("frames", f"stream {sid} ended after {s.next_seq} frames without its last frame")
            y, h = np.concatenate(s.y), np.concatenate(s.h_est)
            if len(y) != s.header.num_symbols:
                raise RequestError("frames", f"stream {sid}: {len(y)} symbols received, header says {s.header.num_symbols}")
            arrays[sid] = y, h
        arrays, notes = self._combine_copies(arrays)
        decoded, answer = self._decode_batched(arrays)
        for sid, s in self._originals().items():
            y, h = arrays[sid]
            tokens = None
            if sid in decoded:  # decoded with other requests' streams
                out, tokens = decoded[sid]
            elif s.header.scheme == Scheme.TRADITIONAL and self.cfg.limits.batch_max > 1:
                out = traditional.decode(s.header, y, h, s.noise_var, s.erased, self.cfg,
                                         est_error_var=s.est_error_var, clock=self.clock,
                                         block_decoder=self._block_decoder())
            else:
                out = schemes.for_scheme(s.header.scheme).decode(s.header, y, h, s.noise_var, s.erased, self.cfg,
                                                                 est_error_var=s.est_error_var, clock=self.clock)
            lost, packets = lost_packets(s.header, h)
            self.packets_lost += lost
            if lost and _resilient(s.header):
                self.packets_concealed += lost
            for note in (_packet_note(s.header, lost, packets), notes.get(sid, "")):
                if note:
                    out.note = f"{out.note}; {note}" if out.note else note
            uses = len(y) * (1 + len(self.copies.get(sid, ())))  # every copy crossed the channel
            out.channel_uses = uses
            outputs.append(out)
            channel_uses += uses
            received.append(mllm.Received(s.header, out, y, h, s.noise_var, s.erased, s.est_error_var, tokens))
        return Decoded(outputs, received, channel_uses, answer)

    def finish(self) -> Result:
        """The request's Result: its streams decoded and its task run (a request without a session)."""
        from unitocom.stages import multiuser
        if multiuser.active(self.header.link):  # users sharing the channel (issue 17): per-user decoding and tasks
            return multiuser.finish(self)
        decoded = self.decode()
        return self._result(decoded, run_task(self.header, decoded.received, self.cfg, self.clock, decoded.answer))

    def _result(self, decoded: Decoded, answer: Answer, session: SessionReport | None = None) -> Result:
        """This call's Result: its own streams' outputs, then the answer (the same for every part of a session)."""
        link = self.header.link
        outputs = decoded.outputs + answer.generated
        for note in answer.notes:
            for o in outputs:
                if o.modality != Modality.TEXT and not o.decoded:
                    o.note = f"{o.note}; {note}" if o.note else note
        result = Result(request_id=self.header.request_id, task=self.header.task, scheme=link.scheme,
                        snr_db=link.snr_db, channel=link.channel or Channel.AWGN, output_text=answer.text,
                        outputs=outputs, channel_uses=decoded.channel_uses, quality=dict(answer.quality),
                        session=session)
        self.clock.report(result.timings)
        return result

    # -- sessions (issue 17): this request is one part of a request several devices send ----------------------------

    def finish_session(self, timeout_s: float | None, alive: Callable[[], bool] = lambda: True) -> Result:
        """Decode this part, add it to its session, and return the session's answer: run the task here when this
        part completes the session (or when the deadline passed and a partial answer was asked for), otherwise wait
        for the call that runs it. `timeout_s`: this call's own deadline for the wait; `alive`: False once its caller
        has gone. RequestError: the session's or this call's deadline passed (deadline_exceeded), the session
        refused the part, or its task failed."""
        decoded = self.decode()
        part = sessions.Part(self.header.request_id, self.header, self.modalities, decoded)
        turn = self.table.join(self.header, self.expected, part)
        waited = 0.0
        if turn.run:
            outcome = self._run_session(turn)
        else:
            outcome, waited = self.table.await_outcome(turn, timeout_s, alive)
            if outcome is None:  # the deadline passed with parts missing and a partial answer asked for: ours to run
                outcome = self._run_session(turn)
        shared: SessionAnswer = self.table.take(turn, outcome)
        # the answer's objects are shared with the other parts' calls: this call's Result gets its own copies
        answer = dataclasses.replace(shared.answer, generated=[dataclasses.replace(o) for o in shared.answer.generated])
        return self._result(decoded, answer, dataclasses.replace(shared.report, waited_s=waited))

    def _run_session(self, turn: sessions.Turn) -> sessions.Outcome:
        """Run the session's task once, on every part that arrived, timed on this call's clock; publish the outcome
        to the waiting calls whatever happens (a failure is theirs too: nobody waits for an answer that never comes)."""
        parts, missing = self.table.parts(turn)
        try:
            value = self._answer_session(parts, missing, turn.session.wait_s)
        except RequestError as e:
            self.table.publish(turn, sessions.Outcome(error=e, missing=missing))
            raise
        except BaseException:
            why = RequestError("session", f"the task of session {self.header.session.id!r} failed at the base station "
                               "(see its log)", code="internal")
            self.table.publish(turn, sessions.Outcome(error=why, missing=missing))
            raise
        outcome = sessions.Outcome(value=value, missing=missing, answered_by=self.header.request_id)
        self.table.publish(turn, outcome)
        return outcome

    def _answer_session(self, parts: list[sessions.Part], missing: tuple[Modality, ...],
                        wait_s: float) -> SessionAnswer:
        """The task on the parts' received streams, in order of arrival; a missing part (a partial answer) read as
        a blank input, said in the report's note. The MLLM is the one that reads the image (or audio) part's
        scheme: its tokens are that scheme's; a question is read as the text it decoded to, whatever its scheme."""
        received = [r for p in parts for r in p.decoded.received]
        main = next((p for p in parts if {Modality.IMAGE, Modality.AUDIO} & set(p.modalities)), parts[0]).header
        label = Label(**{k: next((getattr(p.header.label, k) for p in parts if getattr(p.header.label, k)), "")
                         for k in ("answer", "transcript", "caption")})
        header = dataclasses.replace(main, label=label)
        note = ""
        if missing:
            what = (f"the task read {'; '.join(_STAND_IN[m] for m in missing)}" if header.task != Task.RECONSTRUCT
                    else "the parts that arrived are answered")
            note = f"no {', '.join(m.value for m in missing)} part arrived within {wait_s:g} s: {what}"
            if header.task != Task.RECONSTRUCT:
                received += [_stand_in(m) for m in missing]
        answer = parts[0].decoded.answer if len(parts) == 1 and not missing else None
        result = run_task(header, received, self.cfg, self.clock, answer)
        arrived = [SessionPart(request_id=p.request_id, modality=r.header.modality, scheme=r.header.scheme,
                               snr_db=p.header.link.snr_db, channel=p.header.link.channel or Channel.AWGN,
                               channel_uses=r.output.channel_uses, decoded=r.output.decoded, note=r.output.note)
                   for p in parts for r in p.decoded.received]
        report = SessionReport(id=self.header.session.id, arrived=arrived, missing=list(missing), complete=not missing,
                               answered_by=self.header.request_id, note=note)
        return SessionAnswer(result, report)


# What the task reads in place of a part that never arrived (a partial answer): a blank input, as for a payload the
# channel destroyed (mllm.run reads an undecoded image or clip as mid-grey or silence).
_STAND_IN = {Modality.IMAGE: "a blank (mid-grey) picture", Modality.TEXT: "an empty question",
             Modality.AUDIO: "silence"}


def _stand_in(m: Modality) -> mllm.Received:
    empty = np.zeros(0, np.complex64)
    out = ModalityOutput(modality=m, decoded=False, text="", note="not received: the session's deadline passed")
    return mllm.Received(StreamHeader(modality=m, scheme=Scheme.TRADITIONAL), out, empty, empty, 0.0, True, 0.0)
