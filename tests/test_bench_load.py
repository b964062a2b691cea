"""bench/bench_load.py: its accounting and recovery arithmetic on made-up calls, and (slow) a base station
killed under load that the supervisor brings back."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from tests.conftest import load_script

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench():
    return load_script("bench/bench_load.py")


bl = _bench()


def test_histogram_percentiles_throughput_and_accounting():
    calls = [bl.Call("vqa/unitocom", i, i + 0.1 * (i + 1), "OK") for i in range(10)]  # 100 .. 1000 ms
    calls += [bl.Call("asr/traditional", 3, 3.01, "UNAVAILABLE")] * 2
    calls += [bl.Call("vqa/unitocom", 4, 9, "DEADLINE_EXCEEDED")]
    s = bl.summarize("x", calls, sent=13, clients=2, load_s=5.0)
    assert s.accounted and (s.ok, s.errors) == (10, 3)
    assert s.codes == {"OK": 10, "UNAVAILABLE": 2, "DEADLINE_EXCEEDED": 1}
    assert (s.p50_ms, s.p90_ms, s.p99_ms) == pytest.approx((500, 900, 1000))
    assert s.ok_per_s == pytest.approx(2.0)
    assert s.kinds == {"vqa/unitocom": 11, "asr/traditional": 2}


def test_a_request_sent_but_never_ended_is_not_accounted_for():
    calls = [bl.Call("k", 0, 1, "OK"), bl.Call("k", 0, 1, "INTERNAL")]
    assert not bl.summarize("x", calls, sent=3, clients=1, load_s=1).accounted
    assert bl.summarize("x", calls, sent=2, clients=1, load_s=1).accounted
    assert "NO" in bl.table([bl.summarize("x", calls, sent=3, clients=1, load_s=1)])


def test_recovery_is_measured_from_serving_again_to_the_first_ok():
    f = bl.Fault("kill", "basestation", at_s=2.0, pid=1, done_s=2.0, serving_again_s=6.0)
    calls = [bl.Call("k", 0.0, 1.0, "OK"), bl.Call("k", 2.5, 2.6, "UNAVAILABLE"),
             bl.Call("k", 6.1, 6.2, "UNAVAILABLE"), bl.Call("k", 5.0, 6.5, "OK"), bl.Call("k", 6.6, 7.0, "OK")]
    s = bl.summarize("kill", calls, sent=5, clients=1, load_s=8.0, fault=f)
    assert s.back_serving_s == pytest.approx(4.0) and s.first_ok_after_s == pytest.approx(0.5)
    assert s.errors_after_serving == 1
    never = bl.summarize("kill", calls[:3], sent=3, clients=1, load_s=8.0, fault=f)
    assert never.first_ok_after_s is None and "never" in bl.table([never])


def test_scenarios_and_mix_parse_and_bad_ones_are_refused():
    assert bl.parse_scenario("baseline", 20) == ("baseline", None)
    name, f = bl.parse_scenario("kill-basestation", 20)
    assert name == "kill-basestation@5" and (f.action, f.service, f.at_s) == ("kill", "basestation", 5.0)
    assert bl.parse_scenario("stop-channel@7.5", 20)[1].at_s == 7.5
    for bad in ("kill-gateway", "pause-channel", "kill"):
        with pytest.raises(ValueError):
            bl.parse_scenario(bad, 20)
    assert bl.parse_weights("vqa=2, asr") == {"vqa": 2.0, "asr": 1.0}
    with pytest.raises(ValueError):
        bl.parse_weights("vqa=-1")


def test_table_puts_scenarios_side_by_side():
    a = bl.summarize("baseline", [bl.Call("k", 0, 1, "OK")], 1, 1, 1.0)
    b = bl.summarize("stop-channel@1", [bl.Call("k", 0, 1, "UNAVAILABLE")], 1, 1, 1.0, bl.Fault("stop", "channel", 1))
    lines = bl.table([a, b]).splitlines()
    assert lines[0].split()[1:] == ["baseline", "stop-channel@1"]
    assert any(line.split()[:1] == ["UNAVAILABLE"] and line.split()[-2:] == ["0", "1"] for line in lines)
    assert any(line.startswith("every request accounted for") and line.split()[-2:] == ["yes", "yes"]
               for line in lines)


def test_help_explains_scenarios_and_recovery():
    out = subprocess.run([sys.executable, str(ROOT / "bench/bench_load.py"), "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    assert "kill-SERVICE[@T]" in out and "first OK after" in out and "--spawn" in out


@pytest.mark.slow
def test_killed_base_station_under_load_serves_again(tmp_path):
    """Its own supervised stack, 3 clients; the base station is SIGKILLed at 3 s; the supervisor restarts it,
    and the load goes on until an OK call completes after it is SERVING again."""
    out = tmp_path / "load.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench/bench_load.py"), "--spawn", "--clients", "3",
                        "--duration", "8", "--mix", "reconstruct=1,vqa=1", "--kill", "basestation@3",
                        "--recovery-timeout", "120", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    import json
    (s,) = json.loads(out.read_text())
    assert s["accounted"] and s["sent"] == s["ok"] + s["errors"]
    assert s["fault"]["pid"] and s["fault"]["done_s"] is not None and s["fault"]["error"] is None
    assert s["back_serving_s"] is not None and s["first_ok_after_s"] is not None  # served again after the restart
    assert "every request accounted for" in r.stdout


def test_health_summary_counts_slow_and_missing_answers():
    from bench.bench_load import health_summary
    h = health_summary([(5.0, "SERVING", 1.0), (150.0, "SERVING", 2.5), (1.0, "UNREACHABLE", 3.0), (7.0, "SERVING", 4.0)])
    assert h == {"probes": 4, "p50_ms": 7.0, "p99_ms": 150.0, "max_ms": 150.0, "over_target": 1, "not_serving": 1,
                 "max_at_s": 2.5}
