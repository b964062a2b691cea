"""Training and validation batches for Algorithm 1, held in memory (the tiny sets are a few tens of MB).

Images: the CLEVR-layout scenes (`data/<preset>/CLEVR_v1.0/images/<split>`), uint8 [N, 3, S, S].
Audio: the LibriSpeech-layout clips, as standardised log-mel spectrograms, cut into random chunks.
Text: the COCO-layout captions and the CLEVR-layout questions, as byte-level BPE ids.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unitocom.data.layouts import clevr_root, coco_annotation_file, read_json
from unitocom.data.presets import SPEECH_SUBSETS


def load_images(data_dir: str | Path, split: str, size_px: int, limit: int | None = None) -> torch.Tensor:
    """uint8 [N, 3, size, size] from CLEVR_v1.0/images/<split> (resized bicubic if stored at another size)."""
    files = sorted((clevr_root(data_dir) / "images" / split).glob("*.png"))[:limit]
    if not files:
        raise FileNotFoundError(f"no images under {clevr_root(data_dir) / 'images' / split} "
                                "(make them with `unitocom data make --preset tiny`)")
    out = np.empty((len(files), size_px, size_px, 3), np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            im = im.convert("RGB")
            if im.size != (size_px, size_px):
                im = im.resize((size_px, size_px), Image.BICUBIC)
            out[i] = np.asarray(im)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class ImageBatches:
    def __init__(self, data_dir, split: str, size_px: int, limit: int | None = None):
        self.images = load_images(data_dir, split, size_px, limit)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, gen: torch.Generator) -> dict:
        idx = torch.randint(len(self.images), (batch,), generator=gen)
        return {"x": self.images[idx].float() / 255.0}

    def fixed(self, count: int) -> dict:
        return {"x": self.images[:count].float() / 255.0}


def speech_files(data_dir: str | Path, split: str) -> list[Path]:
    root = Path(data_dir) / "LibriSpeech" / SPEECH_SUBSETS[split]
    files = sorted(list(root.rglob("*.flac")) + list(root.rglob("*.wav")))
    if not files:
        raise FileNotFoundError(f"no speech under {root} (make it with `unitocom data make --preset tiny`)")
    return files


def read_wave(path: Path, rate_hz: int) -> torch.Tensor:
    import soundfile as sf

    from unitocom.data.loaders import resample

    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != rate_hz:
        wave = resample(wave, rate, rate_hz)
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


class AudioBatches:
    """Log-mel dB [frames, M] of every clip of a split; batches are random `chunk_frames` crops, standardised."""

    def __init__(self, data_dir, split: str, frontend, chunk_frames: int, limit: int | None = None,
                 db_mean: float | None = None, db_std: float | None = None):
        self.frontend, self.chunk = frontend, chunk_frames
        self.mels = [frontend.logmel(read_wave(f, frontend.rate_hz)) for f in speech_files(data_dir, split)[:limit]]
        allv = torch.cat([m.flatten() for m in self.mels])
        # Standardisation measured here (training set) and stored in the checkpoint for the services.
        self.db_mean = float(allv.mean()) if db_mean is None else db_mean
        self.db_std = float(allv.std()) if db_std is None else db_std
        self.floor = float(allv.min())

    def __len__(self) -> int:
        return len(self.mels)

    def _crop(self, mel: torch.Tensor, start: int) -> torch.Tensor:
        c = mel[start: start + self.chunk]
        if c.shape[0] < self.chunk:  # a short clip: pad with its quietest value (silence)
            c = torch.cat([c, c.new_full((self.chunk - c.shape[0], c.shape[1]), float(mel.min()))])
        return (c - self.db_mean) / self.db_std

    def sample(self, batch: int, gen: torch.Generator) -> dict:
        out = []
        for i in torch.randint(len(self.mels), (batch,), generator=gen).tolist():
            m = self.mels[i]
            start = int(torch.randint(max(1, m.shape[0] - self.chunk + 1), (1,), generator=gen))
            out.append(self._crop(m, start))
        return {"x": torch.stack(out)}

    def fixed(self, count: int) -> dict:
        """The first chunk of each of the first `count` clips (deterministic validation)."""
        return {"x": torch.stack([self._crop(m, 0) for m in self.mels[:count]])}


def text_corpus(data_dir: str | Path, split: str) -> list[str]:
    """Every caption (COCO layout), question (CLEVR layout) and speech transcript (LibriSpeech layout, lower
    case as the MLLM writes them) of a split, in file order: the BPE learns the words of all three tasks."""
    caps = [a["caption"].strip() for a in read_json(coco_annotation_file(Path(data_dir) / "coco", split))["annotations"]]
    qs = [q["question"] for q in read_json(clevr_root(data_dir) / "questions" / f"CLEVR_{split}_questions.json")["questions"]]
    root = Path(data_dir) / "LibriSpeech" / SPEECH_SUBSETS[split]
    said = [line.split(" ", 1)[1].lower() for f in sorted(root.rglob("*.trans.txt"))
            for line in f.read_text().splitlines() if " " in line]
    return caps + qs + said


class TextBatches:
    """BPE id sequences of a corpus. A fraction `random_frac` of every batch (and of the validation set) is
    uniformly random ids of random length instead: trained on the corpus alone, the inverse learnt the corpus's
    language and rewrote any other sentence into captions ("Tokens are the units..." came back as "A gray is
    brown are the in triangle..." at 20 dB); random strings make it decode the ids it is given."""

    def __init__(self, texts: list[str], bpe, max_tokens: int, random_frac: float = 0.5):
        from unitocom.models.text_tokenizer import encode_text

        self.seqs = [encode_text(bpe, t)[:max_tokens] for t in texts]
        self.vocab, self.max_tokens, self.random_frac = bpe.get_vocab_size(), max_tokens, random_frac

    def _random(self, gen: torch.Generator) -> list[int]:
        n = int(torch.randint(1, self.max_tokens + 1, (1,), generator=gen))
        return torch.randint(1, self.vocab, (n,), generator=gen).tolist()  # id 0 is padding

    def __len__(self) -> int:
        return len(self.seqs)

    @staticmethod
    def pad(seqs: list[list[int]]) -> dict:
        from unitocom.models.text_tokenizer import PAD_ID

        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), PAD_ID, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return {"x": ids, "mask": ids != PAD_ID}

    def sample(self, batch: int, gen: torch.Generator) -> dict:
        rows = [self.seqs[i] for i in torch.randint(len(self.seqs), (batch,), generator=gen).tolist()]
        pick = torch.rand(batch, generator=gen) < self.random_frac
        return self.pad([self._random(gen) if r else row for r, row in zip(pick.tolist(), rows)])

    def fixed(self, count: int) -> dict:
        """Corpus sentences spread over the split (captions and questions both), then random strings, in the
        proportion of training; the same every time."""
        n_random = int(round(count * self.random_frac))
        step = max(1, len(self.seqs) // max(1, count - n_random))
        gen = torch.Generator().manual_seed(4321)
        return self.pad(self.seqs[::step][: count - n_random] + [self._random(gen) for _ in range(n_random)])
