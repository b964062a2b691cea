"""scripts/vqa_probe.py: the diagnostic classifier trains on each view and writes its curves with intervals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def _probe():
    return load_script("scripts/vqa_probe.py")


def test_each_view_trains_and_is_scored_with_a_wilson_interval(heldout_data, tmp_path):
    out = tmp_path / "probe.json"
    assert _probe().main(["--modes", "tokens,decoded,pixels", "--steps", "2", "--eval-every", "1", "--n-val", "12",
                          "--batch-size", "4", "--data", str(heldout_data), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    h, points = r["header"], r["points"]
    assert h["format"] == "unitocom-results/vqa-probe/2" and list(h["views"]) == ["tokens", "decoded", "pixels"]
    assert h["n_val"] == 12 and h["links_sha256"]["image-sigma-genib-s32.safetensors"] and "--steps 2" in h["command"]
    # the decoded and the clean picture go through the same stem: the same parameter count; tokens a projection
    assert h["views"]["decoded"]["parameters"] == h["views"]["pixels"]["parameters"]
    assert h["views"]["tokens"]["parameters"] < h["views"]["pixels"]["parameters"]
    # a point per view, evaluation step and SNR, in the shared layout (value and its interval)
    assert [(p["view"], p["step"], p["snr_db"]) for p in points] == [
        (v, s, snr) for v in ("tokens", "decoded", "pixels") for s in (1, 2) for snr in (0.0, 20.0)]
    for p in points:
        assert p["n"] == 12 and p["metric"] == "accuracy" and p["channel"] == "rayleigh"
        assert 0 <= p["ci_low"] <= p["value"] <= p["ci_high"] <= 1
        assert round(p["value"] * 12) == pytest.approx(p["value"] * 12)
    # the README block results_tables writes from it: a row per view, a column per evaluation step
    tables = load_script("scripts/results_tables.py")
    readme, notes = tables.render("x\n<!-- results:probe -->\nold\n<!-- /results:probe -->\n",
                                  tables.load(tmp_path))
    block = readme.split("<!-- results:probe -->")[1].split("<!-- /results:probe -->")[0]
    assert not notes and "old" not in block and "step 1: 0 / 20 dB | step 2: 0 / 20 dB |" in block
    rows = [line for line in block.splitlines() if line.startswith(("| tokens", "| decoded", "| pixels"))]
    assert len(rows) == 3 and all(line.count("|") == 6 for line in rows)
    acc = points[-1]["value"]  # pixels, step 2, 20 dB
    assert f"pixels {acc:.2f} [" in block and "n = 12 val questions" in block


@pytest.mark.parametrize("argv", [["--modes", "tokens,ocr"], ["--modes", ""], ["--steps", "0"]])
def test_bad_options_are_refused(argv, tmp_path):
    with pytest.raises(SystemExit) as e:
        _probe().main([*argv, "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2


def test_one_family_with_more_questions_and_grid_positions(heldout_data, tmp_path):
    """--families keeps one family in training and scoring, --extra-per-scene draws more of it per training
    scene (answer-balanced, none repeating a question the set asks), --positions grid starts the visual cells at
    their grid's code; the header says all three."""
    out = tmp_path / "relations.json"
    probe = _probe()
    assert probe.main(["--modes", "tokens", "--steps", "2", "--eval-every", "2", "--n-val", "6", "--batch-size", "4",
                       "--families", "relate_yesno", "--extra-per-scene", "2", "--positions", "grid",
                       "--data", str(heldout_data), "--out", str(out)]) == 0
    h = json.loads(out.read_text())["header"]
    assert h["families"] == ["relate_yesno"] and h["extra_per_scene"] == 2 and h["positions"] == "grid"
    assert h["answers"] == 2  # yes and no: nothing of another family is left
    questions = json.loads((heldout_data / "CLEVR_v1.0/questions/CLEVR_train_questions.json").read_text())["questions"]
    own = sum(q["question_family_index"] == probe.FAMILY_INDEX["relate_yesno"] for q in questions)
    scenes = json.loads((heldout_data / "CLEVR_v1.0/scenes/CLEVR_train_scenes.json").read_text())["scenes"]
    assert own + len(scenes) < h["train_questions"] <= own + 2 * len(scenes)
    tables = load_script("scripts/results_tables.py")
    block = tables.probe_block(json.loads(out.read_text()), "results/relations.json")
    assert f"Only relate yesno questions, trained and scored; 2 more drawn per training scene beside the set's, " \
           f"{h['train_questions']} training questions in all. Visual positions start as the token grid's code" in block


@pytest.mark.parametrize("argv", [["--families", "relate_sideways"], ["--extra-per-scene", "3"]])
def test_bad_family_options_are_refused(argv, tmp_path):
    with pytest.raises(SystemExit) as e:
        _probe().main([*argv, "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2


def test_scene_view_reads_the_scene_record_and_points_count_each_family(heldout_data, tmp_path):
    """--modes scene: the objects of the scene record (attributes one-hot, centre coordinates), no picture and
    no channel, so 0 and 20 dB score alike; every point says each family's [correct, asked]."""
    out = tmp_path / "scene.json"
    probe = _probe()
    assert probe.main(["--modes", "scene", "--steps", "2", "--eval-every", "2", "--n-val", "12", "--batch-size", "4",
                       "--data", str(heldout_data), "--out", str(out)]) == 0
    points = json.loads(out.read_text())["points"]
    assert [p["snr_db"] for p in points] == [0.0, 20.0] and points[0]["value"] == points[1]["value"]
    for p in points:
        assert sum(n for _, n in p["by_family"].values()) == 12
        assert sum(c for c, _ in p["by_family"].values()) == round(p["value"] * 12)
        assert set(p["by_family"]) <= set(probe.FAMILIES)
    tables = load_script("scripts/results_tables.py")
    block = tables.probe_block(json.loads(out.read_text()), "results/scene.json")
    family, (right, asked) = next(iter(points[-1]["by_family"].items()))
    assert "*accuracy per question family at 20 dB" in block and "reads no picture and no channel" in block
    assert f"| {family.replace('_', ' ')} | {right / asked:.2f} | {asked} |" in block
    scenes = json.loads((heldout_data / "CLEVR_v1.0/scenes/CLEVR_val_scenes.json").read_text())["scenes"]
    feats = probe.scene_features(str(heldout_data), "val", len(scenes))
    for scene, rows in zip(scenes, feats):
        objs = scene["objects"]
        assert rows[:, -1].tolist() == [1.0] * len(objs) + [0.0] * (len(rows) - len(objs))
        for obj, row in zip(objs, rows):
            named = {probe.SCENE_VALUES[k] for k in range(len(probe.SCENE_VALUES)) if row[k] == 1}
            assert named == {(a, obj[a]) for a in ("size", "color", "shape", "material")}
            assert -1 <= row[-3] <= 1 and -1 <= row[-2] <= 1
        # the coordinates order the objects as the questions' relations do (u to the right, v towards the camera)
        for i in range(len(objs)):
            for j in scene["relationships"]["left"][i]:
                assert rows[j, -3] < rows[i, -3]
            for j in scene["relationships"]["front"][i]:
                assert rows[j, -2] > rows[i, -2]


def test_where_questions_are_trained_and_never_scored(heldout_data, tmp_path):
    """--where-per-scene N: N 'Where is the ...?' questions per training scene, answered with the thirds of the
    picture the described object's centre is in; the reader trains on them and the points score the set's families
    only."""
    probe = _probe()
    assert [probe.where_answer(u, v) for u, v in ((0.1, 0.1), (0.5, 0.5), (0.9, 0.5), (0.2, 0.8))] == [
        "top left", "middle", "right", "bottom left"]
    out = tmp_path / "where.json"
    assert probe.main(["--modes", "scene", "--steps", "2", "--eval-every", "2", "--n-val", "12", "--batch-size", "4",
                       "--where-per-scene", "2", "--data", str(heldout_data), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    questions = json.loads((heldout_data / "CLEVR_v1.0/questions/CLEVR_train_questions.json").read_text())["questions"]
    scenes = json.loads((heldout_data / "CLEVR_v1.0/scenes/CLEVR_train_scenes.json").read_text())["scenes"]
    assert r["header"]["where_per_scene"] == 2
    assert len(questions) < r["header"]["train_questions"] <= len(questions) + 2 * len(scenes)
    assert all(set(p["by_family"]) <= set(probe.FAMILIES) for p in r["points"])
    tables = load_script("scripts/results_tables.py")
    assert "trained on 2 auxiliary \"Where is the ...?\" questions per training scene" in \
        tables.probe_block(r, "results/where.json")
    with pytest.raises(SystemExit):
        probe.main(["--where-per-scene", "-1", "--out", str(tmp_path / "x.json")])


def test_family_counts_name_only_this_generators_families():
    probe = _probe()
    right = torch.tensor([True, False, True, True])
    assert probe.family_counts(right, [0, 0, 9, 42]) == {
        probe.FAMILIES[0]: [1, 2], probe.FAMILIES[9]: [1, 1], "family 42": [1, 1]}
    assert probe.family_counts(right[:1], [-1]) == {"family -1": [1, 1]}


def test_object_slots_read_the_scene_left_to_right_and_are_scored(heldout_data, tmp_path):
    """--objects W: the slots' targets are the scene record's objects ordered by the centre's u, the loss is finite
    and falls to zero only for a perfect reading, and every evaluation point says how well the slots read."""
    probe = _probe()
    scenes = json.loads((heldout_data / "CLEVR_v1.0/scenes/CLEVR_val_scenes.json").read_text())["scenes"]
    t = probe.object_targets(str(heldout_data), "val", len(scenes))
    k = probe._PRESET.objects_max
    assert t["attributes"].shape == (len(scenes), k, 4)
    assert t["present"].shape == t["place"].shape[:2] == (len(scenes), k)
    for i, scene in enumerate(scenes):
        objs = sorted(scene["objects"], key=lambda o: probe.to_image_frac(o["3d_coords"])[0])
        assert t["present"][i].tolist() == [1] * len(objs) + [0] * (k - len(objs))
        for j, obj in enumerate(objs):
            assert [vals[int(t["attributes"][i, j, a])] for a, vals in enumerate(probe.OBJECT_ATTRIBUTES.values())] \
                == [obj[a] for a in probe.OBJECT_ATTRIBUTES]
        assert (t["attributes"][i, len(objs):] == -100).all()
        us = t["place"][i, : len(objs), 0]
        assert (us[1:] > us[:-1]).all() and (us.abs() <= 1).all()  # left to right, in [-1, 1]
        for a in range(len(objs)):  # the record's own relation agrees with the order
            for b in scene["relationships"]["left"][scene["objects"].index(objs[a])]:
                assert objs.index(scene["objects"][b]) < a

    class Perfect(torch.nn.Module):  # slots that output the targets themselves: the loss is ~0
        def objects(self, view):
            big = 50.0
            attributes = [big * torch.nn.functional.one_hot(t["attributes"][..., a].clamp(min=0), len(v)).float()
                          for a, v in enumerate(probe.OBJECT_ATTRIBUTES.values())]
            return attributes, big * torch.nn.functional.one_hot(t["present"], 2).float(), t["place"]
    assert probe.object_loss(Perfect(), None, t) < 1e-6
    out = tmp_path / "objects.json"
    assert probe.main(["--modes", "tokens", "--objects", "1", "--steps", "2", "--eval-every", "2", "--n-val", "12",
                       "--batch-size", "4", "--data", str(heldout_data), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["header"]["objects_weight"] == 1.0
    for p in r["points"]:
        o = p["objects"]
        assert o["scenes"] == min(500, len(scenes)) and 0 <= o["centre_distance"]
        assert all(0 <= o[name] <= 1 for name in ("count", "size", "color", "shape", "material"))
    tables = load_script("scripts/results_tables.py")
    block = tables.probe_block(r, "results/objects.json")
    o = r["points"][-1]["objects"]
    assert f"*the object slots on {o['scenes']} val scenes at 20 dB" in block and "with weight 1," in block
    assert f"| 2 | {o['count']:.2f} | {o['size']:.2f} | {o['color']:.2f} |" in block
    # --read-slots: the questions read the slots' cells too; the model sees them (the answer moves with them)
    out = tmp_path / "read.json"
    assert probe.main(["--modes", "tokens", "--objects", "1", "--read-slots", "--steps", "1", "--eval-every", "1",
                       "--n-val", "8", "--batch-size", "4", "--data", str(heldout_data), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["header"]["read_slots"] is True and "(`--read-slots`)" in tables.probe_block(r, "results/read.json")
    torch.manual_seed(0)
    model = probe.Probe("tokens", 50, 7, 16, objects=4, read_slots=True)
    view, ids, real = torch.randn(2, 32, 16), torch.randint(1, 50, (2, 5)), torch.ones(2, 5, dtype=torch.bool)
    before = model(view, ids, real)
    with torch.no_grad():
        model.queries.copy_(torch.randn_like(model.queries))  # (a constant shift would vanish in the norms)
    assert before.shape == (2, 7) and not torch.allclose(before, model(view, ids, real))
    for argv in (["--modes", "scene", "--objects", "1"], ["--objects", "-1", "--modes", "tokens"],
                 ["--modes", "tokens", "--read-slots"]):
        with pytest.raises(SystemExit):
            probe.main([*argv, "--out", str(tmp_path / "x.json")])
