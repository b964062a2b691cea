"""The "obj" task's targets: a scene's objects read out left to right, each with its attributes and the third of the
picture it stands in (issue 12).

    "list the objects from left to right." | "a large cyan metal circle at the bottom left, a small red metal
                                              square at the right, a large brown rubber triangle at the top"

Relation questions ("is there a circle left of the red square?") need the model to find each object and its place
first. Question answering teaches that only through the answer's one token; a probe reader on the same tokens went
from 0.45 to 0.77 on relate yes/no when it also had to read every object (results/vqa-probe-objects-w1.json).
This is that signal in the MLLM's own terms: an LM target, so the vocabulary and every tensor keep their shapes.

Order and place come from each object's `pixel_coords` (CLEVR's scene records, which the synthetic sets write
too) as fractions of its picture's width and height, so a real CLEVR set's scenes give listings the same way. A
split without scene records (real CLEVR's test split) has no listings, and the task draws nothing from it.
"""
from __future__ import annotations

import re
from pathlib import Path

from unitocom.data.layouts import clevr_root, clevr_scenes_file, read_json

PROMPT = "List the objects from left to right."
THIRDS = (("left", "middle", "right"), ("top", "middle", "bottom"))


def where(u: float, v: float) -> str:
    """The third of the picture across and down that (u, v) (fractions of width and height, v down) falls in:
    'top left', 'top', ..., 'middle'."""
    across, down = (THIRDS[k][min(2, max(0, int(x * 3)))] for k, x in enumerate((u, v)))
    if down == "middle":
        return across
    return down if across == "middle" else f"{down} {across}"


def left_to_right(objects: list[dict], width_px: float, height_px: float) -> list[tuple[float, float, dict]]:
    """A scene record's objects as (u, v, object), the centre's `pixel_coords` as fractions of the width_px x
    height_px picture, left to right by pixel column (ties: by row): the order listings and object slots read."""
    return sorted(((o["pixel_coords"][0] / width_px, o["pixel_coords"][1] / height_px, o) for o in objects),
                  key=lambda t: (t[0], t[1]))


def listing(objects: list[dict], width_px: float, height_px: float) -> str:
    """A scene record's objects -> 'a large cyan metal circle at the bottom left, ...', left to right by the centre's
    pixel column (ties: by row), each placed in its third of the width_px x height_px picture."""
    return _written(left_to_right(objects, width_px, height_px))


def _written(placed: list[tuple[float, float, dict]]) -> str:
    return ", ".join(f"a {o['size']} {o['color']} {o['material']} {o['shape']} {_at(where(u, v))}"
                     for u, v, o in placed)


def _at(place: str) -> str:
    return "in the middle" if place == "middle" else f"at the {place}"


def _picture_size(path: Path) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as im:  # reads the header, not the pixels
        return im.size


def placed_scenes(data_dir: str | Path, split: str, n: int) -> list[tuple[int, list[tuple[float, float, dict]]]] | None:
    """[(image index, its objects `left_to_right` in its own picture's size)] of the split's scenes with index < n,
    in the scene records' order; None where the split has no scene records."""
    path = clevr_scenes_file(data_dir, split)
    if not path.is_file():
        return None
    images = clevr_root(data_dir) / "images" / split
    out = []
    for scene in read_json(path)["scenes"]:
        i = scene["image_index"]
        if i < n:
            size = _picture_size(images / scene.get("image_filename", f"CLEVR_{split}_{i:06d}.png"))
            out.append((i, left_to_right(scene["objects"], *size)))
    return out


def listings(data_dir: str | Path, split: str, n: int) -> list[tuple[int, str]]:
    """[(image index, listing)] of the split's scenes with index < n, from its scene records and each picture's
    size; [] where the split has no scene records."""
    return sorted((i, _written(placed)) for i, placed in placed_scenes(data_dir, split, n) or [] if placed)


_ITEM = re.compile(r"^a (\S+) (\S+) (\S+) (\S+) (?:at the (.+)|in (the middle))$")
FIELDS = ("size", "color", "material", "shape", "place")


def parse(text: str) -> list[dict | None]:
    """A listing as the model wrote it -> one dict of FIELDS per item (None for an item not of the form)."""
    out = []
    for item in filter(None, (s.strip() for s in text.strip().rstrip(".").split(","))):
        m = _ITEM.match(item)
        out.append(None if m is None else dict(zip(FIELDS, (*m.groups()[:4], m.group(5) or "middle"))))
    return out


def agreement(said: str, truth: str) -> dict[str, float]:
    """How far a written listing agrees with the true one, position by position (both read left to right):
    exact (the whole text), count (as many items), per field the share of the true objects whose item in the
    same position has that value (a missing or unreadable item counts as wrong), and found: the share of the true
    objects (size, colour, material, shape) named anywhere in the listing, each item matching one object at most,
    which forgives the order."""
    got, want = parse(said), parse(truth)
    out = {"exact": float(" ".join(said.lower().split()) == " ".join(truth.lower().split())),
           "count": float(len(got) == len(want))}
    named = [tuple(g[f] for f in FIELDS[:4]) for g in got if g is not None]
    found = 0
    for w in want:
        key = tuple(w[f] for f in FIELDS[:4])
        if key in named:
            named.remove(key)
            found += 1
    out["found"] = found / len(want) if want else float(not got)
    for f in FIELDS:
        hits = sum(g is not None and g[f] == w[f] for g, w in zip(got, want))
        out[f] = hits / len(want) if want else float(not got)
    return out
