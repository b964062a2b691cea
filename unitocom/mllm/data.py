"""Training material for the MLLM: the three tasks' examples, with the tokens their inputs become.

Inputs reach the base station through the channel, so the MLLM is trained on *received* tokens: each batch
passes the tokenizer means through the frozen learned link (T, channel, R) at an SNR drawn per example.
Targets of text-to-image are the clean token means, standardised per dimension (the diffusion head's scale).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unitocom.data.layouts import clevr_root, coco_annotation_file, read_json
from unitocom.data.presets import SPEECH_SUBSETS
from unitocom.data.programs import to_text
from unitocom.mllm import objects, sequences as seq
from unitocom.mllm.standardizer import Standardizer
from unitocom.models import resilience as rz
from unitocom.models.channel_torch import TorchChannelSpec
from unitocom.train.data import TextBatches, load_images, read_wave


@torch.no_grad()
def image_means(link, images_u8: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> tokenizer means mu [N, S_v, d]."""
    out = [link.tokenize(images_u8[i:i + batch].float() / 255.0)[0] for i in range(0, len(images_u8), batch)]
    return torch.cat(out)


@torch.no_grad()
def audio_means(link, frontend, wave: torch.Tensor) -> torch.Tensor:
    """A whole clip -> mu of its consecutive chunks, concatenated: [chunks * S_a, d]. The last chunk is padded
    with the clip's quietest value, as the tokenizer was trained."""
    s = link.spec
    mel = (frontend.logmel(wave) - s.db_mean) / s.db_std
    chunks = -(-mel.shape[0] // s.chunk_frames)
    pad = chunks * s.chunk_frames - mel.shape[0]
    if pad:
        mel = torch.cat([mel, mel.new_full((pad, mel.shape[1]), float(mel.min()))])
    mu, _ = link.tokenize(mel.reshape(chunks, s.chunk_frames, -1))
    return mu.reshape(chunks * s.tokens, -1)


@torch.no_grad()
def received(link, mu: torch.Tensor, snr_db: torch.Tensor, channel: TorchChannelSpec,
             gen: torch.Generator) -> torch.Tensor:
    """What the base station's R recovers from tokens [B, S, d] sent at snr_db [B]."""
    return link.through_channel(mu, snr_db, channel, gen)


@torch.no_grad()
def received_texts(link, bpe, texts: list[str], snr_db: torch.Tensor, channel: TorchChannelSpec,
                   gen: torch.Generator) -> list[str]:
    """Texts as the base station reads them after a text link at snr_db [B]: BPE ids -> F_alpha's means -> T, the
    channel, R -> F_beta^-1's most likely ids -> text, as `schemes.learned` decodes a text stream (one row each;
    texts of up to the link's `tokens` BPE ids)."""
    from unitocom.models.text_tokenizer import decode_ids, encode_text
    batch = TextBatches.pad([encode_text(bpe, t)[: link.spec.tokens] for t in texts])  # as the link was trained
    x, mask = batch["x"], batch["mask"]
    mu, _ = link.tokenize(x, mask)
    out = link.detokenize(link.through_channel(mu, snr_db, channel, gen, mask), mask).argmax(-1)
    return [decode_ids(bpe, out[b][mask[b]].tolist()) for b in range(len(texts))]


def captioned_images(data_dir: str | Path, split: str, image_link, size_px: int,
                     limit: int | None = None) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """T2I's pictures and captions (COCO layout; the synthetic set's images are the CLEVR ones, linked; real COCO
    works the same) -> (token means [N, S_v, d], [(image index, caption)])."""
    data_dir = Path(data_dir)
    ann = read_json(coco_annotation_file(data_dir / "coco", split))
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    order = sorted(files)[:limit]
    index = {image_id: i for i, image_id in enumerate(order)}
    mu = image_means(image_link, _load_files(data_dir / "coco" / f"{split}2017", [files[i] for i in order], size_px))
    return mu, [(index[a["image_id"]], a["caption"]) for a in ann["annotations"] if a["image_id"] in index]


@dataclass
class CaptionData:
    """T2I's part of a split alone (what the diffusion head's phase reads): the fields of TaskData it shares."""
    vocab: seq.Vocab
    coco_mu: torch.Tensor
    captions: list[tuple[int, str]]

    @classmethod
    def load(cls, data_dir: str | Path, split: str, image_link, vocab: seq.Vocab, size_px: int,
             limit: int | None = None) -> CaptionData:
        return cls(vocab, *captioned_images(data_dir, split, image_link, size_px, limit))


class TaskData:
    """One split's examples of VQA, T2I, ASR, captioning (T2I's pairs read the other way) and object listing
    ("obj", `mllm.objects`), and the questions' programs ("prog", `data.programs`), with token means computed once.
    token_dropout: received image and audio tokens lose some tokens, as NaN rows (`models.resilience`)."""

    token_dropout = False
    question_first = False  # VQA sequences put the question before the image (the MLLM's config says which)
    # [scenes, K, slots.WIDTH] object-slot targets (`mllm.slots`) that VQA examples carry on their image segment;
    # None: they carry none (every run without --object-slots)
    slot_targets: torch.Tensor | None = None
    # Issue 12: this share of VQA questions reaches the MLLM as the base station reads it, through the text link at
    # the example's SNR and channel (`received_texts`), instead of clean; text_link None: every question clean
    received_questions = 0.0
    text_link = None
    programs: list[tuple[int, str]] = []  # (question index, program in words); none in a cache made before them
    layouts: list[tuple[int, int]] = []  # (caption index, its scene's image index); none in a cache made before them
    layout_scenes: dict = {}  # image index -> its objects placed left to right (`objects.left_to_right`)
    layout_order = "left-to-right"  # the order the lay task lists a scene's objects in (`layout.ordered`)

    def __init__(self, data_dir: str | Path, split: str, image_link, audio_link, frontend, vocab: seq.Vocab,
                 size_px: int, limit: int | None = None, max_audio_chunks: int = 4,
                 spoken_dir: str | Path | None = None, max_question_chunks: int = 6):
        """spoken_dir: spoken questions (`data spoken-questions`) for VQA with a spoken question ("svqa"); None:
        none (the task has no examples). Spoken questions longer than max_question_chunks audio chunks are left
        out, as long clips are for ASR."""
        data_dir = Path(data_dir)
        self.vocab = vocab
        self.image_link, self.audio_link = image_link, audio_link
        # VQA: CLEVR layout.
        qs = read_json(clevr_root(data_dir) / "questions" / f"CLEVR_{split}_questions.json")["questions"]
        self.clevr_mu = image_means(image_link, load_images(data_dir, split, size_px, limit))
        n = len(self.clevr_mu)
        kept = [q for q in qs if q["image_index"] < n]
        self.questions = [(q["image_index"], q["question"], q["answer"]) for q in kept]
        # question family (CLEVR's question_family_index, -1 where a set has none): training draws families
        # evenly, so a family that is rare in a real set is not drowned by the common ones
        self.families = [int(q.get("question_family_index", -1)) for q in kept]
        # the "prog" task: each question's program in words (`data.programs.to_text`), where the set has programs
        self.programs = [(i, to_text(q["program"])) for i, q in enumerate(kept) if q.get("program")]
        # the "obj" task: each scene's objects read out left to right ([] where the split has no scene records)
        self.listings: list[tuple[int, str]] = objects.listings(data_dir, split, n)
        self.coco_mu, self.captions = captioned_images(data_dir, split, image_link, size_px, limit)
        # the "lay" task: each caption's scene as a layout (`mllm.layout`), where the caption's picture is a CLEVR
        # scene with records (the synthetic sets link the same files: the same token means)
        self.layouts, self.layout_scenes = caption_layouts(data_dir, split, self.captions, self.coco_mu,
                                                           self.clevr_mu)
        # ASR: LibriSpeech layout; clips longer than max_audio_chunks chunks are left out (sequence budget).
        self.speech: list[tuple[torch.Tensor, str]] = []
        if audio_link is not None:
            root = data_dir / "LibriSpeech" / SPEECH_SUBSETS[split]
            for trans in sorted(root.rglob("*.trans.txt"))[:limit]:
                for line in trans.read_text().splitlines():
                    utt, text = line.split(" ", 1)
                    f = next((trans.parent / f"{utt}{ext}" for ext in (".flac", ".wav")
                              if (trans.parent / f"{utt}{ext}").exists()), None)
                    if f is None:
                        continue
                    mu = audio_means(audio_link, frontend, read_wave(f, frontend.rate_hz))
                    if mu.shape[0] <= max_audio_chunks * audio_link.spec.tokens:
                        self.speech.append((mu, text))
        self.image_std = Standardizer.fit(self.coco_mu)
        # VQA with a spoken question: (image index, question audio mu [chunks * S_a, d], question text, answer)
        self.spoken: list[tuple[int, torch.Tensor, str, str]] = []
        self.spoken_families: list[int] = []
        if spoken_dir is not None and audio_link is not None:
            from unitocom.data.spoken import load as load_spoken
            for r in load_spoken(spoken_dir, split):
                if r["image_index"] >= n:
                    continue
                mu = audio_means(audio_link, frontend, read_wave(Path(spoken_dir) / r["file"], frontend.rate_hz))
                if mu.shape[0] <= max_question_chunks * audio_link.spec.tokens:
                    self.spoken.append((r["image_index"], mu, r["question"], r["answer"]))
                    self.spoken_families.append(int(r.get("question_family_index", -1)))

    def family_balanced(self, batch: int, gen: torch.Generator, task: str = "vqa") -> list[int]:
        """`batch` indices of `task` (vqa, svqa): a family drawn uniformly, then a question of that family
        uniformly."""
        cache = getattr(self, "_by_family", None)
        if not isinstance(cache, dict):
            cache = self._by_family = {}
        if task not in cache:
            by: dict[int, list[int]] = {}
            for i, f in enumerate(self.families if task == "vqa" else self.spoken_families):
                by.setdefault(f, []).append(i)
            cache[task] = [torch.tensor(v) for _, v in sorted(by.items())]
        groups = cache[task]
        fams = torch.randint(len(groups), (batch,), generator=gen).tolist()
        return [int(groups[f][torch.randint(len(groups[f]), (1,), generator=gen)]) for f in fams]

    def counts(self) -> dict[str, int]:
        return {"vqa": len(self.questions), "t2i": len(self.captions), "asr": len(self.speech),
                "svqa": len(self.spoken), "cap": len(self.captions), "obj": len(self.listings),
                "prog": len(self.programs), "lay": len(self.layouts)}

    def layout_text(self, i: int) -> str:
        """The lay task's i-th target: its caption's scene as a layout, in `layout_order`."""
        from unitocom.mllm import layout
        c, image = self.layouts[i]
        return layout.written(layout.ordered(self.layout_scenes[image], self.captions[c][1], self.layout_order))

    def _received_scenes(self, mu: torch.Tensor, snr_db: torch.Tensor, channel: TorchChannelSpec,
                         gen: torch.Generator) -> torch.Tensor:
        """Image token means [B, S_v, d] as the base station receives them, with lost tokens under token_dropout."""
        rx = received(self.image_link, mu, snr_db, channel, gen)
        if self.token_dropout:
            rx = rz.with_nan_rows(rx, rz.training_mask(rx.shape[0], rx.shape[1], gen))
        return rx

    def examples(self, task: str, idx: list[int], snr_db: torch.Tensor, channel: TorchChannelSpec,
                 gen: torch.Generator, drop_caption: float = 0.0) -> list[list[seq.Segment]]:
        v = self.vocab
        if task == "vqa":
            items = [self.questions[i] for i in idx]
            rx = self._received_scenes(self.clevr_mu[[i for i, _, _ in items]], snr_db, channel, gen)
            if self.received_questions and self.text_link is not None:
                rows = [b for b in range(len(items)) if float(torch.rand((), generator=gen)) < self.received_questions]
                if rows:  # each question its own stream: its own fading draw, at the example's SNR
                    heard = received_texts(self.text_link, v.bpe, [items[b][1] for b in rows], snr_db[rows], channel,
                                           gen)
                    for b, text in zip(rows, heard):
                        items[b] = (items[b][0], text, items[b][2])
            out = [seq.vqa(v, rx[b], q, a, self.question_first) for b, (_, q, a) in enumerate(items)]
            if self.slot_targets is not None:
                for row, (scene, _, _) in zip(out, items):
                    next(s for s in row if s.kind == "image").objects = self.slot_targets[scene]
            return out
        if task == "asr":
            out = []
            for b, i in enumerate(idx):
                mu, text = self.speech[i]
                rx = received(self.audio_link, mu.reshape(-1, self.audio_link.spec.tokens, mu.shape[-1]),
                              snr_db[b].repeat(mu.shape[0] // self.audio_link.spec.tokens), channel, gen)
                rx = rx.reshape(-1, mu.shape[-1])
                if self.token_dropout:
                    rx = rz.with_nan_rows(rx, rz.training_mask(1, rx.shape[0], gen)[0])
                out.append(seq.asr(v, rx, text))
            return out
        if task == "svqa":
            items = [self.spoken[i] for i in idx]
            rx_img = received(self.image_link, self.clevr_mu[[im for im, _, _, _ in items]], snr_db, channel, gen)
            out = []
            for b, (_, mu, _, ans) in enumerate(items):
                # the question is its own stream: its own fading draw, at the example's SNR
                rx = received(self.audio_link, mu.reshape(-1, self.audio_link.spec.tokens, mu.shape[-1]),
                              snr_db[b].repeat(mu.shape[0] // self.audio_link.spec.tokens), channel, gen)
                out.append(seq.spoken_vqa(v, rx_img[b], rx.reshape(-1, mu.shape[-1]), ans))
            return out
        if task == "cap":  # captioning: T2I's pairs the other way round, from the received scene
            items = [self.captions[i] for i in idx]
            rx = self._received_scenes(self.coco_mu[[image for image, _ in items]], snr_db, channel, gen)
            return [seq.caption(v, rx[b], text) for b, (_, text) in enumerate(items)]
        if task == "obj":  # the received scene's objects, left to right, with their places (`mllm.objects`)
            items = [self.listings[i] for i in idx]
            rx = self._received_scenes(self.clevr_mu[[image for image, _ in items]], snr_db, channel, gen)
            return [seq.vqa(v, rx[b], objects.PROMPT, text, self.question_first) for b, (_, text) in enumerate(items)]
        if task == "prog":  # the question's program, from its (clean) text
            return [seq.program(v, self.questions[q][1], text) for q, text in (self.programs[i] for i in idx)]
        if task == "lay":  # the caption's scene as a layout, from the (clean) caption
            return [seq.layout(v, self.captions[self.layouts[i][0]][1], self.layout_text(i)) for i in idx]
        if task == "t2i":
            out = []
            for i in idx:
                image, caption = self.captions[i]
                if drop_caption and float(torch.rand((), generator=gen)) < drop_caption:
                    caption = ""  # classifier-free guidance learns the unconditional model too
                out.append(seq.t2i(v, caption, self.image_std.forward(self.coco_mu[image])))
            return out
        raise ValueError(f"unknown task {task!r}")


def caption_layouts(data_dir: str | Path, split: str, captions: list[tuple[int, str]], coco_mu: torch.Tensor,
                    clevr_mu: torch.Tensor) -> tuple[list[tuple[int, int]], dict]:
    """The lay task's examples: ([(caption index, image index)], {image index: its objects placed left to right})
    for the captions whose picture is the CLEVR scene of the same index (equal token means: the synthetic sets'
    COCO view links the CLEVR files) and that scene has records."""
    from unitocom.mllm.objects import placed_scenes
    placed = {i: p for i, p in placed_scenes(data_dir, split, len(clevr_mu)) or [] if p}
    same = {i: placed[i] for i in placed if i < len(coco_mu) and torch.equal(coco_mu[i], clevr_mu[i])}
    return [(c, i) for c, (i, _) in enumerate(captions) if i in same], same


def _load_files(directory: Path, names: list[str], size_px: int) -> torch.Tensor:
    from PIL import Image

    out = np.empty((len(names), size_px, size_px, 3), np.uint8)
    for i, name in enumerate(names):
        with Image.open(directory / name) as im:
            im = im.convert("RGB")
            if im.size != (size_px, size_px):
                im = im.resize((size_px, size_px), Image.BICUBIC)
            out[i] = np.asarray(im)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
