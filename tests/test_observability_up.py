"""`unitocom up --with-prometheus --with-gateway` as a user runs it: everything starts on loopback, Prometheus
scrapes the services and the gateway, `status` lists it all, `down` stops it all."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import free_consecutive, free_ports
from unitocom import client, prometheus, sidecars


def unitocom(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unitocom.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_up_with_prometheus_and_gateway_then_down(tmp_path):
    base, prom_port, gw_port = free_consecutive(6), *free_ports(2)
    run = ["--run-dir", str(tmp_path)]
    r = unitocom("up", "--base-port", str(base), "--metrics-base-port", str(base + 3), "--with-prometheus",
                 "--prometheus-port", str(prom_port), "--scrape-interval", "1", "--with-gateway",
                 "--gateway-port", str(gw_port), *run)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"prometheus   READY    http://127.0.0.1:{prom_port}" in r.stdout
        st = json.loads(unitocom("status", "--json", *run).stdout)
        assert {s["name"]: s["status"] for s in st["sidecars"]} == {"prometheus": "RUNNING", "gateway": "RUNNING"}
        url = f"http://127.0.0.1:{prom_port}"
        with client.Client(f"127.0.0.1:{base}") as c:
            c.send(client.build_request(text="up and scraped", answer="up and scraped", snr_db=30.0))
        up = prometheus.wait_for(url, 'up == 1', timeout_s=30, min_series=4)
        assert {s["metric"]["service"] for s in up} == {"transmitter", "channel", "basestation", "gateway"}
        acc = prometheus.wait_for(url, 'unitocom:accuracy:ratio{snr_bucket="30"}', timeout_s=30)
        assert acc[0]["value"] == 1.0 and acc[0]["metric"]["scheme"] == "traditional"
        assert sidecars.http_ok(f"http://127.0.0.1:{gw_port}/readyz")
    finally:
        down = unitocom("down", *run)
    assert down.returncode == 0 and "prometheus" in down.stdout and "gateway" in down.stdout
    pids = [s["pid"] for s in st["services"] + st["sidecars"]]
    assert not any(sidecars.alive(p) for p in pids)
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "sidecars.json").exists()


def test_up_with_prometheus_fails_fast_when_it_is_not_installed(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # nothing on PATH: no prometheus
    r = unitocom("up", "--with-prometheus", "--run-dir", str(tmp_path), env=env, timeout=60)
    assert r.returncode == 1
    assert "--with-prometheus: `prometheus` not found on PATH: install the Debian package `prometheus`" in r.stderr
    assert not (tmp_path / "state.json").exists()  # nothing was started


def test_up_help_explains_the_options():
    out = unitocom("up", "--help").stdout
    assert "--with-prometheus" in out and "--with-gateway" in out and "recording and alert rules" in out
