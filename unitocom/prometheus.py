"""A real Prometheus server for the local testbed (`unitocom up --with-prometheus`), and a small client of its
HTTP API (used by the gateway's accuracy-vs-SNR chart and by the tests).

The server is the Debian package `prometheus` (scripts/setup_system.sh installs it; it brings `promtool`). It
binds loopback, keeps its data in the run directory, scrapes the services started by `unitocom up` and loads the
same recording and alert rules as the compose and Kubernetes deployments (deploy/prometheus/rules/).
"""
from __future__ import annotations

import json
import math
import pathlib
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

from unitocom import sidecars
from unitocom.config import Config

RULES_DIR = sidecars.ROOT / "deploy" / "prometheus" / "rules"
INSTALL_HINT = "install the Debian package `prometheus` (scripts/setup_system.sh does it when missing)"


class PrometheusError(RuntimeError):
    pass


def binary(name: str = "prometheus") -> str:
    exe = shutil.which(name)
    if exe is None:
        raise PrometheusError(f"`{name}` not found on PATH: {INSTALL_HINT}")
    return exe


def local_config(cfg: Config, interval_s: float = 5.0, gateway: str | None = None,
                 rules_dir: pathlib.Path = RULES_DIR, gateway_ca: str | None = None) -> dict:
    """Scrape config for the services of `cfg` on their metrics ports (the layout `unitocom up` uses).
    `gateway_ca`: the gateway serves HTTPS (`--tls-dir`); scrape it trusting this CA file.

    Returned as a dict and written as JSON, which is YAML too."""
    interval = f"{interval_s:g}s"
    jobs = [{
        "job_name": "unitocom",
        "honor_labels": True,  # the services' own `service` label wins over the target label (same value)
        "static_configs": [{"targets": [f"{a.host}:{a.metrics_port}"], "labels": {"service": a.name}}
                           for a in cfg.services],
    }]
    if gateway:
        jobs.append({"job_name": "unitocom-gateway", "honor_labels": True,
                     "static_configs": [{"targets": [gateway], "labels": {"service": "gateway"}}]})
        if gateway_ca:
            jobs[-1].update(scheme="https", tls_config={"ca_file": str(gateway_ca), "server_name": "gateway"})
    rule_files = [str(rules_dir / "*.yml")] if rules_dir.is_dir() else []
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "external_labels": {"testbed": "unitocom"}},
            "rule_files": rule_files, "scrape_configs": jobs}


def start(cfg: Config, d: pathlib.Path, port: int = 9090, host: str = "127.0.0.1", interval_s: float = 5.0,
          gateway: str | None = None, timeout_s: float = 60.0, gateway_ca: str | None = None) -> sidecars.Sidecar:
    """Write the config into the run directory, start Prometheus on host:port, wait until /-/ready."""
    exe = binary()
    pdir = d / "prometheus"
    (pdir / "data").mkdir(parents=True, exist_ok=True)
    conf = pdir / "prometheus.yml"
    conf.write_text(json.dumps(local_config(cfg, interval_s, gateway, gateway_ca=gateway_ca), indent=2))
    cmd = [exe, f"--config.file={conf}", f"--storage.tsdb.path={pdir / 'data'}",
           f"--web.listen-address={host}:{port}", "--storage.tsdb.retention.time=2d",
           "--web.enable-lifecycle"]  # POST /-/reload picks up a changed config without a restart
    try:
        return sidecars.spawn(d, "prometheus", cmd, f"http://{host}:{port}", "/-/ready", timeout_s)
    except RuntimeError as e:
        raise PrometheusError(str(e)) from None


def stop(d: pathlib.Path) -> list[str]:
    return sidecars.stop(d, "prometheus")


def query(url: str, promql: str, timeout_s: float = 5.0) -> list[dict]:
    """Instant query through /api/v1/query: [{"metric": {labels}, "value": float}], NaN samples dropped.
    PrometheusError when Prometheus is unreachable or rejects the expression."""
    q = urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{q}", timeout=timeout_s) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            detail = json.load(e).get("error", "")
        except ValueError:
            detail = ""
        raise PrometheusError(f"Prometheus at {url} rejected {promql!r}: {e.code} {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise PrometheusError(f"Prometheus at {url} is unreachable: {e}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus at {url}: {body.get('error', body)}")
    out = []
    for s in body["data"]["result"]:
        v = float(s["value"][1])
        if math.isfinite(v):
            out.append({"metric": s["metric"], "value": v})
    return out


def wait_for(url: str, promql: str, timeout_s: float = 30.0, min_series: int = 1, interval_s: float = 0.5,
             ok=None) -> list[dict]:
    """Poll `promql` until it returns at least `min_series` samples (and `ok(samples)` holds when given).
    PrometheusError with the last answer after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    got: list[dict] = []
    while True:
        try:
            got = query(url, promql)
            if len(got) >= min_series and (ok is None or ok(got)):
                return got
        except PrometheusError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise PrometheusError(f"{promql!r}: {len(got)} series after {timeout_s:g} s: {got[:5]}")
        time.sleep(interval_s)


def quality_expr(metric: str, by: tuple[str, ...] = ("scheme", "snr_bucket"), selector: str = "") -> str:
    """Mean of one quality figure since the services started, per `by`: the accuracy-vs-SNR curve's query.
    `*_db` figures live in unitocom_quality_decibels, the rest (ratios) in unitocom_quality_ratio."""
    if not metric.replace("_", "").isalnum():
        raise ValueError(f"metric must be a quality key such as exact_match or psnr_db, got {metric!r}")
    family = "unitocom_quality_decibels" if metric.endswith("_db") else "unitocom_quality_ratio"
    labels = ", ".join((f'metric="{metric}"',) + ((selector,) if selector else ()))
    grp = ", ".join(by)
    return (f"sum by ({grp}) ({family}_sum{{{labels}}}) / "
            f"sum by ({grp}) ({family}_count{{{labels}}})")


def quality_curves(url: str, metric: str = "exact_match", channel: str = "", timeout_s: float = 5.0) -> dict:
    """{"metric", "series": [{"scheme", "points": [[snr_bucket_db, mean, count], ...] sorted by SNR}]}."""
    if channel and not channel.isalnum():
        raise ValueError(f"channel must be a channel model name, got {channel!r}")
    sel = f'channel="{channel}"' if channel else ""
    means = query(url, quality_expr(metric, selector=sel), timeout_s)
    family = "unitocom_quality_decibels" if metric.endswith("_db") else "unitocom_quality_ratio"
    labels = ", ".join(filter(None, (f'metric="{metric}"', sel)))
    counts = {(s["metric"].get("scheme"), s["metric"].get("snr_bucket")): s["value"] for s in
              query(url, f"sum by (scheme, snr_bucket) ({family}_count{{{labels}}})", timeout_s)}
    by_scheme: dict[str, list] = {}
    for s in means:
        scheme, bucket = s["metric"].get("scheme", "?"), s["metric"].get("snr_bucket", "nan")
        try:
            snr = float(bucket)
        except ValueError:
            continue
        by_scheme.setdefault(scheme, []).append([snr, s["value"], counts.get((scheme, bucket), 0.0)])
    series = [{"scheme": k, "points": sorted(v)} for k, v in sorted(by_scheme.items())]
    return {"metric": metric, "unit": "dB" if metric.endswith("_db") else "ratio", "series": series}
