"""scripts/lr_probe.py: the probe's commands are train all's recipe stopped early, and its files say what the runs'
logs say (a run at the stop step is not trained again)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    return load_script(f"scripts/{name}.py")


@pytest.fixture(scope="module")
def probe():
    return _script("lr_probe")


def test_the_probe_runs_train_alls_recipe_with_the_stop_and_its_own_width_and_rate(probe):
    from unitocom.train.retrain import SPEECH_DATA, plan
    recipe = next(s for s in plan() if s.name == "mllm-sigma-genib-base").args  # the first part
    runs = probe.parse_runs(probe.DEFAULT_RUNS)
    assert [r[0] for r in runs] == ["shipped", "wide-1e-3", "wide-5e-4"]
    args = probe.argparse.Namespace(data=SPEECH_DATA[0], val_every=1000, stop_at=2000, log_every=50,
                                    run_root="runs/lr-probe", threads=1)
    cmd = probe.command(*runs[0], args)
    # every option of the shipped recipe's training (not its head phase, which the probe does not reach)
    for opt in ("--objective", "--task-weights", "--steps", "--batch-size", "--loss-scale"):
        assert cmd[cmd.index(opt) + 1] == recipe[recipe.index(opt) + 1], opt
    assert "--snr-db=-5:25" in cmd and "--snr-db=-5:25" in recipe
    assert cmd[cmd.index("--lr") + 1] == "2e-3" and "--mllm-arch" not in cmd  # the preset's rate and sizes
    wide = probe.command(*runs[1], args)
    assert wide[wide.index("--mllm-arch") + 1] == probe.WIDE and wide[wide.index("--lr") + 1] == "1e-3"
    assert wide[wide.index("--stop-at") + 1] == "2000" and "--threads" not in wide  # train mllm's default, 1
    args.threads = 2
    two = probe.command(*runs[1], args)
    at = two.index("--threads")
    assert two[at + 1] == "2" and two[:at] + two[at + 2:] == wide
    assert probe.sizes(probe.WIDE) == {"layers": 4, "hidden": 256} and probe.sizes("") == {"layers": 4, "hidden": 128}
    with pytest.raises(SystemExit):
        probe.parse_runs("wide=hidden=256")  # no @LR


def _fake_run(d: Path, hidden: int, vqa20: float) -> None:
    from safetensors.torch import save_file
    d.mkdir(parents=True)
    save_file({"model.w": torch.zeros(hidden, 10), "model.b": torch.zeros(hidden), "opt.0.step": torch.zeros(())},
              str(d / "train_state.safetensors"), metadata={"step": "4"})
    rows = [{"step": 2, "task": "vqa", "loss": 2.0}, {"step": 2, "task": "t2i", "loss": 0.5},
            {"step": 2, "time_s": 10.0, "vqa_loss": 1.0, "t2i_loss": 0.2, "steps_per_s": 0.5, "val_vqa_acc_20db": 0.25,
             "val_vqa_acc_0db": 0.25, "val_vqa_n": 256, "val_t2i_diffusion": 0.2, "val_asr_wer_20db": 0.9},
            {"step": 4, "task": "vqa", "loss": 1.0},
            {"step": 4, "time_s": 20.0, "vqa_loss": 0.8, "steps_per_s": 0.5, "val_vqa_acc_20db": vqa20,
             "val_vqa_acc_0db": 0.5, "val_vqa_n": 256, "val_t2i_diffusion": 0.1, "val_asr_wer_20db": 0.3}]
    (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_runs_at_the_stop_step_are_read_not_retrained_and_the_table_shows_them(probe, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"checksum": "abc"}))
    _fake_run(tmp_path / "runs" / "narrow", 128, 0.5)
    _fake_run(tmp_path / "runs" / "wide", 256, 0.625)
    monkeypatch.setattr(probe, "launch", lambda *a, **k: pytest.fail("a finished run was trained again"))
    out = tmp_path / "results"
    assert probe.main(["--runs", f"narrow=@2e-3;wide={probe.WIDE}@1e-3", "--stop-at", "4", "--data", str(data),
                       "--run-root", str(tmp_path / "runs"), "--out", str(out)]) == 0
    fig = json.loads((out / "lr-probe.json").read_text())
    assert (out / "lr-probe.png").stat().st_size > 0
    h = fig["header"]
    assert h["runs"]["wide"]["parameters"] == 256 * 11 and h["runs"]["narrow"]["hidden"] == 128
    assert h["data_checksum"] == "abc" and h["stop_at"] == 4
    last = [p for p in fig["points"] if p["run"] == "wide" and p["step"] == 4][0]
    assert last["vqa_20db"]["value"] == 0.625 and last["vqa_20db"]["ci_low"] < 0.625 < last["vqa_20db"]["ci_high"]
    assert last["asr_wer_20db"] == 0.3 and last["train_loss"] == {"vqa": 0.8}
    assert len(fig["points"]) == 4  # two validations per run; the per-step loss records are the plot's
    tables = _script("results_tables")
    text = tables.lr_probe_block(fig, "results/lr-probe.json")
    row = [line for line in text.splitlines() if line.startswith("| wide | 4 x 256") and "| 4 |" in line]
    assert len(row) == 1 and "0.62 [" in row[0] and "| 0.300 |" in row[0]
    assert "first 4 of the recipe's 10000 steps" in text
    whole = {**fig, "header": {**h, "stop_at": 10000}}  # a run taken to the recipe's end is not a probe's beginning
    assert "the recipe's 10000 steps, validated on the way" in tables.lr_probe_block(whole, "r.json")
    # a probe at an earlier step reads the same runs up to there only, into files of its own name
    assert probe.main(["--runs", "narrow=@2e-3", "--stop-at", "2", "--data", str(data), "--name", "early",
                       "--run-root", str(tmp_path / "runs"), "--out", str(out)]) == 0
    early = json.loads((out / "early.json").read_text())
    assert [p["step"] for p in early["points"]] == [2] and (out / "lr-probe.json").is_file()
