"""`unitocom ablate` (issue 12): differently trained MLLMs scored on the same questions and channel draws."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from unitocom import ablation
from unitocom.errors import UserError
from unitocom.schemes.learned import checkpoint_dir

SHIPPED = checkpoint_dir() / "mllm-sigma-genib.safetensors"


def _args(tmp_path, data, *mllms, **kw):
    ns = dict(mllm=[ablation.named_mllm(m) for m in mllms], reference=None, snr_db=[20.0], channel="rayleigh",
              n_vqa=12, data=str(data), split="test", seed=0, preset="tiny", device="cpu", threads=1, workers=4,
              out=str(tmp_path), name="ablation", resume=False, quiet=True)
    ns.update(kw)
    return argparse.Namespace(**ns)


def test_named_mllm_reads_a_checkpoint_or_a_run_dir(tmp_path):
    assert ablation.named_mllm(" a = x/m.safetensors") == ("a", Path("x/m.safetensors"))
    assert ablation.named_mllm(f"b={tmp_path}") == ("b", tmp_path / "mllm.safetensors")
    for bad in ("no-equals", "=path", "name="):
        with pytest.raises(argparse.ArgumentTypeError):
            ablation.named_mllm(bad)


def test_vqa_steps_are_the_vqa_share_of_the_cycle():
    assert ablation.vqa_steps({"steps": 8000, "task_weights": [["vqa", 2], ["t2i", 1], ["asr", 1]]}) == 4000
    assert ablation.vqa_steps({"steps": 4000, "task_weights": [["vqa", 1]]}) == 4000
    assert ablation.vqa_steps({"steps": 4000}) is None


def test_paired_differences_are_per_question_and_say_when_they_separate():
    def p(name, bits):
        return {"mllm": name, "snr_db": 20.0, "channel": "rayleigh", "correct": bits}
    ref, same, better = p("ref", "0101010101" * 10), p("same", "0101010101" * 10), p("better", "1111111101" * 10)
    out = {d["mllm"]: d for d in ablation.paired([ref, same, better], ["ref"])}
    assert set(out) == {"same", "better"}
    both = {(d["mllm"], d["reference"]) for d in ablation.paired([ref, same, better], ["ref", "same"])}
    assert both == {("same", "ref"), ("better", "ref"), ("ref", "same"), ("better", "same")}
    assert out["same"]["difference"] == 0 and not out["same"]["separates"]
    assert out["better"]["difference"] == pytest.approx(0.4) and out["better"]["separates"]
    assert out["better"]["ci_low"] > 0


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
    assert doc["header"]["mllms"]["a"]["sizes"]["hidden"] == 128 and doc["header"]["links_sha256"]
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = ablation.table(doc, "results/ablation.json")
    assert "| a | 4 x 128" in text and "| b |" in text and "| b - a | +0.000" in text
    again = ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", resume=True), ["ablate"])
    assert again["points"] == [a]  # kept, not measured again (same file, same questions)


def test_ablate_refuses_unknown_names_and_missing_files(tmp_path, heldout_data):
    with pytest.raises(UserError, match="no MLLM checkpoint"):
        ablation.run(_args(tmp_path, heldout_data, f"a={tmp_path}/none.safetensors"), ["ablate"])
    with pytest.raises(UserError, match="given twice"):
        ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", f"a={SHIPPED}"), ["ablate"])
    with pytest.raises(UserError, match="--reference"):
        ablation.run(_args(tmp_path, heldout_data, f"a={SHIPPED}", reference="z"), ["ablate"])
