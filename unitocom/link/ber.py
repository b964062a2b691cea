"""Monte Carlo BER/BLER of the physical layer per SNR, beside the closed forms of `theory`.

Uncoded: random bits -> Gray mapping -> channel -> equaliser -> nearest-point decision.
Coded: random payload blocks -> CRC -> LDPC/Turbo -> mapping -> channel -> equaliser -> LLRs -> decoder, with the
same components as `DigitalLink`. BER counts information bits (CRC excluded); BLER counts blocks whose decoded
information bits differ from those sent (what the CRC is meant to detect).
Fading is fast by default (a new h per symbol), the ergodic setting the Rayleigh closed forms describe.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from unitocom.link.channel import ChannelSpec, FadingChannel
from unitocom.link.equalize import equalize
from unitocom.link.modulation import Modulator
from unitocom.link.theory import ber_theory, capacity_awgn, capacity_rayleigh, capacity_rayleigh_mc, ebn0_db

# Symbols per simulated batch: bounds memory (the 64-QAM decision makes [batch, 64] distances).
_BATCH_SYMBOLS = 1 << 17
# Coded blocks per batch: one batched decoder call each.
_BATCH_BLOCKS = 256


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=False)


def simulate_ber(
    modulation: str = "qam16",
    channel: str = "awgn",
    snr_db: Iterable[float] = (0.0, 5.0, 10.0),
    code: str = "none",
    rate: float = 0.5,
    bits: int = 100_000,
    seed: int = 0,
    k: int | None = None,
    iterations: int | None = None,
    fading: str = "fast",
    block_length: int = 0,
    demapper: str = "app",
    equalizer: str = "mmse",
    progress: bool = True,
) -> list[dict]:
    """BER (and BLER when coded) per SNR. bits: information bits simulated per SNR point (rounded up to whole
    symbols or blocks). k: bits per block incl. the 24-bit CRC (default 1024 LDPC, 256 Turbo).

    Returns one dict per SNR: snr_db (Es/N0), ebn0_db, ber, bler (None uncoded), ber_theory (closed form for
    uncoded awgn/rayleigh, else None), bits, bit_errors, blocks, block_errors."""
    snrs = [float(s) for s in snr_db]
    if bits <= 0:
        raise ValueError(f"bits must be > 0, got {bits}")
    spec = ChannelSpec(model=channel, fading=fading, block_length=block_length)
    spec.validate()
    ss = np.random.SeedSequence(seed)
    if code == "none":
        return _simulate_uncoded(modulation, spec, snrs, bits, ss, equalizer, progress)
    return _simulate_coded(modulation, spec, snrs, code, rate, bits, ss, k, iterations, demapper, equalizer, progress)


def _simulate_uncoded(modulation, spec, snrs, bits, ss, equalizer, progress) -> list[dict]:
    mod = Modulator(modulation)
    m = mod.bits_per_symbol
    n_sym = math.ceil(bits / m)
    batches = math.ceil(n_sym / _BATCH_SYMBOLS)
    rows = []
    with _progress(batches * len(snrs), f"BER {modulation}/{spec.model}/uncoded", progress) as bar:
        for snr, child in zip(snrs, ss.spawn(len(snrs))):
            data_seed, ch_seed = child.spawn(2)
            rng = np.random.default_rng(data_seed)
            ch = FadingChannel(spec, snr, ch_seed)
            errors = 0
            for b in range(batches):
                count = min(_BATCH_SYMBOLS, n_sym - b * _BATCH_SYMBOLS)
                tx = rng.integers(0, 2, count * m, dtype=np.uint8)
                out = ch(mod.map(tx))
                z, _ = equalize(out.y, out.h_est, out.noise_var, equalizer)
                errors += int(np.count_nonzero(mod.hard(z) != tx))
                bar.update()
            total = n_sym * m
            theory = ber_theory(modulation, spec.model, snr) if spec.fading == "fast" or spec.model == "awgn" else None
            rows.append(dict(snr_db=snr, ebn0_db=float(ebn0_db(snr, modulation)), ber=errors / total, bler=None,
                             ber_theory=theory, bits=total, bit_errors=errors, blocks=0, block_errors=0))
    return rows


def _simulate_coded(modulation, spec, snrs, code, rate, bits, ss, k, iterations, demapper, equalizer,
                    progress) -> list[dict]:
    from unitocom.link.digital import DigitalLink

    if k is None:
        k = 1024 if code == "ldpc" else 256
    if iterations is None:
        iterations = 20 if code == "ldpc" else 6
    link = DigitalLink(code=code, rate=rate, modulation=modulation, k=k, iterations=iterations)
    info = link.info_bits
    m = link.modulator.bits_per_symbol
    n_blocks = math.ceil(bits / info)
    batches = math.ceil(n_blocks / _BATCH_BLOCKS)
    rows = []
    with _progress(batches * len(snrs), f"BER {modulation}/{spec.model}/{code} r={link.rate:.3f}", progress) as bar:
        for snr, child in zip(snrs, ss.spawn(len(snrs))):
            data_seed, ch_seed = child.spawn(2)
            rng = np.random.default_rng(data_seed)
            ch = FadingChannel(spec, snr, ch_seed)
            bit_err = blk_err = 0
            for b in range(batches):
                count = min(_BATCH_BLOCKS, n_blocks - b * _BATCH_BLOCKS)
                tx = rng.integers(0, 2, (count, info), dtype=np.uint8)
                stream = link.code.encode(link.crc.attach(tx)).reshape(-1)
                pad = (-stream.size) % m
                out = ch(link.modulator.map(np.concatenate([stream, np.zeros(pad, np.uint8)])))
                z, nv = equalize(out.y, out.h_est, out.noise_var, equalizer)
                llr = link.modulator.demap(z, nv, demapper)[: count * link.n].reshape(count, link.n)
                rx, _ = link.crc.check(link.code.decode(llr))
                wrong = rx != tx
                bit_err += int(np.count_nonzero(wrong))
                blk_err += int(np.count_nonzero(wrong.any(axis=1)))
                bar.update()
            total = n_blocks * info
            rows.append(dict(snr_db=snr, ebn0_db=float(ebn0_db(snr, modulation, link.rate)), ber=bit_err / total,
                             bler=blk_err / n_blocks, ber_theory=None, bits=total, bit_errors=bit_err,
                             blocks=n_blocks, block_errors=blk_err))
    return rows


def capacity_rows(snr_db_list: Sequence[float], mc_samples: int = 0, seed: int = 0) -> list[dict]:
    """Per SNR (Es/N0, dB): AWGN capacity and ergodic Rayleigh capacity in bit per complex symbol; with
    mc_samples > 0 also the Monte Carlo Rayleigh estimate and its standard error."""
    rows = []
    for snr in snr_db_list:
        row = dict(snr_db=float(snr), awgn_bits=capacity_awgn(snr), rayleigh_bits=capacity_rayleigh(snr))
        if mc_samples > 0:
            row["rayleigh_mc_bits"], row["rayleigh_mc_stderr"] = capacity_rayleigh_mc(snr, mc_samples, seed)
        rows.append(row)
    return rows


def plot_ber(rows: list[dict], path: str, title: str = "") -> None:
    """PNG of simulated BER (and BLER) against the closed form, log y axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    x = [r["snr_db"] for r in rows]
    # Zero error counts cannot be drawn on a log axis: mark them at half a count instead of hiding them.
    ax.semilogy(x, [r["ber"] if r["bit_errors"] else 0.5 / r["bits"] for r in rows], "o-", label="BER simulated")
    if any(r["ber_theory"] is not None for r in rows):
        xt = [r["snr_db"] for r in rows if r["ber_theory"] is not None]
        ax.semilogy(xt, [r["ber_theory"] for r in rows if r["ber_theory"] is not None], "k--", label="BER theory")
    if any(r["bler"] is not None for r in rows):
        ax.semilogy(x, [r["bler"] if r["block_errors"] else 0.5 / r["blocks"] for r in rows], "s-", label="BLER simulated")
    ax.set_xlabel("Es/N0 (dB)")
    ax.set_ylabel("error rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_capacity(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    x = [r["snr_db"] for r in rows]
    ax.plot(x, [r["awgn_bits"] for r in rows], label="AWGN  log2(1+snr)")
    ax.plot(x, [r["rayleigh_bits"] for r in rows], label="Rayleigh ergodic (closed form)")
    if rows and "rayleigh_mc_bits" in rows[0]:
        ax.plot(x, [r["rayleigh_mc_bits"] for r in rows], "o", label="Rayleigh Monte Carlo")
    ax.set_xlabel("Es/N0 (dB)")
    ax.set_ylabel("capacity (bit / complex symbol)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
