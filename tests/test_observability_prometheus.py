"""Prometheus: the deploy/ configs and rules checked by promtool (and shown to fail when broken), and a real
Prometheus server scraping the running services, read back through its HTTP API."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import time

import pytest

from tests.conftest import free_ports, scene_png
from unitocom import client, prometheus

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"


def promtool(*args: str, cwd: pathlib.Path = PROM) -> subprocess.CompletedProcess:
    try:
        exe = prometheus.binary("promtool")
    except prometheus.PrometheusError as e:
        pytest.fail(str(e))
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_promtool_check_config():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout + r.stderr  # recording.yml and alerts.yml, both parsed


def test_promtool_check_config_kubernetes():
    """The cluster variant: DNS service discovery on the headless Services; its rules load from the mount."""
    r = promtool("check", "config", "prometheus-k8s.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "/etc/prometheus/rules/*.yml" in (PROM / "prometheus-k8s.yml").read_text()


def test_promtool_test_rules():
    r = promtool("test", "rules", "tests/rules_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_the_local_config_passes_promtool(tmp_path):
    from unitocom import config
    conf = tmp_path / "prometheus.yml"
    conf.write_text(json.dumps(prometheus.local_config(config.load("tiny"), 1.0, gateway="127.0.0.1:8080")))
    r = promtool("check", "config", str(conf))
    assert r.returncode == 0, r.stdout + r.stderr


def _copy(tmp_path: pathlib.Path) -> pathlib.Path:
    dst = tmp_path / "prometheus"
    shutil.copytree(PROM, dst)
    return dst


@pytest.mark.parametrize("old, new, why", [
    ("scrape_interval: 5s", "scrape_interval: five", "not a valid duration"),
    ("job_name: unitocom-gateway", "job_name: unitocom", "found multiple scrape configs with job name"),
])
def test_promtool_check_config_fails_on_a_broken_copy(tmp_path, old, new, why):
    d = _copy(tmp_path)
    text = (d / "prometheus.yml").read_text()
    assert old in text
    (d / "prometheus.yml").write_text(text.replace(old, new, 1))
    r = promtool("check", "config", "prometheus.yml", cwd=d)
    assert r.returncode != 0 and why in r.stdout + r.stderr


def test_promtool_check_config_fails_on_a_broken_rule(tmp_path):
    d = _copy(tmp_path)
    rules = d / "rules" / "recording.yml"
    rules.write_text(rules.read_text().replace("rate(unitocom_stage_seconds_bucket[1m])",
                                               "rate(unitocom_stage_seconds_bucket[1m]", 1))
    r = promtool("check", "config", "prometheus.yml", cwd=d)
    assert r.returncode != 0 and "parse error" in r.stdout + r.stderr


@pytest.mark.parametrize("path, old, new", [
    ("rules/alerts.yml", "ratio_rate5m > 0.05", "ratio_rate5m > 0.5"),  # the error alert no longer fires
    ("rules/recording.yml", "histogram_quantile(0.99, sum by (service, stage", "histogram_quantile(0.9, sum by "
                                                                              "(service, stage"),
    ("rules/alerts.yml", "up{job=\"unitocom\"} == 0", "up{job=\"unitocom\"} == 2"),
    # sessions (issue 17): the missing-parts alert, the table-full alert, the ratio's zero when all complete
    ("rules/alerts.yml", "missing_parts:ratio_rate15m > 0.25", "missing_parts:ratio_rate15m > 0.6"),
    ("rules/alerts.yml", "{event=\"rejected\"} > 0", "{event=\"rejected\"} > 1"),
    ("rules/recording.yml", "or sum by (service) (rate(unitocom_sessions_total{event=~\"completed|failed\"}[15m])) * 0",
     ""),
])
def test_promtool_test_rules_fails_on_a_broken_copy(tmp_path, path, old, new):
    d = _copy(tmp_path)
    f = d / path
    assert old in f.read_text()
    f.write_text(f.read_text().replace(old, new, 1))
    r = promtool("test", "rules", "tests/rules_test.yml", cwd=d)
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr


def test_quality_expr_picks_the_family_by_unit():
    assert prometheus.quality_expr("psnr_db").startswith("sum by (scheme, snr_bucket) (unitocom_quality_decibels_sum")
    assert "unitocom_quality_ratio_count{metric=\"exact_match\"}" in prometheus.quality_expr("exact_match")
    with pytest.raises(ValueError):
        prometheus.quality_expr('x"} or vector(1) #')


@pytest.fixture(scope="module")
def live_prometheus(services, tmp_path_factory):
    """A real Prometheus on a free loopback port scraping the session's services every second."""
    cfg, _ = services
    d = tmp_path_factory.mktemp("prom-run")
    sc = prometheus.start(cfg, d, port=free_ports(1)[0], interval_s=1.0, timeout_s=60)
    yield sc.url
    prometheus.stop(d)


# The lowest and highest buckets (-10: SNR < -5 dB, 35: 35..40 dB) are this test's own: no other test sends
# there, so the session's shared services cannot move the values asserted below.
SNRS = (-12.0, 6.0, 12.0, 36.0)


def test_live_prometheus_records_latency_quantiles_and_accuracy_vs_snr(services, tx, live_prometheus):
    url = live_prometheus
    prometheus.wait_for(url, 'up{job="unitocom"} == 1', timeout_s=30, min_series=3)
    # A burst of labelled requests spread over a few scrapes (rates need two samples of a growing counter).
    t0, sent = time.monotonic(), 0
    while sent < 60 and (sent < 2 * len(SNRS) or time.monotonic() - t0 < 4.0):
        snr = SNRS[sent % len(SNRS)]
        text = f"two blue spheres behind a red cube #{sent}"
        tx.send(client.build_request(text=text, answer=text, snr_db=snr, seed=sent, channel="awgn"))
        sent += 1
    tx.send(client.build_request(image=scene_png(32), snr_db=30.0))

    p50 = prometheus.wait_for(url, 'unitocom:stage_seconds:p50_rate1m{scheme="traditional"}', timeout_s=30,
                              ok=lambda got: {s["metric"]["service"] for s in got} >= {"transmitter", "channel",
                                                                                         "basestation"})
    stages = {(s["metric"]["service"], s["metric"]["stage"]) for s in p50}
    assert {("transmitter", "source_encode"), ("transmitter", "channel_encode"), ("channel", "channel"),
            ("basestation", "equalise"), ("basestation", "decode")} <= stages
    assert all(0 < s["value"] < 60 for s in p50)
    p99 = prometheus.query(url, 'unitocom:stage_seconds:p99_rate1m{service="basestation", stage="decode"}')
    assert p99 and p99[0]["value"] >= min(s["value"] for s in p50 if s["metric"]["stage"] == "decode")

    buckets = {"-10", "5", "10", "35"}
    acc = prometheus.wait_for(url, 'unitocom:accuracy:ratio{scheme="traditional"}', timeout_s=30,
                              ok=lambda got: {s["metric"]["snr_bucket"] for s in got} >= buckets)
    by_snr = {s["metric"]["snr_bucket"]: s["value"] for s in acc}
    assert all(0.0 <= v <= 1.0 for v in by_snr.values())
    assert by_snr["35"] == 1.0, by_snr  # 16-QAM with a rate-1/2 Turbo code never fails at 36 dB
    assert by_snr["-10"] == 0.0, by_snr  # and always does at -12 dB

    curves = prometheus.quality_curves(url, "exact_match", channel="awgn")
    trad = next(s for s in curves["series"] if s["scheme"] == "traditional")
    snrs = [p[0] for p in trad["points"]]
    assert snrs == sorted(snrs) and {-10.0, 5.0, 10.0, 35.0} <= set(snrs)
    assert all(p[2] >= 1 for p in trad["points"])  # request counts per point

    psnr = prometheus.wait_for(url, 'unitocom:quality_decibels:mean{metric="psnr_db", snr_bucket="30"}',
                               timeout_s=20)
    assert 15 < psnr[0]["value"] < 60
    rate = prometheus.wait_for(url, 'sum(unitocom:requests:rate1m{service="transmitter", code="OK"})', timeout_s=20,
                               ok=lambda got: got[0]["value"] > 0)
    assert rate[0]["value"] > 0
    # The alert rules are loaded and evaluated (none fires on a healthy testbed).
    rules = json.load(__import__("urllib.request").request.urlopen(f"{url}/api/v1/rules", timeout=5))
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"UnitocomServiceDown", "UnitocomHighErrorRatio", "unitocom:accuracy:ratio"} <= names


def test_prometheus_query_errors_are_clear(live_prometheus):
    with pytest.raises(prometheus.PrometheusError, match="rejected"):
        prometheus.query(live_prometheus, "sum(")
    with pytest.raises(prometheus.PrometheusError, match="unreachable"):
        prometheus.query(f"http://127.0.0.1:{free_ports(1)[0]}", "up", timeout_s=1)


def test_every_dashboard_query_runs_on_the_live_prometheus(live_prometheus):
    """The Grafana dashboard's queries, variables filled in as Grafana would, answer without error; the
    accuracy-vs-SNR and per-stage latency panels have data after the burst above."""
    from tests.test_observability_grafana import dashboard

    def grafana(expr: str) -> str:
        for var, value in (("$__rate_interval", "1m"), ("$ratio_metric", "exact_match"), ("$db_metric", "psnr_db"),
                           ("$scheme", ".*"), ("$channel", ".*"), ("$task", ".*"), ("$stage", ".*")):
            expr = expr.replace(var, value)
        return expr

    answers = {}
    for p in dashboard()["panels"]:
        for t in p["targets"]:
            answers.setdefault(p["title"], []).extend(prometheus.query(live_prometheus, grafana(t["expr"])))
    assert len(answers["Accuracy vs SNR by scheme"]) >= 4
    assert answers["Latency per stage (p50, p99)"] and answers["Throughput by scheme and task"]
