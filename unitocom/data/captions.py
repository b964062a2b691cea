"""Captions of a scene record, several per image like MS-COCO's five, from templates over the closed vocabulary.

Every caption names every object (size, colour, shape; material where the preset asks about it), so that a
text-to-image model conditioned on one caption has all it needs to draw the scene; the templates differ in order
and in the relations they state, which is what makes captions of one image differ.
"""
from __future__ import annotations

import numpy as np

from unitocom.data.presets import DataPreset
from unitocom.data.vocab import NUMBER_WORDS, RELATION_PHRASE, RELATIONS


def _describe(obj: dict, preset: DataPreset, with_size: bool = True) -> str:
    words = ([obj["size"]] if with_size else []) + [obj["color"]]
    if preset.ask_material:
        words.append(obj["material"])
    return "a " + " ".join(words + [obj["shape"]])


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _left_to_right(objs, rng, preset):
    order = sorted(objs, key=lambda o: o["3d_coords"][0])
    return f"from left to right: {_join([_describe(o, preset) for o in order])}"


def _back_to_front(objs, rng, preset):
    order = sorted(objs, key=lambda o: -o["3d_coords"][1])
    return f"from back to front: {_join([_describe(o, preset) for o in order])}"


def _counted(objs, rng, preset):
    order = [objs[i] for i in rng.permutation(len(objs))]
    noun = "object" if len(objs) == 1 else "objects"
    return f"{NUMBER_WORDS[len(objs)]} {noun} on a gray floor: {_join([_describe(o, preset) for o in order])}"


def _picture(objs, rng, preset):
    order = [objs[i] for i in rng.permutation(len(objs))]
    return f"a picture of {_join([_describe(o, preset) for o in order])} on a gray floor"


def _related(objs, rng, preset):
    """Each object placed relative to the first one, which ties every object to a relation."""
    if len(objs) == 1:
        return f"there is {_describe(objs[0], preset)} in the middle of the picture"
    order = [int(i) for i in rng.permutation(len(objs))]
    anchor = objs[order[0]]
    parts = []
    for k in order[1:]:
        o = objs[k]
        dx = o["3d_coords"][0] - anchor["3d_coords"][0]
        dy = o["3d_coords"][1] - anchor["3d_coords"][1]
        # State the direction in which they are further apart: the more obvious relation to a viewer.
        rel = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("behind" if dy > 0 else "front")
        parts.append(f"{_describe(o, preset)} {RELATION_PHRASE[rel]} it")
    return f"there is {_describe(anchor, preset)} with {_join(parts)}"


def _pairwise(objs, rng, preset):
    if len(objs) == 1:
        return f"{_describe(objs[0], preset)} on a gray floor"
    order = [objs[i] for i in rng.permutation(len(objs))]
    a, b = order[0], order[1]
    rel = RELATIONS[int(rng.integers(2))] if rng.random() < 0.5 else RELATIONS[2 + int(rng.integers(2))]
    holds = {"left": a["3d_coords"][0] < b["3d_coords"][0], "right": a["3d_coords"][0] > b["3d_coords"][0],
             "front": a["3d_coords"][1] < b["3d_coords"][1], "behind": a["3d_coords"][1] > b["3d_coords"][1]}[rel]
    if not holds:
        a, b = b, a
    rest = order[2:]
    tail = f", next to {_join([_describe(o, preset) for o in rest])}" if rest else ""
    return f"{_describe(a, preset)} is {RELATION_PHRASE[rel]} {_describe(b, preset)}{tail}"


TEMPLATES = (_left_to_right, _counted, _related, _picture, _pairwise, _back_to_front)


def captions_for_scene(scene: dict, preset: DataPreset, rng: np.random.Generator, count: int) -> list[str]:
    """`count` different captions (at most one per template, in random template order)."""
    objs = scene["objects"]
    picked = rng.permutation(len(TEMPLATES))[:count]
    return [_sentence(TEMPLATES[int(t)](objs, rng, preset)) for t in picked]
