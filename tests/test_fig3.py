"""Fig. 3 at the task level (issue 14): the image-token-count override (sN tokenizer, sN MLLM), the fig3 files on
synthetic numbers, and (slow) `unitocom fig3` end to end in miniature."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import load_script, needs
from unitocom import config, fig3
from unitocom.messages import Modality
from unitocom.options import Scheme
from unitocom.train.provenance import file_sha256

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tiny"
CKPT = ROOT / "checkpoints"


# ---- the config override -------------------------------------------------------------------------------------

def test_image_tokens_override_picks_the_sN_tokenizer_and_leaves_the_default_alone():
    from unitocom.mllm.checkpoint import default_links
    from unitocom.schemes.learned import checkpoint_name
    base = config.load("tiny")
    assert base.preset is config.PRESETS["tiny"] and base.mllm_path is None
    assert config.load("tiny", image_tokens=32).preset is config.PRESETS["tiny"]
    for n in (16, 64, 128):
        cfg = config.load("tiny", image_tokens=n)
        assert cfg.preset.image_tokens == n and cfg.preset.name == "tiny"
        assert checkpoint_name(Scheme.UNITOCOM, Modality.IMAGE, cfg) == f"image-sigma-genib-s{n}"
        assert checkpoint_name(Scheme.VAE, Modality.IMAGE, cfg) == f"image-vae-s{n}"
        assert checkpoint_name(Scheme.UNITOCOM, Modality.AUDIO, cfg) == "audio-sigma-genib-s32"  # audio untouched
        assert Path(default_links("tiny", "sigma-genib", n)["image"]).name == f"image-sigma-genib-s{n}.safetensors"
    assert checkpoint_name(Scheme.UNITOCOM, Modality.IMAGE, base) == "image-sigma-genib-s32"
    assert config.PRESETS["tiny"].image_tokens == 32  # the preset itself is never changed
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="image_tokens"):
            config.load("tiny", image_tokens=bad)


def test_mllm_path_follows_the_config():
    from unitocom.mllm.checkpoint import mllm_path, mllm_path_for
    from unitocom.schemes.learned import checkpoint_dir
    d = checkpoint_dir()
    assert mllm_path_for(config.load("tiny")) == mllm_path("sigma-genib") == d / "mllm-sigma-genib.safetensors"
    assert mllm_path_for(config.load("tiny"), "vae") == d / "mllm-vae.safetensors"
    assert mllm_path_for(config.load("tiny", image_tokens=32)) == d / "mllm-sigma-genib.safetensors"
    assert mllm_path_for(config.load("tiny", image_tokens=16)) == d / "mllm-sigma-genib-s16.safetensors"
    assert mllm_path("vae", 128) == d / "mllm-vae-s128.safetensors"
    cfg = config.load("tiny", image_tokens=64, mllm_path="runs/fig3/s64/mllm.safetensors")
    assert mllm_path_for(cfg) == Path("runs/fig3/s64/mllm.safetensors")


def test_the_base_station_says_which_mllm_is_missing(tmp_path, monkeypatch):
    from unitocom.stages import mllm as stage
    from unitocom.stages.request import RequestError
    monkeypatch.setenv("UNITOCOM_CHECKPOINTS", str(tmp_path))
    monkeypatch.setattr(stage, "_cache", {})
    with pytest.raises(RequestError) as e:  # the default config: today's message, word for word
        stage.assistant(Scheme.UNITOCOM, config.load("tiny"))
    assert e.value.code == "failed_precondition"
    assert e.value.reason == (f"the base-station MLLM mllm-sigma-genib.safetensors is not installed "
                              f"({tmp_path / 'mllm-sigma-genib.safetensors'} is missing; train it with "
                              "`unitocom train mllm`)")
    with pytest.raises(RequestError) as e:
        stage.assistant(Scheme.UNITOCOM, config.load("tiny", image_tokens=16))
    assert "mllm-sigma-genib-s16.safetensors is not installed" in e.value.reason
    assert "`unitocom train mllm --objective sigma-genib --image-tokens 16`" in e.value.reason
    with pytest.raises(RequestError) as e:
        stage.assistant(Scheme.UNITOCOM, config.load("tiny", mllm_path=str(tmp_path / "run" / "mllm.safetensors")))
    assert str(tmp_path / "run" / "mllm.safetensors") in e.value.reason and "--no-install" in e.value.reason


def test_train_mllm_image_tokens_names_the_run_and_the_installed_file(tmp_path, monkeypatch):
    """`unitocom train mllm --image-tokens N`: the train() call, the default run dir, the installed name."""
    import unitocom.mllm.train as mt
    from unitocom import cli
    calls, threads = [], []

    def fake_train(data, out, preset, objective, tc, command, image_tokens, stop_at=None):
        threads.append(tc.threads)
        calls.append({"out": out, "image_tokens": image_tokens, "steps": tc.steps, "stop_at": stop_at})
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "mllm.safetensors").write_bytes(b"weights")
        return {} if stop_at else {"validation": {}, "image_tokens": image_tokens or 32}  # --stop-at: no checkpoint

    monkeypatch.setattr(mt, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNITOCOM_CHECKPOINTS", str(tmp_path / "ck"))
    (tmp_path / "ck").mkdir()
    data = tmp_path / "data"
    (data / "CLEVR_v1.0").mkdir(parents=True)
    monkeypatch.setattr("unitocom.data.layouts.require_data", lambda d: Path(d))
    assert cli.main(["train", "mllm", "--data", str(data), "--steps", "3", "--image-tokens", "16", "--no-install"]) == 0
    assert calls[-1] == {"out": "runs/mllm-sigma-genib-s16", "image_tokens": 16, "steps": 3, "stop_at": None}
    assert not list((tmp_path / "ck").iterdir())
    # a run stopped early installs nothing, even without --no-install
    assert cli.main(["train", "mllm", "--data", str(data), "--steps", "3", "--stop-at", "2", "--image-tokens", "64"]) == 0
    assert calls[-1]["stop_at"] == 2 and not list((tmp_path / "ck").iterdir())
    assert cli.main(["train", "mllm", "--data", str(data), "--steps", "3", "--image-tokens", "64"]) == 0
    assert (tmp_path / "ck" / "mllm-sigma-genib-s64.safetensors").read_bytes() == b"weights"
    assert cli.main(["train", "mllm", "--data", str(data), "--steps", "3", "--image-tokens", "32",
                     "--run-dir", "r32"]) == 0
    assert calls[-1]["image_tokens"] is None and calls[-1]["out"] == "r32"  # the preset's own: today's names
    assert (tmp_path / "ck" / "mllm-sigma-genib.safetensors").exists()
    # --threads reaches the run's config (1 unless asked: the tiny width spins with more)
    assert threads[-1] == 1
    assert cli.main(["train", "mllm", "--data", str(data), "--steps", "3", "--threads", "2", "--no-install"]) == 0
    assert threads[-1] == 2
    n = len(calls)
    assert cli.main(["train", "mllm", "--data", str(data), "--steps", "3", "--threads", "0"]) == 2
    assert len(calls) == n  # refused before training


# ---- the files, on synthetic numbers ------------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(0, 6), (1, 6), (3, 6), (6, 6), (137, 500), (499, 500)])
def test_wilson_interval_contains_the_accuracy(k, n):
    p = fig3.accuracy_point(32, 10.0, "rayleigh", [1.0] * k + [0.0] * (n - k))
    assert p["n"] == n and p["value"] == pytest.approx(k / n)
    assert 0.0 <= p["ci_low"] <= p["value"] <= p["ci_high"] <= 1.0
    assert p["ci_low"] < p["ci_high"] and len(p["correct"]) == n


def test_parse_tokens():
    assert fig3.parse_tokens("128,16, 32,64,32") == [16, 32, 64, 128]
    for bad in ("", "a,b", "0,16", "-16"):
        with pytest.raises(ValueError, match="--tokens"):
            fig3.parse_tokens(bad)


def _synthetic(acc: dict[int, list[float]], snrs=(0.0, 10.0, 20.0), n=200):
    points = [fig3.accuracy_point(t, s, "rayleigh", [1.0] * round(a * n) + [0.0] * (n - round(a * n)))
              for t, accs in acc.items() for s, a in zip(snrs, accs)]
    curves = []
    for t, accs in acc.items():
        for i, step in enumerate((100, 200, 300, 400)):
            v = accs[-1] * (i + 1) / 4 if t != 32 else accs[-1] * min(1.0, (i + 2) / 4)  # 32 gets there first
            curves.append({"tokens": t, "step": step, "metric": "val_vqa_acc_20db", "value": v, "n": 64,
                           "ci_low": max(0.0, v - 0.1), "ci_high": min(1.0, v + 0.1)})
    return points, curves


def test_fig3_files_on_synthetic_numbers(tmp_path):
    points, curves = _synthetic({16: [0.30, 0.40, 0.45], 32: [0.40, 0.60, 0.70], 64: [0.35, 0.55, 0.65],
                                 128: [0.20, 0.45, 0.60]})
    conv = fig3.convergence(curves)
    assert conv["32"]["step_to_90pct_of_best"] == 300 and conv["16"]["step_to_90pct_of_best"] == 400
    v = fig3.verdict(points, conv)
    assert v["reference_best"] is True and v["best_tokens"] == 32
    assert v["statement"].startswith("32 image tokens come out best") and "fastest: 32" in v["statement"]
    header = {"format": fig3.FORMAT, "command": "unitocom fig3 --tokens 16,32,64,128", "git_commit": "abc",
              "git_dirty": False, "date": "2026-12-02T12:00:00+00:00",
              "checkpoints_sha256": {"image-sigma-genib-s16.safetensors": "0" * 64}}
    fig3.write_json(tmp_path / "fig3.json", header, points, curves, {**v, "convergence": conv})
    fig3.write_csv(tmp_path / "fig3.csv", points, curves)
    fig3.plot(tmp_path / "fig3.png", points, curves)
    doc = json.loads((tmp_path / "fig3.json").read_text())
    assert set(doc) == {"header", "points", "curves", "verdict"} and doc["header"] == header
    assert len(doc["points"]) == 12 and len(doc["curves"]) == 16
    for p in doc["points"]:
        assert {"tokens", "task", "snr_db", "channel", "n", "metric", "value", "ci_low", "ci_high"} <= set(p)
        assert p["ci_low"] <= p["value"] <= p["ci_high"]
    rows = list(csv.DictReader((tmp_path / "fig3.csv").open()))
    assert [r["kind"] for r in rows].count("point") == 12 and [r["kind"] for r in rows].count("curve") == 16
    assert set(rows[0]) == set(fig3.CSV_FIELDS)
    assert (tmp_path / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdict_says_plainly_when_32_is_not_best():
    points, curves = _synthetic({16: [0.30, 0.40, 0.45], 32: [0.40, 0.50, 0.55], 64: [0.45, 0.60, 0.70]})
    v = fig3.verdict(points, fig3.convergence(curves))
    assert v["reference_best"] is False and v["best_tokens"] == 64
    assert v["statement"].startswith("32 image tokens do NOT come out best: 64 tokens do")
    assert v["best_clear_of_reference_at_snr_db"] == [20.0]  # 0.70 vs 0.55 separates at n=200, 0.60 vs 0.50 not
    close = fig3.verdict(_synthetic({16: [0.50, 0.52, 0.53], 32: [0.50, 0.51, 0.52], 64: [0.52, 0.53, 0.55]})[0], {})
    assert close["best_tokens"] == 64 and close["best_clear_of_reference_at_snr_db"] == []
    assert "within noise" in close["statement"] and "NOT" not in close["statement"]
    tie = fig3.verdict(_synthetic({16: [0.5, 0.6, 0.7], 32: [0.5, 0.6, 0.7]})[0], {})
    assert tie["reference_best"] is False and tie["best_tokens"] is None and "tie" in tie["statement"]
    only = fig3.verdict([p for p in points if p["tokens"] == 32], {})
    assert only["reference_best"] is None and "no verdict" in only["statement"]


def test_curves_and_throughput_from_a_run_log(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"step": 2, "time_s": 5.0, "steps_per_s": 0.5, "val_vqa_acc_20db": 0.25, "val_vqa_acc_0db": 0.125,
             "val_vqa_n": 8},
            {"step": 4, "time_s": 9.0, "steps_per_s": 0.7, "val_vqa_acc_20db": 0.5, "val_vqa_acc_0db": 0.25,
             "val_vqa_n": 8},
            {"step": 6, "time_s": 12.0, "steps_per_s": 0.9, "val_vqa_acc_20db": 0.5}]  # an older row: no n
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = fig3.curves_from_log(log, 16)
    assert [(x["step"], x["metric"]) for x in c] == [(2, "val_vqa_acc_20db"), (2, "val_vqa_acc_0db"),
                                                    (4, "val_vqa_acc_20db"), (4, "val_vqa_acc_0db"),
                                                    (6, "val_vqa_acc_20db")]
    assert c[2]["ci_low"] < 0.5 < c[2]["ci_high"] and c[4]["ci_low"] is None
    assert fig3.throughput(log) == 0.7
    assert fig3.curves_from_log(tmp_path / "none.jsonl", 16) == [] and fig3.throughput(tmp_path / "none") is None


def test_fig3_is_a_command_with_its_cost_in_the_help(capsys):
    from unitocom import cli
    args = cli.parser().parse_args(["fig3", "--tokens", "32,16", "--snr-db", "0,20", "--steps", "4"])
    assert args.tokens == [16, 32] and args.snr_db == [0.0, 20.0] and args.t2i_n == 0 and args.n_vqa == 500
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["fig3", "--help"])
    out = capsys.readouterr().out
    assert "CPU hours" in out and "steps/s" in out and "--skip-train" in out and "--t2i-n" in out


@needs((CKPT / "mllm-sigma-genib.safetensors").exists(), "needs the shipped MLLM")
def test_requests_in_flight_batch_in_process_and_give_the_same_answers(heldout_data):
    import argparse

    from unitocom.task_eval import caption_items, vqa_items
    args = argparse.Namespace(preset="tiny", device="cpu", workers=4)
    batched = fig3.eval_config(args, 32, CKPT / "mllm-sigma-genib.safetensors")
    alone = fig3.eval_config(argparse.Namespace(preset="tiny", device="cpu"), 32, CKPT / "mllm-sigma-genib.safetensors")
    assert batched.limits.batch_max == 4 and alone.limits.batch_max == 1
    items, _ = vqa_items(heldout_data, "test", 8)
    kw = dict(data_dir=heldout_data, split="test", snr_db=10.0, channel="rayleigh", seed=7, desc="", quiet=True)
    one = fig3.measure_vqa(alone, items, **kw)
    assert len(one) == 8 and set(one) <= {0.0, 1.0}
    assert fig3.measure_vqa(batched, items, workers=4, **kw) == one  # batched VQA is exact (test_batching)
    captions = [c for c, _ in caption_items(heldout_data, "test", 4)]
    recall = fig3.measure_t2i(batched, captions, 20.0, "rayleigh", 0, "", True, workers=4)
    assert len(recall) == 4 and all(0.0 <= r <= 1.0 for r in recall)


# ---- end to end, in miniature -------------------------------------------------------------------------------

@pytest.mark.slow
@needs((DATA / "manifest.json").exists() and all((CKPT / f"image-sigma-genib-s{n}.safetensors").exists()
                                                  for n in (16, 32)), "needs data/tiny and the s16/s32 tokenizers")
def test_fig3_end_to_end_in_miniature(tmp_path, capsys):
    from unitocom import cli
    from unitocom.mllm.checkpoint import load_mllm
    argv = ["fig3", "--tokens", "16,32", "--steps", "4", "--val-every", "2", "--val-n", "4", "--batch-size", "8",
            "--limit", "200", "--n-vqa", "6", "--snr-db", "0,20", "--channel", "rayleigh", "--data", str(DATA),
            "--out", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"), "--quiet"]
    assert cli.main(argv) == 0
    out = tmp_path / "results"
    doc = json.loads((out / "fig3.json").read_text())
    h = doc["header"]
    assert h["format"] == fig3.FORMAT and h["command"].startswith("unitocom fig3") and "git_commit" in h
    assert h["git_dirty"] in (True, False, None) and h["date"] and h["equal_budget"] is True
    for n in (16, 32):
        run = tmp_path / "runs" / f"s{n}"
        assert h["checkpoints_sha256"][str(run / "mllm.safetensors")] == file_sha256(run / "mllm.safetensors")
        assert f"image-sigma-genib-s{n}.safetensors" in h["checkpoints_sha256"]
        assert h["runs"][str(n)]["image_tokens"] == n and h["runs"][str(n)]["steps_per_s"] > 0
        assert load_mllm(run / "mllm.safetensors")[2]["image_tokens"] == n
    assert {(p["tokens"], p["snr_db"]) for p in doc["points"]} == {(16, 0.0), (16, 20.0), (32, 0.0), (32, 20.0)}
    for p in doc["points"]:
        assert p["task"] == "vqa" and p["n"] == 6 and p["metric"] == "accuracy" and p["channel"] == "rayleigh"
        assert p["ci_low"] <= p["value"] <= p["ci_high"]
    assert {(c["tokens"], c["step"]) for c in doc["curves"]} == {(16, 2), (16, 4), (32, 2), (32, 4)}
    assert doc["verdict"]["reference_tokens"] == 32 and doc["verdict"]["statement"]
    rows = list(csv.DictReader((out / "fig3.csv").open()))
    assert len(rows) == 4 + len(doc["curves"])
    assert (out / "fig3.png").stat().st_size > 1000
    before = file_sha256(tmp_path / "runs" / "s16" / "mllm.safetensors")
    capsys.readouterr()
    # again: the finished runs are reused, not retrained; another budget in the same runs dir is refused
    assert cli.main([*argv[:-1], "--snr-db", "10"]) == 0
    assert file_sha256(tmp_path / "runs" / "s16" / "mllm.safetensors") == before
    assert json.loads((out / "fig3.json").read_text())["points"][0]["snr_db"] == 10.0
    assert cli.main([*argv, "--steps", "6"]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert cli.main([*argv, "--train-only"]) == 0  # nothing left to train: reports the runs, writes nothing
    assert capsys.readouterr().out.splitlines() == [f"s{n}: {tmp_path / 'runs' / f's{n}' / 'mllm.safetensors'} "
                                                    f"({h['runs'][str(n)]['steps_per_s']} steps/s)" for n in (16, 32)]


def test_services_take_the_image_token_count_and_an_mllm_file():
    from services.common import server as common
    ap = common.base_parser("basestation")
    cfg = common.config_from_args(ap.parse_args(["--image-tokens", "16", "--mllm-path", "runs/fig3/s16/m.safetensors"]))
    assert cfg.preset.image_tokens == 16 and cfg.mllm_path == "runs/fig3/s16/m.safetensors"
    cfg = common.config_from_args(ap.parse_args([]))
    assert cfg.preset is config.PRESETS["tiny"] and cfg.mllm_path is None
    with pytest.raises(SystemExit):
        ap.parse_args(["--image-tokens", "0"])


def _tables():
        return load_script("scripts/results_tables.py")


def test_the_readme_block_is_written_from_a_fig3_file(tmp_path):
    points, curves = _synthetic({16: [0.30, 0.40, 0.45], 32: [0.40, 0.60, 0.70]})
    conv = fig3.convergence(curves)
    tc = {"steps": 400, "batch": 64}
    header = {"format": fig3.FORMAT, "command": "unitocom fig3 --tokens 16,32", "git_commit": "abcdef0123456",
              "git_dirty": False, "date": "2026-12-03T01:00:00+00:00", "equal_budget": True,
              "runs": {"16": {"train_config": tc, "steps_per_s": 1.9}, "32": {"train_config": tc, "steps_per_s": 1.5}}}
    doc = {"header": header, "points": points, "curves": curves,
           "verdict": {**fig3.verdict(points, conv), "convergence": conv}}
    res = tmp_path / "results"
    res.mkdir()
    (res / "fig3.json").write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- results:fig3 -->\nstale\n<!-- /results:fig3 -->\ny\n")
    rt = _tables()
    assert rt.main(["--results", str(res), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "stale" not in text
    assert "| image tokens | 0 dB | 10 dB | 20 dB |" in text
    assert "| 32 | 0.40 [0.33, 0.47] | 0.60 [0.53, 0.67] | 0.70 [0.63, 0.76] |" in text
    # the curve at steps spread over training, the step each run first reached 90 % of its best, its speed
    assert "| image tokens | step 100 | step 200 | step 300 | step 400 | first step at 90 % of its best |" in text
    assert "| 32 | 0.35 [0.25, 0.45] | 0.52 [0.42, 0.62] | 0.70 [0.60, 0.80] | 0.70 [0.60, 0.80] | 300 | 1.50 |" in text
    assert "Equal budgets: 400 steps of batch 64 for every length." in text
    assert "Verdict written by `unitocom fig3`: 32 image tokens come out best" in text
    doc["header"]["equal_budget"] = False
    (res / "fig3.json").write_text(json.dumps(doc))
    assert rt.main(["--results", str(res), "--readme", str(readme), "--check"]) == 1
    assert "not trained with equal budgets" in rt.fig3_block(doc, "results/fig3.json")


def test_the_readme_block_has_the_t2i_recall_per_length_with_its_chance_row(tmp_path):
    points, curves = _synthetic({16: [0.30, 0.40], 32: [0.40, 0.60]})
    points += [fig3.recall_point(n, snr, "rayleigh", [0.1, 0.2, 0.0, 0.1]) for n in (16, 32) for snr in (0.0, 20.0)]
    header = {"runs": {}, "t2i_pair_recall_reference": {"n": 4, "split": "test",
                                                        "own": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0},
                                                        "other": {"value": 0.1, "ci_low": 0.0, "ci_high": 0.2}}}
    text = _tables().fig3_block({"header": header, "points": points, "curves": []}, "results/fig3.json")
    t2i = text[text.index("*T2I pair recall"):]
    assert "n = 4 captions" in t2i and "| image tokens | 0 dB | 20 dB |" in t2i
    assert "| 16 | 0.10 [" in t2i and "| real scene of another caption (chance) | 0.10 [0.00, 0.20] |" in t2i
    fig3.plot(tmp_path / "fig3.png", points, curves, header["t2i_pair_recall_reference"])
    assert (tmp_path / "fig3.png").stat().st_size > 1000
