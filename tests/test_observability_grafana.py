"""Grafana provisioning and the dashboard, checked structurally (no Grafana binary here): every panel names the
provisioned datasource, every query parses as PromQL (promtool) and reads only series the services export or
the recording rules make, and the panels the testbed promises are there. The dashboard's queries also run
against a live Prometheus in tests/test_observability_prometheus.py."""
from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest
import yaml

from unitocom import prometheus

ROOT = pathlib.Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "unitocom.json"


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def datasource_uid() -> str:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (only,) = ds["datasources"]
    assert only["type"] == "prometheus" and only["url"] == "http://prometheus:9090"
    return only["uid"]


def exprs(d: dict) -> list[str]:
    out = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    return out + [a["expr"] for a in d["annotations"]["list"] if "expr" in a]


def concrete(expr: str) -> str:
    """Grafana's variables replaced by values Prometheus accepts, so that promtool can parse the query."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$__interval", "15s")
    return re.sub(r"\$\{?(\w+)\}?", "x", expr)


def test_provisioning_points_at_the_mounted_dashboards():
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/unitocom.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_dashboard_structure():
    d = dashboard()
    assert d["uid"] == "unitocom-testbed" and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(g["x"] + i, g["y"] + j) for i in range(g["w"]) for j in range(g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["type"] in {"timeseries", "stat", "barchart", "gauge", "table", "bargauge"}, p["type"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))


def test_every_panel_uses_the_provisioned_datasource():
    uid, d = datasource_uid(), dashboard()
    for p in d["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"]["uid"] == uid


def test_the_promised_panels_are_there():
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    for words in ("latency per stage", "throughput", "error", "accuracy vs snr by scheme", "psnr vs snr",
                  "queue depth", "channel uses per request", "tokens per stream", "accuracy vs packet loss",
                  "open sessions", "session outcomes"):
        assert words in titles, words
    acc = next(p for p in dashboard()["panels"] if p["title"].startswith("Accuracy vs SNR"))
    (t,) = acc["targets"]
    assert t["instant"] and t["format"] == "table" and "sum by (scheme, snr_bucket)" in t["expr"]
    assert [x["id"] for x in acc["transformations"]][0] == "groupingToMatrix"
    assert acc["options"]["xField"] == "snr_bucket"


def test_every_query_parses_as_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": concrete(e)}
                                                        for i, e in enumerate(exprs(dashboard()))]}]}
    f = tmp_path / "dashboard.rules.yml"
    f.write_text(yaml.safe_dump(rules))
    r = subprocess.run([prometheus.binary("promtool"), "check", "rules", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_broken_query_fails_the_promql_check(tmp_path):
    f = tmp_path / "broken.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [
        {"record": "d:q", "expr": concrete("sum by (scheme) (rate(unitocom_requests_total[$__rate_interval])")}]}]}))
    r = subprocess.run([prometheus.binary("promtool"), "check", "rules", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0


def known_series() -> set[str]:
    """Series names the services export (and their histogram / summary suffixes) and the recording rules make."""
    from prometheus_client import REGISTRY

    import services.common.metrics  # noqa: F401  (registers the families)
    import services.gateway.app  # noqa: F401
    names = {"up", "ALERTS"}
    for fam in REGISTRY.collect():
        names |= {fam.name, fam.name + "_total", fam.name + "_bucket", fam.name + "_sum", fam.name + "_count"}
    for f in (ROOT / "deploy/prometheus/rules").glob("*.yml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            names |= {r["record"] for r in g["rules"] if "record" in r}
    return names


FUNCS = {"sum", "by", "rate", "histogram_quantile", "max", "count", "le", "and", "or", "on", "without", "increase",
         "avg", "min", "ignoring", "bool", "offset"}


def test_queries_read_only_series_that_exist():
    known = known_series()
    for e in exprs(dashboard()):
        body = re.sub(r'\{[^}]*\}', "", re.sub(r"\([^()]*\)\s*\(", "(", e))  # drop selectors and by (...) lists
        body = re.sub(r"\[[^\]]*\]", "", re.sub(r'"[^"]*"', "", body))
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", body):
            if name in FUNCS or name.startswith("__") or re.fullmatch(r"\d+", name):
                continue
            assert name in known, f"{name!r} in {e!r} is neither exported nor recorded"


def test_variables_query_real_labels():
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"]["query"])
            assert m and m.group(2) in {"scheme", "task", "channel"}, v["name"]
        else:
            allowed = v["query"].split(",") + (["$__all"] if v.get("includeAll") else [])
            assert v["current"]["value"] in allowed, v["name"]
            assert [o["value"] for o in v["options"] if o["value"] != "$__all"] == v["query"].split(","), v["name"]


@pytest.mark.parametrize("panel_title", ["Accuracy vs SNR by scheme", "Latency per stage (p50, p99)"])
def test_concrete_helper_substitutes_every_variable(panel_title):
    p = next(p for p in dashboard()["panels"] if p["title"] == panel_title)
    for t in p["targets"]:
        assert "$" not in concrete(t["expr"])
