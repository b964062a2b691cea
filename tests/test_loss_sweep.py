"""`unitocom loss-sweep` (issue 16): the plan of points, the files, refusals recorded, --resume."""
from __future__ import annotations

import argparse
import json

import grpc
import pytest

from tests.conftest import Refused
from unitocom import loss_sweep


def test_the_packet_loss_plan_crosses_schemes_rates_and_burstiness():
    pts = loss_sweep.plan("packet-loss", 3.0, ["vqa"])
    assert {p["scheme"] for p in pts} == set(loss_sweep.SCHEMES)
    per_scheme = [(p["packet_loss"], p["packet_burst"]) for p in pts if p["scheme"] == "traditional"]
    assert per_scheme == [(0.0, 0.0), (0.1, 0.0), (0.1, 3.0), (0.25, 0.0), (0.25, 3.0), (0.5, 0.0), (0.5, 3.0)]
    resilient = [p for p in pts if p["scheme"] == "unitocom-resilient"]
    assert all(p["link"]["variant"] == "resilient" and p["link"]["scheme"] == "unitocom" for p in resilient)


def test_the_budget_plan_sends_every_token_at_full_budget():
    pts = loss_sweep.plan("budget", 3.0, ["reconstruct"])
    budgets = [p["link"].get("token_budget") for p in pts if p["scheme"] == "unitocom-resilient"]
    assert budgets == [8, 16, 24, 0]  # 32 of 32: no budget on the wire
    assert sum(p["scheme"] == "traditional" for p in pts) == len(loss_sweep.TRADITIONAL_LOW)
    with pytest.raises(Exception, match="unknown sweep"):
        loss_sweep.plan("snr", 3.0, ["vqa"])


def test_a_plan_can_be_cut_to_some_schemes_and_loss_rates():
    """One scheme without packet loss at another SNR (issue 12's 0 dB image target) need not measure the grid."""
    pts = loss_sweep.plan("packet-loss", 3.0, ["reconstruct"], ["unitocom"], (0.0,))
    assert [(p["scheme"], p["packet_loss"], p["link"]) for p in pts] == [
        ("unitocom", 0.0, {"scheme": "unitocom", "packet_loss": 0.0, "packet_burst": 0.0})]
    assert loss_sweep._loss_rates("0,0.5") == (0.0, 0.5) and loss_sweep._loss_rates(None) == loss_sweep.LOSS_RATES
    for bad in ("1", "-0.1", "nan", "x", ""):
        with pytest.raises(Exception, match="--loss-rates"):
            loss_sweep._loss_rates(bad)
    with pytest.raises(Exception, match="--schemes: unknown"):
        loss_sweep._schemes("unitocom,semcom")
    assert loss_sweep._schemes(None) is None


def _args(tmp_path, *extra):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    loss_sweep.add_subparser(sub)
    return p.parse_args(["loss-sweep", "--sweep", "budget", "--tasks", "vqa,reconstruct", "--n-vqa", "3",
                         "--n-images", "2", "--out", str(tmp_path), "--quiet", *extra])


def test_a_sweep_writes_its_files_records_refusals_and_resumes(tmp_path, monkeypatch):
    from unitocom import client
    monkeypatch.setattr(client, "RpcError", Refused)
    monkeypatch.setattr(loss_sweep, "Scorer", lambda *a, **k: None)
    calls = []

    def fake(point, scorer, target, snr_db, seed, workers, progress=True):
        calls.append(point["scheme"])
        if point["scheme"] == "unitocom":
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION)
        n = 3 if point["task"] == "vqa" else 2
        uses = 8 * (point.get("token_budget") or 140)
        return {"task": point["task"], "scheme": point["scheme"], "link": point["link"], "snr_db": snr_db,
                "token_budget": point.get("token_budget"), "packet_loss": None, "packet_burst": None,
                "settings": point.get("settings"), "n": n, "metric": "m", "value": 0.5, "ci_low": 0.4,
                "ci_high": 0.6, "pair_f1": 0.7, "pair_f1_ci_low": 0.6, "pair_f1_ci_high": 0.8, "channel_uses": uses}
    monkeypatch.setattr(loss_sweep, "measure", fake)
    res = loss_sweep.run(_args(tmp_path), ["loss-sweep"])
    assert [s["status"] for s in res["skipped"]] == ["FAILED_PRECONDITION"] * 2  # one per task, and it went on
    saved = json.loads((tmp_path / "budget.json").read_text())
    assert saved["points"] == res["points"] and saved["header"]["sweep"] == "budget"
    assert saved["header"]["format"] == loss_sweep.FORMAT  # the README table writer reads it by this
    assert "checkpoints_sha256" in saved["header"] and (tmp_path / "budget.png").stat().st_size > 0
    assert (tmp_path / "budget.csv").read_text().count("\n") == len(res["points"]) + 1

    calls.clear()
    loss_sweep.run(_args(tmp_path, "--resume"), ["loss-sweep", "--resume"])
    assert calls == ["unitocom", "unitocom"]  # only the refused points are sent again

    # another data set (a fresh draw) measures every point again, though the checkpoints are the same
    calls.clear()
    loss_sweep.run(_args(tmp_path, "--resume", "--data", str(tmp_path / "fresh")), ["loss-sweep", "--resume"])
    assert len(calls) == len(res["points"]) + 2
    assert json.loads((tmp_path / "budget.json").read_text())["header"]["data"] == str(tmp_path / "fresh")
    loss_sweep.run(_args(tmp_path), ["loss-sweep"])
    # the same path drawn again: its recorded checksum differs, so every point is measured again
    saved = json.loads((tmp_path / "budget.json").read_text())
    saved["header"]["data_sha256"] = "0" * 64
    (tmp_path / "budget.json").write_text(json.dumps(saved))
    calls.clear()
    loss_sweep.run(_args(tmp_path, "--resume"), ["loss-sweep", "--resume"])
    assert len(calls) == len(res["points"]) + 2

    # a checkpoint that was not there before may change what a point reads (a resilient companion): all again
    saved = json.loads((tmp_path / "budget.json").read_text())
    companion = "image-sigma-genib-s32-resilient.safetensors"
    assert saved["header"]["checkpoints_sha256"].pop(companion)
    (tmp_path / "budget.json").write_text(json.dumps(saved))
    calls.clear()
    loss_sweep.run(_args(tmp_path, "--resume"), ["loss-sweep", "--resume"])
    assert len(calls) == len(res["points"]) + 2

    # a text link or the prior changed or added: only the questions sent through a learned text link again (the
    # reconstructions and the traditional scheme's questions read none of it)
    saved = json.loads((tmp_path / "budget.json").read_text())
    saved["header"]["checkpoints_sha256"]["text-sigma-genib.safetensors"] = "0" * 64
    saved["header"]["checkpoints_sha256"].pop("text-prior.safetensors", None)
    (tmp_path / "budget.json").write_text(json.dumps(saved))
    calls.clear()
    again = loss_sweep.run(_args(tmp_path, "--resume"), ["loss-sweep", "--resume"])
    learned_vqa = [p for p in res["points"] if p["task"] == "vqa" and p["scheme"] != "traditional"]
    assert learned_vqa and sorted(calls) == sorted([p["scheme"] for p in learned_vqa] + ["unitocom"] * 2)
    assert "text-sigma-genib.safetensors" in again["header"]["remeasured_after_text_change"]

    # a file from before headers named their data set: its command's --data, or the default, decides
    loss_sweep.run(_args(tmp_path), ["loss-sweep"])
    saved = json.loads((tmp_path / "budget.json").read_text())
    del saved["header"]["data"], saved["header"]["data_sha256"]
    (tmp_path / "budget.json").write_text(json.dumps(saved))
    calls.clear()
    loss_sweep.run(_args(tmp_path, "--resume", "--data", loss_sweep.DEFAULT_DATA), ["loss-sweep", "--resume"])
    assert calls == ["unitocom", "unitocom"]
    saved["header"]["command"] += " --data elsewhere"
    (tmp_path / "budget.json").write_text(json.dumps(saved))
    calls.clear()
    loss_sweep.run(_args(tmp_path, "--resume", "--data", loss_sweep.DEFAULT_DATA), ["loss-sweep", "--resume"])
    assert len(calls) == len(res["points"]) + 2

    calls.clear()
    monkeypatch.setattr(client, "RpcError", Refused)

    def gone(*a, **k):
        raise Refused(grpc.StatusCode.UNAVAILABLE)
    monkeypatch.setattr(loss_sweep, "measure", gone)
    with pytest.raises(Refused):  # the services are down: the sweep stops (and --resume continues it)
        loss_sweep.run(_args(tmp_path), ["loss-sweep"])
    # a resumed run stopped part way (at the first point it sends, before any it keeps) loses none of them
    saved["header"]["command"] = saved["header"]["command"].replace(" --data elsewhere", "")
    (tmp_path / "budget.json").write_text(json.dumps(saved))
    before, sent = saved["points"], []

    def once_then_gone(point, *a, **k):  # the first point it sends comes back, then the services are gone
        if sent:
            raise Refused(grpc.StatusCode.UNAVAILABLE)
        sent.append(point["scheme"])
        return fake(point, *a, **k) if point["scheme"] != "unitocom" else {**before[0], "link": point["link"],
                                                                            "scheme": "unitocom"}
    monkeypatch.setattr(loss_sweep, "measure", once_then_gone)
    with pytest.raises(Refused):
        loss_sweep.run(_args(tmp_path, "--resume"), ["loss-sweep", "--resume"])
    after = json.loads((tmp_path / "budget.json").read_text())["points"]
    assert sent == ["unitocom"] and len(after) == len(before) + 1 and all(p in after for p in before)


def test_eval_passes_the_link_options_on_to_every_request(monkeypatch, tmp_path):
    """`unitocom eval --packet-loss 0.2 --variant resilient --token-budget 8 ...` reaches the wire."""
    from unitocom import cli, client, task_eval
    args = cli.parser().parse_args(["eval", "--task", "vqa", "--packet-loss", "0.2", "--variant", "resilient",
                                    "--token-budget", "8", "--packing", "aggregated"])
    link = {k: getattr(args, k) for k in task_eval.LINK_OPTIONS}
    sent = []

    class FakeClient:
        def __init__(self, target):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def send(self, req, timeout_s):
            sent.append(req)
            raise RuntimeError("stop here")
    monkeypatch.setattr(client, "Client", FakeClient)
    monkeypatch.setattr(task_eval, "require_data", lambda d: d)
    monkeypatch.setattr(task_eval, "vqa_items", lambda d, s, n: ([{"image_filename": "x.png", "question": "q",
                                                                    "answer": "a", "question_family_index": 0}], ["a"]))
    (tmp_path / "images" / "test").mkdir(parents=True)
    (tmp_path / "images" / "test" / "x.png").write_bytes(b"png")
    monkeypatch.setattr(task_eval, "clevr_root", lambda d: tmp_path)
    with pytest.raises(RuntimeError, match="stop here"):
        task_eval.evaluate("vqa", "unitocom", 20.0, "rayleigh", 1, "data/tiny", "t", link=link, progress=False)
    lk = sent[0].link
    assert (lk.packet_loss, lk.variant, lk.token_budget, lk.packing) == (pytest.approx(0.2), "resilient", 8, "aggregated")


def test_paired_comparisons_take_differences_over_the_same_examples():
    def pt(scheme, values, loss=0.25):
        return {"task": "vqa", "scheme": scheme, "packet_loss": loss, "packet_burst": 0.0, "n": len(values),
                "per_example": {"value": values}}
    base = [0.0, 1.0] * 50
    better = [1.0] * 100  # wins every question the standard reader lost, keeps the rest
    same = list(base)
    out = loss_sweep.comparisons([pt("unitocom", base), pt("unitocom-resilient", better),
                                  pt("unitocom-aggregated", same), pt("unitocom", base, 0.5)])
    by = {(c["scheme"], c["against"]): c["value"] for c in out}
    assert by[("unitocom-resilient", "unitocom")]["difference"] == pytest.approx(0.5)
    assert by[("unitocom-resilient", "unitocom")]["separates"]
    assert by[("unitocom-aggregated", "unitocom")] == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                                                       "separates": False}
    assert all(c["packet_loss"] == 0.25 for c in out)  # the 50 % point has no partner


def test_name_gives_the_files_their_stem(tmp_path, monkeypatch):
    monkeypatch.setattr(loss_sweep, "Scorer", lambda *a, **k: None)

    def fake(point, scorer, target, snr_db, seed, workers, progress=True):
        return {"task": point["task"], "scheme": point["scheme"], "link": point["link"], "snr_db": snr_db,
                "token_budget": point.get("token_budget"), "packet_loss": None, "packet_burst": None, "n": 2,
                "metric": "m", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "channel_uses": 256, "pair_f1": 0.7,
                "pair_f1_ci_low": 0.6, "pair_f1_ci_high": 0.8}
    monkeypatch.setattr(loss_sweep, "measure", fake)
    res = loss_sweep.run(_args(tmp_path, "--name", "budget-small", "--schemes", "unitocom"), ["loss-sweep"])
    assert [p["scheme"] for p in res["points"]] == ["unitocom", "unitocom"]  # one per task
    assert sorted(f.name for f in tmp_path.iterdir()) == ["budget-small.csv", "budget-small.json", "budget-small.png"]
