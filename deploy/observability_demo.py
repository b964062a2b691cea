"""Observability end to end, in one command:

    .venv/bin/python deploy/observability_demo.py --out out/observability

runs `unitocom up --with-prometheus --with-gateway`, sends a burst of labelled requests (text at several SNRs over
AWGN and Rayleigh, a photograph), prints what Prometheus recorded (per-stage latency quantiles, accuracy and PSNR
by scheme and SNR bucket), screenshots the gateway's web page with a result and the live chart
(`out/observability/gateway.png`), and stops everything (unless --keep).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom import cli, client, prometheus  # noqa: E402

TEXT = "two small red cubes are left of a large metal sphere"


def burst(target: str, snrs: list[float], per_snr: int, channels: list[str]) -> int:
    from unitocom.demo import photograph
    n = 0
    with client.Client(target) as c:
        for channel in channels:
            for snr in snrs:
                for seed in range(per_snr):
                    c.send(client.build_request(text=TEXT, answer=TEXT, snr_db=snr, seed=seed, channel=channel))
                    n += 1
        for snr in (12.0, 25.0):
            c.send(client.build_request(image=photograph(128), snr_db=snr))
            n += 1
    return n


def report(url: str) -> None:
    time.sleep(3)  # two scrapes and a rule evaluation at the 1 s interval
    print("\nper-stage latency (Prometheus recording rules unitocom:stage_seconds:p50/p99_rate1m), ms:")
    p50 = {(s["metric"]["service"], s["metric"]["stage"]): s["value"]
           for s in prometheus.query(url, "unitocom:stage_seconds:p50_rate1m")}
    p99 = {(s["metric"]["service"], s["metric"]["stage"]): s["value"]
           for s in prometheus.query(url, "unitocom:stage_seconds:p99_rate1m")}
    for k in sorted(p50):
        print(f"  {k[0] + '.' + k[1]:28s} p50 {p50[k] * 1e3:8.1f}   p99 {p99.get(k, float('nan')) * 1e3:8.1f}")
    print("\naccuracy (exact match) by scheme, channel and SNR bucket (unitocom:quality_ratio:mean):")
    rows = prometheus.query(url, 'unitocom:quality_ratio:mean{metric="exact_match"}')
    for s in sorted(rows, key=lambda s: (s["metric"]["scheme"], s["metric"]["channel"],
                                         float(s["metric"]["snr_bucket"]))):
        m = s["metric"]
        print(f"  {m['scheme']:12s} {m['channel']:9s} {m['snr_bucket']:>4s} dB   {s['value']:.2f}")
    print("\nimage PSNR by SNR bucket (unitocom:quality_decibels:mean):")
    for s in prometheus.query(url, 'unitocom:quality_decibels:mean{metric="psnr_db"}'):
        print(f"  {s['metric']['scheme']:12s} {s['metric']['snr_bucket']:>4s} dB   {s['value']:.1f} dB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/observability", help="where the screenshot goes")
    ap.add_argument("--base-port", type=int, default=50051)
    ap.add_argument("--metrics-base-port", type=int, default=9101)
    ap.add_argument("--prometheus-port", type=int, default=9090)
    ap.add_argument("--gateway-port", type=int, default=8080)
    ap.add_argument("--per-snr", type=int, default=3, help="requests per SNR and channel")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--keep", action="store_true", help="leave everything running (stop with `unitocom down`)")
    args = ap.parse_args(argv)
    run = ["--run-dir", args.run_dir] if args.run_dir else []
    rc = cli.main(["up", "--base-port", str(args.base_port), "--metrics-base-port", str(args.metrics_base_port),
                   "--with-prometheus", "--prometheus-port", str(args.prometheus_port), "--scrape-interval", "1",
                   "--with-gateway", "--gateway-port", str(args.gateway_port), *run])
    if rc:
        return rc
    try:
        t0 = time.monotonic()
        n = burst(f"127.0.0.1:{args.base_port}", [0.0, 5.0, 10.0, 15.0, 25.0], args.per_snr, ["awgn", "rayleigh"])
        print(f"\nsent {n} labelled requests in {time.monotonic() - t0:.1f} s")
        report(f"http://127.0.0.1:{args.prometheus_port}")
        from services.gateway import browser
        out = pathlib.Path(args.out) / "gateway.png"
        page = (f"http://127.0.0.1:{args.gateway_port}/?sample=image&snr_db=25&channel=awgn&run=1")
        rc = browser.main([page, str(out)])
        if rc == 0:
            print(f"\nscreenshot of the web page: {out}")
        return rc
    finally:
        if not args.keep:
            cli.main(["down", *run])


if __name__ == "__main__":
    sys.exit(main())
