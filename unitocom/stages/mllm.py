"""The base station's MLLM stage, eq. (3): x_hat = F^-1(M(R(z_t), R(z_v), R(z_a))).

Every scheme hands the MLLM tokens in the same space. The learned schemes give R's output directly (received
tokens); for the traditional scheme the base station tokenizes the decoded payload locally with the same
tokenizer, so one MLLM serves all schemes and only the link differs. A payload the channel destroyed (a JPEG
that will not decode, speech that will not) becomes a blank input: the task still gets an answer, and the
result says why it is likely wrong.

Stages timed (`unitocom.timing`): the tokens the MLLM reads (equalise: LMMSE and R again for a learned stream;
source_encode: the tokenizer F on a decoded payload for the traditional scheme), mllm_prefill and mllm_generate
(`mllm/tasks.py`), detokenize (F^-1 of generated image tokens) and score (against the label).
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from unitocom import batching
from unitocom.batching import MicroBatcher
from unitocom.config import Config
from unitocom.messages import Label, Modality, ModalityOutput, StreamHeader
from unitocom.models.objectives import SCHEME_OBJECTIVE
from unitocom.options import Scheme, Task
from unitocom.stages.request import RequestError
from unitocom.timing import NOT_TIMED, Clock

_lock = threading.Lock()
_cache: dict[object, object] = {}  # (MLLM file, objective, S_v) -> Assistant; "checker"

# The learned schemes read their own tokenizer's tokens; the traditional scheme's decoded payloads are tokenized
# at the base station with sigma-GenIB's.
OBJECTIVE = {Scheme(s): o for s, o in SCHEME_OBJECTIVE.items()} | {Scheme.TRADITIONAL: "sigma-genib"}


# Classifier-free guidance of text-to-image at the base station, chosen with scripts/t2i_sweep.py (the scene
# checker's pair recall on held-out captions for each scale).
T2I_GUIDANCE = 3.0


@dataclass
class Assistant:
    """One MLLM with the tokenizers whose tokens it reads (and, for text-to-image, writes)."""

    model: object
    std: object
    vocab: object
    image_link: object
    audio_link: object
    frontend: object
    meta: dict = field(default_factory=dict)


def assistant(scheme: Scheme, cfg: Config, resilient: bool = False, spoken: bool = False) -> Assistant:
    """The MLLM (with its links) that reads `scheme`'s tokens under `cfg`: the installed
    mllm-<objective>.safetensors, the one for the config's image token count (mllm-<objective>-s<N>), or
    `cfg.mllm_path`; `resilient`: mllm-<objective>-resilient, trained with token dropout (issue 16); `spoken`:
    mllm-<objective>-spoken, trained with spoken questions in its mix (issue 17), for a VQA request whose
    question is audio (`cfg.spoken_mllm_path` when set). Loaded once per (file, objective, image token count)
    and kept for the life of the process."""
    from pathlib import Path

    from unitocom.mllm.checkpoint import load_links, load_mllm, mllm_path_for
    objective = OBJECTIVE[scheme]
    path = mllm_path_for(cfg, objective, resilient, spoken)
    tokens = cfg.preset.image_tokens
    key = (str(path), objective, tokens)
    with _lock:
        if key not in _cache:
            if not Path(path).exists():
                if cfg.mllm_path:
                    how = "train one with `unitocom train mllm --no-install --run-dir DIR` and point mllm_path at " \
                          "DIR/mllm.safetensors"
                elif resilient:
                    how = f"train it with `unitocom train mllm --objective {objective} --resilient`"
                elif spoken:
                    how = f"train it with `unitocom train mllm --objective {objective} --spoken`; it reads spoken " \
                          "questions"
                elif path.name != f"mllm-{objective}.safetensors":
                    how = f"train it with `unitocom train mllm --objective {objective} --image-tokens {tokens}`"
                else:
                    how = "train it with `unitocom train mllm`"
                raise RequestError("task", f"the base-station MLLM {path.name} is not installed ({path} is missing; "
                                   f"{how})", code="failed_precondition")
            model, std, meta = load_mllm(path)
            # A file named by hand (or an -s<N> one) must have been trained on what it is asked to read.
            trained = {"objective": meta.get("objective"), "image tokens": meta.get("image_tokens")}
            wanted = {"objective": objective, "image tokens": tokens}
            wrong = [f"{k} {trained[k]} (this scheme sends {wanted[k]})" for k in trained
                     if trained[k] is not None and trained[k] != wanted[k]]
            if wrong:
                raise RequestError("task", f"the base-station MLLM {path} was trained on {', '.join(wrong)}",
                                   code="failed_precondition")
            model = model.to(cfg.device, torch.bfloat16 if cfg.device.startswith("cuda") else torch.float32)
            # an MLLM trained on a backbone's vocabulary (--init-backbone) reads text with that tokenizer, kept
            # beside it as <checkpoint>.tokenizer.json
            own = meta.get("text_tokenizer")
            links = {"bpe": str(Path(path).with_suffix(".tokenizer.json"))} if own else None
            image, audio, frontend, vocab, _ = load_links(cfg, links, objective)
            if own:
                from unitocom.mllm.sequences import Vocab
                vocab = Vocab(vocab.bpe, base=own["base"], bare=own.get("bare", True))
            _cache[key] = Assistant(model, std, vocab, image, audio, frontend, meta)
        return _cache[key]


@dataclass
class Received:
    """One stream as the base station has it: its reconstruct-task output and, for the MLLM, its content."""

    header: StreamHeader
    output: ModalityOutput
    y: np.ndarray
    h_est: np.ndarray
    noise_var: float
    erased: bool
    est_error_var: float
    # The received tokens R gave when the stream was decoded (learned schemes, batched receiver): [S, d]; None
    # when they were not kept, and image_tokens runs R again.
    tokens: torch.Tensor | None = None


@torch.no_grad()
def image_tokens(a: Assistant, r: Received, clock: Clock = NOT_TIMED) -> torch.Tensor:
    """[S_v, d] tokens the MLLM reads for an image stream."""
    from unitocom.schemes import learned
    if r.header.scheme in (Scheme.UNITOCOM, Scheme.VAE):
        if r.tokens is not None:  # R already ran on this stream (its time is in the stream's equalise)
            return r.tokens
        with clock.stage("equalise"):
            m = learned.model(r.header.tokenizer)
            job = learned.StreamJob(r.header, r.y, r.h_est, r.noise_var, r.erased, r.est_error_var)
            return learned.mllm_tokens(m, *learned.received_image_tokens(m, [job]))[0]
    with clock.stage("source_encode"):
        size = a.image_link.spec.image_size_px
        if r.output.decoded and r.output.image_png:
            img = np.asarray(Image.open(io.BytesIO(r.output.image_png)).convert("RGB"))
            img, _ = learned.fit_image(img, size)
        else:  # the JPEG did not survive: the model sees a blank (mid-grey) picture
            img = np.full((size, size, 3), 128, np.uint8)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        return learned.clean_tokens(a.image_link, a.image_link.tokenize(x)[0])[0]


@torch.no_grad()
def audio_tokens(a: Assistant, r: Received, clock: Clock = NOT_TIMED) -> torch.Tensor:
    """[chunks * S_a, d] tokens the MLLM reads for a speech stream. An MLLM with a lost-token embedding (the
    resilient one) gets the tokens of lost packets as NaN rows (`models.resilience`): it was trained to read them."""
    from unitocom.mllm.data import audio_means
    from unitocom.schemes import learned
    if a.audio_link is None:
        raise RequestError("task", "asr needs an audio tokenizer checkpoint, which is not installed",
                           code="failed_precondition")
    if r.header.scheme in (Scheme.UNITOCOM, Scheme.VAE):
        with clock.stage("equalise"):
            m = learned.model(r.header.tokenizer)
            c = int(r.header.token_shape[0])
            z, sinr = learned.equalize(r.y, r.h_est, r.noise_var, r.erased, r.est_error_var)
            tokens = learned.symbols_to_tokens(m, z.reshape(c, -1), sinr.reshape(c, -1)).reshape(-1, m.spec.token_dim)
            if a.model.cfg.lost_token:
                from unitocom.models.resilience import with_nan_rows
                lost = learned.lost_tokens(r.h_est, m.spec.uses_per_token, r.erased)
                tokens = with_nan_rows(tokens, torch.from_numpy(lost))
            return tokens
    with clock.stage("source_encode"):
        rate = a.audio_link.spec.audio_rate_hz
        if r.output.decoded and r.output.audio_wav:
            wave, got = sf.read(io.BytesIO(r.output.audio_wav), dtype="float32", always_2d=True)
            wave, _ = learned.fit_audio(wave.mean(1), got, rate)
        else:
            wave = np.zeros(rate, np.float32)
        mu = audio_means(a.audio_link, a.frontend, torch.from_numpy(np.ascontiguousarray(wave)))
        s = a.audio_link.spec
        return learned.clean_tokens(a.audio_link, mu.reshape(-1, s.tokens, s.token_dim)).reshape(-1, s.token_dim)


def run(task: Task | None, label: Label, streams: list[Received], scheme: Scheme, cfg: Config,
        guidance: float | None = None, seed: int = 0, clock: Clock = NOT_TIMED, answer: str | None = None,
        resilient: bool = False) -> tuple[str, list[ModalityOutput], dict[str, float], list[str]]:
    """-> (output text, generated outputs, quality against the label, notes). answer: the VQA answer when the
    base station's batch already generated it with the streams' decoding (`vqa_batcher`). resilient: the MLLM
    trained with token dropout reads the tokens (the request's variant)."""
    from unitocom.mllm import tasks
    from unitocom.mllm.sequences import normalize
    a = assistant(scheme, cfg, resilient)
    by = {m: [r for r in streams if r.header.modality == m] for m in Modality}
    texts = [r.output.text for r in by[Modality.TEXT]]
    notes = [f"{r.header.modality.value} stream not decoded: the MLLM read a blank input"
             for r in streams if r.header.modality != Modality.TEXT and not r.output.decoded]
    quality: dict[str, float] = {}
    if task == Task.VQA and by[Modality.AUDIO]:  # the question is spoken (issue 17)
        return _spoken_vqa(by, label, scheme, cfg, clock, notes, resilient)
    if task == Task.VQA:
        if len(by[Modality.IMAGE]) != 1 or len(texts) != 1:
            raise RequestError("payloads", "vqa takes exactly one image and one question")
        if answer is None and cfg.limits.batch_max > 1:  # dynamic batching: this thread waits for its row
            answer = _vqa_batcher(a, cfg)(_VqaJob(by[Modality.IMAGE][0], texts[0], clock),
                                          timeout=cfg.limits.default_deadline_s)
        elif answer is None:
            answer = tasks.answer(a.model, a.vocab, [image_tokens(a, by[Modality.IMAGE][0], clock)], texts,
                                  clock=clock)[0]
        if label.answer:
            with clock.stage("score"):
                quality["exact_match"] = float(normalize(answer) == normalize(label.answer))
        return answer, [], quality, notes
    if task == Task.ASR:
        if len(by[Modality.AUDIO]) != 1:
            raise RequestError("payloads", "asr takes exactly one audio clip")
        if cfg.limits.batch_max > 1:  # dynamic batching: the transcripts of clips that arrive together at once
            transcript = _asr_batcher(a, cfg)(_AsrJob(by[Modality.AUDIO][0], clock),
                                              timeout=cfg.limits.default_deadline_s)
        else:
            transcript = tasks.transcribe(a.model, a.vocab, [audio_tokens(a, by[Modality.AUDIO][0], clock)],
                                          clock=clock)[0]
        if label.transcript:
            from unitocom.metrics.scores import wer
            with clock.stage("score"):
                quality["wer"] = wer([label.transcript], [transcript])
        return transcript, [], quality, notes
    if task == Task.T2I:
        if len(texts) != 1:
            raise RequestError("payloads", "t2i takes exactly one caption")
        from unitocom.schemes import learned
        g = T2I_GUIDANCE if guidance is None else guidance
        if cfg.limits.batch_max > 1:  # dynamic batching: one generation for the captions that arrive together
            tokens, how = _t2i_batcher(a, cfg)(_T2iJob(texts[0], seed, g, clock),
                                               timeout=cfg.limits.default_deadline_s)
        else:
            tokens, how = _imagine_one(a, _T2iJob(texts[0], seed, g, clock))
        with clock.stage("detokenize"):
            # The MLLM generates F_alpha-space tokens (its targets are the tokenizer's means): one token space with
            # a consistency-trained link, a pass through R(T(.)) for the older ones (learned.clean_tokens).
            mu = a.std.inverse(tokens.float().cpu())[None]
            img = learned.tokens_to_images(a.image_link, learned.clean_tokens(a.image_link, mu))[0]
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
        out = ModalityOutput(modality=Modality.IMAGE, decoded=True, image_png=buf.getvalue(),
                                note=f"generated from the received caption {texts[0]!r} {how}")
        caption = label.caption or texts[0]  # the transmitter labels a t2i request with the caption it sent
        checker = scene_checker()
        if checker is not None:
            from unitocom.metrics.scene_checker import caption_pairs, pair_recall
            if caption_pairs(caption):
                with clock.stage("score"):
                    seen = checker.recognise(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0)[0]
                    quality["t2i_pair_recall"] = pair_recall(caption, seen)
        return texts[0], [out], quality, notes
    raise RequestError("task", f"{task.value if task else 'task_unspecified'} is not an MLLM task")


def _spoken_vqa(by: dict, label: Label, scheme: Scheme, cfg: Config, clock: Clock, notes: list[str],
                resilient: bool) -> tuple[str, list[ModalityOutput], dict[str, float], list[str]]:
    """VQA whose question arrived as speech: the image's and the question's received tokens, read by the MLLM
    trained with spoken questions (mllm-<objective>-spoken; `sequences.spoken_vqa`). One request at a time, not
    through the VQA batcher: the typed batcher's rows are one MLLM's, and spoken VQA is a different one."""
    from unitocom.mllm import tasks
    from unitocom.mllm.sequences import normalize
    if by[Modality.TEXT]:
        raise RequestError("payloads", "vqa takes one question, typed (text) or spoken (audio), not both")
    if resilient:
        raise RequestError("link.variant", "a spoken question with variant resilient: no resilient MLLM reads "
                           "spoken questions; use variant standard", code="unimplemented")
    if len(by[Modality.IMAGE]) != 1 or len(by[Modality.AUDIO]) != 1:
        raise RequestError("payloads", "vqa takes exactly one image and one question (a spoken one: one audio clip)")
    a = assistant(scheme, cfg, spoken=True)
    img = image_tokens(a, by[Modality.IMAGE][0], clock)
    question = audio_tokens(a, by[Modality.AUDIO][0], clock)
    answer = tasks.answer_spoken(a.model, a.vocab, [img], [question], clock=clock)[0]
    quality: dict[str, float] = {}
    if label.answer:
        with clock.stage("score"):
            quality["exact_match"] = float(normalize(answer) == normalize(label.answer))
    return answer, [], quality, notes


# -- dynamic batching (issue 13) -------------------------------------------------------------------------------

@dataclass
class _VqaJob:
    """One request's VQA work for the batcher: its image stream, its question, and its clock (written by the
    batcher's thread while the request's thread waits for the answer)."""

    image: Received
    question: str
    clock: Clock


def _vqa_batcher(a: Assistant, cfg: Config) -> MicroBatcher:
    """The batcher of VQA answers for assistant `a` under cfg's batch settings: one per assistant, since one
    forward runs one MLLM."""
    return batching.shared("mllm", ("vqa", id(a)), lambda jobs: _answer_batch(a, jobs), cfg.limits.batch_max,
                           cfg.limits.batch_delay_ms)


@dataclass
class VqaRequest:
    """A learned-scheme VQA request's whole base-station work for `vqa_batcher`: its image and question streams
    (schemes.learned.StreamJob) and its clock."""

    image: object
    question: object
    clock: Clock


def vqa_batcher(scheme: Scheme, cfg: Config, resilient: bool = False) -> MicroBatcher:
    """Batcher of whole learned-scheme VQA requests: one pass decodes every request's image and question
    (learned.decode_batch) and goes straight on to one generation of all the answers, so that all concurrent
    requests gather at one point (in two batchers, receiver then MLLM, they split between the two and each
    batch holds about half of them). -> per request ((image output, tokens), (question output, tokens), answer).
    Batch sizes: "mllm" (requests) and "receiver" (streams), as with the two batchers."""
    a = assistant(scheme, cfg, resilient)
    return batching.shared("mllm", ("vqa-request", id(a)), lambda reqs: _vqa_requests_batch(a, reqs),
                           cfg.limits.batch_max, cfg.limits.batch_delay_ms)


def _vqa_requests_batch(a: Assistant, reqs: list[VqaRequest]) -> list[tuple | BaseException]:
    """Batch function of `vqa_batcher`: all images and questions through learned.decode_batch, then the requests
    whose streams decoded through _answer_batch; a request whose stream failed gets that stream's error."""
    from unitocom.schemes import learned
    n = len(reqs)
    batching.observe("receiver", 2 * n)
    decoded = learned.decode_batch([r.image for r in reqs] + [r.question for r in reqs])
    results: list[tuple | BaseException | None] = [None] * n
    rows, jobs = [], []
    for i, r in enumerate(reqs):
        image, question = decoded[i], decoded[n + i]
        bad = next((d for d in (image, question) if isinstance(d, BaseException)), None)
        if bad is not None:  # the error decode() would have raised for this request's stream
            results[i] = bad
            continue
        j = r.image
        rows.append(i)
        jobs.append(_VqaJob(Received(j.header, image[0], j.y, j.h_est, j.noise_var, j.erased, j.est_error_var,
                                     image[1]), question[0].text, r.clock))
    for i, ans in zip(rows, _answer_batch(a, jobs)):
        results[i] = ans if isinstance(ans, BaseException) else (decoded[i], decoded[n + i], ans)
    return results


@dataclass
class _AsrJob:
    """One ASR request for the batcher: its audio stream and its clock."""

    audio: Received
    clock: Clock


def _tokens_per_job(jobs: list, tokens_of) -> tuple[list, list, list[int]]:
    """Each job's input tokens, made on its own clock: (results holding each failing job's exception, the other
    jobs' tokens, their indices). A failure is that request's, not the batch's."""
    results: list = [None] * len(jobs)
    tokens, rows = [], []
    for i, j in enumerate(jobs):
        try:
            tokens.append(tokens_of(j))
            rows.append(i)
        except Exception as e:  # noqa: BLE001 - this request's failure, not the batch's
            results[i] = e
    return results, tokens, rows


def _charge(shared: Clock, clocks: list[Clock]) -> None:
    """Every request of a batch gets the shared forward's stage times: what it spent waiting in it."""
    for clock in clocks:
        for stage, seconds in shared.seconds.items():
            clock.add(stage, seconds)


def _asr_batcher(a: Assistant, cfg: Config) -> MicroBatcher:
    return batching.shared("mllm", ("asr", id(a)), lambda jobs: _transcribe_batch(a, jobs), cfg.limits.batch_max,
                           cfg.limits.batch_delay_ms)


def _transcribe_batch(a: Assistant, jobs: list[_AsrJob]) -> list[str | BaseException]:
    """Batch function: each clip's audio tokens (on its own clock; a failure is that request's), then one
    left-padded greedy generation of all transcripts (equal to one at a time)."""
    from unitocom.mllm import tasks
    results, tokens, rows = _tokens_per_job(jobs, lambda j: audio_tokens(a, j.audio, j.clock))
    if rows:
        shared = Clock(jobs[rows[0]].clock.service)
        for i, text in zip(rows, tasks.transcribe(a.model, a.vocab, tokens, clock=shared, batched=True)):
            results[i] = text
        _charge(shared, [jobs[i].clock for i in rows])
    return results


@dataclass
class _T2iJob:
    """One text-to-image request for the batcher: its caption, seed (of its own noise generator), guidance scale
    and clock."""

    caption: str
    seed: int
    guidance: float
    clock: Clock


def _t2i_batcher(a: Assistant, cfg: Config) -> MicroBatcher:
    return batching.shared("mllm", ("t2i", id(a)), lambda jobs: _imagine_batch(a, jobs), cfg.limits.batch_max,
                           cfg.limits.batch_delay_ms)


def _imagine_one(a: Assistant, job: _T2iJob) -> tuple[torch.Tensor, str]:
    """One caption without batching: through its written layout where the MLLM has a renderer and the layout
    reads (`_imagine_batch` says how), else tasks.imagine with the job's seeded generator."""
    from unitocom.mllm import tasks
    how = "by next-token diffusion"
    if a.model.cfg.layout_renderer:
        (tokens,), (text,) = tasks.draw_layouts(a.model, a.vocab, [job.caption], job.clock)
        if tokens is not None:
            return tokens, _drawn_from(text)
        how = _not_drawn(text)
    gen = torch.Generator().manual_seed(job.seed)
    return tasks.imagine(a.model, a.vocab, job.caption, a.image_link.spec.tokens, guidance=job.guidance,
                         generator=gen, clock=job.clock), how


def _drawn_from(layout: str) -> str:
    return f"from the layout the MLLM wrote for it, {layout!r}"


def _not_drawn(layout: str) -> str:
    return f"by next-token diffusion (the layout the MLLM wrote, {layout!r}, does not read)"


def _imagine_batch(a: Assistant, jobs: list[_T2iJob]) -> list[tuple[torch.Tensor, str]]:
    """Batch function -> (standardised image tokens, how they were drawn) per job. An MLLM with a layout renderer
    writes every caption's layout in one greedy generation and draws it (`tasks.draw_layouts`); the captions whose
    layout does not read, and every caption of an MLLM without one, get one next-token diffusion run per guidance
    scale, each row with its own seeded generator (tasks.imagine_batch: the tokens imagine() gives alone, up to
    float rounding). Every job's clock gets its runs' mllm_prefill and mllm_generate."""
    from unitocom.mllm import tasks
    out: list[torch.Tensor | None] = [None] * len(jobs)
    how = ["by next-token diffusion"] * len(jobs)
    if a.model.cfg.layout_renderer:
        shared = Clock(jobs[0].clock.service)
        drawn, written = tasks.draw_layouts(a.model, a.vocab, [j.caption for j in jobs], shared,
                                            batched=len(jobs) > 1)
        _charge(shared, [j.clock for j in jobs])
        for i, (t, text) in enumerate(zip(drawn, written)):
            out[i] = t
            how[i] = _drawn_from(text) if t is not None else _not_drawn(text)
    todo = [i for i, t in enumerate(out) if t is None]
    for g in sorted({jobs[i].guidance for i in todo}):
        rows = [i for i in todo if jobs[i].guidance == g]
        shared = Clock(jobs[rows[0]].clock.service)
        tokens = tasks.imagine_batch(a.model, a.vocab, [jobs[i].caption for i in rows], a.image_link.spec.tokens,
                                     guidance=g, generators=[torch.Generator().manual_seed(jobs[i].seed) for i in rows],
                                     clock=shared)
        for i, t in zip(rows, tokens):
            out[i] = t
        _charge(shared, [jobs[i].clock for i in rows])
    return list(zip(out, how))


def _answer_batch(a: Assistant, jobs: list[_VqaJob]) -> list[str | BaseException]:
    """Batch function: each job's image tokens (its own, timed on its own clock), then one left-padded greedy
    generation for all (tasks.answer(batched=True), equal to the unbatched answers). A job whose image tokens
    fail gets its error; the others go on. Every job's clock gets the batch's mllm_prefill and mllm_generate:
    the time its request spent in the shared forward."""
    from unitocom.mllm import tasks
    results, tokens, rows = _tokens_per_job(jobs, lambda j: image_tokens(a, j.image, j.clock))
    if rows:
        shared = Clock(jobs[0].clock.service)
        answers = tasks.answer(a.model, a.vocab, tokens, [jobs[i].question for i in rows], clock=shared,
                               batched=True)
        for i, text in zip(rows, answers):
            results[i] = text
        _charge(shared, [jobs[i].clock for i in rows])
    return results


def scene_checker():
    from unitocom.schemes.learned import checkpoint_dir
    path = checkpoint_dir() / "scene-checker.safetensors"
    key = f"checker:{path}"  # by path: a directory without one must not hide another's (tests switch directories)
    with _lock:
        if key not in _cache:
            from unitocom.metrics.scene_checker import load_checker
            _cache[key] = load_checker(path) if path.exists() else None
        return _cache[key]
