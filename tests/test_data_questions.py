"""Every generated answer is right for its scene: an answer checker written apart from the generator.

The checker reads only the question text and the scene JSON. It parses the sentence with its own patterns,
resolves descriptions against the objects' attributes and decides spatial relations from `3d_coords` and the
scene's `directions` (CLEVR's definition: j is `rel` of i when (c_j - c_i) . d_rel > 0), so a generator that
mixed up a relation, miscounted or phrased a question that does not match its answer fails here.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from unitocom.data.presets import data_preset
from unitocom.data.questions import FAMILIES, AnswerBalancer, questions_for_scene
from unitocom.data.scenes import sample_scene
from unitocom.data.vocab import ANSWERS, COLORS, MATERIALS, SHAPES, SIZES, WORDS, words_of

REL = r"(left of|right of|in front of|behind)"
ATTR = r"(color|shape|size|material)"
REL_NAME = {"left of": "left", "right of": "right", "in front of": "front", "behind": "behind"}


def _describe(phrase: str) -> dict[str, str]:
    want: dict[str, str] = {}
    for word in phrase.split():
        if word in SIZES:
            want["size"] = word
        elif word in COLORS:
            want["color"] = word
        elif word in MATERIALS:
            want["material"] = word
        elif word.rstrip("s") in SHAPES:
            want["shape"] = word.rstrip("s")
        elif word not in ("thing", "things"):
            raise AssertionError(f"unknown word {word!r} in {phrase!r}")
    return want


def _objects(scene: dict, phrase: str, among: list[int] | None = None) -> list[int]:
    want = _describe(phrase)
    ids = range(len(scene["objects"])) if among is None else among
    return [i for i in ids if all(scene["objects"][i][k] == v for k, v in want.items())]


def _the(scene: dict, phrase: str) -> int:
    hits = _objects(scene, phrase)
    assert len(hits) == 1, f"'the {phrase}' should name one object, names {len(hits)}"
    return hits[0]


def _related(scene: dict, rel: str, anchor: int) -> list[int]:
    d = np.asarray(scene["directions"][rel], dtype=float)
    c = [np.asarray(o["3d_coords"], dtype=float) for o in scene["objects"]]
    return [j for j in range(len(c)) if j != anchor and float(np.dot(c[j] - c[anchor], d)) > 0]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def check_answer(scene: dict, question: str) -> tuple[str, str]:
    """(family, answer) of a question, recomputed from the scene."""
    if m := re.fullmatch(rf"How many (.+) are {REL} the (.+)\?", question):
        hits = _objects(scene, m[1], among=_related(scene, REL_NAME[m[2]], _the(scene, m[3])))
        return "relate_count", str(len(hits))
    if m := re.fullmatch(r"How many (.+) are there\?", question):
        return "count", str(len(_objects(scene, m[1])))
    if m := re.fullmatch(r"Are there any (.+)\?", question):
        return "exist", _yes(bool(_objects(scene, m[1])))
    if m := re.fullmatch(rf"What {ATTR} is the (.+) {REL} the (.+)\?", question):
        hits = _objects(scene, m[2], among=_related(scene, REL_NAME[m[3]], _the(scene, m[4])))
        assert len(hits) == 1, f"{question!r} refers to {len(hits)} objects"
        return "relate_query", scene["objects"][hits[0]][m[1]]
    if m := re.fullmatch(rf"What {ATTR} is the (.+)\?", question):
        return f"query_{m[1]}", scene["objects"][_the(scene, m[2])][m[1]]
    if m := re.fullmatch(r"Are there more (.+) than (.+)\?", question):
        return "compare_more", _yes(len(_objects(scene, m[1])) > len(_objects(scene, m[2])))
    if m := re.fullmatch(r"Are there the same number of (.+) and (.+)\?", question):
        return "compare_equal", _yes(len(_objects(scene, m[1])) == len(_objects(scene, m[2])))
    if m := re.fullmatch(rf"Is the (.+) the same {ATTR} as the (.+)\?", question):
        a, b = _the(scene, m[1]), _the(scene, m[3])
        assert a != b
        return "compare_attribute", _yes(scene["objects"][a][m[2]] == scene["objects"][b][m[2]])
    if m := re.fullmatch(rf"Is the (.+) {REL} the (.+)\?", question):
        a, b = _the(scene, m[1]), _the(scene, m[3])
        return "relate_yesno", _yes(a in _related(scene, REL_NAME[m[2]], b))
    raise AssertionError(f"no template matches {question!r}")


def _generate(preset_name: str, n_scenes: int, seed: int = 0) -> tuple[dict[int, dict], list[dict]]:
    preset = data_preset(preset_name)
    balancer = AnswerBalancer(preset.families)
    qrng = np.random.default_rng([seed, 99])
    scenes, questions = {}, []
    for i in range(n_scenes):
        scene = sample_scene(np.random.default_rng([seed, i]), preset, "train", i)
        scenes[i] = scene
        questions += questions_for_scene(scene, preset, qrng, balancer, preset.questions_per_scene)
    return scenes, questions


@pytest.mark.parametrize("preset_name,n_scenes", [("tiny", 1000), ("paper", 300)])
def test_every_answer_is_right_for_its_scene(preset_name, n_scenes):
    scenes, questions = _generate(preset_name, n_scenes)
    assert len(questions) == n_scenes * data_preset(preset_name).questions_per_scene
    families = Counter()
    for q in questions:
        family, answer = check_answer(scenes[q["image_index"]], q["question"])
        assert answer == q["answer"], f"{q['question']!r}: generator says {q['answer']!r}, scene says {answer!r}"
        assert FAMILIES[q["question_family_index"]] == family
        assert q["answer"] in ANSWERS
        families[family] += 1
    assert set(families) == set(data_preset(preset_name).families), "every family is asked"


def test_checker_catches_a_wrong_answer():
    scenes, questions = _generate("tiny", 20)
    q = next(q for q in questions if q["answer"] in ("yes", "no"))
    _, answer = check_answer(scenes[q["image_index"]], q["question"])
    assert answer != {"yes": "no", "no": "yes"}[q["answer"]]


def test_checker_agrees_with_the_scene_relationships():
    # relationships in the JSON (CLEVR's field) and the checker's geometry must tell the same story
    scenes, _ = _generate("tiny", 200)
    for scene in scenes.values():
        for rel in ("left", "right", "front", "behind"):
            for i in range(len(scene["objects"])):
                assert sorted(scene["relationships"][rel][i]) == _related(scene, rel, i)


def test_answers_are_balanced_within_each_family():
    _, questions = _generate("tiny", 1000)
    by_family: dict[str, Counter] = {}
    for q in questions:
        by_family.setdefault(FAMILIES[q["question_family_index"]], Counter())[q["answer"]] += 1
    shares = {f: {a: n / sum(c.values()) for a, n in c.items()} for f, c in by_family.items()}
    for family in ("exist", "compare_more", "compare_equal", "compare_attribute", "relate_yesno"):
        assert 0.4 <= shares[family]["yes"] <= 0.6, (family, by_family[family])
    for family, values in (("query_color", COLORS), ("query_shape", SHAPES), ("query_size", ("small", "large"))):
        for v in values:
            assert 0.6 / len(values) <= shares[family][v] <= 1.6 / len(values), (family, by_family[family])
    for family in ("count", "relate_count"):
        assert max(shares[family].values()) < 0.35, (family, by_family[family])
    assert sum(by_family["count"].values()) > 0.5 * len(questions) / len(by_family)


def test_question_words_are_in_the_shared_vocabulary():
    _, questions = _generate("paper", 100)
    words = set(WORDS)
    for q in questions:
        assert set(words_of(q["question"])) <= words, q["question"]


def test_programs_are_clevr_shaped():
    _, questions = _generate("tiny", 50)
    for q in questions:
        prog = q["program"]
        assert prog[0] == {"inputs": [], "function": "scene", "value_inputs": []}
        for k, node in enumerate(prog):
            assert set(node) == {"inputs", "function", "value_inputs"}
            assert all(0 <= i < k for i in node["inputs"])
