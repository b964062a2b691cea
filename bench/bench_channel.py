"""Channel-service throughput (complex symbols per second, streamed through Channel.Apply in 1e6-symbol
frames) beside in-process eq. (2) on the same frames: bare numpy `h*z + n`, and the library's FadingChannel.

    .venv/bin/python bench/bench_channel.py [--frames 20] [--frame-symbols 1000000] [--channel rayleigh]

The service's job is eq. (2) plus transport; the ratio says how much of the in-process rate survives gRPC.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.conftest import free_ports  # noqa: E402
from unitocom import client, config, wire  # noqa: E402
from unitocom.link.channel import ChannelSpec, FadingChannel  # noqa: E402
from unitocom.v1 import unitocom_pb2 as pb  # noqa: E402
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc  # noqa: E402


def numpy_rate(frames: list[np.ndarray], snr_db: float, seed: int) -> float:
    """Bare numpy eq. (2) with one Rayleigh h per frame: the floor any implementation must pay."""
    rng = np.random.default_rng(seed)
    n0 = config.noise_variance(snr_db)
    t0 = time.perf_counter()
    for z in frames:
        h = (rng.standard_normal() + 1j * rng.standard_normal()) / np.sqrt(2)
        noise = rng.standard_normal((len(z), 2), dtype=np.float32).view(np.complex64)[:, 0] * np.float32(np.sqrt(n0 / 2))
        y = np.complex64(h) * z + noise
    assert y.dtype == np.complex64
    return sum(map(len, frames)) / (time.perf_counter() - t0)


def library_rate(frames: list[np.ndarray], spec: ChannelSpec, snr_db: float, seed: int) -> float:
    ch = FadingChannel(spec, snr_db, seed)
    t0 = time.perf_counter()
    for z in frames:
        ch(z)
    return sum(map(len, frames)) / (time.perf_counter() - t0)


def service_rate(target: str, frames: list[np.ndarray], link: pb.LinkSettings, max_bytes: int) -> float:
    opts = [("grpc.max_send_message_length", max_bytes), ("grpc.max_receive_message_length", max_bytes)]
    with grpc.insecure_channel(target, options=opts) as ch:
        stub = pb_grpc.ChannelStub(ch)
        # built outside the clock: the caller's own cost, not the service's
        msgs = [pb.Uplink(header=pb.RequestHeader(link=link))]
        msgs += [wire.uplink_frame(0, i, i == len(frames) - 1, z) for i, z in enumerate(frames)]

        t0 = time.perf_counter()
        received = 0
        for msg in stub.Apply(iter(msgs), timeout=600):
            if msg.WhichOneof("kind") == "frame":
                received += msg.frame.symbols.shape[0]
        dt = time.perf_counter() - t0
    assert received == sum(map(len, frames))
    return received / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--frame-symbols", type=int, default=1_000_000)
    ap.add_argument("--channel", default="rayleigh", choices=["awgn", "rayleigh", "rician"])
    ap.add_argument("--snr-db", type=float, default=10.0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    frames = [((rng.standard_normal(args.frame_symbols) + 1j * rng.standard_normal(args.frame_symbols))
               / np.sqrt(2)).astype(np.complex64) for _ in range(args.frames)]
    spec = ChannelSpec(model=args.channel, fading="block", block_length=args.frame_symbols)
    link = pb.LinkSettings(snr_db=args.snr_db, channel=wire.enum_value(pb.ChannelModel, args.channel),
                           block_length=args.frame_symbols, seed=1)
    max_bytes = 4 * 8 * args.frame_symbols + (1 << 20)
    port, metrics = free_ports(2)
    with tempfile.TemporaryDirectory() as d:
        log = open(pathlib.Path(d) / "channel.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "services.channel.server", "--port", str(port),
                                 "--metrics-port", str(metrics), "--max-message-bytes", str(max_bytes)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=pathlib.Path(__file__).resolve().parents[1],
                                env=dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[1])))
        try:
            target = f"127.0.0.1:{port}"
            for _ in range(600):
                if client.health(target) == "SERVING":
                    break
                time.sleep(0.1)
            service_rate(target, frames[:2], link, max_bytes)  # warm
            svc = service_rate(target, frames, link, max_bytes)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    npy = numpy_rate(frames, args.snr_db, 1)
    lib = library_rate(frames, spec, args.snr_db, 1)
    print(f"{args.frames} frames x {args.frame_symbols:,} complex64 symbols, {args.channel}, {args.snr_db:g} dB")
    print(f"{'path':34s} {'Msymbols/s':>11s} {'vs numpy':>9s}")
    for name, r in (("in-process numpy h*z+n", npy), ("in-process library FadingChannel", lib),
                    ("channel service, streamed (Apply)", svc)):
        print(f"{name:34s} {r / 1e6:11.1f} {r / npy:9.2f}")
    print(f"service / numpy = {svc / npy:.2f} (target >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
