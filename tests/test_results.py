"""Issue 14, the results side: 95 % intervals (unitocom.results), the Fig. 2 files (unitocom.fig2) and the README
tables written from them (scripts/results_tables.py). The last test runs a reduced Fig. 2 through real services."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Refused, load_script, needs
from unitocom import results as ci

ROOT = Path(__file__).resolve().parents[1]
Z = 1.959963984540054


def _tables():
    return load_script("scripts/results_tables.py")


# ---- intervals ----------------------------------------------------------------------------------------------

def test_wilson_matches_the_closed_form_at_0_5_and_10_of_10():
    n, z2 = 10, Z * Z
    # k = 0: [0, z^2 / (n + z^2)]; k = n: [n / (n + z^2), 1]
    assert ci.wilson(0, n) == (0.0, pytest.approx(z2 / (n + z2), abs=1e-12))
    assert ci.wilson(10, n) == (pytest.approx(n / (n + z2), abs=1e-12), 1.0)
    # k = 5: symmetric about 1/2, half-width z sqrt(n/4 + z^2/4) / (n + z^2)
    half = Z * math.sqrt(n / 4 + z2 / 4) / (n + z2)
    lo, hi = ci.wilson(5, n)
    assert lo == pytest.approx(0.5 - half, abs=1e-12) and hi == pytest.approx(0.5 + half, abs=1e-12)
    # the values statsmodels' proportion_confint(k, 10, method="wilson") prints
    assert ci.wilson(0, 10)[1] == pytest.approx(0.27753, abs=1e-5)
    assert (lo, hi) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    assert ci.wilson(10, 10)[0] == pytest.approx(0.72247, abs=1e-5)


def test_wilson_rejects_impossible_counts():
    for k, n in ((0, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            ci.wilson(k, n)


def test_the_bootstrap_of_a_constant_is_degenerate():
    assert ci.mean_interval([0.4] * 30) == (pytest.approx(0.4), pytest.approx(0.4))
    # every utterance with the same error rate: the corpus WER is that rate in every resample
    words = [3, 5, 8, 2, 10]
    lo, hi = ci.wer_interval([w / 2 for w in words], words)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    f = np.random.default_rng(0).normal(size=(12, 4))
    lo, hi = ci.fid_interval(f, f, n_resamples=20)
    assert abs(lo) < 1e-6 and abs(hi) < 1e-6


def test_the_bootstrap_is_reproducible_and_checks_its_input():
    x = np.random.default_rng(1).random(40)
    assert ci.mean_interval(x, seed=3) == ci.mean_interval(x, seed=3)
    with pytest.raises(ValueError):
        ci.bootstrap(np.mean, [np.arange(3), np.arange(4)])
    with pytest.raises(ValueError):
        ci.mean_interval([])
    with pytest.raises(ValueError):
        ci.wer_interval([1], [0])


def test_corpus_wer_is_total_edits_over_total_words_and_its_interval_brackets_it():
    edits, words = [0, 2, 1, 5, 0, 3], [4, 6, 5, 7, 3, 9]
    assert ci.ratio_of_sums(np.array(edits), np.array(words)) == pytest.approx(11 / 34)
    lo, hi = ci.wer_interval(edits, words)
    assert lo < 11 / 34 < hi


def test_the_intervals_cover_about_95_percent_on_synthetic_data():
    rng = np.random.default_rng(0)
    p, n, trials = 0.3, 80, 300
    wilson_hits = sum(lo <= p <= hi for lo, hi in (ci.wilson(int(rng.binomial(n, p)), n) for _ in range(trials)))
    assert 0.90 <= wilson_hits / trials <= 0.99
    boot_hits = 0
    for t in range(100):
        x = rng.normal(1.0, 2.0, 60)
        lo, hi = ci.mean_interval(x, n_resamples=300, seed=t)
        boot_hits += lo <= 1.0 <= hi
    assert 0.85 <= boot_hits / 100 <= 1.0


def test_frechet_distance_is_fids_formula():
    from scipy import linalg
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 6)), rng.normal(0.5, 1.5, size=(200, 6))
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert ci.frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)


def test_the_fid_interval_resamples_the_features_torchmetrics_scores():
    """The point value is torchmetrics' FID through a feature module; the bootstrap recomputes it from the same
    module's features with `frechet_distance`: on the full sample the two agree."""
    import torch

    from unitocom.metrics.scores import fid

    class Pixels(torch.nn.Module):
        num_features = 6

        def forward(self, x):
            return x.float().flatten(1)[:, :6] / 255.0

    rng = np.random.default_rng(4)
    real = torch.from_numpy(rng.integers(0, 256, (40, 3, 4, 4), dtype=np.uint8))
    fake = torch.from_numpy(rng.integers(0, 200, (40, 3, 4, 4), dtype=np.uint8))
    f = Pixels()
    got = ci.frechet_distance(f(real).double().numpy(), f(fake).double().numpy())
    assert got == pytest.approx(fid(real, fake, f), rel=1e-4)


def test_per_utterance_edit_counts_add_up_to_the_scorers_wer():
    from unitocom.metrics.scores import wer
    from unitocom.task_eval import wer_counts
    refs = ["the cat sat on the mat", "hello world", "one two three four"]
    hyps = ["the cat sat on mat", "", "one too three four five"]
    edits, words = wer_counts(refs, hyps)
    assert words == [6, 2, 4] and edits == [1, 2, 2]
    assert sum(edits) / sum(words) == pytest.approx(wer(refs, hyps))


def test_gather_keeps_index_order_whatever_the_completion_order():
    from unitocom.task_eval import gather
    seen = []

    def slow_first(i: int) -> int:
        time.sleep(0.02 * (6 - i))
        seen.append(i)
        return i * i
    assert gather(slow_first, 6, workers=3, progress=False) == [i * i for i in range(6)]
    assert seen != sorted(seen)  # they did complete out of order
    assert gather(slow_first, 3, workers=1, progress=False) == [0, 1, 4]

    def boom(i: int) -> int:
        if i == 2:
            raise KeyError("two")
        return i
    with pytest.raises(KeyError):
        gather(boom, 8, workers=2, progress=False)


# ---- the Fig. 2 files ---------------------------------------------------------------------------------------

def _point(task, scheme, snr, value, lo, hi, n=6, channel="rayleigh", **extra):
    metric = {"vqa": "accuracy", "t2i": "fid", "asr": "wer"}[task]
    return {"task": task, "scheme": scheme, "snr_db": snr, "channel": channel, "n": n, "n_requested": n,
            "metric": metric, "value": value, "ci_low": lo, "ci_high": hi, **extra}


def _figure() -> dict:
    pts = [_point("vqa", s, snr, v, v - 0.1, v + 0.1, chance=0.3)
           for s, off in (("unitocom", 0.2), ("traditional", 0.0)) for snr, v in ((0, 0.3 + off), (10, 0.5 + off))]
    pts.append({**_point("vqa", "upper-bound", None, 0.8, 0.7, 0.88, channel="noiseless", chance=0.3)})
    pts += [_point("t2i", "unitocom", snr, 20.0 - snr, 18.0 - snr, 25.0 - snr, pair_recall=0.5,
                   pair_recall_ci_low=0.4, pair_recall_ci_high=0.6, fid_real_vs_real=3.0) for snr in (0, 10)]
    pts += [_point("asr", "unitocom", snr, 0.4, 0.3, 0.5) for snr in (0, 10)]
    skipped = [{"task": "vqa", "scheme": "semcom", "snr_db": 0.0, "channel": "rayleigh", "n_requested": 6,
                "status": "UNIMPLEMENTED", "message": "semcom serves no vqa"}]
    header = {"format": "unitocom-results/fig2/1", "command": "unitocom fig2 --tasks vqa", "git_commit": "a" * 40,
              "git_dirty": False, "date": "2026-12-02T10:00:00+00:00", "checkpoints_sha256": {"x.safetensors": "0"}}
    return {"header": header, "points": pts, "skipped": skipped}


def test_the_json_csv_and_png_writers(tmp_path):
    from unitocom import fig2
    fig = _figure()
    fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
    fig2.write_csv(tmp_path / "fig2.csv", fig["points"], fig["skipped"])
    fig2.plot(tmp_path / "fig2.png", fig["points"])
    back = json.loads((tmp_path / "fig2.json").read_text())
    assert back == fig
    rows = list(csv.DictReader((tmp_path / "fig2.csv").open()))
    assert len(rows) == len(fig["points"]) + 1 and rows[0].keys() >= {"task", "scheme", "snr_db", "ci_low", "ci_high"}
    assert rows[-1]["skipped"] == "True" and rows[-1]["status"] == "UNIMPLEMENTED"
    assert (tmp_path / "fig2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_header_names_the_commit_and_hashes_every_checkpoint(tmp_path):
    import hashlib

    from unitocom import fig2
    (tmp_path / "a.safetensors").write_bytes(b"weights")
    (tmp_path / "text-bpe.json").write_text("{}")
    (tmp_path / "manifest.json").write_text("{}")
    h = fig2.make_header(["fig2", "--tasks", "vqa"], {"data": "d"}, tmp_path)
    assert h["command"] == "unitocom fig2 --tasks vqa" and h["data"] == "d"
    assert h["checkpoints_sha256"] == {"a.safetensors": hashlib.sha256(b"weights").hexdigest(),
                                       "text-bpe.json": hashlib.sha256(b"{}").hexdigest()}
    assert len(h["git_commit"]) == 40 and isinstance(h["git_dirty"], bool) and h["date"].endswith("+00:00")
    assert h["data_sha256"] is None  # no manifest there: a set `data make` did not draw (real CLEVR, say)
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / "manifest.json").write_text(json.dumps({"checksum": "c" * 64}))
    assert fig2.make_header(["fig2"], {"data": str(drawn)}, tmp_path)["data_sha256"] == "c" * 64
    assert "data_sha256" not in fig2.make_header(["fig2"], {}, tmp_path)


def test_the_plan_and_the_resume_key():
    from unitocom import fig2
    todo = fig2.plan(["vqa", "asr"], ["unitocom", "vae"], [0.0, 10.0], "rayleigh", {"vqa": 5, "asr": 3}, True)
    assert len(todo) == 2 * (2 * 2 + 1)
    ub = [t for t in todo if t["scheme"] == fig2.UPPER]
    assert [(t["task"], t["snr_db"], t["channel"], t["n_requested"]) for t in ub] == [
        ("vqa", None, "noiseless", 5), ("asr", None, "noiseless", 3)]
    assert fig2.point_key(_point("vqa", "vae", 10, 0.5, 0.4, 0.6)) == ("vqa", "vae", 10.0, "rayleigh", 6)


def _args(tmp_path, *more):
    from unitocom import cli
    return cli.parser().parse_args(["fig2", "--tasks", "vqa", "--schemes", "unitocom,semcom", "--snr-db", "0,10",
                                    "--n-vqa", "6", "--out", str(tmp_path), "--quiet", *more])


def test_the_sweep_records_refusals_goes_on_and_resumes(tmp_path, monkeypatch):
    import grpc

    from unitocom import client, fig2
    monkeypatch.setattr(client, "RpcError", Refused)
    monkeypatch.setattr(fig2, "_noiseless_available", lambda: True)
    calls, lock = [], threading.Lock()

    def fake(spec, args, send_snr_db):
        with lock:
            calls.append((spec["scheme"], spec["snr_db"]))
        if spec["scheme"] == "semcom":
            raise Refused(grpc.StatusCode.UNIMPLEMENTED)
        snr = spec["snr_db"]
        v = 0.9 if snr is None else 0.4 + snr / 100
        row = _point("vqa", spec["scheme"], snr, v, v - 0.1, v + 0.05, channel=spec["channel"], chance=0.3)
        return {**row, "n_requested": spec["n_requested"]}
    monkeypatch.setattr(fig2, "measure", fake)
    res = fig2.run(_args(tmp_path), ["fig2"])
    assert [(p["scheme"], p["snr_db"]) for p in res["points"]] == [("unitocom", 0.0), ("unitocom", 10.0),
                                                                   ("upper-bound", None)]
    assert [(s["scheme"], s["status"]) for s in res["skipped"]] == [("semcom", "UNIMPLEMENTED")] * 2
    saved = json.loads((tmp_path / "fig2.json").read_text())
    assert saved["points"] == res["points"] and saved["skipped"] == res["skipped"]
    assert (tmp_path / "fig2.png").exists() and (tmp_path / "fig2.csv").exists()
    assert "skipped: UNIMPLEMENTED" in fig2.summary(res)

    calls.clear()
    res2 = fig2.run(_args(tmp_path, "--resume"), ["fig2", "--resume"])
    assert calls == [("semcom", 0.0), ("semcom", 10.0)]  # only the refused ones are tried again
    assert res2["points"] == res["points"] and res2["fresh"] == 0
    assert res2["header"]["resumed_from"][0]["date"] == res["header"]["date"]

    calls.clear()
    monkeypatch.setattr(fig2, "_noiseless_available", lambda: False)
    res3 = fig2.run(_args(tmp_path, "--no-upper-bound", "--snr-db", "10"), ["fig2"])  # not resumed: fresh
    assert calls == [("unitocom", 10.0), ("semcom", 10.0)] and len(res3["points"]) == 1

    # --name: the same figure off another data set, beside this one (fig2-seed77.*), not over it
    before = (tmp_path / "fig2.json").read_text()
    fig2.run(_args(tmp_path, "--name", "fig2-seed77", "--no-upper-bound", "--snr-db", "10"), ["fig2"])
    assert json.loads((tmp_path / "fig2-seed77.json").read_text())["points"][0]["snr_db"] == 10.0
    assert (tmp_path / "fig2-seed77.png").exists() and (tmp_path / "fig2.json").read_text() == before
    from unitocom.errors import UserError
    with pytest.raises(UserError, match="--name"):
        fig2.run(_args(tmp_path, "--name", "../elsewhere"), ["fig2"])
    with pytest.raises(UserError, match="--text-copies: 9 is not in 0..8"):
        fig2.run(_args(tmp_path, "--text-copies", "9"), ["fig2"])

    # the same path drawn again (another seed into the same folder): refused, though the path is the same
    saved = json.loads((tmp_path / "fig2.json").read_text())
    saved["header"]["data_sha256"] = "0" * 64
    (tmp_path / "fig2.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="measured on data .* \\(sha256 000000000000\\)"):
        fig2.run(_args(tmp_path, "--resume"), ["fig2", "--resume"])
    del saved["header"]["data_sha256"]  # a file from before headers kept the checksum: the path decides
    (tmp_path / "fig2.json").write_text(json.dumps(saved))
    calls.clear()
    fig2.run(_args(tmp_path, "--resume", "--no-upper-bound", "--snr-db", "10"), ["fig2", "--resume"])
    assert ("unitocom", 10.0) not in calls


def test_resume_refuses_results_made_with_other_checkpoints(tmp_path, monkeypatch):
    from unitocom import fig2
    from unitocom.errors import UserError
    fig = _figure()
    fig["header"].update(data="data/tiny", split="test", seed=0)
    fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
    with pytest.raises(UserError, match="other checkpoints"):
        fig2.run(_args(tmp_path, "--resume"), ["fig2"])
    # measured before a checkpoint was added (a new scheme's): the earlier points stand
    from unitocom.schemes.learned import checkpoint_dir
    now = fig2.checkpoint_hashes(checkpoint_dir())
    fig["header"]["checkpoints_sha256"] = dict(list(now.items())[:-1])
    fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
    monkeypatch.setattr(fig2, "measure", lambda spec, args, s: {
        **_point("vqa", spec["scheme"], spec["snr_db"], 0.5, 0.4, 0.6), "n_requested": 6})
    monkeypatch.setattr(fig2, "_noiseless_available", lambda: False)
    res = fig2.run(_args(tmp_path, "--resume", "--schemes", "unitocom"), ["fig2"])
    assert res["header"]["checkpoints_sha256"] == now and res["header"]["resumed_from"]
    # a language prior added since: every typed question is read otherwise now, so no VQA point measured before
    # through a learned text link stands (test_a_changed_text_link_... below has the rest)
    from unitocom.schemes.learned import PRIOR_FILE
    assert fig2.TEXT_READERS == (PRIOR_FILE,)
    monkeypatch.setattr(fig2, "checkpoint_hashes", lambda d: {**now, "text-prior.safetensors": "p" * 64})
    asked = []
    monkeypatch.setattr(fig2, "measure", lambda spec, args, s: asked.append(spec["snr_db"]) or {
        **_point("vqa", spec["scheme"], spec["snr_db"], 0.5, 0.4, 0.6), "n_requested": 6})
    res = fig2.run(_args(tmp_path, "--resume", "--schemes", "unitocom"), ["fig2"])
    assert asked == [0.0, 10.0] and res["header"]["remeasured_after_text_change"] == [PRIOR_FILE]


def test_a_changed_text_link_invalidates_only_the_points_that_send_typed_text_through_one(tmp_path, monkeypatch):
    """Installing other text links or the prior changes how every question and caption is read through a learned
    link, and nothing else: --resume measures unitocom's, vae's and the upper bound's VQA and T2I points again and
    keeps ASR's and the traditional and semcom schemes' points; a text link removed, or the BPE changed, refuses."""
    from unitocom import fig2
    from unitocom.errors import UserError
    from unitocom.schemes.learned import checkpoint_dir
    now = fig2.checkpoint_hashes(checkpoint_dir())
    link = "text-sigma-genib.safetensors"
    if link not in now or "text-bpe.json" not in now:
        pytest.skip("needs the shipped text link")
    fig = _figure()
    semcom_t2i = _point("t2i", "semcom", 10, 30.0, 28.0, 33.0, pair_recall=0.1)
    fig["points"].append(semcom_t2i)
    fig["header"].update(data="data/tiny", split="test", seed=0, checkpoints_sha256={**now, link: "0" * 64},
                         mllm_sha256_without_diffusion_head=fig2.without_head_hashes(checkpoint_dir()))
    fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
    asked = []
    monkeypatch.setattr(fig2, "measure", lambda spec, args, s: asked.append((spec["scheme"], spec["snr_db"])) or {
        **_point("vqa", spec["scheme"], spec["snr_db"], 0.5, 0.4, 0.6), "n_requested": 6})
    monkeypatch.setattr(fig2, "_noiseless_available", lambda: True)
    res = fig2.run(_args(tmp_path, "--resume", "--schemes", "unitocom,traditional"), ["fig2"])
    # unitocom's two VQA points and the upper bound are measured again; traditional's are kept
    assert asked == [("unitocom", 0.0), ("unitocom", 10.0), ("upper-bound", None)]
    assert res["header"]["remeasured_after_text_change"] == [link]
    kept = [p for p in fig["points"] if p["task"] == "asr" or p["scheme"] in ("traditional", "semcom")]
    assert kept and all(p in res["points"] for p in kept)
    # unitocom's T2I points (outside this grid) read the caption through the link: dropped, not kept
    assert not [p for p in res["points"] if p["task"] == "t2i" and p["scheme"] == "unitocom"]
    # a resumed run stopped part way (the services gone before it reached the points it keeps) loses none of them
    import grpc

    from unitocom import client
    fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
    monkeypatch.setattr(client, "RpcError", Refused)

    def gone(spec, args, s):
        raise Refused(grpc.StatusCode.UNAVAILABLE)
    monkeypatch.setattr(fig2, "measure", gone)
    with pytest.raises(Refused):
        fig2.run(_args(tmp_path, "--resume", "--schemes", "unitocom,traditional"), ["fig2"])
    saved = json.loads((tmp_path / "fig2.json").read_text())["points"]
    assert all(p in saved for p in kept)
    # a text link gone, or the BPE every text model shares changed: refused as before
    for gone in ({k: v for k, v in now.items() if k != link}, {**now, "text-bpe.json": "1" * 64}):
        monkeypatch.setattr(fig2, "checkpoint_hashes", lambda d, h=gone: h)
        fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
        with pytest.raises(UserError, match="other checkpoints"):
            fig2.run(_args(tmp_path, "--resume"), ["fig2"])


def test_a_retrained_diffusion_head_invalidates_only_the_t2i_points(tmp_path, monkeypatch):
    """`train mllm-head` changes an MLLM's file but not what VQA and ASR read: --resume keeps those points and
    measures every T2I point again; a change anywhere else in the MLLM still refuses."""
    from unitocom import fig2
    from unitocom.errors import UserError
    from unitocom.schemes.learned import checkpoint_dir
    now = fig2.checkpoint_hashes(checkpoint_dir())
    heads = fig2.without_head_hashes(checkpoint_dir())
    mllm = "mllm-sigma-genib.safetensors"
    if mllm not in heads:
        pytest.skip("needs the shipped MLLM")
    fig = _figure()
    semcom_t2i = _point("t2i", "semcom", 10, 30.0, 28.0, 33.0, pair_recall=0.1)
    fig["points"].append(semcom_t2i)
    fig["header"].update(data="data/tiny", split="test", seed=0, checkpoints_sha256={**now, mllm: "0" * 64},
                         mllm_sha256_without_diffusion_head=heads)
    fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
    asked = []
    monkeypatch.setattr(fig2, "measure", lambda spec, args, s: asked.append(spec["task"]) or {
        **_point("vqa", spec["scheme"], spec["snr_db"], 0.5, 0.4, 0.6), "n_requested": 6})
    monkeypatch.setattr(fig2, "_noiseless_available", lambda: False)
    res = fig2.run(_args(tmp_path, "--resume", "--schemes", "unitocom", "--no-upper-bound"), ["fig2"])
    # the MLLM's pictures are out of date: dropped (none in this grid); semcom's receiver reads no MLLM: kept
    assert [p for p in res["points"] if p["task"] == "t2i"] == [semcom_t2i]
    old_other = [p for p in fig["points"] if p["task"] in ("vqa", "asr")]
    assert all(p in res["points"] for p in old_other) and asked == []
    assert res["header"]["t2i_remeasured_after_head_change"] == [mllm]
    # the backbone changed too: refused as before
    fig["header"]["mllm_sha256_without_diffusion_head"] = {**heads, mllm: "1" * 64}
    fig2.write_json(tmp_path / "fig2.json", fig["header"], fig["points"], fig["skipped"])
    with pytest.raises(UserError, match="other checkpoints"):
        fig2.run(_args(tmp_path, "--resume"), ["fig2"])


def test_the_weights_hash_without_the_head_ignores_the_head_and_nothing_else(tmp_path):
    import torch
    from safetensors.torch import save_file

    from unitocom.train.provenance import tensors_sha256
    a = {"backbone.w": torch.ones(2, 3), "diffusion.w": torch.zeros(4)}
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file({**a, "diffusion.w": torch.ones(4)}, str(tmp_path / "b.safetensors"))
    save_file({**a, "backbone.w": torch.ones(3, 2)}, str(tmp_path / "c.safetensors"))
    h = [tensors_sha256(tmp_path / f"{n}.safetensors", "diffusion.") for n in "abc"]
    assert h[0] == h[1] != h[2]  # same bytes, another shape: another hash


def test_the_upper_bound_is_skipped_where_there_is_no_noiseless_channel(tmp_path, monkeypatch):
    from unitocom import fig2
    monkeypatch.setattr(fig2, "_noiseless_available", lambda: False)
    monkeypatch.setattr(fig2, "measure", lambda spec, args, s: {
        **_point("vqa", spec["scheme"], spec["snr_db"], 0.5, 0.4, 0.6), "n_requested": 6})
    res = fig2.run(_args(tmp_path, "--schemes", "unitocom"), ["fig2"])
    assert [s["status"] for s in res["skipped"]] == ["NOT_AVAILABLE"]
    assert res["skipped"][0]["scheme"] == "upper-bound" and res["skipped"][0]["snr_db"] is None


# ---- the README's tables ------------------------------------------------------------------------------------

README = """# Title

Some text.

<!-- results:fig2:vqa -->
stale
<!-- /results:fig2:vqa -->

## ASR

<!-- results:fig2:asr -->
<!-- /results:fig2:asr -->
end
"""


def test_the_tables_are_written_between_the_markers_and_checked(tmp_path, capsys):
    rt = _tables()
    res = tmp_path / "results"
    res.mkdir()
    fig = _figure()
    (res / "fig2.json").write_text(json.dumps(fig))
    # another figure's file, of another shape: left alone, not a crash
    (res / "fig3.json").write_text(json.dumps({"header": {"format": "unitocom-results/fig3/1"}, "points": [{"x": 1}]}))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    args = ["--results", str(res), "--readme", str(readme)]
    assert rt.main([*args, "--check"]) == 1
    assert rt.main(args) == 0
    text = readme.read_text()
    assert "stale" not in text and text.startswith("# Title\n\nSome text.\n") and text.endswith("end\n")
    assert "| scheme | 0 dB | 10 dB |" in text
    assert "| unitocom | 0.50 [0.40, 0.60] | 0.70 [0.60, 0.80] |" in text
    assert "| upper bound (noiseless tokens) | 0.80 [0.70, 0.88] | 0.80 [0.70, 0.88] |" in text
    assert "| semcom | refused (UNIMPLEMENTED) | – |" in text
    assert "n = 6 questions per point" in text and "n = 6 utterances per point" in text
    assert "no <!-- results:fig2:t2i --> ... <!-- /results:fig2:t2i --> markers" in capsys.readouterr().err
    assert rt.main([*args, "--check"]) == 0  # in sync, and writing again changes nothing
    assert rt.main(args) == 0 and readme.read_text() == text
    fig["points"][0]["value"] = 0.55
    (res / "fig2.json").write_text(json.dumps(fig))
    assert rt.main([*args, "--check"]) == 1


def test_the_t2i_block_has_fid_and_pair_recall_tables():
    text = _tables().block("t2i", _figure())
    assert "T2I FID" in text and "T2I pair recall" in text
    assert "| unitocom | 20.0 [18.0, 25.0] | 10.0 [8.0, 15.0] |" in text
    assert "| unitocom | 0.50 [0.40, 0.60] | 0.50 [0.40, 0.60] |" in text
    assert "No upper bound in the file" in text


def test_the_pair_recall_table_shows_the_real_scene_ceiling_and_chance():
    fig = _figure()
    fig["header"]["t2i_pair_recall_reference"] = {"n": 6, "split": "test",
                                                  "own": {"value": 0.99, "ci_low": 0.97, "ci_high": 1.0},
                                                  "other": {"value": 0.08, "ci_low": 0.06, "ci_high": 0.1}}
    text = _tables().block("t2i", fig)
    recall = text[text.index("T2I pair recall"):]
    assert "| real scene of the caption (checker's ceiling) | 0.99 [0.97, 1.00] | 0.99 [0.97, 1.00] |" in recall
    assert "| real scene of another caption (chance) | 0.08 [0.06, 0.10] |" in recall
    assert "real scene" not in text[:text.index("T2I pair recall")]  # FID's table has no such rows


@needs((ROOT / "checkpoints" / "scene-checker.safetensors").exists(), "needs the shipped scene checker")
def test_the_checker_finds_a_captions_pairs_in_its_own_scene_and_rarely_in_another(heldout_data):
    from unitocom.task_eval import pair_recall_references
    ref = pair_recall_references(heldout_data, "test", 80, n_resamples=200)
    assert ref["n"] == 80 and ref["split"] == "test"
    for r in (ref["own"], ref["other"]):
        assert 0.0 <= r["ci_low"] <= r["value"] <= r["ci_high"] <= 1.0
    assert ref["own"]["value"] > 0.9 and ref["other"]["value"] < 0.3  # a right picture against chance


def test_a_resumed_files_footer_says_its_command_is_the_last_runs():
    fig = _figure()
    assert "resumed" not in _tables().block("vqa", fig)
    fig["header"]["resumed_from"] = [{"command": "unitocom fig2 --tasks vqa", "git_commit": "0" * 40}]
    text = _tables().block("vqa", fig)
    assert "(the last of 2 resumed runs: commit" in text and "header's `resumed_from`" in text


def test_a_readme_without_markers_or_results_is_left_alone(tmp_path, capsys):
    rt = _tables()
    readme = tmp_path / "README.md"
    readme.write_text("# nothing here\n")
    assert rt.main(["--results", str(tmp_path / "none"), "--readme", str(readme)]) == 0
    assert "no results in" in capsys.readouterr().err
    res = tmp_path / "results"
    res.mkdir()
    (res / "fig2.json").write_text(json.dumps(_figure()))
    assert rt.main(["--results", str(res), "--readme", str(readme), "--check"]) == 0
    assert readme.read_text() == "# nothing here\n" and "markers" in capsys.readouterr().err


def test_the_readme_is_in_sync_with_the_committed_results():
    results = ROOT / "results" / "fig2.json"
    if not results.exists() or "<!-- results:fig2:" not in (ROOT / "README.md").read_text():
        pytest.skip("no results/fig2.json or no result markers in the README yet")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_tables.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ---- end to end ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fig2_end_to_end_through_the_services(services, tmp_path):
    from unitocom import client
    cfg, _ = services
    data = ROOT / "data" / "tiny"
    if not (data / "CLEVR_v1.0").is_dir():
        pytest.skip("data/tiny is not made (unitocom data make --preset tiny)")
    noiseless = "noiseless" in client.choices()["channel"]
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "unitocom.cli", "fig2", "--tasks", "vqa", "--schemes", "unitocom,traditional",
           "--snr-db", "0,20", "--channel", "rayleigh", "--n-vqa", "6", "--out", str(out), "--quiet",
           "--target", cfg.address("transmitter").grpc, "--data", str(data)]
    if not noiseless:
        cmd.append("--no-upper-bound")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    fig = json.loads((out / "fig2.json").read_text())
    h = fig["header"]
    assert h["command"].startswith("unitocom fig2 --tasks vqa") and len(h["git_commit"]) == 40
    assert isinstance(h["git_dirty"], bool) and h["checkpoints_sha256"]
    assert all(len(v) == 64 for v in h["checkpoints_sha256"].values())
    want = {("unitocom", 0.0), ("unitocom", 20.0), ("traditional", 0.0), ("traditional", 20.0)}
    if noiseless:
        want.add(("upper-bound", None))
    got = {(p["scheme"], p["snr_db"]) for p in fig["points"]} | {(s["scheme"], s["snr_db"]) for s in fig["skipped"]}
    assert got == want, fig["skipped"]
    assert {("unitocom", 0.0), ("unitocom", 20.0)} <= {(p["scheme"], p["snr_db"]) for p in fig["points"]}
    for p in fig["points"]:
        assert {"scheme", "task", "snr_db", "channel", "n", "metric", "value", "ci_low", "ci_high", "chance"} <= set(p)
        assert p["task"] == "vqa" and p["n"] == 6 and p["metric"] == "accuracy"
        assert 0 <= p["ci_low"] <= p["value"] <= p["ci_high"] <= 1, p
        if p["scheme"] == "upper-bound":
            assert p["channel"] == "noiseless" and p["snr_db"] is None
        else:
            assert p["channel"] == "rayleigh"
        if p["scheme"] == "unitocom":  # the typed question came back as text: the split by whether it was read
            q = p["question_read"]
            assert q["n"] == 6 and q["read"]["n"] + q["misread"]["n"] == 6
            assert q["share"] == q["read"]["n"] / 6
    assert next(p for p in fig["points"] if p["scheme"] == "unitocom" and p["snr_db"] == 20.0)["question_read"][
        "share"] >= 5 / 6  # at 20 dB nearly every question arrives exactly (0.997 of 300 in process)
    rows = list(csv.DictReader((out / "fig2.csv").open()))
    assert len(rows) == len(fig["points"]) + len(fig["skipped"])
    assert (out / "fig2.png").read_bytes()[:4] == b"\x89PNG"
    assert "fig2:" in r.stdout and "wrote" in r.stdout


def test_the_fid_interval_is_centred_on_the_fid_even_where_the_bootstrap_is_biased():
    """At small n the resampled FIDs all sit above the FID (repeated pairs shrink the sample): the percentile
    interval would miss its own value; the normal one is centred on it with the resamples' spread."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 16)), rng.normal(0.3, 1.0, size=(40, 16))
    value = ci.frechet_distance(real, fake)
    lo_p, hi_p = ci.bootstrap(ci.frechet_distance, [real, fake], 50, method="percentile")
    assert lo_p > value  # the bias this guards against
    lo, hi = ci.fid_interval(real, fake, n_resamples=50)
    assert lo < value < hi and (hi - lo) == pytest.approx(2 * (value - lo))
    with pytest.raises(ValueError):
        ci.bootstrap(np.mean, [np.arange(3)], method="bca")


@needs((ROOT / "checkpoints" / "mllm-sigma-genib.safetensors").exists(), "needs the shipped MLLM")
def test_the_t2i_diagnosis_reads_a_checkpoint_and_its_ceiling_is_the_true_tokens(heldout_data, capsys):
    mod = load_script("scripts/t2i_diagnose.py")
    assert mod.main([str(ROOT / "checkpoints" / "mllm-sigma-genib.safetensors"), "--data", str(heldout_data),
                     "--n", "8", "--guidance", "1,3", "--probe-steps", "30", "--probe-images", "40"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["val_t2i_caption_gain"] == pytest.approx(out["val_t2i_diffusion_other_caption"]
                                                        - out["val_t2i_diffusion_own_caption"])
    for k in ("recall_true_tokens", "recall_other_captions_true_tokens", "recall_teacher_forced",
              "recall_generated_guidance_1", "recall_generated_guidance_3"):
        assert 0.0 <= out[k] <= 1.0
    assert out["recall_true_tokens"] > 0.8 > out["recall_other_captions_true_tokens"]  # the path, and chance
    assert out["mse_head_mean"] < out["mse_teacher_forced_sample"]  # a draw adds the head's spread to its mean
    assert 0.0 < out["mse_probe_mlp"] < 10.0


def test_git_state_calls_a_tree_clean_when_only_results_differ(tmp_path):
    """A sweep rewrites results/ (its own file, or the one before it) and the README's tables: that is not a change
    to the code and checkpoints that measured it. Anything else tracked that differs from HEAD is."""
    from unitocom.train.provenance import git_state
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git + ["init", "-q"], check=True)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "fig.json").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "c"], check=True)
    head, dirty = git_state(tmp_path)
    assert len(head) == 40 and dirty is False
    (tmp_path / "results" / "fig.json").write_text('{"points": []}\n')
    (tmp_path / "results" / "new.json").write_text("{}\n")  # untracked: never counted
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "README.md").write_text("tables\n")  # the README's tables, written from results/ after a sweep
    subprocess.run(git + ["add", "README.md"], check=True)
    subprocess.run(git + ["commit", "-qm", "d"], check=True)
    head = git_state(tmp_path)[0]
    (tmp_path / "README.md").write_text("tables, rewritten\n")
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (head, True)


def test_the_targets_table_gives_each_target_its_value_interval_and_verdict():
    rt = _tables()
    fam = {"exist": {"n": 40, "accuracy": 0.9, "chance": 0.5},
           "relate_yesno": {"n": 40, "accuracy": 0.55, "chance": 0.5}}
    test = {"header": {"git_commit": "a" * 40, "date": "d1"}, "points": [
        _point("vqa", "unitocom", 20.0, 0.90, 0.86, 0.93, by_family=fam),   # whole interval above 0.85: met
        _point("vqa", "vae", 20.0, 0.10, 0.05, 0.15),                       # another scheme: not read
        _point("vqa", "unitocom", 0.0, 0.69, 0.60, 0.75),                   # straddles 0.70: within noise
        _point("asr", "unitocom", 20.0, 0.30, 0.20, 0.40)]}                 # all of it above 0.10: missed
    fresh = {"header": {"git_commit": "b" * 40, "date": "d2"}, "points": [
        _point("vqa", "unitocom", 20.0, 0.87, 0.86, 0.88, by_family={"exist": fam["exist"]}),
        _point("t2i", "unitocom", 20.0, 50.0, 40.0, 60.0, fid_real_vs_real=30.0, pair_recall=0.2,
               pair_recall_ci_low=0.1, pair_recall_ci_high=0.3)]}
    text = rt.targets_block({"fig2": test, "fig2-seed77": fresh})
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["VQA accuracy >= 0.85 at 20 dB"].endswith("0.90 [0.86, 0.93]: met, 0.05 to spare | "
                                                         "0.87 [0.86, 0.88]: met, 0.02 to spare | met |")
    assert "0.69 [0.60, 0.75]: within noise, 0.01 short | – | within noise |" in rows["VQA accuracy >= 0.70 at 0 dB"]
    assert "0.300 [0.200, 0.400]: missed, 0.200 short" in rows["ASR WER <= 0.10 at 20 dB"]
    # each family's Wilson interval (from n and the accuracy where the file has none) against chance + 0.10
    fams = next(r for k, r in rows.items() if k.startswith("every VQA family"))
    assert ("1 of 2 families met; within noise: relate yesno 0.55 [0.40, 0.69] (chance 0.50) | "
            "1 of 1 families met | within noise |") in fams
    assert "(Wilson 95 % intervals; 40 to 40 questions a family)" in fams
    fid = rows["T2I FID <= 2x the real-vs-real floor at 20 dB"]  # the fresh file's own floor: 2 x 30
    assert fid.endswith("– | 50.0 [40.0, 60.0] against 60.0, 1.7x the floor: met | met |")
    assert rows["T2I pair recall >= 0.50 at 20 dB"].endswith("0.20 [0.10, 0.30]: missed, 0.30 short | missed |")
    assert rows["image PSNR >= 32 dB at 20 dB (32 tokens)"].endswith("| – | – | – |")  # no packet-loss file
    assert "commit aaaaaaaaaa, d1" in text and "commit bbbbbbbbbb, d2" in text
    assert rt.targets_block({"fig2-seed77": fresh}) is None  # the test split's file is the table's spine

    # the per-family measurement, where there is one, before Fig. 2's 500 questions; the fresh set falls back
    big = {"exist": {"n": 400, "accuracy": 0.75, "chance": 0.5, "ci_low": 0.705, "ci_high": 0.79},
           "compare_attribute": {"n": 400, "accuracy": 0.45, "chance": 0.5, "ci_low": 0.402, "ci_high": 0.499}}
    families = {"header": {"git_commit": "c" * 40, "date": "d3"}, "points": [
        _point("vqa", "unitocom", 20.0, 0.6, 0.58, 0.62, n=800, by_family=big)]}
    text = rt.targets_block({"fig2": test, "fig2-seed77": fresh, "vqa-families": families})
    fams = next(line for line in text.splitlines() if line.startswith("| every VQA family"))
    assert ("1 of 2 families met; under it: compare attribute 0.45 [0.40, 0.50] (chance 0.50) | 1 of 1 families met "
            "| missed |") in fams
    assert "400 questions a family" in fams and "40 to 400" in fams and "commit cccccccccc, d3" in text
    vqa = next(line for line in text.splitlines() if line.startswith("| VQA accuracy >= 0.85"))
    assert "| 0.60 [0.58, 0.62]: missed, 0.25 short | 0.87 [0.86, 0.88]: met" in vqa  # its 800 before Fig. 2's


def test_the_family_table_gives_each_family_its_interval_floor_and_verdict():
    rt = _tables()
    fam = {"exist": {"n": 400, "accuracy": 0.75, "chance": 0.5, "ci_low": 0.705, "ci_high": 0.79},
           "relate_yesno": {"n": 40, "accuracy": 0.55, "chance": 0.5},  # an older file: Wilson from n and accuracy
           "compare_attribute": {"n": 400, "accuracy": 0.45, "chance": 0.5, "ci_low": 0.402, "ci_high": 0.499}}
    fig = {"header": {"git_commit": "c" * 40, "date": "d3", "command": "unitocom fig2 --name vqa-families"},
           "points": [_point("vqa", "unitocom", 20.0, 0.6, 0.58, 0.62, n=840, by_family=fam),
                      _point("vqa", "vae", 20.0, 0.1, 0.0, 0.2, n=840, by_family=fam)]}
    text = rt.families_block(fig, "results/vqa-families.json")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| family")]
    assert rows == ["| compare attribute | 400 | 0.45 [0.40, 0.50] | 0.50 | 0.60 | missed |",  # farthest below first
                    "| relate yesno | 40 | 0.55 [0.40, 0.69] | 0.50 | 0.60 | within noise |",
                    "| exist | 400 | 0.75 [0.70, 0.79] | 0.50 | 0.60 | met |"]
    assert "0.60 [0.58, 0.62] over 840 questions at 20 dB" in text
    # a second SNR: a column of its own; the verdict stays at the target's 20 dB
    low = {"exist": {"n": 400, "accuracy": 0.55, "chance": 0.5, "ci_low": 0.501, "ci_high": 0.598}}
    fig["points"].append(_point("vqa", "unitocom", 0.0, 0.5, 0.48, 0.52, n=840, by_family=low))
    text = rt.families_block(fig, "results/vqa-families.json")
    assert "| family | questions | 0 dB | 20 dB | majority-class chance |" in text
    assert "| exist | 400 | 0.55 [0.50, 0.60] | 0.75 [0.70, 0.79] | 0.50 | 0.60 | met |" in text
    assert "| relate yesno | 40 | – | 0.55 [0.40, 0.69] | 0.50 | 0.60 | within noise |" in text
    assert "`unitocom fig2 --name vqa-families`" in text
    assert rt.families_block({"points": [_point("vqa", "unitocom", 20.0, 0.6, 0.5, 0.7)]}, "x") is None
    readme = "a\n<!-- results:vqa-families -->\nold\n<!-- /results:vqa-families -->\n"
    out, _ = rt.render(readme, {"vqa-families": fig})
    assert "| exist | 400 |" in out and "old" not in out


def test_vqa_by_family_gives_each_family_its_wilson_interval():
    from unitocom.data.questions import FAMILIES
    from unitocom.results import wilson
    from unitocom.task_eval import vqa_by_family
    items = [{"question_family_index": 0, "answer": "yes"}] * 10 + [{"question_family_index": 1, "answer": "2"}] * 4
    correct = [1.0] * 7 + [0.0] * 3 + [1.0] * 4
    guess = ["yes"] * 5 + ["no"] * 5 + ["1"] * 4
    out = vqa_by_family(items, correct, guess)
    first, second = out[FAMILIES[0]], out[FAMILIES[1]]
    assert (first["n"], first["accuracy"], first["chance"]) == (10, 0.7, 0.5)
    assert (first["ci_low"], first["ci_high"]) == tuple(round(x, 3) for x in wilson(7, 10))
    assert second["accuracy"] == 1.0 and second["ci_high"] == 1.0 and second["ci_low"] < 1.0


def test_vqa_accuracy_split_by_whether_the_question_was_read():
    from types import SimpleNamespace

    from unitocom.messages import Modality
    from unitocom.results import wilson
    from unitocom.task_eval import by_question_read, question_read
    from unitocom.v1 import unitocom_pb2 as pb
    sent = "What shape is the large cyan thing?"

    def out(modality, text):
        return SimpleNamespace(outputs=[SimpleNamespace(modality=modality, text=text)])
    assert question_read(out(pb.TEXT, sent + " "), sent) is True  # a service's Result (enums as numbers)
    assert question_read(out(Modality.TEXT, "What there there the green???"), sent) is False  # the pipeline's
    assert question_read(out(pb.IMAGE, ""), sent) is None  # no question text came back (spoken, SemCom)
    split = by_question_read([1, 1, 0, 1, 0, 0, 1], [True, True, True, False, False, None, None])
    assert split["n"] == 5 and split["share"] == 0.6
    assert split["read"]["n"] == 3 and split["read"]["accuracy"] == 2 / 3
    assert (split["read"]["ci_low"], split["read"]["ci_high"]) == wilson(2, 3)
    assert split["misread"]["n"] == 2 and split["misread"]["accuracy"] == 0.5
    assert by_question_read([1, 0], [None, None]) is None


def test_the_text_links_table_pairs_both_files_row_by_row_and_shows_the_upper_bound():
    rt = _tables()

    def point(scheme, snr, value, share, read, misread):
        split = {"n": 10, "share": share, "read": {"n": 5, "accuracy": read, "ci_low": read - 0.1, "ci_high": read},
                 "misread": {"n": 5, "accuracy": misread, "ci_low": None, "ci_high": None}}
        return {"task": "vqa", "scheme": scheme, "snr_db": snr, "channel": "rayleigh" if snr is not None else
                "noiseless", "n": 10, "value": value, "ci_low": value - 0.1, "ci_high": value + 0.1,
                "question_read": split}
    figures = {"text-links-installed": {"points": [point("unitocom", 0.0, 0.58, 0.45, 0.75, 0.44),
                                                   point("upper-bound", None, 0.75, 1.0, 0.75, None)]},
               "text-links-next": {"points": [point("unitocom", 0.0, 0.57, 0.55, 0.74, 0.39)]}}
    rows = [r for r in rt.text_links_block(figures).splitlines() if r.startswith("| ")][2:]  # under the header
    assert rows[0].startswith("| unitocom | 0 | installed | 10 | 0.450 | 0.58 [0.48, 0.68] | 0.75 [0.65, 0.75] | 0.44 |")
    assert rows[1].startswith("| unitocom | 0 | next | 10 | 0.550 | 0.57")
    assert rows[2].startswith("| upper-bound | noiseless | installed |") and rows[2].endswith("| – |")
    assert rt.text_links_block({"fig2": {"points": []}}) is None
    # the same points read with the prior: one row per scheme and SNR, a column per set of links and reading
    figures["text-prior-installed"] = {"points": [point("unitocom", 0.0, 0.65, 0.75, 0.75, 0.40)]}
    rows = [r for r in rt.reading_block(figures).splitlines() if r.startswith("| ")]
    assert rows[0] == ("| scheme | SNR (dB) | installed links, argmax: read, VQA | installed links, prior: read, VQA "
                       "| next links, argmax: read, VQA |")
    assert rows[2] == "| unitocom | 0 | 0.45, 0.58 [0.48, 0.68] | 0.75, 0.65 [0.55, 0.75] | 0.55, 0.57 [0.47, 0.67] |"
    assert rows[3] == "| upper-bound | noiseless | 1.00, 0.75 [0.65, 0.85] | – | – |"
    del figures["text-prior-installed"]
    assert rt.reading_block(figures) is None  # no file read with the prior: no table


def test_question_fades_records_each_questions_own_gain_and_bins_them(heldout_data):
    import importlib.util
    spec = importlib.util.spec_from_file_location("question_fades", ROOT / "scripts" / "question_fades.py")
    qf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qf)
    rows = qf.measure(6, 0.0, heldout_data)
    assert len(rows) == 6 and len({r["gain"] for r in rows}) == 6  # one Rayleigh draw per question, each its own
    assert all(r["gain"] > 0 and isinstance(r["read"], bool) and r["correct"] in (0.0, 1.0) for r in rows)
    split = qf.by_seen(rows)
    assert split["seen"]["n"] + split["unseen"]["n"] == 6 and split["seen"]["n"] == sum(r["seen"] for r in rows)
    bins = qf.by_fade(rows)
    assert sum(b["n"] for b in bins) == 6
    for b in bins:
        inside = [r for r in rows if b["gain_low"] <= r["gain"] < b["gain_high"]]
        assert b["read"] == sum(r["read"] for r in inside) / len(inside)
        assert b["accuracy_ci"][0] <= b["accuracy"] <= b["accuracy_ci"][1]
    rt = _tables()
    fig = {"header": {"git_commit": "0" * 40, "command": "scripts/question_fades.py --n 6"},
           "points": [{"links": "installed", "snr_db": 0.0, "channel": "rayleigh", **b} for b in bins]}
    table = rt.fades_block(fig, "results/question-fades.json")
    assert table.count("\n| [") == len(bins) and "read exactly (installed)" in table
    d = qf.paired_difference(rows, [dict(r, correct=1.0) for r in rows])  # every answer right: the gain is the misses
    assert d["difference"] == sum(1 - r["correct"] for r in rows) / 6 and d["changed"] == 6 - sum(
        r["correct"] for r in rows) and d["ci"][0] <= d["difference"] <= d["ci"][1]
    fig["paired"] = [{"links": "installed", **d}]
    assert "VQA read with the prior minus without, installed links, paired on the same 6 requests: +" in \
        rt.fades_block(fig, "results/question-fades.json")
    # the question sent twice: binned by the fade of the first copy, which is the fade the question sent once crossed
    twice = qf.measure(6, 0.0, heldout_data, copies=2)
    assert [r["gain"] for r in twice] == [r["gain"] for r in rows]
    fig["paired"] = [{"links": "installed", "reading": "2 copies - once", **qf.paired_difference(rows, twice)}]
    assert "VQA with the question sent 2 times minus once, installed links" in rt.fades_block(fig, "x.json")
