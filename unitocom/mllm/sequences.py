"""Token sequences of the three tasks, packed into T^0 = [discrete; continuous] embeddings with their targets.

    VQA: <bos> <vqa> <boi> image x S_v <eoi> question <sep> | answer <eos>          (LM loss on the answer)
    VQA, spoken question (issue 17):
         <bos> <vqa> <boi> image x S_v <eoi> <boa> audio x S_q <eoa> <sep> | answer <eos>
    ASR: <bos> <asr> <boa> audio x S_a <eoa>                | transcript <eos>      (LM loss on the transcript)
    T2I: <bos> <t2i> caption <boi>                          | image x S_v <eoi>     (diffusion loss, eq. 19)
    captioning (issue 12, an auxiliary task that makes the model read every object of the received scene):
         <bos> <vqa> <boi> image x S_v <eoi> <sep>          | caption <eos>         (LM loss on the caption)
    program (issue 12, the question's CLEVR program in words, `data.programs.to_text`; no image):
         <bos> <vqa> question <sep>                          | program <eos>         (LM loss on the program)
    layout (issue 12, the captioned scene's objects and their cells, `mllm.layout`; no image):
         <bos> <t2i> caption <sep>                           | layout <eos>          (LM loss on the layout)

Captioning is VQA with no question: `<sep>` right after `<eoi>` asks for the whole scene. The spoken form and
captioning reuse the specials (no new ids): `<boa>` where typed VQA has the question's first word tells the
model the question is speech, and the vocabulary (so every tensor of a committed MLLM) keeps its shape, which
lets the spoken-VQA MLLM be fine-tuned from one.

Everything after `|` is predicted: a text token from the LM head at the position before it (eq. 15-16), a
continuous token from the diffusion head conditioned on the hidden state before it (eq. 17).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

SPECIALS = ("<bos>", "<eos>", "<sep>", "<vqa>", "<t2i>", "<asr>", "<boi>", "<eoi>", "<boa>", "<eoa>")
IGNORE = -100


class Vocab:
    """The text tokenizer's byte-level BPE ids, then the MLLM's own special tokens appended after them."""

    def __init__(self, bpe, pad_id: int = 0, base: int | None = None, bare: bool = False):
        """base: the first special's id (default: the tokenizer's size; a backbone whose embedding has more rows
        than its tokenizer has ids puts them after its rows). bare: encode without the tokenizer's own added
        tokens (a Hugging Face backbone's tokenizer.json prepends its <s>; the MLLM writes its own <bos>)."""
        self.bpe, self.pad_id, self.bare = bpe, pad_id, bare
        self.base = bpe.get_vocab_size() if base is None else base
        if self.base < bpe.get_vocab_size():
            raise ValueError(f"base {self.base} is below the tokenizer's {bpe.get_vocab_size()} ids")
        self.special = {s: self.base + i for i, s in enumerate(SPECIALS)}

    def _ids(self, text: str) -> list[int]:
        return (self.bpe.encode(text, add_special_tokens=False) if self.bare else self.bpe.encode(text)).ids

    def __len__(self) -> int:
        return self.base + len(SPECIALS)

    def __getitem__(self, name: str) -> int:
        return self.special[name]

    def encode(self, text: str) -> list[int]:
        """Prompts (questions, captions) keep their case, as the BPE learned them; see `target`."""
        return self._ids(" ".join(text.split()))

    def target(self, text: str) -> list[int]:
        """What the model writes (answers, transcripts) is normalised: lower case, single spaces."""
        return self._ids(normalize(text))

    def decode(self, ids) -> str:
        return self.bpe.decode([int(i) for i in ids if int(i) < self.base and int(i) != self.pad_id]).strip()


def normalize(text: str) -> str:
    """Lower case, single spaces: answers, questions and transcripts are compared this way too."""
    return " ".join(text.lower().split())


@dataclass
class Segment:
    kind: str  # "text" | "image" | "audio"
    value: object  # list[int] for text, float tensor [S, d] for continuous tokens
    target: bool = False
    # a received scene's object-slot targets [K, slots.WIDTH] (`mllm.slots`), where training reads them; else None
    objects: torch.Tensor | None = None


def vqa(v: Vocab, image_tokens: torch.Tensor, question: str, answer: str | None,
        question_first: bool = False) -> list[Segment]:
    """<bos><vqa><boi> image <eoi> question <sep> | answer <eos>; question_first (an MLLM whose config says so):
    <bos><vqa> question <boi> image <eoi><sep> | ..., so that a causal model reads the image knowing the question."""
    if question_first:
        segs = [Segment("text", [v["<bos>"], v["<vqa>"]] + v.encode(question) + [v["<boi>"]]),
                Segment("image", image_tokens), Segment("text", [v["<eoi>"], v["<sep>"]])]
    else:
        segs = [Segment("text", [v["<bos>"], v["<vqa>"], v["<boi>"]]), Segment("image", image_tokens),
                Segment("text", [v["<eoi>"]] + v.encode(question) + [v["<sep>"]])]
    if answer is not None:
        segs.append(Segment("text", v.target(answer) + [v["<eos>"]], target=True))
    return segs


def caption(v: Vocab, image_tokens: torch.Tensor, text: str | None) -> list[Segment]:
    """Captioning: the received scene with an empty question; the caption (normalised, as answers are) is the
    target. Both VQA orders give the same sequence when the question is empty."""
    return vqa(v, image_tokens, "", text)


def program(v: Vocab, question: str, text: str | None) -> list[Segment]:
    """The question's program: <bos><vqa> question <sep> | program <eos>. No <boi>: the VQA prompt's third id
    tells the two apart, and no new special is needed."""
    segs = [Segment("text", [v["<bos>"], v["<vqa>"]] + v.encode(question) + [v["<sep>"]])]
    if text is not None:
        segs.append(Segment("text", v.target(text) + [v["<eos>"]], target=True))
    return segs


def layout(v: Vocab, caption: str, text: str | None) -> list[Segment]:
    """The caption's layout: <bos><t2i> caption <sep> | layout <eos>. `<sep>` where T2I has `<boi>` tells the two
    apart, as the program's prompt does VQA's."""
    segs = [Segment("text", [v["<bos>"], v["<t2i>"]] + v.encode(caption) + [v["<sep>"]])]
    if text is not None:
        segs.append(Segment("text", v.target(text) + [v["<eos>"]], target=True))
    return segs


def spoken_vqa(v: Vocab, image_tokens: torch.Tensor, question_audio_tokens: torch.Tensor,
               answer: str | None) -> list[Segment]:
    """VQA whose question arrives as speech: the question's audio tokens [chunks * S_a, d] in place of its text."""
    segs = [Segment("text", [v["<bos>"], v["<vqa>"], v["<boi>"]]), Segment("image", image_tokens),
            Segment("text", [v["<eoi>"], v["<boa>"]]), Segment("audio", question_audio_tokens),
            Segment("text", [v["<eoa>"], v["<sep>"]])]
    if answer is not None:
        segs.append(Segment("text", v.target(answer) + [v["<eos>"]], target=True))
    return segs


def asr(v: Vocab, audio_tokens: torch.Tensor, transcript: str | None) -> list[Segment]:
    segs = [Segment("text", [v["<bos>"], v["<asr>"], v["<boa>"]]), Segment("audio", audio_tokens),
            Segment("text", [v["<eoa>"]])]
    if transcript is not None:
        segs.append(Segment("text", v.target(transcript) + [v["<eos>"]], target=True))
    return segs


def t2i(v: Vocab, caption: str, image_tokens: torch.Tensor | None) -> list[Segment]:
    segs = [Segment("text", [v["<bos>"], v["<t2i>"]] + v.encode(caption) + [v["<boi>"]])]
    if image_tokens is not None:
        segs.append(Segment("image", image_tokens, target=True))
    return segs


@dataclass
class Packed:
    embeds: torch.Tensor  # [B, L, hidden]
    mask: torch.Tensor  # [B, L] 1 for real positions (right padding)
    lm_targets: torch.Tensor  # [B, L] next text id to predict from each position, IGNORE elsewhere
    diff_index: torch.Tensor  # [N, 2] (batch, position) whose hidden state conditions a continuous target
    diff_targets: torch.Tensor  # [N, d]
    # received scenes with object-slot targets: (batch, first image position, tokens) [M, 3] and targets [M, K, W]
    object_index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3, dtype=torch.long))
    object_targets: torch.Tensor | None = None
    # an MLLM with an image encoder: those scenes' encoder features [M, S, hidden], what its slots read (the ones
    # its embeddings were made from, `MLLM.embed_received_image`); else None
    object_features: torch.Tensor | None = None
    # each row's prompt length [B]: the positions before its first target (what a prefix-LM MLLM reads both ways)
    prefix: torch.Tensor | None = None


def pack(model, examples: list[list[Segment]]) -> Packed:
    """Embed each example's segments, right-pad to the longest, and place the targets one position early."""
    param = next(model.parameters())  # build on the model's device and in its dtype (bf16 on a GPU)
    dev, dtype = param.device, param.dtype
    rows, lm_rows, d_index, d_targets = [], [], [], []
    o_index, o_targets, o_features, prompts = [], [], [], []
    for b, segs in enumerate(examples):
        embeds, lengths, pos = [], [], 0
        for s in segs:
            if s.kind == "text":
                ids = torch.as_tensor(s.value, dtype=torch.long, device=dev)
                embeds.append(model.embed_text(ids[None])[0])
                n = len(ids)
            else:
                tok = torch.as_tensor(s.value).to(dev, dtype)
                if s.objects is not None and model.cfg.image_encoder:  # its slots read what the encoder made
                    e, f = model.embed_received_image(tok[None])
                    embeds.append(e[0])
                    o_features.append(f[0])
                else:  # a target is T2I's own standardised picture; every other continuous segment crossed the link
                    embeds.append(model.embed_tokens(tok[None], s.kind, received=not s.target)[0])
                n = embeds[-1].shape[0]  # a received image's object tokens (cfg.object_tokens) follow its own
                if s.target:
                    d_index += [(b, pos - 1 + i) for i in range(n)]
                    d_targets.append(tok)
                elif s.objects is not None:
                    o_index.append((b, pos, tok.shape[0]))
                    o_targets.append(torch.as_tensor(s.objects))
            lengths.append(n)
            pos += n
        row_lm = torch.full((pos,), IGNORE, dtype=torch.long, device=dev)
        p = 0
        prompts.append(pos)
        for s, n in zip(segs, lengths):
            if s.target:
                prompts[-1] = min(prompts[-1], p)
            if s.kind == "text" and s.target:
                row_lm[p - 1: p - 1 + n] = torch.as_tensor(s.value, dtype=torch.long, device=dev)
            p += n
        rows.append(torch.cat(embeds))
        lm_rows.append(row_lm)
    length = max(r.shape[0] for r in rows)
    hidden = rows[0].shape[1]
    embeds = torch.zeros(len(rows), length, hidden, device=dev, dtype=dtype)
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=dev)
    lm_targets = torch.full((len(rows), length), IGNORE, dtype=torch.long, device=dev)
    for b, (r, t) in enumerate(zip(rows, lm_rows)):
        embeds[b, : len(r)] = r
        mask[b, : len(r)] = 1
        lm_targets[b, : len(t)] = t
    d = model.cfg.token_dim
    return Packed(embeds, mask, lm_targets,
                  torch.tensor(d_index, dtype=torch.long, device=dev).reshape(-1, 2),
                  torch.cat(d_targets) if d_targets else torch.zeros(0, d, device=dev, dtype=dtype),
                  torch.tensor(o_index, dtype=torch.long).reshape(-1, 3),
                  torch.stack(o_targets).to(dev) if o_targets else None,
                  torch.stack(o_features) if o_features else None,
                  torch.tensor(prompts, dtype=torch.long, device=dev))


def prefix(model, segs: list[Segment]) -> torch.Tensor:
    """Embeddings [1, L, hidden] of an inference prompt (no targets)."""
    return pack(model, [segs]).embeds


def left_padded(model, prompts: list[list[Segment]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference prompts of different lengths as one batch: embeddings [B, L, hidden] padded on the left with
    zeros, and mask [B, L] (1: real). Left, so that every row ends at the last column and generation appends
    the new tokens of all rows together (`MLLM.generate_text(mask=...)`)."""
    rows = [prefix(model, p)[0] for p in prompts]
    length = max(r.shape[0] for r in rows)
    embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for b, r in enumerate(rows):
        embeds[b, length - len(r):] = r
        mask[b, length - len(r):] = 1
    return embeds, mask
