"""Spoken sentences over the closed vocabulary, synthesised with espeak-ng and resampled with sox.

Speakers are espeak-ng accent + voice-variant pairs with their own base pitch and speed; every utterance varies
both a little more, so an ASR model cannot key on one timbre. Transcripts follow LibriSpeech: upper case, no
punctuation, numbers spelled out (the synthesiser reads exactly the words in the transcript).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unitocom.data.vocab import COLORS, DIGIT_WORDS, FREE_SENTENCES, NUMBER_WORDS, RELATION_PHRASE, SHAPES, SIZES

ACCENTS: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
                            "en-gb-x-gbcwmd", "en-us-nyc")
# Ordinary human-sounding variants only (espeak-ng also ships whisper, croak, robots, ...). Sex as LibriSpeech lists it.
VARIANTS: dict[str, str] = {"m1": "M", "m2": "M", "m3": "M", "m4": "M", "m5": "M", "m6": "M", "m7": "M",
                            "f1": "F", "f2": "F", "f3": "F", "f4": "F", "f5": "F", "klatt": "M", "klatt2": "M",
                            "klatt3": "M", "klatt4": "F"}
SENTENCE_KINDS: tuple[str, ...] = ("digits", "object", "relation", "count", "question", "free")


@dataclass(frozen=True)
class Speaker:
    speaker_id: int
    voice: str  # espeak-ng voice name, "accent+variant"
    sex: str
    pitch: int  # espeak-ng 0..99
    speed_wpm: int


def tools_missing() -> list[str]:
    return [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]


def tool_versions() -> dict[str, str]:
    """First line of each tool's version text: recorded in the manifest, since a new espeak-ng changes the audio."""
    out = {}
    for tool, flag in (("espeak-ng", "--version"), ("sox", "--version")):
        try:
            text = subprocess.run([tool, flag], capture_output=True, text=True, check=False).stdout
            out[tool] = text.strip().splitlines()[0].split("Data at")[0].strip() if text.strip() else "unknown"
        except FileNotFoundError:
            out[tool] = "missing"
    return out


def make_speakers(rng: np.random.Generator, count: int, first_id: int) -> list[Speaker]:
    speakers = []
    variants = list(VARIANTS)
    for k in range(count):
        accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
        variant = variants[int(rng.integers(len(variants)))]
        speakers.append(Speaker(speaker_id=first_id + k, voice=f"{accent}+{variant}", sex=VARIANTS[variant],
                                pitch=int(rng.integers(30, 71)), speed_wpm=int(rng.integers(135, 186))))
    return speakers


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _thing(rng: np.random.Generator) -> str:
    words = [_pick(rng, SIZES)] if rng.random() < 0.5 else []
    return " ".join(words + [_pick(rng, COLORS), _pick(rng, SHAPES)])


def speech_sentence(rng: np.random.Generator) -> str:
    """One lowercase sentence over the vocabulary: digits, objects, relations, counts, questions or free text."""
    kind = _pick(rng, SENTENCE_KINDS)
    if kind == "digits":
        return " ".join(_pick(rng, DIGIT_WORDS) for _ in range(int(rng.integers(3, 8))))
    if kind == "object":
        return f"{_pick(rng, ('the', 'a'))} {_thing(rng)}"
    if kind == "relation":
        return f"the {_thing(rng)} is {_pick(rng, tuple(RELATION_PHRASE.values()))} the {_thing(rng)}"
    if kind == "count":
        n = int(rng.integers(0, 8))
        if n == 1:
            return f"there is one {_pick(rng, COLORS)} {_pick(rng, SHAPES)}"
        return f"there are {NUMBER_WORDS[n]} {_pick(rng, COLORS)} {_pick(rng, SHAPES)}s"
    if kind == "question":
        templates = (lambda: f"how many {_pick(rng, COLORS)} things are there",
                     lambda: f"what color is the {_pick(rng, SIZES)} {_pick(rng, SHAPES)}",
                     lambda: f"are there any {_pick(rng, COLORS)} {_pick(rng, SHAPES)}s",
                     lambda: f"is the {_thing(rng)} {_pick(rng, tuple(RELATION_PHRASE.values()))} the {_thing(rng)}")
        return templates[int(rng.integers(len(templates)))]()
    return _pick(rng, FREE_SENTENCES)


def synthesize(text: str, voice: str, speed_wpm: int, pitch: int, rate_hz: int, path: Path) -> None:
    """Speak `text` into `path` (FLAC or WAV by suffix), mono 16-bit at `rate_hz`.

    sox runs with -R (fixed seeds) and -D (no dither) so that the same call writes the same bytes.
    """
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "--stdout", text],
                         capture_output=True, check=True).stdout
    subprocess.run(["sox", "-D", "-R", "-t", "wav", "-", "-r", str(rate_hz), "-b", "16", "-c", "1", str(path)],
                   input=wav, capture_output=True, check=True)


def transcript(text: str) -> str:
    return text.upper()


def sentence_kind(text: str) -> str:
    """Which of SENTENCE_KINDS `speech_sentence` drew `text` from (any case), read off its words: ASR errors
    differ by kind (digit strings cannot be memorised; free sentences recur verbatim)."""
    t = " ".join(text.lower().split())
    words = t.split()
    if t in FREE_SENTENCES:
        return "free"
    if words and all(w in DIGIT_WORDS for w in words):
        return "digits"
    if words and words[0] in ("how", "what", "are", "is"):
        return "question"
    if t.startswith(("there is ", "there are ")):
        return "count"
    if any(f" {phrase} " in f" {t} " for phrase in RELATION_PHRASE.values()):
        return "relation"
    return "object"
