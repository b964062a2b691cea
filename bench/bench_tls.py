"""Three-hop latency with TLS and tokens beside plaintext (issue 13's target: within 1.10x).

Starts two stacks of the three services on free loopback ports, one plaintext and one with mutual TLS between
the hops and a bearer token at the transmitter (certificates from `unitocom certs` in a temporary directory),
then sends the same request to each, alternating call by call so that a load change on the machine hits both
alike. Connections are kept (as every client and hop keeps its channel): what is measured is the per-call cost
of encryption and the token check, not the handshake.

    .venv/bin/python bench/bench_tls.py [--calls 60] [--case text|image] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_ports, scene_png  # noqa: E402
from unitocom import certs, client  # noqa: E402
from unitocom.demo import TEXT  # noqa: E402

SERVICES = (("basestation", "unitocom.v1.BaseStation"), ("channel", "unitocom.v1.Channel"),
            ("transmitter", "unitocom.v1.Transmitter"))


def start_stack(logs: pathlib.Path, tls_dir: pathlib.Path | None, tokens: pathlib.Path | None
                ) -> tuple[str, list[subprocess.Popen]]:
    """The three services (next hops first), SERVING; returns the transmitter's address and the processes."""
    ports = dict(zip(("transmitter", "channel", "basestation"), free_ports(3)))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    probe = client.Tls.from_dir(tls_dir, "client") if tls_dir else None
    procs = []
    for name, grpc_name in SERVICES:
        cmd = [sys.executable, "-m", f"services.{name}.server", "--preset", "tiny", "--host", "127.0.0.1",
               "--port", str(ports[name]), "--metrics-port", "0"]
        if name == "transmitter":
            cmd += ["--channel", f"127.0.0.1:{ports['channel']}"]
        if name == "channel":
            cmd += ["--basestation", f"127.0.0.1:{ports['basestation']}"]
        if tls_dir:
            cmd += ["--tls-dir", str(tls_dir)]
        if tokens and name == "transmitter":
            cmd += ["--auth-tokens", str(tokens)]
        log = logs / f"{name}-{'tls' if tls_dir else 'plain'}.log"
        with open(log, "wb") as fh:
            p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                 env=env)
        procs.append(p)
        deadline = time.monotonic() + 300
        while client.health(f"127.0.0.1:{ports[name]}", grpc_name, tls=probe) != "SERVING":
            if p.poll() is not None or time.monotonic() > deadline:
                stop(procs)
                raise RuntimeError(f"{name} did not come up:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
    return f"127.0.0.1:{ports['transmitter']}", procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def quantile(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=60, help="timed calls per stack (after 5 warm-up calls each)")
    ap.add_argument("--case", choices=("text", "image"), default="text",
                    help="text: 100 B of text; image: a 64x64 PNG (reconstruct, AWGN 20 dB)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    req = (client.build_request(text=TEXT, snr_db=20.0, seed=1) if args.case == "text"
           else client.build_request(image=scene_png(64), snr_db=20.0, seed=1))
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        tls_dir = d / "tls"
        certs.make_certs(tls_dir)
        token = client.read_token(tls_dir / "tokens")
        print("starting a plaintext stack and a TLS + token stack ...", file=sys.stderr)
        plain_target, plain_procs = start_stack(d, None, None)
        procs = list(plain_procs)
        try:
            tls_target, tls_procs = start_stack(d, tls_dir, tls_dir / "tokens")
            procs += tls_procs
            times: dict[str, list[float]] = {"plaintext": [], "tls+token": []}
            with client.Client(plain_target) as plain, \
                    client.Client(tls_target, tls=client.Tls.from_dir(tls_dir, None), token=token) as secure:
                stacks = {"plaintext": plain, "tls+token": secure}
                for c in stacks.values():
                    for _ in range(5):
                        c.send(req)
                for _ in range(args.calls):
                    for name, c in stacks.items():  # alternate: a load change hits both alike
                        t0 = time.perf_counter()
                        c.send(req)
                        times[name].append(time.perf_counter() - t0)
        finally:
            stop(procs)
    rows = {name: {"p50_ms": quantile(ts, 0.5) * 1e3, "p90_ms": quantile(ts, 0.9) * 1e3} for name, ts in times.items()}
    ratio = {k: rows["tls+token"][k] / rows["plaintext"][k] for k in ("p50_ms", "p90_ms")}
    if args.json:
        print(json.dumps({"case": args.case, "calls": args.calls, **rows, "ratio": ratio}, indent=2))
        return 0
    print(f"three hops, reconstruct {args.case}, {args.calls} calls each, alternating")
    print(f"{'':12s} {'p50 (ms)':>10s} {'p90 (ms)':>10s}")
    for name, r in rows.items():
        print(f"{name:12s} {r['p50_ms']:10.1f} {r['p90_ms']:10.1f}")
    print(f"{'ratio':12s} {ratio['p50_ms']:10.3f} {ratio['p90_ms']:10.3f}   (tls+token / plaintext; target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
