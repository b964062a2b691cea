"""LDPC throughput: our DigitalLink path (bytes -> CRC -> LDPC -> QAM -> ... -> LLRs -> LDPC -> CRC -> bytes) beside a
direct Sionna LDPC5GEncoder/LDPC5GDecoder call on the same block size and block count.

Both sides decode the same number of codewords with the same number of BP iterations and the same check-node
update; the channel is applied
outside the timed region. Throughput counts information bits: payload bits for our path (k minus the CRC),
k for the bare Sionna coder. The ratio compares wall time per codeword, i.e. the overhead of our chain.

    .venv/bin/python bench/bench_ldpc.py --blocks 160 --k 1024 --rate 0.5 --threads 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=1024, help="bits per block including the 24-bit CRC")
    p.add_argument("--rate", type=float, default=0.5, help="LDPC code rate")
    p.add_argument("--blocks", type=int, default=160, help="codewords per call (160 x 1000 bits = a 20 kB payload)")
    p.add_argument("--modulation", default="qam16", choices=("bpsk", "qpsk", "qam16", "qam64"))
    p.add_argument("--iterations", type=int, default=20, help="belief-propagation iterations")
    p.add_argument("--snr-db", type=float, default=10.0, help="Es/N0 of the AWGN channel between encode and decode")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions; the best is reported")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    from unitocom.link.channel import ChannelSpec, FadingChannel
    from unitocom.link.digital import DigitalLink

    link = DigitalLink("ldpc", args.rate, args.modulation, args.k, args.iterations)
    payload_bytes = args.blocks * link.info_bits // 8
    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, payload_bytes, dtype=np.uint8).tobytes()
    blocks = link.num_blocks(payload_bytes)
    out = FadingChannel(ChannelSpec(), args.snr_db, 0)(link.encode(payload))

    def ours():
        link.encode(payload)
        r = link.decode(out.y, out.h, out.noise_var, payload_bytes)
        assert r.blocks == blocks

    enc = LDPC5GEncoder(args.k, link.n)
    dec = LDPC5GDecoder(enc, num_iter=args.iterations, hard_out=True, cn_update=link.code.cn_update)
    u = torch.randint(0, 2, (blocks, args.k), dtype=torch.float32)
    with torch.no_grad():
        cw = enc(u)
    sigma2 = 0.5
    llr = (2.0 * (2.0 * cw - 1.0) + torch.randn_like(cw) * np.sqrt(sigma2)) * (2.0 / sigma2)

    def direct():
        with torch.no_grad():
            enc(u)
            dec(llr)

    ours(), direct()  # warm-up (lazy builds, allocator)
    t_ours = _best(ours, args.reps)
    t_direct = _best(direct, args.reps)
    ours_bps = blocks * link.info_bits / t_ours
    direct_bps = blocks * args.k / t_direct
    print(f"LDPC k={args.k} n={link.n} rate={link.rate:.3f} {args.modulation} blocks={blocks} "
          f"iterations={args.iterations} threads={args.threads}")
    print(f"{'path':<34}{'time/call (s)':>14}{'info bit/s':>14}{'codewords/s':>13}")
    print(f"{'ours: DigitalLink encode+decode':<34}{t_ours:>14.4f}{ours_bps:>14.3e}{blocks / t_ours:>13.1f}")
    print(f"{'direct: Sionna LDPC5G enc+dec':<34}{t_direct:>14.4f}{direct_bps:>14.3e}{blocks / t_direct:>13.1f}")
    print(f"ratio ours/direct (codewords per second): {t_direct / t_ours:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
