"""The base station's task stage for the `semcom` scheme (vanilla SemCom, no MLLM): the counterpart of
`stages.mllm.run`, with the same signature shape and quality keys (exact_match for vqa, wer for asr,
t2i_pair_recall for t2i).

Each received stream (`stages.mllm.Received`: y, h_est, noise_var, erased, est_error_var) is LMMSE-equalised with
the per-symbol SINR, as in training (`schemes.learned.equalize`: the biased MMSE estimate, estimation error counted
as noise, SINR clamped, an erased stream read as zeros at the bottom SINR), then the task's receiver network
(`models.semcom`) gives the answer, the transcript (upper case) or the 32x32 picture. `seed` draws t2i's layout
latent (the same seed, the same picture); vqa and asr are deterministic. The receiver never sees the caption's text, so t2i returns no text and
scores pair recall only against `label.caption`.

Stages timed: equalise (LMMSE), decode (the task's receiver network and its output: argmax, CTC, PNG), score.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from unitocom.config import Config
from unitocom.messages import Label, Modality, ModalityOutput
from unitocom.models import semcom as sc
from unitocom.options import Task
from unitocom.schemes import semcom as scheme
from unitocom.stages.request import RequestError
from unitocom.timing import NOT_TIMED, Clock


def _equalised(r) -> tuple[torch.Tensor, torch.Tensor]:
    """A Received stream -> (z_hat complex64 [1, N], SINR dB float32 [1, N])."""
    from unitocom.schemes.learned import equalize
    z, sinr = equalize(r.y, r.h_est, r.noise_var, r.erased, r.est_error_var)
    return (torch.from_numpy(np.ascontiguousarray(z, np.complex64))[None],
            torch.from_numpy(np.ascontiguousarray(sinr, np.float32))[None])


def _one(streams: list, modality: Modality, name: str, task: Task):
    found = [r for r in streams if r.header.modality == modality]
    if len(found) != 1:
        raise RequestError("payloads", f"{task.value} takes exactly one {modality.value} stream, got {len(found)}")
    r = found[0]
    if r.header.tokenizer != name:
        raise RequestError("header.tokenizer", f"{task.value} over vanilla SemCom needs a {name} stream, "
                           f"got {r.header.tokenizer!r}")
    return r


@torch.no_grad()
def run(task: Task | None, label: Label, streams: list, cfg: Config, seed: int = 0, clock: Clock = NOT_TIMED
        ) -> tuple[str, list[ModalityOutput], dict[str, float], list[str]]:
    """-> (output text, generated outputs, quality against the label, notes)."""
    notes = [f"{r.header.modality.value} stream erased by the channel: the receiver read nothing"
             for r in streams if r.erased]
    quality: dict[str, float] = {}
    if task == Task.VQA:
        name = scheme.checkpoint(task, cfg)
        img, q = _one(streams, Modality.IMAGE, name, task), _one(streams, Modality.TEXT, name, task)
        _, m, _ = scheme.model(name)
        with clock.stage("equalise"):
            zi, si = _equalised(img)
            zq, sq = _equalised(q)
        with clock.stage("decode"):
            length = int(q.header.token_shape[0])
            mask = torch.ones(1, length, dtype=torch.bool)
            answer = m.answer(m.decode(zi, si, zq, sq, mask))[0]
        if label.answer:
            from unitocom.metrics.scores import exact_match
            with clock.stage("score"):
                quality["exact_match"] = exact_match(answer, label.answer)
        return answer, [], quality, notes
    if task == Task.ASR:
        name = scheme.checkpoint(task, cfg)
        r = _one(streams, Modality.AUDIO, name, task)
        _, m, _ = scheme.model(name)
        with clock.stage("equalise"):
            z, s = _equalised(r)
        with clock.stage("decode"):
            chunks = torch.tensor([int(r.header.token_shape[0])])
            transcript = m.transcribe(m.decode(z, s, chunks), chunks)[0]
        if label.transcript:
            from unitocom.metrics.scores import wer
            with clock.stage("score"):
                quality["wer"] = wer([label.transcript], [transcript])
        return transcript, [], quality, notes
    if task == Task.T2I:
        name = scheme.checkpoint(task, cfg)
        r = _one(streams, Modality.TEXT, name, task)
        _, m, _ = scheme.model(name)
        with clock.stage("equalise"):
            z, s = _equalised(r)
        with clock.stage("decode"):
            mask = torch.ones(1, int(r.header.token_shape[0]), dtype=torch.bool)
            x = m.decode(z, s, mask, generator=torch.Generator().manual_seed(int(seed)))[0].clamp(0, 1)
            img = torch.round(x * 255.0).to(torch.uint8).permute(1, 2, 0).numpy()
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
        out = ModalityOutput(modality=Modality.IMAGE, decoded=True, image_png=buf.getvalue(),
                             note="drawn by the semcom-t2i receiver (a conditional VAE) from the received caption "
                                  f"features and a layout latent drawn with seed {int(seed)}")
        if label.caption:
            from unitocom.metrics.scene_checker import caption_pairs, pair_recall
            from unitocom.stages.mllm import scene_checker
            checker = scene_checker()
            if checker is not None and caption_pairs(label.caption):
                with clock.stage("score"):
                    seen = checker.recognise(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0)[0]
                    quality["t2i_pair_recall"] = pair_recall(label.caption, seen)
        else:
            notes.append("no label caption: the receiver has only the caption's features, so pair recall is not "
                         "scored")
        return "", [out], quality, notes
    raise RequestError("task", f"{task.value if task else 'task_unspecified'} is not a vanilla-SemCom task "
                       "(vqa, t2i, asr)", code="unimplemented")
