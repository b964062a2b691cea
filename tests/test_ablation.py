"""`unitocom ablate` (issue 12): differently trained MLLMs scored on the same questions and channel draws."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from unitocom import ablation
from unitocom.errors import UserError
from unitocom.mllm.checkpoint import mllm_config
from unitocom.schemes.learned import checkpoint_dir

SHIPPED = checkpoint_dir() / "mllm-sigma-genib.safetensors"


def _args(tmp_path, data, *mllms, **kw):
    ns = dict(mllm=[ablation.named_mllm(m) for m in mllms], reference=None, snr_db=[20.0], channel="rayleigh",
              task="vqa", n_vqa=12, n_asr=6, n_t2i=4, data=str(data), split="test", seed=0, preset="tiny",
              device="cpu", threads=1, workers=4,
              out=str(tmp_path), name="ablation", resume=False, quiet=True)
    ns.update(kw)
    return argparse.Namespace(**ns)


def test_named_mllm_reads_a_checkpoint_or_a_run_dir(tmp_path):
    assert ablation.named_mllm(" a = x/m.safetensors") == ("a", Path("x/m.safetensors"))
    assert ablation.named_mllm(f"b={tmp_path}") == ("b", tmp_path / "mllm.safetensors")
    for bad in ("no-equals", "=path", "name="):
        with pytest.raises(argparse.ArgumentTypeError):
            ablation.named_mllm(bad)


def test_task_steps_are_the_tasks_share_of_the_cycle():
    assert ablation.task_steps({"steps": 8000, "task_weights": [["vqa", 2], ["t2i", 1], ["asr", 1]]}) == 4000
    assert ablation.task_steps({"steps": 4000, "task_weights": [["vqa", 1]]}) == 4000
    assert ablation.task_steps({"steps": 4000}) is None
    assert ablation.task_steps({"steps": 8000, "task_weights": [["vqa", 2], ["t2i", 1], ["asr", 1]]}, "t2i") == 2000


def test_paired_differences_are_per_question_and_say_when_they_separate():
    def p(name, bits):
        return {"mllm": name, "snr_db": 20.0, "channel": "rayleigh", "correct": bits}
    ref, same, better = p("ref", "0101010101" * 10), p("same", "0101010101" * 10), p("better", "1111111101" * 10)
    out = {d["mllm"]: d for d in ablation.paired([ref, same, better], ["ref"])}
    assert set(out) == {"same", "better"}
    both = {(d["mllm"], d["reference"]) for d in ablation.paired([ref, same, better], ["ref", "same"])}
    assert both == {("same", "ref"), ("better", "ref"), ("ref", "same"), ("better", "same")}
    only = ablation.paired([ref, same, better], ["ref", "same"], compared={"same": ["better"]})
    assert {(d["mllm"], d["reference"]) for d in only} == {("same", "ref"), ("better", "ref"), ("better", "same")}
    assert out["same"]["difference"] == 0 and not out["same"]["separates"]
    assert out["better"]["difference"] == pytest.approx(0.4) and out["better"]["separates"]
    assert out["better"]["ci_low"] > 0


def test_an_asr_point_counts_word_errors_per_sentence_kind():
    refs = ["ONE TWO THREE", "THE RED CIRCLE", "WAIT FOR THE NEXT FRAME"]
    hyps = ["one two two", "the red circle", "wait for the frame"]
    p = ablation.asr_point("m", 32, 20.0, "rayleigh", refs, hyps, ["7", "7", "8"])
    assert p["edits"] == [1, 0, 1] and p["words"] == [3, 3, 5] and p["value"] == pytest.approx(2 / 11)
    assert p["ci_low"] <= p["value"] <= p["ci_high"] and p["transcripts"] == hyps
    assert {k: (v["n"], v["wer"]) for k, v in p["by_kind"].items()} == {
        "digits": (1, pytest.approx(1 / 3)), "object": (1, 0.0), "free": (1, pytest.approx(1 / 5))}
    assert {k: (v["n"], v["wer"]) for k, v in p["by_speaker"].items()} == {"7": (2, pytest.approx(1 / 6)),
                                                                           "8": (1, pytest.approx(1 / 5))}


def test_paired_wer_differences_resample_utterances():
    def p(name, edits):
        return {"mllm": name, "task": "asr", "snr_db": 20.0, "channel": "rayleigh", "n": len(edits),
                "edits": edits, "words": [4] * len(edits)}
    ref, fewer = p("ref", [2, 1, 2, 0, 3] * 20), p("fewer", [0, 0, 1, 0, 0] * 20)
    out = ablation.paired([ref, fewer, p("same", ref["edits"])], ["ref"])
    d = {x["mllm"]: x for x in out}
    assert d["fewer"]["difference"] == pytest.approx((1 - 8) / 20) and d["fewer"]["separates"]
    assert d["fewer"]["ci_high"] < 0
    assert d["same"]["difference"] == 0 and not d["same"]["separates"]


@pytest.mark.skipif(not SHIPPED.exists(), reason="needs the shipped MLLM")
def test_ablate_asr_scores_each_mllm_on_the_same_utterances(tmp_path, heldout_data):
    """--task asr: the same MLLM under two names transcribes the same clips over the same channel draws alike;
    its file keeps the transcripts, the README block is the ASR one, and --resume keeps ASR points only."""
    args = _args(tmp_path, heldout_data, f"a={SHIPPED}", f"b={SHIPPED}", task="asr", name="asr")
    res = ablation.run(args, ["ablate"])
    a, b = res["points"]
    assert a["task"] == "asr" and a["n"] == b["n"] == 6 and a["transcripts"] == b["transcripts"]
    assert sum(k["n"] for k in a["by_kind"].values()) == 6 and 0 <= a["value"]
    assert res["paired"][0]["difference"] == 0.0 and not res["paired"][0]["separates"]
    doc = json.loads((tmp_path / "asr.json").read_text())
    assert doc["header"]["task"] == "asr"
    text = ablation.table(doc, "results/asr.json")
    assert "word error rate per sentence kind" in text and "| b - a | +0.000" in text
    # the training speech the MLLM's own command names (the shipped one: data/tiny-speech96)
    assert f"`{ablation._training_data(doc['header']['mllms']['a'])}`" in text and "`data/tiny" in text
    assert "per test speaker" in text and sum(s["n"] for s in a["by_speaker"].values()) == 6
    again = ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", task="asr", name="asr", resume=True),
                         ["ablate"])
    assert again["points"] == [a]
    vqa = ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", name="asr", resume=True), ["ablate"])
    assert vqa["points"][0]["task"] == "vqa"  # a VQA run does not take the ASR file's points as its own


@pytest.mark.skipif(not SHIPPED.exists(), reason="needs the shipped MLLM")
def test_ablate_scores_each_mllm_on_the_same_questions_and_writes_the_files(tmp_path, heldout_data):
    """The shipped MLLM under two names: the same requests (questions, channel seeds) give the same answers, so
    the paired difference is exactly 0; the files, the README table and --resume follow."""
    args = _args(tmp_path, heldout_data, f"a={SHIPPED}", f"b={SHIPPED}")
    res = ablation.run(args, ["ablate"])
    a, b = res["points"]
    assert a["n"] == b["n"] == 12 and a["correct"] == b["correct"] and 0 <= a["chance"] <= 1
    assert sum(f["n"] for f in a["by_family"].values()) == 12
    assert res["paired"] == [dict(res["paired"][0], difference=0.0)] and not res["paired"][0]["separates"]
    doc = json.loads((tmp_path / "ablation.json").read_text())
    assert doc["header"]["mllms"]["a"]["sha256"] == doc["header"]["mllms"]["b"]["sha256"]
    # the sizes the header records are the checkpoint's own (its header), whatever the preset's width
    hidden = mllm_config(SHIPPED).hidden
    assert doc["header"]["mllms"]["a"]["sizes"]["hidden"] == hidden and doc["header"]["links_sha256"]
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = ablation.table(doc, "results/ablation.json")
    assert f"| a | 4 x {hidden}" in text and "| b |" in text and "| b - a | +0.000" in text
    again = ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", resume=True), ["ablate"])
    assert again["points"] == [a]  # kept, not measured again (same file, same questions)


@pytest.mark.skipif(not SHIPPED.exists(), reason="needs the shipped MLLM")
def test_resume_carries_an_mllm_whose_run_dir_is_gone(tmp_path, heldout_data):
    """Run dirs do not outlive a checkout: --resume keeps a gone MLLM's points (and its recorded sha256) from the
    results file, and refuses when a point it would have to measure again is not there."""
    import shutil
    run_dir = tmp_path / "runs" / "gone"
    run_dir.mkdir(parents=True)
    shutil.copy(SHIPPED, run_dir / "mllm.safetensors")
    first = ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", f"g={run_dir}"), ["ablate"])
    shutil.rmtree(run_dir)
    with pytest.raises(UserError, match="no MLLM checkpoint"):
        ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", f"g={run_dir}"), ["ablate"])
    again = ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", f"g={run_dir}", resume=True), ["ablate"])
    assert again["points"] == first["points"] and list(again["header"]["carried"]) == ["g"]
    assert again["header"]["carried"]["g"]["date"] == first["header"]["date"]
    doc = json.loads((tmp_path / "ablation.json").read_text())
    assert f"g: kept by `--resume` from the run of commit {first['header']['git_commit'][:10]}" in \
        ablation.table(doc, "results/ablation.json")
    assert again["header"]["mllms"]["g"]["sha256"] == first["header"]["mllms"]["g"]["sha256"]
    with pytest.raises(UserError, match="holds no point of g at 0 dB"):
        ablation.run(_args(tmp_path, heldout_data, f"g={run_dir}", snr_db=[0.0, 20.0], resume=True), ["ablate"])


VAE = checkpoint_dir() / "mllm-vae.safetensors"


@pytest.mark.skipif(not (SHIPPED.exists() and VAE.exists()), reason="needs the shipped MLLMs")
def test_an_mllm_of_vae_tokens_is_sent_with_the_vae_link(tmp_path, heldout_data):
    """Each MLLM reads its own objective's link: the VAE MLLM's questions go out with scheme vae, so its answers
    are those the pipeline gives for that scheme, and its links are in the header."""
    from unitocom.fig3 import eval_config, measure_vqa
    from unitocom.task_eval import vqa_items
    args = _args(tmp_path, heldout_data, f"a={SHIPPED}", f"v={VAE}")
    res = ablation.run(args, ["ablate"])
    assert res["header"]["schemes"] == {"a": "unitocom", "v": "vae"}
    assert {"image-vae-s32.safetensors", "text-vae.safetensors"} <= set(res["header"]["links_sha256"])
    items, _ = vqa_items(Path(heldout_data), "test", 12)
    v = next(p for p in res["points"] if p["mllm"] == "v")
    direct = measure_vqa(eval_config(args, 32, VAE), items, Path(heldout_data), "test", 20.0, "rayleigh", 0, "",
                         True, workers=4, scheme="vae")
    assert v["correct"] == "".join("1" if c else "0" for c in direct)


def test_ablate_refuses_unknown_names_and_missing_files(tmp_path, heldout_data):
    with pytest.raises(UserError, match="no MLLM checkpoint"):
        ablation.run(_args(tmp_path, heldout_data, f"a={tmp_path}/none.safetensors"), ["ablate"])
    with pytest.raises(UserError, match="given twice"):
        ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", f"a={SHIPPED}"), ["ablate"])
    for bad in ("z", "a:z"):
        with pytest.raises(UserError, match="--reference"):
            ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", reference=bad), ["ablate"])


def test_a_scaled_loss_shows_in_the_recipe():
    r = {"sizes": {"layers": 4, "hidden": 128}, "parameters": 2.1e6, "task_weights": [["vqa", 2], ["t2i", 1]],
         "loss_scale": [["t2i", 8.0]], "steps": 2000, "batch": 64}
    assert "| vqa 2, t2i 1, t2i loss x8 |" in ablation._recipe(r)


def test_object_slots_show_in_the_recipe_and_their_head_is_not_counted_as_the_served_model(tmp_path):
    r = {"sizes": {"layers": 4, "hidden": 128}, "parameters": 2.1e6, "task_weights": [["vqa", 2], ["t2i", 1]],
         "object_slots": 0.5, "steps": 2000, "batch": 64}
    assert "| vqa 2, t2i 1, object slots x0.5 |" in ablation._recipe(r)
    assert "object slots" not in ablation._recipe(dict(r, object_slots=0))
    enc = ablation._recipe(dict(r, sizes={"layers": 4, "hidden": 128, "image_encoder": 2}))
    assert enc.startswith("4 x 128, image encoder (2 layers), 2.1 M |")
    tokens = ablation._recipe(dict(r, sizes={"layers": 4, "hidden": 128, "image_encoder": 2, "object_tokens": True}))
    assert tokens.startswith("4 x 128, image encoder (2 layers), object tokens, 2.1 M |")
    prog = ablation._recipe(dict(r, sizes={"layers": 4, "hidden": 128, "image_encoder": 2, "answer_by_program": True}))
    assert prog.startswith("4 x 128, image encoder (2 layers), answers by program, 2.1 M |")
    from unitocom.mllm.checkpoint import save_mllm
    from unitocom.mllm.data import Standardizer
    from unitocom.mllm.model import MLLM, MLLMConfig
    from unitocom.mllm.slots import SLOTS
    for k in (0, SLOTS):
        m = MLLM(MLLMConfig(vocab=40, hidden=32, layers=1, heads=2, intermediate=64, max_positions=64, token_dim=4,
                            head_width=32, head_depth=1, object_slots=k))
        total = sum(p.numel() for p in m.parameters())
        path = tmp_path / f"m{k}.safetensors"
        save_mllm(m, Standardizer(torch.zeros(4), torch.ones(4)), path,
                  {"parameters": total, "train_config": {"object_slots": 0.5 if k else 0.0}})
        got = ablation.describe(path)
        head = sum(p.numel() for p in m.slots.parameters()) if k else 0
        assert got["slot_head_parameters"] == head and got["parameters"] == total - head
        assert got["object_slots"] == (0.5 if k else 0)
    # with object tokens the base station runs the slot head: it is part of the served model
    m = MLLM(MLLMConfig(vocab=40, hidden=32, layers=1, heads=2, intermediate=64, max_positions=64, token_dim=4,
                        head_width=32, head_depth=1, object_slots=SLOTS, image_encoder=1, object_tokens=True))
    total = sum(p.numel() for p in m.parameters())
    save_mllm(m, Standardizer(torch.zeros(4), torch.ones(4)), tmp_path / "tok.safetensors",
              {"parameters": total, "train_config": {"object_slots": 1.0}})
    got = ablation.describe(tmp_path / "tok.safetensors")
    assert got["slot_head_parameters"] == 0 and got["parameters"] == total


def test_a_warm_started_run_says_what_it_started_from():
    r = {"sizes": {"layers": 4, "hidden": 128}, "parameters": 2.1e6, "task_weights": [["vqa", 2], ["asr", 1]],
         "steps": 2000, "batch": 64,
         "command": "unitocom train mllm --init checkpoints/mllm-sigma-genib.safetensors --data=data/x --steps 2000"}
    assert "2000 x 64 after mllm-sigma-genib.safetensors (1333 VQA)" in ablation._recipe(r)
    assert ablation._training_data(r) == "data/x"
    assert ablation._training_data({"command": "unitocom train mllm"}) == "data/tiny"
    assert " after " not in ablation._recipe(dict(r, command="unitocom train mllm --steps 2000"))


def test_a_t2i_point_keeps_each_captions_recall_and_groups_by_pairs_named():
    caps = ["There is a large red square.", "There is a small blue circle and a large green square.",
            "There is a red circle and a blue circle."]
    p = ablation.t2i_point("a", 32, 20.0, "rayleigh", caps, [1.0, 0.5, 0.0])
    assert p["task"] == "t2i" and p["n"] == 3 and p["value"] == 0.5 and p["recalls"] == [1.0, 0.5, 0.0]
    assert p["by_pairs"] == {"1": {"n": 1, "recall": 1.0}, "2": {"n": 2, "recall": 0.25}}
    q = ablation.t2i_point("b", 32, 20.0, "rayleigh", caps, [0.0, 0.0, 0.0])
    (d,) = ablation.paired([p, q], ["a"])
    assert d["mllm"] == "b" and d["difference"] == -0.5 and d["n"] == 3  # per caption: b - a


@pytest.mark.skipif(not SHIPPED.exists(), reason="needs the shipped MLLM")
def test_ablate_t2i_draws_each_mllms_pictures_for_the_same_captions(tmp_path, heldout_data):
    """--task t2i: the same MLLM under two names draws the same pictures for the same captions and channel draws
    (paired difference exactly 0); the header carries the recall's scale and the README block is the T2I one."""
    res = ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", f"b={SHIPPED}", task="t2i", name="t2i"),
                       ["ablate"])
    a, b = res["points"]
    assert a["task"] == "t2i" and a["n"] == b["n"] == 4 and a["recalls"] == b["recalls"]
    assert all(0 <= r <= 1 for r in a["recalls"]) and sum(g["n"] for g in a["by_pairs"].values()) == 4
    assert res["paired"][0]["difference"] == 0.0 and not res["paired"][0]["separates"]
    doc = json.loads((tmp_path / "t2i.json").read_text())
    ref = doc["header"]["t2i_pair_recall_reference"]
    assert ref["own"]["value"] > ref["other"]["value"]  # the checker tells a caption's scene from another's
    text = ablation.table(doc, "results/t2i.json")
    assert "(of them T2I)" in text and "8000 steps" in text and "the caption's own scene" in text
    assert "| b - a | +0.000" in text and "captions naming" in text
    assert (tmp_path / "t2i.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not SHIPPED.exists(), reason="needs the shipped MLLM")
def test_a_replaced_mllm_keeps_its_points_under_a_new_name_by_its_hash(tmp_path, heldout_data):
    """When the shipped MLLM is replaced, `previous=sha256:PREFIX` carries the old one's points (and its recorded
    description) out of the results file under a new name, while `shipped=` scores the file now at that path."""
    import shutil
    ck = tmp_path / "ck"
    ck.mkdir()
    shutil.copy(SHIPPED, ck / "mllm.safetensors")
    first = ablation.run(_args(tmp_path, heldout_data, f"shipped={ck}"), ["ablate"])
    old_sha = first["header"]["mllms"]["shipped"]["sha256"]
    first_json = (tmp_path / "ablation.json").read_bytes()
    with pytest.raises(argparse.ArgumentTypeError, match="8 hex digits"):
        ablation.named_mllm("p=sha256:12ab")
    with pytest.raises(UserError, match="no MLLM of that hash"):
        ablation.run(_args(tmp_path, heldout_data, f"shipped={ck}", "previous=sha256:00000000", resume=True),
                     ["ablate"])
    # the successor: the same weights with one more metadata byte, so another file (and hash) at the same path
    from safetensors.torch import load_file, save_file
    from unitocom.train.scaffold import state_meta
    save_file(load_file(ck / "mllm.safetensors"), ck / "mllm.safetensors",
              metadata=dict(state_meta(SHIPPED), successor="1"))
    again = ablation.run(_args(tmp_path, heldout_data, f"shipped={ck}", f"previous=sha256:{old_sha[:12]}",
                               reference="previous", resume=True), ["ablate"])
    prev, new = again["points"][1], again["points"][0]
    assert prev["mllm"] == "previous" and dict(prev, mllm="shipped") == first["points"][0]
    assert new["mllm"] == "shipped" and new["correct"] == prev["correct"]  # measured again: the same weights
    h = again["header"]
    assert h["mllms"]["previous"]["sha256"] == old_sha != h["mllms"]["shipped"]["sha256"]
    assert h["carried"]["previous"]["measured_as"] == "shipped"
    assert h["carried"]["previous"]["date"] == first["header"]["date"]
    doc = json.loads((tmp_path / "ablation.json").read_text())
    assert "previous (measured as shipped): kept by `--resume`" in ablation.table(doc, "results/ablation.json")
    # and the next rerun finds it under its own name
    third = ablation.run(_args(tmp_path, heldout_data, f"shipped={ck}", f"previous=sha256:{old_sha[:12]}",
                               reference="previous", resume=True), ["ablate"])
    assert third["points"] == again["points"] and third["header"]["carried"]["previous"]["measured_as"] == "shipped"
    # the replaced file itself under the new name (taken back out of git, say) keeps the same points, and says so
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "ablation.json").write_bytes(first_json)
    shutil.copy(SHIPPED, tmp_path / "old.safetensors")
    fourth = ablation.run(_args(fresh, heldout_data, f"shipped={ck}", f"previous={tmp_path / 'old.safetensors'}",
                                reference="previous", resume=True), ["ablate"])
    assert fourth["points"][1] == prev and fourth["header"]["renamed"]["previous"]["measured_as"] == "shipped"
    assert fourth["header"]["renamed"]["previous"]["date"] == first["header"]["date"]
    doc = json.loads((fresh / "ablation.json").read_text())
    assert "previous: the file measured as shipped by the run of commit" in ablation.table(doc, "r.json")
    fifth = ablation.run(_args(fresh, heldout_data, f"shipped={ck}", f"previous={tmp_path / 'old.safetensors'}",
                               reference="previous", resume=True), ["ablate"])
    assert fifth["header"]["renamed"] == fourth["header"]["renamed"] and fifth["points"] == fourth["points"]
