"""Templated questions about a scene record, with CLEVR-style functional programs and balanced answers.

Each family draws a handful of candidate questions for a scene and answers them from the scene's objects and
relationships; a balancer then keeps the one whose answer this family has produced least so far, which flattens
the answer distribution (CLEVR rejects over-represented answers for the same reason: a model must look at the
image, not at the question's priors).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from unitocom.data.presets import FAMILIES_ALL, DataPreset
from unitocom.data.vocab import ATTRIBUTES, RELATION_PHRASE, RELATIONS, plural

FAMILIES: tuple[str, ...] = FAMILIES_ALL
FAMILY_INDEX: dict[str, int] = {f: i for i, f in enumerate(FAMILIES)}
CANDIDATES_PER_DRAW = 16

Filter = tuple[tuple[str, str], ...]  # ((attribute, value), ...) in ATTRIBUTES order


@dataclass(frozen=True)
class Candidate:
    question: str
    answer: str
    program: list[dict]


class _Program:
    """CLEVR v1.0 program nodes: {"inputs": [node ids], "function": name, "value_inputs": [words]}."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []

    def add(self, function: str, inputs: list[int], values: list[str] | None = None) -> int:
        self.nodes.append({"inputs": inputs, "function": function, "value_inputs": values or []})
        return len(self.nodes) - 1

    def filters(self, source: int, flt: Filter) -> int:
        for attr, value in flt:
            source = self.add(f"filter_{attr}", [source], [value])
        return source

    def scene_filter(self, flt: Filter) -> int:
        return self.filters(self.add("scene", []), flt)


def matches(obj: dict, flt: Filter) -> bool:
    return all(obj[a] == v for a, v in flt)


def select(objects: list[dict], flt: Filter, among: list[int] | None = None) -> list[int]:
    ids = range(len(objects)) if among is None else among
    return [i for i in ids if matches(objects[i], flt)]


def noun_phrase(flt: Filter, many: bool = False) -> str:
    """'small red circle', 'large things': adjectives in CLEVR's order, then the shape or 'thing'."""
    values = dict(flt)
    noun = values.get("shape", "thing")
    words = [values[a] for a in ATTRIBUTES if a != "shape" and a in values]
    return " ".join(words + [plural(noun) if many else noun])


def _attributes(preset: DataPreset) -> tuple[str, ...]:
    return tuple(a for a in ATTRIBUTES if preset.ask_material or a != "material")


def _values(preset: DataPreset, attr: str) -> tuple[str, ...]:
    return {"size": preset.sizes, "color": preset.colors, "material": preset.materials, "shape": preset.shapes}[attr]


def random_filter(rng: np.random.Generator, objects: list[dict], preset: DataPreset,
                  exclude: tuple[str, ...] = ()) -> Filter:
    attrs = [a for a in _attributes(preset) if a not in exclude]
    if objects and rng.random() < 0.6:  # describe something that is there, else the answers are mostly 0 / no
        obj = objects[int(rng.integers(len(objects)))]
        return tuple((a, obj[a]) for a in attrs if rng.random() < 0.5)
    picked = []
    for a in attrs:
        if rng.random() < 0.4:
            vals = _values(preset, a)
            picked.append((a, vals[int(rng.integers(len(vals)))]))
    return tuple(picked)


def unique_filter(rng: np.random.Generator, objects: list[dict], index: int, preset: DataPreset,
                  exclude: tuple[str, ...] = ()) -> Filter | None:
    """A random description that picks out object `index` alone, or None when its attributes do not suffice."""
    attrs = [a for a in _attributes(preset) if a not in exclude]
    obj = objects[index]
    unique = []
    for mask in range(1 << len(attrs)):
        flt = tuple((a, obj[a]) for k, a in enumerate(attrs) if mask >> k & 1)
        if select(objects, flt) == [index]:
            unique.append(flt)
    return unique[int(rng.integers(len(unique)))] if unique else None


def _two_distinct(rng: np.random.Generator, n: int) -> tuple[int, int] | None:
    if n < 2:
        return None
    i, j = rng.choice(n, size=2, replace=False)
    return int(i), int(j)


def _count(scene, rng, preset):
    objs = scene["objects"]
    flt = random_filter(rng, objs, preset)
    p = _Program()
    p.add("count", [p.scene_filter(flt)])
    return Candidate(f"How many {noun_phrase(flt, True)} are there?", str(len(select(objs, flt))), p.nodes)


def _exist(scene, rng, preset):
    objs = scene["objects"]
    flt = random_filter(rng, objs, preset)
    if not flt:  # "Are there any things?" is always yes
        return None
    p = _Program()
    p.add("exist", [p.scene_filter(flt)])
    return Candidate(f"Are there any {noun_phrase(flt, True)}?", "yes" if select(objs, flt) else "no", p.nodes)


def _query(attr: str):
    def family(scene, rng, preset):
        objs = scene["objects"]
        i = int(rng.integers(len(objs)))
        flt = unique_filter(rng, objs, i, preset, exclude=(attr,))
        if flt is None:
            return None
        p = _Program()
        p.add(f"query_{attr}", [p.add("unique", [p.scene_filter(flt)])])
        return Candidate(f"What {attr} is the {noun_phrase(flt)}?", objs[i][attr], p.nodes)
    return family


def _compare_counts(function: str):
    def family(scene, rng, preset):
        objs = scene["objects"]
        f1, f2 = random_filter(rng, objs, preset), random_filter(rng, objs, preset)
        if f1 == f2:
            return None
        c1, c2 = len(select(objs, f1)), len(select(objs, f2))
        p = _Program()
        a = p.add("count", [p.scene_filter(f1)])
        b = p.add("count", [p.scene_filter(f2)])
        p.add(function, [a, b])
        n1, n2 = noun_phrase(f1, True), noun_phrase(f2, True)
        if function == "greater_than":
            return Candidate(f"Are there more {n1} than {n2}?", "yes" if c1 > c2 else "no", p.nodes)
        return Candidate(f"Are there the same number of {n1} and {n2}?", "yes" if c1 == c2 else "no", p.nodes)
    return family


def _compare_attribute(scene, rng, preset):
    objs = scene["objects"]
    pair = _two_distinct(rng, len(objs))
    if pair is None:
        return None
    attrs = _attributes(preset)
    attr = attrs[int(rng.integers(len(attrs)))]
    f1 = unique_filter(rng, objs, pair[0], preset, exclude=(attr,))
    f2 = unique_filter(rng, objs, pair[1], preset, exclude=(attr,))
    if f1 is None or f2 is None:
        return None
    p = _Program()
    a = p.add(f"query_{attr}", [p.add("unique", [p.scene_filter(f1)])])
    b = p.add(f"query_{attr}", [p.add("unique", [p.scene_filter(f2)])])
    p.add(f"equal_{attr}", [a, b])
    same = objs[pair[0]][attr] == objs[pair[1]][attr]
    return Candidate(f"Is the {noun_phrase(f1)} the same {attr} as the {noun_phrase(f2)}?",
                     "yes" if same else "no", p.nodes)


def _relate_yesno(scene, rng, preset):
    objs = scene["objects"]
    pair = _two_distinct(rng, len(objs))
    if pair is None:
        return None
    i, j = pair
    rel = RELATIONS[int(rng.integers(len(RELATIONS)))]
    fi, fj = unique_filter(rng, objs, i, preset), unique_filter(rng, objs, j, preset)
    if fi is None or fj is None:
        return None
    p = _Program()
    related = p.add("relate", [p.add("unique", [p.scene_filter(fj)])], [rel])
    p.add("exist", [p.filters(related, fi)])
    answer = "yes" if i in scene["relationships"][rel][j] else "no"
    return Candidate(f"Is the {noun_phrase(fi)} {RELATION_PHRASE[rel]} the {noun_phrase(fj)}?", answer, p.nodes)


def _relate_count(scene, rng, preset):
    objs = scene["objects"]
    if len(objs) < 2:  # nothing can be left of the only object: always 0
        return None
    j = int(rng.integers(len(objs)))
    rel = RELATIONS[int(rng.integers(len(RELATIONS)))]
    fj = unique_filter(rng, objs, j, preset)
    if fj is None:
        return None
    flt = random_filter(rng, objs, preset)
    p = _Program()
    related = p.add("relate", [p.add("unique", [p.scene_filter(fj)])], [rel])
    p.add("count", [p.filters(related, flt)])
    n = len(select(objs, flt, among=scene["relationships"][rel][j]))
    return Candidate(f"How many {noun_phrase(flt, True)} are {RELATION_PHRASE[rel]} the {noun_phrase(fj)}?",
                     str(n), p.nodes)


def _relate_query(scene, rng, preset):
    objs = scene["objects"]
    if len(objs) < 2:
        return None
    j = int(rng.integers(len(objs)))
    rel = RELATIONS[int(rng.integers(len(RELATIONS)))]
    attrs = _attributes(preset)
    attr = attrs[int(rng.integers(len(attrs)))]
    fj = unique_filter(rng, objs, j, preset)
    if fj is None:
        return None
    flt = random_filter(rng, objs, preset, exclude=(attr,))
    hits = select(objs, flt, among=scene["relationships"][rel][j])
    if len(hits) != 1:
        return None
    p = _Program()
    related = p.add("relate", [p.add("unique", [p.scene_filter(fj)])], [rel])
    p.add(f"query_{attr}", [p.add("unique", [p.filters(related, flt)])])
    return Candidate(f"What {attr} is the {noun_phrase(flt)} {RELATION_PHRASE[rel]} the {noun_phrase(fj)}?",
                     objs[hits[0]][attr], p.nodes)


FAMILY_FUNCTIONS: dict[str, Callable[[dict, np.random.Generator, DataPreset], Candidate | None]] = {
    "count": _count,
    "exist": _exist,
    "query_color": _query("color"),
    "query_shape": _query("shape"),
    "query_size": _query("size"),
    "query_material": _query("material"),
    "compare_more": _compare_counts("greater_than"),
    "compare_equal": _compare_counts("equal_integer"),
    "compare_attribute": _compare_attribute,
    "relate_yesno": _relate_yesno,
    "relate_count": _relate_count,
    "relate_query": _relate_query,
}


class AnswerBalancer:
    """Running counts of families and of answers per family over one block of scenes."""

    def __init__(self, families: tuple[str, ...]) -> None:
        self.families = families
        self.asked: Counter[str] = Counter()
        self.answers: dict[str, Counter[str]] = {f: Counter() for f in families}

    def family_order(self, rng: np.random.Generator) -> list[str]:
        """Families, least asked first (ties in random order), so every family gets its share."""
        jitter = rng.random(len(self.families))
        return [f for _, _, f in sorted(zip((self.asked[f] for f in self.families), jitter, self.families))]

    def choose(self, family: str, candidates: list[Candidate]) -> Candidate:
        seen = self.answers[family]
        best = min(candidates, key=lambda c: seen[c.answer])  # min keeps the first: candidates are random
        seen[best.answer] += 1
        self.asked[family] += 1
        return best


def questions_for_scene(scene: dict, preset: DataPreset, rng: np.random.Generator,
                        balancer: AnswerBalancer, count: int) -> list[dict]:
    """Up to `count` distinct questions about `scene` as CLEVR question records (question_index left to the writer)."""
    out: list[dict] = []
    texts: set[str] = set()
    exhausted: set[str] = set()
    while len(out) < count and len(exhausted) < len(balancer.families):
        for family in balancer.family_order(rng):
            if family not in exhausted:
                break
        draw = FAMILY_FUNCTIONS[family]
        candidates = [c for c in (draw(scene, rng, preset) for _ in range(CANDIDATES_PER_DRAW))
                      if c is not None and c.question not in texts]
        if not candidates:
            exhausted.add(family)
            continue
        pick = balancer.choose(family, candidates)
        texts.add(pick.question)
        out.append({"image_index": scene["image_index"], "image_filename": scene["image_filename"],
                    "split": scene["split"], "question": pick.question, "answer": pick.answer,
                    "question_family_index": FAMILY_INDEX[family], "program": pick.program})
    return out
