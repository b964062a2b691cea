"""Stage timings: one list of names (unitocom.timing.STAGES), reported by every hop for the steps a request really
goes through, and the same list in the README, the dashboard and the metrics."""
from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml

from tests.conftest import scene_png
from unitocom import client, timing
from unitocom.timing import STAGES

ROOT = pathlib.Path(__file__).resolve().parents[1]


# --- the list and the clock -------------------------------------------------------------------------------------

def test_the_list_names_each_pipeline_step_once_with_a_meaning():
    assert STAGES == ("validate", "source_encode", "channel_encode", "channel", "equalise", "decode",
                      "mllm_prefill", "mllm_generate", "detokenize", "score")
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", s) and timing.STAGE_MEANINGS[s] for s in STAGES)


def test_an_unknown_stage_raises_wherever_it_is_named():
    clock = timing.Clock("transmitter")
    for use in (lambda c: c.add("encode", 1.0), lambda c: c.stage("mllm").__enter__(),
                lambda c: c.split("mllm_prefill", "generate").__enter__()):
        for c in (clock, timing.NOT_TIMED):
            with pytest.raises(timing.UnknownStage, match="not a stage"):
                use(c)
    assert clock.seconds == {}


def test_a_stage_run_twice_is_summed_and_split_marks_the_boundary():
    clock = timing.Clock("basestation")
    clock.add("equalise", 0.25)
    clock.add("decode", 1.0)
    clock.add("equalise", 0.5)
    with clock.split("mllm_prefill", "mllm_generate") as mark:
        mark()
        mark()  # only the first mark counts
    with clock.split("mllm_prefill", "mllm_generate"):
        pass  # never marked: all of it is the first stage
    assert list(clock.seconds) == ["equalise", "decode", "mllm_prefill", "mllm_generate"]
    assert clock.seconds["equalise"] == 0.75
    from unitocom.v1 import unitocom_pb2 as pb
    result = pb.Result()
    clock.report(result.timings)
    assert [(t.service, t.stage) for t in result.timings] == [("basestation", s) for s in clock.seconds]


# --- what a request reports through the running services --------------------------------------------------------

def _stages(result) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {}
    for t in result.timings:
        assert t.stage in STAGES, t.stage
        assert t.seconds >= 0.0, t
        got.setdefault(t.service, set()).add(t.stage)
    pairs = [(t.service, t.stage) for t in result.timings]
    assert len(pairs) == len(set(pairs)), f"a stage reported twice by one service: {pairs}"
    return got


TRANSMITTER = {"validate", "source_encode", "channel_encode"}


def test_reconstruct_with_the_traditional_scheme_times_the_classic_chain(tx):
    r = tx.send(client.build_request(image=scene_png(32), snr_db=20.0, channel="rayleigh", seed=2))
    assert _stages(r) == {"transmitter": TRANSMITTER | {"score"}, "channel": {"channel"},
                          "basestation": {"equalise", "decode"}}


def test_reconstruct_with_a_learned_scheme_de_tokenizes(tx):
    r = tx.send(client.build_request(image=scene_png(32), scheme="unitocom", snr_db=20.0, seed=2))
    assert _stages(r) == {"transmitter": TRANSMITTER | {"score"}, "channel": {"channel"},
                          "basestation": {"equalise", "detokenize"}}


@pytest.mark.parametrize("scheme, receiver", [
    # The traditional base station decodes the JPEG and the question, then tokenizes the image for the MLLM.
    ("traditional", {"equalise", "decode", "source_encode"}),
    # A learned one de-tokenizes both streams (the Result's outputs) and reads R's tokens.
    ("unitocom", {"equalise", "detokenize"}),
])
def test_a_vqa_request_reports_every_stage_of_its_path(tx, scheme, receiver):
    r = tx.send(client.build_request(image=scene_png(32), question="how many red things are there?", task="vqa",
                                     scheme=scheme, snr_db=20.0, answer="2", seed=1))
    assert r.output_text
    assert _stages(r) == {"transmitter": TRANSMITTER, "channel": {"channel"},
                          "basestation": receiver | {"mllm_prefill", "mllm_generate", "score"}}
    seconds = {t.stage: t.seconds for t in r.timings if t.service == "basestation"}
    assert seconds["mllm_prefill"] > 0 and seconds["mllm_generate"] > 0


# --- the same list in the README, the dashboard, the metrics and the rules -----------------------------------------

def _readme_stage_table() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*stage\s*\|", line))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(re.fullmatch(r"\|\s*`([^`]+)`\s*\|.*", line).group(1))
    return rows


def test_the_readme_lists_the_stages_of_the_code():
    assert _readme_stage_table() == list(STAGES)
    metrics_row = next(line for line in (ROOT / "README.md").read_text().splitlines()
                       if line.startswith("| `unitocom_stage_seconds`"))
    assert "service, stage, scheme" in metrics_row


def test_the_dashboard_lists_the_stages_of_the_code():
    d = json.loads((ROOT / "deploy/grafana/dashboards/unitocom.json").read_text())
    (var,) = [v for v in d["templating"]["list"] if v["name"] == "stage"]
    assert var["query"].split(",") == list(STAGES)
    assert [o["value"] for o in var["options"] if o["value"] != "$__all"] == list(STAGES)
    (panel,) = [p for p in d["panels"] if p["title"].startswith("Latency per stage")]
    assert all('stage=~"$stage"' in t["expr"] for t in panel["targets"])
    listed = re.search(r":\s*([a-z_, ]+?)\s*\(", panel["description"]).group(1)
    assert [s.strip() for s in listed.split(",")] == list(STAGES)


def test_the_metrics_help_and_docstring_list_the_stages_of_the_code():
    from services.common import metrics
    assert metrics.STAGE_SECONDS._documentation.endswith(": " + ", ".join(STAGES))
    doc = re.search(r"^    stage\s+(.*?)\(unitocom\.timing\.STAGES", metrics.__doc__, re.S | re.M).group(1)
    assert [s.strip() for s in doc.split("|")] == list(STAGES)


def test_stage_names_in_the_prometheus_rules_and_their_tests_are_stages_of_the_code():
    for f in sorted((ROOT / "deploy/prometheus").rglob("*.yml")):
        yaml.safe_load(f.read_text())
        for name in re.findall(r'stage\s*=~?\s*\\?"([^"\\]*)\\?"', f.read_text()):
            assert set(name.split("|")) <= set(STAGES), f"{f}: stage {name!r}"
