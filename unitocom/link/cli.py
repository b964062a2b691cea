"""`unitocom link ...`: BER/BLER and capacity curves of the physical layer from the command line.

    unitocom link ber --modulation qam16 --channel rayleigh --snr-db 0:30:5 --plot ber.png
    unitocom link ber --modulation qam16 --channel awgn --code ldpc --rate 0.5 --snr-db 4:9:0.5 --bits 200000
    unitocom link capacity --snr-db -10:30:5 --json
"""
from __future__ import annotations

import argparse
import json
import sys

from unitocom.link.ber import capacity_rows, plot_ber, plot_capacity, simulate_ber
from unitocom.link.modulation import MODULATIONS
from unitocom.link.snr import snr_points_arg


def _positive_int(text: str) -> int:
    try:
        v = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4e}" if v and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4f}"
    return str(v)


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def run_ber(args: argparse.Namespace) -> int:
    try:
        rows = simulate_ber(
            modulation=args.modulation, channel=args.channel, snr_db=args.snr_db, code=args.code, rate=args.rate,
            bits=args.bits, seed=args.seed, k=args.k, demapper=args.demapper, progress=not args.json and sys.stderr.isatty(),
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        cols = ["snr_db", "ebn0_db", "ber", "ber_theory", "bits", "bit_errors"]
        if args.code != "none":
            cols += ["bler", "blocks", "block_errors"]
        print(f"# {args.modulation} over {args.channel}, code {args.code}" + (f" rate {args.rate}" if args.code != "none" else ""))
        print(_table(rows, cols))
    if args.plot:
        plot_ber(rows, args.plot, f"{args.modulation}, {args.channel}, {args.code}" + (f" r={args.rate}" if args.code != "none" else ""))
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def run_capacity(args: argparse.Namespace) -> int:
    rows = capacity_rows(args.snr_db, mc_samples=args.monte_carlo, seed=args.seed)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows, list(rows[0].keys())))
    if args.plot:
        plot_capacity(rows, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register `link` (with `ber` and `capacity`) on an argparse sub-parsers object; returns the `link` parser."""
    link = subparsers.add_parser(
        "link", help="physical-layer curves: BER/BLER and capacity",
        description="Physical-layer checks: simulated BER/BLER against closed forms, and channel capacity. "
                    "SNR is Es/N0 in dB (energy per symbol over N0) against the power constraint P.",
    )
    sub = link.add_subparsers(dest="link_command", metavar="{ber,capacity}")
    sub.required = True

    ber = sub.add_parser(
        "ber", help="simulate BER (and BLER when coded) per SNR",
        description="Monte Carlo bit (and block) error rate per SNR, beside the closed form where one exists "
                    "(uncoded BPSK/QPSK/M-QAM over AWGN and Rayleigh with perfect CSI). Rayleigh fading is fast "
                    "(a new gain per symbol).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ber.add_argument("--modulation", choices=MODULATIONS, default="qam16", help="Gray-labelled constellation")
    ber.add_argument("--channel", choices=("awgn", "rayleigh"), default="awgn", help="channel model")
    ber.add_argument("--code", choices=("none", "ldpc", "turbo"), default="none",
                     help="channel code (5G LDPC or LTE Turbo, each block with a CRC24A)")
    ber.add_argument("--rate", type=float, default=0.5, help="code rate (LDPC 0.2..0.95, Turbo 1/3..0.9)")
    ber.add_argument("--k", type=_positive_int, default=None,
                     help="bits per code block including the 24-bit CRC (default: 1024 LDPC, 256 Turbo)")
    ber.add_argument("--snr-db", type=snr_points_arg, required=True, metavar="A:B:STEP",
                     help="Es/N0 grid in dB: A:B:STEP (B included), or A,B,C, or A; write --snr-db=-10:20:2 when it starts negative")
    ber.add_argument("--bits", type=_positive_int, default=100_000, help="information bits simulated per SNR")
    ber.add_argument("--demapper", choices=("app", "maxlog"), default="app", help="soft demapper for coded runs")
    ber.add_argument("--seed", type=int, default=0, help="random seed (runs are reproducible)")
    ber.add_argument("--json", action="store_true", help="print a JSON array of rows instead of a table")
    ber.add_argument("--plot", metavar="OUT.png", default=None, help="also write a PNG of simulated vs theory")
    ber.set_defaults(func=run_ber)

    cap = sub.add_parser(
        "capacity", help="AWGN and ergodic Rayleigh capacity per SNR",
        description="Shannon capacity log2(1+snr) of AWGN and the ergodic capacity E[log2(1+|h|^2 snr)] of Rayleigh "
                    "fading (closed form exp(1/snr) E1(1/snr)/ln 2), in bit per complex symbol.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cap.add_argument("--snr-db", type=snr_points_arg, required=True, metavar="A:B:STEP",
                     help="Es/N0 grid in dB: A:B:STEP (B included), or A,B,C, or A; write --snr-db=-10:20:2 when it starts negative")
    cap.add_argument("--monte-carlo", type=int, default=0, metavar="N",
                     help="also estimate the Rayleigh capacity from N channel draws (0 = off)")
    cap.add_argument("--seed", type=int, default=0, help="random seed for --monte-carlo")
    cap.add_argument("--json", action="store_true", help="print a JSON array of rows instead of a table")
    cap.add_argument("--plot", metavar="OUT.png", default=None, help="also write a PNG of the curves")
    cap.set_defaults(func=run_capacity)
    return link


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m unitocom.link.cli link ber ...`) until the top-level CLI wires `link` in."""
    parser = argparse.ArgumentParser(prog="unitocom")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
