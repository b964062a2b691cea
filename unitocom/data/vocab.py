"""The closed vocabulary of the synthetic data: attribute values, answers and every word a question, caption or
spoken sentence may use.

One module owns these lists so that the scene drawer, the question templates, the text tokenizer and the ASR
grammar can never disagree about a word. Order matters: indices into ANSWERS and WORDS are stable identifiers.
"""
from __future__ import annotations

import re

# CLEVR's eight colours with CLEVR's own RGB values, so that a model trained here sees the same hues.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
COLORS: tuple[str, ...] = tuple(COLOR_RGB)
# 2D stand-ins for CLEVR's sphere / cube / cylinder: three outlines that stay distinct at 32 px.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "medium", "large")
MATERIALS: tuple[str, ...] = ("rubber", "metal")
ATTRIBUTES: tuple[str, ...] = ("size", "color", "material", "shape")

# CLEVR's four spatial relations; "front" is towards the camera, which in a 2D scene is lower in the image.
RELATIONS: tuple[str, ...] = ("left", "right", "front", "behind")
RELATION_PHRASE: dict[str, str] = {"left": "left of", "right": "right of", "front": "in front of", "behind": "behind"}
SPATIAL_WORDS: tuple[str, ...] = ("left", "right", "front", "behind", "above", "below", "top", "bottom", "middle")

MAX_COUNT = 10
NUMBERS: tuple[str, ...] = tuple(str(i) for i in range(MAX_COUNT + 1))
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
)
DIGIT_WORDS: tuple[str, ...] = NUMBER_WORDS[:10]
YES_NO: tuple[str, ...] = ("yes", "no")

# Every answer a question can have. A VQA head classifies over exactly this list.
ANSWERS: tuple[str, ...] = YES_NO + NUMBERS + COLORS + SHAPES + SIZES + MATERIALS
ANSWER_INDEX: dict[str, int] = {a: i for i, a in enumerate(ANSWERS)}

# Free sentences for speech: short, common words, so that ASR is not only a closed-grammar exercise.
FREE_SENTENCES: tuple[str, ...] = (
    "the signal is strong today",
    "please send the next message",
    "the channel is clear",
    "turn the power down a little",
    "we can hear you well",
    "the base station is ready",
    "move the antenna to the left",
    "the noise is very high now",
    "wait for the next frame",
    "the picture is on the table",
    "open the door and look outside",
    "the red light is on",
    "bring me the blue box",
    "the cat sat on the green mat",
    "a small bird is in the tree",
    "the train leaves at seven",
    "call me in five minutes",
    "the sky is dark and cold",
    "read the first line again",
    "this is a test of the system",
    "the big dog runs in the park",
    "put the yellow cup on the shelf",
    "we will meet at the station",
    "the water is warm",
    "my phone has no signal",
    "the sun is high above the hill",
    "she found a purple stone",
    "the music is too loud",
    "write your name at the top",
    "the data arrived on time",
    "look at the bottom of the page",
    "the road is long and quiet",
)

# Glue words of the question, caption and sentence templates (questions.py, captions.py, speech.py).
TEMPLATE_WORDS: tuple[str, ...] = (
    "a", "the", "is", "are", "there", "any", "how", "many", "what", "color", "shape", "size", "material",
    "more", "than", "same", "number", "of", "and", "as", "in", "to", "thing", "things", "object", "objects",
    "from", "back", "on", "floor", "with", "it", "picture", "next",
)


def plural(noun: str) -> str:
    return noun + "s"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _all_words() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    groups = [ANSWERS, NUMBER_WORDS, SPATIAL_WORDS, TEMPLATE_WORDS,
              tuple(plural(s) for s in SHAPES), tuple(w for p in RELATION_PHRASE.values() for w in p.split())]
    for group in groups:
        for w in group:
            seen.setdefault(w, None)
    for sentence in FREE_SENTENCES:
        for w in _words(sentence):
            seen.setdefault(w, None)
    return tuple(seen)


# Every word that synthetic text (questions, answers, captions, speech transcripts) can contain, lowercase.
WORDS: tuple[str, ...] = _all_words()


def words_of(text: str) -> list[str]:
    """Lowercase words of a question, caption or transcript, punctuation dropped (the tokenizers' view)."""
    return _words(text)
