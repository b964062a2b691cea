"""The `semcom` scheme, baseline 2 of the letter ("vanilla SemCom"): task-specific deep JSCC, no MLLM
(`models.semcom`: semcom-vqa after MU-DeepSC, semcom-t2i after GenSemCom, semcom-asr after DeepSC-ST).

Transmitter: payload -> the preset's size / rate -> the task model's `encode` -> complex64 symbols at power P.
Which model depends on the task (a text payload is a VQA question or a T2I caption), so `encode` takes the
request's task as a keyword; without it an image means VQA and audio ASR, and text is refused.

Base station: `decode` only checks a stream against its checkpoint and reports its channel uses: a SemCom stream
carries task features, not a reconstruction, and VQA needs both streams at once. The task itself (LMMSE
equalisation, the receiver network, the answer / image / transcript) runs in `stages.semcom.run`.

Stream header: `tokenizer` = the checkpoint (semcom-vqa | semcom-t2i | semcom-asr), `token_shape` = [tokens,
symbols per token] (image [32, 8], text [BPE tokens, 8]) or [chunks, tokens per chunk, symbols per token] (audio
[chunks, 32, 8]), `preprocessing`, and for audio `audio_rate_hz` and `num_samples`. Stages timed: source_encode
(resizing / resampling / BPE / log-mel) and channel_encode (the JSCC encoder) at the transmitter.
"""
from __future__ import annotations

import re
import threading

import numpy as np
import torch

from unitocom.config import Config, checkpoint_preset, preset_checkpoint
from unitocom.messages import LinkSettings, Modality, ModalityOutput, StreamHeader
from unitocom.models import semcom as sc
from unitocom.options import Task
from unitocom.schemes.encoded import Encoded
from unitocom.schemes.learned import checkpoint_dir
from unitocom.stages.request import RequestError, SourcePayload
from unitocom.timing import NOT_TIMED, Clock

CHECKPOINT = {Task.VQA: "semcom-vqa", Task.T2I: "semcom-t2i", Task.ASR: "semcom-asr"}
STREAMS = {"semcom-vqa": {Modality.IMAGE, Modality.TEXT}, "semcom-t2i": {Modality.TEXT},
           "semcom-asr": {Modality.AUDIO}}
_NAME = re.compile(r"^(?:[a-z0-9]+-)?semcom-(vqa|t2i|asr)$")  # the preset in front, but for tiny
_lock = threading.Lock()
_cache: dict[str, tuple] = {}




def model(name: str):
    """(task, model, extra metadata) of checkpoint `name`, loaded once per process."""
    if not _NAME.match(name or ""):
        raise RequestError("header.tokenizer", f"{name!r} is not a vanilla-SemCom checkpoint "
                           "(semcom-vqa, semcom-t2i or semcom-asr)")
    path = checkpoint_dir() / f"{name}.safetensors"
    with _lock:
        if str(path) not in _cache:
            if not path.exists():
                task = _NAME.match(name).group(1)
                how = (f"train it with `unitocom train semcom --task {task}`" if checkpoint_preset(name) == "tiny"
                       else "vanilla SemCom is trained for the tiny preset only so far")
                raise RequestError("link.scheme", f"checkpoint {name} is not installed ({path} is missing; {how})",
                                   code="failed_precondition")
            _cache[str(path)] = sc.load(path)
        return _cache[str(path)]


def bpe():
    path = checkpoint_dir() / "text-bpe.json"
    with _lock:
        if str(path) not in _cache:
            if not path.exists():
                raise RequestError("link.scheme", f"the BPE {path} is missing", code="failed_precondition")
            from unitocom.models.text_tokenizer import load_bpe
            _cache[str(path)] = load_bpe(path)
        return _cache[str(path)]


def frontend(cfg: Config):
    from unitocom.models.audio_tokenizer import MelFrontend
    t = cfg.preset.tokenizer
    key = ("frontend", cfg.preset.audio_rate_hz, t.audio_n_fft, t.audio_hop, t.audio_mels)
    with _lock:
        if key not in _cache:
            _cache[key] = MelFrontend(cfg.preset.audio_rate_hz, t.audio_n_fft, t.audio_hop, t.audio_mels)
        return _cache[key]


def checkpoint(task: Task, cfg: Config) -> str:
    """The task's SemCom checkpoint for the config's preset (`config.preset_checkpoint`)."""
    return preset_checkpoint(CHECKPOINT[task], cfg.preset.name)


def checkpoint_for(modality: Modality, task: Task | None, cfg: Config) -> str:
    if task in CHECKPOINT:
        name = CHECKPOINT[task]
    elif task is None and modality == Modality.IMAGE:
        name = "semcom-vqa"
    elif task is None and modality == Modality.AUDIO:
        name = "semcom-asr"
    else:
        what = task.value if task else "a text payload without the task"
        raise RequestError("task", f"vanilla SemCom is task-specific (vqa, t2i, asr): it cannot serve {what}",
                           code="unimplemented" if task is not None else "invalid_argument")
    if modality not in STREAMS[name]:
        raise RequestError("payloads", f"{name} takes {sorted(m.value for m in STREAMS[name])}, not {modality.value}")
    return preset_checkpoint(name, cfg.preset.name)


# --- the scheme interface ----------------------------------------------------------------------------------------

@torch.no_grad()
def encode(stream_id: int, payload: SourcePayload, link: LinkSettings, cfg: Config, clock: Clock = NOT_TIMED,
           task: Task | None = None) -> Encoded:
    """One payload -> its symbol stream (complex64 [N], mean power P). `task`: the request's task."""
    from unitocom.schemes.learned import fit_audio, fit_image
    name = checkpoint_for(payload.modality, task, cfg)
    _, m, _ = model(name)
    header = StreamHeader(stream_id=stream_id, modality=payload.modality, scheme=link.scheme, tokenizer=name)
    if payload.modality == Modality.IMAGE:
        size = cfg.preset.image_size_px
        if size != 32:
            raise RequestError("link.scheme", f"{name} is trained on 32x32 scenes, the preset's images are {size} px",
                               code="failed_precondition")
        with clock.stage("source_encode"):
            ref, note = fit_image(payload.value, size)
            x = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 255.0
        with clock.stage("channel_encode"):
            z = m.encode_image(x)[0]
        header.token_shape.extend([sc.IMAGE_TOKENS, sc.USES])
        note += "; trained on 32x32 CLEVR-style scenes only"
    elif payload.modality == Modality.AUDIO:
        fe = frontend(cfg)
        with clock.stage("source_encode"):
            ref, note = fit_audio(payload.value, payload.rate_hz, fe.rate_hz)
            mel, chunks = sc.asr_features(torch.from_numpy(np.ascontiguousarray(ref)), fe, m.db_mean, m.db_std)
        limit = m.tx_pos.shape[1] // sc.AUDIO_TOKENS
        if chunks > limit:
            raise RequestError("payloads", f"{name} takes clips of at most {limit} chunks "
                               f"({limit * sc.AUDIO_CHUNK_FRAMES * fe.hop / fe.rate_hz:.1f} s), got {chunks}")
        with clock.stage("channel_encode"):
            z = m.encode(mel[None], torch.tensor([chunks]))[0]
        header.token_shape.extend([chunks, sc.AUDIO_TOKENS, sc.USES])
        header.audio_rate_hz = fe.rate_hz
        header.num_samples = len(ref)
        note += f"; {len(ref) / fe.rate_hz:.2f} s in {chunks} chunk(s) of {sc.AUDIO_CHUNK_FRAMES * fe.hop} samples"
    else:
        with clock.stage("source_encode"):
            ids = bpe().encode(payload.value).ids or [sc.PAD_ID + 1]
            limit = m.config["max_tokens"]
            note = f"{len(ids)} BPE tokens"
            if len(ids) > limit:
                note += f", cut to the first {limit} (the model's longest input)"
                ids = ids[:limit]
            x = torch.tensor([ids], dtype=torch.long)
        with clock.stage("channel_encode"):
            z = m.encode_question(x, x != sc.PAD_ID)[0] if name == "semcom-vqa" else m.encode(x, x != sc.PAD_ID)[0]
        header.token_shape.extend([len(ids), sc.USES])
        ref = payload.value
    symbols = z.numpy().astype(np.complex64)
    header.preprocessing = note
    header.num_symbols = len(symbols)
    return Encoded(header, symbols, reference=ref)


def expected_symbols(header: StreamHeader) -> int:
    shape = list(header.token_shape)
    if len(shape) < 2 or shape[-1] != sc.USES or any(v <= 0 for v in shape):
        raise RequestError("header.token_shape", f"{shape} does not fit {header.tokenizer} "
                           f"(tokens of {sc.USES} symbols)")
    if header.modality == Modality.IMAGE and shape != [sc.IMAGE_TOKENS, sc.USES]:
        raise RequestError("header.token_shape", f"an image stream is [{sc.IMAGE_TOKENS}, {sc.USES}], got {shape}")
    if header.modality == Modality.AUDIO and (len(shape) != 3 or shape[1] != sc.AUDIO_TOKENS):
        raise RequestError("header.token_shape", f"an audio stream is [chunks, {sc.AUDIO_TOKENS}, {sc.USES}], got {shape}")
    return int(np.prod(shape))


def decode(header: StreamHeader, y: np.ndarray, h_est: np.ndarray, noise_var: float, erased: bool, cfg: Config,
           est_error_var: float = 0.0, clock: Clock = NOT_TIMED) -> ModalityOutput:
    """Check one received stream against its checkpoint; the task runs in `stages.semcom.run`."""
    m = _NAME.match(header.tokenizer or "")
    base = f"semcom-{m.group(1)}" if m else None
    if base not in STREAMS or header.modality not in STREAMS[base]:
        raise RequestError("header.tokenizer", f"{header.tokenizer!r} does not carry a {header.modality} stream")
    n = expected_symbols(header)
    if len(y) != n:
        raise RequestError("header.token_shape", f"{list(header.token_shape)} needs {n} symbols, got {len(y)}")
    model(header.tokenizer)  # installed? (FAILED_PRECONDITION here rather than after every stream arrived)
    shape = "x".join(str(v) for v in header.token_shape)
    notes = [f"vanilla SemCom ({header.tokenizer}) task features {shape}, {len(y)} channel uses: decoded by the "
             "task's receiver, not reconstructed", f"preprocessing: {header.preprocessing}"]
    if erased:
        notes.append("frames erased by the channel: the receiver read nothing")
    return ModalityOutput(modality=header.modality, channel_uses=len(y), erased=erased, decoded=True,
                          note="; ".join(notes))
