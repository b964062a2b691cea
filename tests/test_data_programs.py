"""The CLEVR program executor (`unitocom.data.programs`) against the generator's answers, and the object slots'
reading turned into a scene (`scripts/slots_reason.py`): a perfect reading answers as the scene record does."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from tests.conftest import load_script
from tests.test_data_questions import _generate
from unitocom.data.presets import data_preset
from unitocom.data.programs import ProgramFailed, execute
from unitocom.data.questions import FAMILIES
from unitocom.data.scenes import relationships, to_image_frac


@pytest.fixture(scope="module")
def generated():
    return _generate("tiny", 400)


def test_every_program_gives_the_generators_answer_with_recorded_or_computed_relations(generated):
    scenes, questions = generated
    families = Counter()
    for q in questions:
        scene = scenes[q["image_index"]]
        assert execute(q["program"], scene["objects"], scene["relationships"]) == q["answer"], q["question"]
        assert execute(q["program"], scene["objects"]) == q["answer"], q["question"]
        families[FAMILIES[q["question_family_index"]]] += 1
    assert set(families) == set(data_preset("tiny").families)  # every family the preset asks


def test_a_unique_that_finds_several_or_none_fails_and_an_unknown_function_is_named():
    objects = [{"size": "large", "color": "red", "shape": "circle", "material": "rubber", "3d_coords": [-1, 0, 0]},
               {"size": "small", "color": "red", "shape": "square", "material": "metal", "3d_coords": [1, 0, 0]}]
    red = [{"function": "scene", "inputs": [], "value_inputs": []},
           {"function": "filter_color", "inputs": [0], "value_inputs": ["red"]}]
    query = {"function": "query_shape", "inputs": [2], "value_inputs": []}
    with pytest.raises(ProgramFailed, match="unique over 2 objects"):
        execute(red + [{"function": "unique", "inputs": [1], "value_inputs": []}, query], objects)
    blue = [red[0], {"function": "filter_color", "inputs": [0], "value_inputs": ["blue"]}]
    with pytest.raises(ProgramFailed, match="unique over 0 objects"):
        execute(blue + [{"function": "unique", "inputs": [1], "value_inputs": []}, query], objects)
    # the square is right of the circle: relate from the unique large thing
    large = [red[0], {"function": "filter_size", "inputs": [0], "value_inputs": ["large"]},
             {"function": "unique", "inputs": [1], "value_inputs": []},
             {"function": "relate", "inputs": [2], "value_inputs": ["right"]}]
    assert execute(large + [{"function": "count", "inputs": [3], "value_inputs": []}], objects) == "1"
    assert relationships(objects)["right"][0] == [1]
    with pytest.raises(ValueError, match="'same_shape' is not one the generator writes"):
        execute([red[0], {"function": "same_shape", "inputs": [0], "value_inputs": []}], objects)


def test_a_perfect_slot_reading_answers_as_the_scene_record(generated):
    """Slots that read every object right (one-hot attributes, the centre as the slots' targets place it, left to
    right) make scenes whose programs give the recorded answers: slots.scene_objects puts the centres back on the ground
    plane the right way round (left/right from u, front/behind from v)."""
    from unitocom.mllm import slots
    sr = load_script("scripts/slots_reason.py")
    scenes, questions = generated
    n = len(scenes)
    attributes = [torch.full((n, slots.SLOTS, len(v)), -9.0) for v in slots.ATTRIBUTES.values()]
    present = torch.tensor([9.0, -9.0]).repeat(n, slots.SLOTS, 1)
    place = torch.zeros(n, slots.SLOTS, 2)
    for i in range(n):
        placed = sorted((to_image_frac(o["3d_coords"])[:2], o) for o in scenes[i]["objects"])
        for k, ((u, v), o) in enumerate(placed):
            for a, (name, values) in enumerate(slots.ATTRIBUTES.items()):
                attributes[a][i, k, values.index(o[name])] = 9.0
            present[i, k] = torch.tensor([-9.0, 9.0])
            place[i, k] = torch.tensor([2 * u - 1, 2 * v - 1])
    read = slots.scene_objects((attributes, present, place))
    assert [len(r) for r in read] == [len(scenes[i]["objects"]) for i in range(n)]
    items = questions[:600]
    answers, ran = sr.answer_all(items, [read[q["image_index"]] for q in items], ["?"] * len(items))
    assert all(ran) and answers == [q["answer"] for q in items]


def test_a_program_in_words_reads_back_as_the_same_program_and_garbled_words_fail(generated):
    from unitocom.data.programs import from_text, to_text
    _, questions = generated
    for q in questions:
        text = to_text(q["program"])
        assert [(n["function"], n["inputs"], n["value_inputs"]) for n in from_text(text)] == \
            [(n["function"], n["inputs"], n["value_inputs"]) for n in q["program"]], text
    assert to_text(questions[0]["program"]).startswith("things")
    for bad, why in (("things red the left large cyan", "ends in filter_color"), ("things red things", "2 results"), ("things purpel many", "'purpel'"),
                     ("many", "count needs 1 inputs, has 0"), ("", "0 results left")):
        with pytest.raises(ProgramFailed, match=why):
            from_text(bad)


def test_the_slots_reason_table_shows_each_reader_with_its_families_and_chance(generated):
    """scripts/slots_reason.py's points, rendered by results_tables: one row per reader and SNR, the programs' share,
    each family's accuracy, and the chance row from the same questions."""
    sr = load_script("scripts/slots_reason.py")
    rt = load_script("scripts/results_tables.py")
    scenes, questions = generated
    items = questions[:200]
    guess = ["yes"] * len(items)
    truth = sr.point("scene record", None, items, *sr.answer_all(items, [scenes[q["image_index"]]["objects"]
                                                                          for q in items], guess), guess)
    empty = sr.point("slots + programs", 20.0, items, *sr.answer_all(items, [[] for _ in items], guess), guess)
    assert truth["accuracy"] == 1.0 and truth["programs_ran"] == 1.0
    assert empty["programs_ran"] < 1.0 and empty["accuracy"] < 1.0  # no objects read: every unique fails
    fig = {"header": {"git_commit": "0" * 40, "command": "scripts/slots_reason.py", "split": "test", "data": "d",
                      "channel": "rayleigh", "mllm": {"path": "m.safetensors", "sha256": "ab" * 32}},
           "points": [truth, empty]}
    table = rt.slots_reason_block(fig, "results/slots-reason.json")
    assert "| scene record | no channel | 1.000 [" in table and "| slots + programs | 20 | " in table
    assert "| chance (each family's most common training answer) | | " in table and "relate yesno" in table
