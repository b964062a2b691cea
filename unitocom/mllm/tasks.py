"""What the base station asks of the MLLM: answer a question about received image tokens, transcribe received
audio tokens, generate image tokens for a caption. Batched; greedy decoding by default.

With a `clock` each call reports two stages: mllm_prefill (building the prompt and the forward pass over it) and
mllm_generate (the decoding loop after it: text tokens, or next-token diffusion of image tokens)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from unitocom.mllm import sequences as seq
from unitocom.mllm.model import MLLM
from unitocom.timing import NOT_TIMED, Clock


def _synced(model: MLLM, mark: Callable[[], None]) -> Callable[[], None]:
    """The prefill mark, after the device has finished the prefill's kernels (CUDA runs them asynchronously)."""
    if next(model.parameters()).device.type != "cuda":
        return mark

    def synced() -> None:
        torch.cuda.synchronize()
        mark()
    return synced


@torch.no_grad()
def _generate(model: MLLM, vocab: seq.Vocab, prompts: list[list[seq.Segment]], max_new: int,
              clock: Clock, top_p: float | None = None, generator: torch.Generator | None = None) -> list[str]:
    out = []
    for prompt in prompts:  # one at a time: no padding inside the cache, and the tiny model is fast
        with clock.split("mllm_prefill", "mllm_generate") as prefilled:
            ids = model.generate_text(seq.prefix(model, prompt), max_new, vocab["<eos>"], top_p=top_p,
                                      generator=generator, on_prefill=_synced(model, prefilled))
        out.append(vocab.decode(ids[0]))
    return out


@torch.no_grad()
def _generate_batch(model: MLLM, vocab: seq.Vocab, prompts: list[list[seq.Segment]], max_new: int,
                    clock: Clock, top_p: float | None = None, generator: torch.Generator | None = None) -> list[str]:
    """All prompts in one forward per step: left-padded, masked, each row with its own positions (greedy answers
    equal `_generate`'s; tests/test_batching.py checks it on the committed checkpoints)."""
    with clock.split("mllm_prefill", "mllm_generate") as prefilled:
        embeds, mask = seq.left_padded(model, prompts)
        ids = model.generate_text(embeds, max_new, vocab["<eos>"], top_p=top_p, generator=generator,
                                  on_prefill=_synced(model, prefilled), mask=mask)
    return [vocab.decode(row) for row in ids]


def answer(model: MLLM, vocab: seq.Vocab, image_tokens: list[torch.Tensor], questions: list[str],
           max_new: int = 8, clock: Clock = NOT_TIMED, batched: bool = False) -> list[str]:
    """VQA: received image tokens [S_v, d] and a question each -> answer text. batched: one forward for all
    (the base station's dynamic batching); otherwise one prompt at a time. Both give the same answers.
    An MLLM with cfg.answer_by_program answers by the program it writes (`answer_by_program`)."""
    if model.cfg.answer_by_program:
        return answer_by_program(model, vocab, image_tokens, questions, max_new, clock, batched)[0]
    return _answer(model, vocab, image_tokens, questions, max_new, clock, batched)


def _answer(model, vocab, image_tokens, questions, max_new, clock, batched) -> list[str]:
    prompts = [seq.vqa(vocab, t, q, None, model.cfg.question_first) for t, q in zip(image_tokens, questions)]
    if batched and len(prompts) > 1:
        return _generate_batch(model, vocab, prompts, max_new, clock)
    return _generate(model, vocab, prompts, max_new, clock)


PROGRAM_MAX_NEW = 32  # text ids of a written program: the generator's longest is 14 with the tiny BPE


@torch.no_grad()
def answer_by_program(model: MLLM, vocab: seq.Vocab, image_tokens: list[torch.Tensor], questions: list[str],
                      max_new: int = 8, clock: Clock = NOT_TIMED, batched: bool = False
                      ) -> tuple[list[str], list[str], list[bool]]:
    """VQA by a written program (NS-VQA's split, the program written by the MLLM): the MLLM writes each question's
    program (the "prog" task), the object slots read each received scene's objects (`slots.scene_objects`), and
    the program runs on them (`data.programs.execute`). A program that does not parse or cannot run on the scene
    (a `unique` that finds no object or several) is answered by the MLLM itself, as `answer` without programs.
    -> (answers, the programs written, whether each answer came from its program)."""
    from unitocom.data.programs import ProgramFailed, execute, from_text
    from unitocom.mllm import slots
    prompts = [seq.program(vocab, q, None) for q in questions]
    if batched and len(prompts) > 1:
        written = _generate_batch(model, vocab, prompts, PROGRAM_MAX_NEW, clock)
    else:
        written = _generate(model, vocab, prompts, PROGRAM_MAX_NEW, clock)
    param = next(model.parameters())
    answers: list[str | None] = []
    with clock.stage("mllm_generate"):  # reading the objects and running the programs: part of answering
        scenes = slots.scene_objects(model.slots(model.image_features(torch.stack(image_tokens).to(param))))
        for text, objects in zip(written, scenes):
            try:
                answers.append(execute(from_text(text), objects))
            except ProgramFailed:
                answers.append(None)
    by_program = [a is not None for a in answers]
    rest = [i for i, a in enumerate(answers) if a is None]
    if rest:
        own = _answer(model, vocab, [image_tokens[i] for i in rest], [questions[i] for i in rest], max_new, clock,
                      batched)
        for i, a in zip(rest, own):
            answers[i] = a
    return answers, written, by_program


LAYOUT_MAX_NEW = 96  # text ids of a written layout: the tiny preset's longest scene (4 objects) takes 59


@torch.no_grad()
def write_layouts(model: MLLM, vocab: seq.Vocab, captions: list[str], clock: Clock = NOT_TIMED,
                  batched: bool = False, top_p: float | None = None,
                  generator: torch.Generator | None = None) -> list[str]:
    """The "lay" task: each caption -> the layout the MLLM writes for it (`mllm.layout`: each object with its
    cell), greedy, or top-p sampled (top_p, drawing from `generator`)."""
    prompts = [seq.layout(vocab, c, None) for c in captions]
    if batched and len(prompts) > 1:
        return _generate_batch(model, vocab, prompts, LAYOUT_MAX_NEW, clock, top_p, generator)
    return _generate(model, vocab, prompts, LAYOUT_MAX_NEW, clock, top_p, generator)


@torch.no_grad()
def draw_layouts(model: MLLM, vocab: seq.Vocab, captions: list[str], clock: Clock = NOT_TIMED,
                 batched: bool = False) -> tuple[list[torch.Tensor | None], list[str]]:
    """T2I through a written layout (an MLLM with cfg.layout_renderer, `mllm.layout`): the MLLM writes each
    caption's layout (`write_layouts`, greedy: a caption always draws the same picture) and its renderer draws the
    layout as image tokens. -> (standardised image tokens [S_v, d] per caption, as `imagine` gives them, or None
    where the layout written does not read; the layouts written)."""
    texts = write_layouts(model, vocab, captions, clock, batched)
    return draw_written(model, texts, clock), texts


def draw_written(model: MLLM, texts: list[str], clock: Clock = NOT_TIMED, mend: bool = True
                 ) -> list[torch.Tensor | None]:
    """Written layouts -> what the MLLM's renderer draws of each (standardised image tokens [S_v, d]; None where
    one does not read). mend: objects written on one cell moved apart first (`layout.apart`)."""
    from unitocom.mllm import layout
    read = [layout.read(t, mend=mend) for t in texts]
    rows = [i for i, r in enumerate(read) if r is not None]
    out: list[torch.Tensor | None] = [None] * len(texts)
    if rows:
        with clock.stage("mllm_generate"):  # drawing the layout: the generation's last part
            param = next(model.parameters())
            drawn = model.layout_renderer(torch.stack([read[i] for i in rows]).to(param)).float().cpu()
        for i, t in zip(rows, drawn):
            out[i] = t
    return out


def describe(model: MLLM, vocab: seq.Vocab, image_tokens: list[torch.Tensor], max_new: int = 64,
             clock: Clock = NOT_TIMED) -> list[str]:
    """Captioning (an MLLM trained with the "cap" task): received image tokens [S_v, d] each -> a caption."""
    return _generate(model, vocab, [seq.caption(vocab, t, None) for t in image_tokens], max_new, clock)


def answer_spoken(model: MLLM, vocab: seq.Vocab, image_tokens: list[torch.Tensor],
                  question_audio_tokens: list[torch.Tensor], max_new: int = 8, clock: Clock = NOT_TIMED,
                  batched: bool = False) -> list[str]:
    """VQA with a spoken question: received image tokens [S_v, d] and the question's received audio tokens
    [chunks * S_a, d] each -> answer text (`sequences.spoken_vqa`)."""
    prompts = [seq.spoken_vqa(vocab, t, a, None) for t, a in zip(image_tokens, question_audio_tokens)]
    if batched and len(prompts) > 1:
        return _generate_batch(model, vocab, prompts, max_new, clock)
    return _generate(model, vocab, prompts, max_new, clock)


def transcribe(model: MLLM, vocab: seq.Vocab, audio_tokens: list[torch.Tensor], max_new: int = 48,
               clock: Clock = NOT_TIMED, batched: bool = False) -> list[str]:
    """ASR: received audio tokens [chunks * S_a, d] -> transcript text. batched: one forward for all (clips of
    different lengths left-padded); otherwise one prompt at a time. Both give the same transcripts."""
    prompts = [seq.asr(vocab, t, None) for t in audio_tokens]
    if batched and len(prompts) > 1:
        return _generate_batch(model, vocab, prompts, max_new, clock)
    return _generate(model, vocab, prompts, max_new, clock)


@torch.no_grad()
def imagine(model: MLLM, vocab: seq.Vocab, caption: str, count: int, guidance: float = 3.0,
            steps: int | None = None, generator: torch.Generator | None = None,
            clock: Clock = NOT_TIMED) -> torch.Tensor:
    """T2I: caption -> standardised image tokens [count, d] by next-token diffusion with classifier-free guidance."""
    with clock.split("mllm_prefill", "mllm_generate") as prefilled:
        cond = seq.prefix(model, seq.t2i(vocab, caption, None))
        uncond = seq.prefix(model, seq.t2i(vocab, "", None))
        # The two prompts differ in length; each keeps its own cache inside generate_tokens.
        tokens = model.generate_tokens(cond, count, "image", steps, generator=generator, prefix_uncond=uncond,
                                       guidance=guidance, on_prefill=_synced(model, prefilled))
    return tokens[0]


@torch.no_grad()
def imagine_batch(model: MLLM, vocab: seq.Vocab, captions: list[str], count: int, guidance: float = 3.0,
                  steps: int | None = None, generators: list[torch.Generator] | None = None,
                  clock: Clock = NOT_TIMED) -> torch.Tensor:
    """imagine() for several captions in one generation: -> [B, count, d]. The captions' prompts are left-padded
    (masks, per-row positions) and each row draws its noise from its own generator, so row b is what
    imagine(captions[b], generator=generators[b]) gives, up to float rounding of the batched products."""
    with clock.split("mllm_prefill", "mllm_generate") as prefilled:
        cond, mask = seq.left_padded(model, [seq.t2i(vocab, c, None) for c in captions])
        uncond = seq.prefix(model, seq.t2i(vocab, "", None)).expand(len(captions), -1, -1)
        return model.generate_tokens(cond, count, "image", steps, generator=generators, prefix_uncond=uncond,
                                     guidance=guidance, on_prefill=_synced(model, prefilled), mask=mask)
