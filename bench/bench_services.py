"""Median latency of one request through the three services beside the same pipeline called in-process.

Starts its own services on free loopback ports, sends the same requests both ways, prints one table with
the ratio. The difference is what gRPC, protobuf and three processes cost on top of the signal processing.

    .venv/bin/python bench/bench_services.py [--repeats 15] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from tests.conftest import free_consecutive, scene_png  # noqa: E402
from unitocom import client, config, launcher, pipeline  # noqa: E402
from unitocom.stages.request import from_wire  # noqa: E402
from unitocom.demo import TEXT, photograph  # noqa: E402


def cases() -> list[tuple[str, object]]:
    return [
        ("text 100 B, awgn 20 dB", client.build_request(text=TEXT, snr_db=20.0, seed=1)),
        ("image 32x32 PNG, awgn 20 dB", client.build_request(image=scene_png(32), snr_db=20.0, seed=1)),
        ("image 256x256 photo, rayleigh 20 dB", client.build_request(image=photograph(256), snr_db=20.0,
                                                                      channel="rayleigh", seed=1)),
    ]


def median_s(fn, repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15, help="timed requests per case and path")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    args = ap.parse_args(argv)

    base = free_consecutive(6)
    cfg = config.load("tiny").replace(transmitter_port=base, channel_port=base + 1, basestation_port=base + 2,
                                      metrics_base_port=base + 3)
    import torch
    torch.set_num_threads(cfg.limits.torch_threads)  # what each service process uses: compare like with like
    rows = []
    with tempfile.TemporaryDirectory() as d:
        print(f"starting services on 127.0.0.1:{base}..{base + 2}", file=sys.stderr)
        launcher.up(cfg, "tiny", launcher.run_dir(d), echo=lambda *_: None)
        try:
            with client.Client(cfg.address("transmitter").grpc) as c:
                for name, req in cases():
                    svc = median_s(lambda: c.send(req), args.repeats)
                    inproc = median_s(lambda: pipeline.run(from_wire(req), cfg), args.repeats)
                    rows.append({"case": name, "service_ms": svc * 1e3, "in_process_ms": inproc * 1e3,
                                 "ratio": svc / inproc})
        finally:
            launcher.down(launcher.run_dir(d))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'case':38s} {'services (ms)':>14s} {'in-process (ms)':>16s} {'ratio':>7s}")
        for r in rows:
            print(f"{r['case']:38s} {r['service_ms']:14.1f} {r['in_process_ms']:16.1f} {r['ratio']:7.2f}")
        print(f"(median of {args.repeats}; ratio = services / in-process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
