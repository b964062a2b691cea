"""SNR values from the command line, one parser for every command: a list of points ('A:B:STEP', 'A,B,C' or
'A', in dB) for sweeps, an interval ('A:B') for training draws. Negative values need `--snr-db=-10:25`."""
from __future__ import annotations

import argparse
import math


def snr_points(text: str) -> list[float]:
    """'A:B:STEP' (B included when on the grid), 'A,B,C', or 'A' -> list of SNRs in dB; ValueError otherwise."""
    text = text.strip()
    usage = f"SNR values must be A:B:STEP, A,B,C or A in dB, got {text!r}"
    try:
        parts = [float(p) for p in (text.split(":") if ":" in text else text.split(",")) if p.strip()]
    except ValueError:
        raise ValueError(usage) from None
    if not parts or not all(math.isfinite(v) for v in parts) or (":" in text and len(parts) != 3):
        raise ValueError(usage)
    if ":" not in text:
        return parts
    a, b, step = parts
    if step <= 0 or b < a:
        raise ValueError(f"need A <= B and STEP > 0 in A:B:STEP, got {text!r}")
    count = int(math.floor((b - a) / step + 1e-9)) + 1
    return [round(a + i * step, 10) for i in range(count)]


def snr_interval(text: str) -> tuple[float, float]:
    """'A:B' with A <= B (dB) -> (A, B); ValueError otherwise."""
    try:
        a, b = (float(v) for v in text.strip().split(":"))
    except ValueError:
        raise ValueError(f"SNR interval must be A:B in dB (e.g. -10:25), got {text!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a <= b):
        raise ValueError(f"SNR interval A:B needs finite A <= B, got {text!r}")
    return a, b


def _arg(parse):
    def parse_arg(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse_arg


snr_points_arg = _arg(snr_points)  # argparse `type=`: errors become usage errors
snr_interval_arg = _arg(snr_interval)
