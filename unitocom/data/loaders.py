"""torch Datasets for CLEVR v1.0, MS-COCO captions 2017 and LibriSpeech, read from a local directory.

The synthetic sets are written in exactly these layouts, so each loader serves the real corpus and its synthetic
stand-in alike. Items are named tuples: they unpack like tuples and still read as `item.answer`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torch.utils.data import Dataset

from unitocom.data.layouts import (clevr_root, coco_annotation_file, coco_image_dir, librispeech_root,
                                   load_clevr_questions, load_clevr_scenes, read_json)

__all__ = ["ClevrItem", "CocoItem", "SpeechItem", "ClevrQuestions", "CocoCaptions", "LibriSpeech", "read_image",
           "read_pixels", "to_tensor", "resample", "load_clevr_scenes", "load_clevr_questions"]


class ClevrItem(NamedTuple):
    image: torch.Tensor  # float32 [3, H, W] in [0, 1]
    question: str
    answer: str  # "" where the split has no answers (CLEVR's test split)
    family: int  # question_family_index; -1 where absent


class CocoItem(NamedTuple):
    image: torch.Tensor
    captions: list[str]


class SpeechItem(NamedTuple):
    wave: torch.Tensor  # float32 [T] in [-1, 1]
    rate_hz: int
    transcript: str
    speaker_id: int
    chapter_id: int
    utterance_id: str  # "SPEAKER-CHAPTER-UTTERANCE", LibriSpeech's file stem


def read_pixels(path: Path, size_px: int | None = None, crop: bool = False) -> np.ndarray:
    """uint8 RGB [H, W, 3] as stored, or resized to a size_px square: cropping the centre square first when
    `crop` (COCO: the FID convention) and otherwise squashing (CLEVR: a question may be about an object at the
    edge, which a crop would cut off)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if crop and size_px is not None:
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side))
        if size_px is not None and im.size != (size_px, size_px):
            im = im.resize((size_px, size_px), Image.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W] in [0, 1]. Arithmetic in numpy: tiny torch ops pay thread start-up."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0))


def read_image(path: Path, size_px: int | None = None, crop: bool = False) -> torch.Tensor:
    """RGB float32 [3, H, W] in [0, 1] (see read_pixels for the resizing)."""
    return to_tensor(read_pixels(path, size_px, crop))


class _ImageCache:
    """Every image of a split decoded once and kept as uint8 (12k 32 px scenes: 37 MB), for epochs without PNG
    decoding. Returns exactly what read_image returns."""

    def __init__(self, paths: list[Path], size_px: int | None, crop: bool) -> None:
        self.index = {p: k for k, p in enumerate(paths)}
        self.pixels = [read_pixels(p, size_px, crop) for p in paths]

    def get(self, path: Path) -> torch.Tensor:
        return to_tensor(self.pixels[self.index[path]])


class ClevrQuestions(Dataset):
    """(image, question, answer, family) for every question of a CLEVR split; `preload` decodes the images once."""

    def __init__(self, root: str | Path, split: str = "train", image_size_px: int | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, preload: bool = False) -> None:
        self.root = clevr_root(root)
        self.split = split
        self.image_size_px = image_size_px
        self.transform = transform
        self.questions = load_clevr_questions(self.root, split)
        self.image_dir = self.root / "images" / split
        names = sorted({q["image_filename"] for q in self.questions})
        self._cache = _ImageCache([self.image_dir / n for n in names], image_size_px, False) if preload else None

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> ClevrItem:
        q = self.questions[index]
        path = self.image_dir / q["image_filename"]
        image = self._cache.get(path) if self._cache else read_image(path, self.image_size_px)
        if self.transform is not None:
            image = self.transform(image)
        return ClevrItem(image, q["question"], q.get("answer", ""), int(q.get("question_family_index", -1)))


class CocoCaptions(Dataset):
    """(image, captions) per image of an MS-COCO captions file; images under `root/<split>2017/`."""

    def __init__(self, root: str | Path, split: str = "train", annotation_file: str | Path | None = None,
                 image_size_px: int | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, preload: bool = False) -> None:
        self.root = Path(root)
        self.annotation_file = Path(annotation_file) if annotation_file else coco_annotation_file(root, split)
        self.image_dir = coco_image_dir(self.root, split)
        self.image_size_px = image_size_px
        self.transform = transform
        data = read_json(self.annotation_file)
        captions: dict[int, list[str]] = defaultdict(list)
        for ann in sorted(data["annotations"], key=lambda a: a["id"]):
            captions[ann["image_id"]].append(ann["caption"].strip())
        self.images = sorted(data["images"], key=lambda im: im["id"])
        self.captions = [captions[im["id"]] for im in self.images]
        self._cache = (_ImageCache([self.image_dir / im["file_name"] for im in self.images], image_size_px, True)
                       if preload else None)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> CocoItem:
        path = self.image_dir / self.images[index]["file_name"]
        image = self._cache.get(path) if self._cache else read_image(path, self.image_size_px, crop=True)
        if self.transform is not None:
            image = self.transform(image)
        return CocoItem(image, list(self.captions[index]))


class LibriSpeech(Dataset):
    """(wave, rate, transcript, speaker, chapter, utterance id) per utterance of a LibriSpeech subset.

    Audio is FLAC as in the corpus (WAV is accepted too); `rate_hz` resamples on read (the letter uses 24 kHz,
    LibriSpeech is 16 kHz).
    """

    def __init__(self, root: str | Path, subset: str = "train-clean-100", rate_hz: int | None = None) -> None:
        self.root = librispeech_root(root, subset)
        self.rate_hz = rate_hz
        items = []
        for trans in sorted(self.root.glob("*/*/*.trans.txt")):
            for line in trans.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                uid, text = line.split(" ", 1)
                audio = next((p for p in (trans.parent / f"{uid}.flac", trans.parent / f"{uid}.wav") if p.exists()),
                             None)
                if audio is None:
                    raise FileNotFoundError(f"{trans} lists {uid} but neither {uid}.flac nor {uid}.wav exists")
                speaker, chapter, _ = uid.split("-")
                items.append((int(speaker), int(chapter), uid, text.strip(), audio))
        self.items = sorted(items, key=lambda it: it[:3])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> SpeechItem:
        speaker, chapter, uid, text, path = self.items[index]
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        if self.rate_hz is not None and self.rate_hz != rate:
            wave = resample(wave, rate, self.rate_hz)
            rate = self.rate_hz
        return SpeechItem(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), int(rate), text,
                          speaker, chapter, uid)


def resample(wave: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(int(from_hz), int(to_hz))
    return resample_poly(wave, to_hz // g, from_hz // g).astype(np.float32)
