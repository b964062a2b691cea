"""Closed forms the simulated physical layer is checked against.

SNR arguments are Es/N0 in dB (energy per *symbol* over N0), the unit of the whole testbed; `ebn0_db` and
`esn0_db` convert where a formula or a plot wants Eb/N0. All functions take a scalar or an array of SNRs.

Uncoded BER with Gray labelling and coherent detection:
- BPSK: Q(sqrt(2 Es/N0)); QPSK: Q(sqrt(Es/N0)) (each bit sees BPSK at half the symbol energy). Exact.
- Square M-QAM: the *exact* expression of Cho & Yoon, "On the general BER expression of one- and
  two-dimensional amplitude modulations", IEEE Trans. Commun. 50(7), 2002 (eq. 14/16), a finite sum of
  erfc(sqrt(c_i Es/N0)) terms. It reduces to the QPSK formula for M = 4.
- Rayleigh fading (h ~ CN(0,1), perfect CSI, independent fading per symbol): every erfc(sqrt(c*g)) term
  averaged over the exponential SNR pdf has the closed form 1 - sqrt(c*G/(1 + c*G)) (G the mean SNR), so the
  Rayleigh BER of BPSK, QPSK *and* M-QAM is exact and closed form. `ber_rayleigh_numeric` integrates the AWGN
  expression over the pdf with scipy as an independent check.
Capacity: AWGN log2(1 + snr); ergodic Rayleigh E[log2(1 + |h|^2 snr)] = exp(1/snr) E1(1/snr) / ln 2.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from unitocom.link.modulation import bits_per_symbol


def db_to_linear(db):
    return 10.0 ** (np.asarray(db, dtype=np.float64) / 10.0)


def ebn0_db(esn0_db, modulation: str, rate: float = 1.0):
    """Eb/N0 in dB for a given Es/N0 in dB: Es = Eb * bits_per_symbol * code rate."""
    return np.asarray(esn0_db, dtype=np.float64) - 10.0 * np.log10(bits_per_symbol(modulation) * rate)


def esn0_db(ebn0, modulation: str, rate: float = 1.0):
    """Es/N0 in dB for a given Eb/N0 in dB."""
    return np.asarray(ebn0, dtype=np.float64) + 10.0 * np.log10(bits_per_symbol(modulation) * rate)


def qfunc(x):
    return 0.5 * special.erfc(np.asarray(x, dtype=np.float64) / np.sqrt(2.0))


def _erfc_terms(modulation: str) -> list[tuple[float, float]]:
    """BER as sum_i w_i * erfc(sqrt(c_i * Es/N0)); returns [(w_i, c_i)]. Exact for Gray BPSK and square QAM."""
    m = bits_per_symbol(modulation)
    if m == 1:
        return [(0.5, 1.0)]  # Q(sqrt(2x)) = erfc(sqrt(x)) / 2
    M = 2**m
    sqrt_m = int(round(math.sqrt(M)))
    half = m // 2  # bits per dimension, log2(sqrt(M))
    terms: dict[float, float] = {}
    for k in range(1, half + 1):
        for i in range(int((1 - 2.0**-k) * sqrt_m)):
            f = math.floor(i * 2 ** (k - 1) / sqrt_m)
            w = (-1) ** f * (2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / sqrt_m + 0.5)) / sqrt_m / half
            c = (2 * i + 1) ** 2 * 3.0 / (2.0 * (M - 1))
            terms[c] = terms.get(c, 0.0) + w
    return sorted(((w, c) for c, w in terms.items() if w != 0.0), key=lambda t: t[1])


def ber_awgn(modulation: str, snr_db):
    """Uncoded bit error probability over AWGN at Es/N0 = snr_db (exact, Gray)."""
    x = db_to_linear(snr_db)
    out = sum(w * special.erfc(np.sqrt(c * x)) for w, c in _erfc_terms(modulation))
    return out if np.ndim(out) else float(out)


def ber_rayleigh(modulation: str, snr_db):
    """Uncoded BER over Rayleigh fading, perfect CSI, mean Es/N0 = snr_db (exact closed form, Gray)."""
    g = db_to_linear(snr_db)
    out = sum(w * (1.0 - np.sqrt(c * g / (1.0 + c * g))) for w, c in _erfc_terms(modulation))
    return out if np.ndim(out) else float(out)


def ber_rayleigh_numeric(modulation: str, snr_db: float) -> float:
    """The same as `ber_rayleigh`, by integrating `ber_awgn` over the exponential pdf of the instantaneous SNR."""
    g = float(db_to_linear(snr_db))

    def f(s):
        return float(ber_awgn(modulation, 10 * np.log10(max(s, 1e-300)))) * np.exp(-s / g) / g

    val, _ = integrate.quad(f, 0.0, np.inf, limit=200)
    return float(val)


def ber_bpsk_rayleigh_mrc(snr_db, branches: int):
    """BPSK over L = `branches` independent Rayleigh branches of mean Es/N0 = snr_db each, combined by MRC, perfect
    CSI (Proakis, Digital Communications, 5th ed., eq. 13.4-15): ((1 - mu) / 2)^L sum_k C(L-1+k, k) ((1 + mu) / 2)^k,
    mu = sqrt(g / (1 + g)). One branch is `ber_rayleigh("bpsk", .)`."""
    g = db_to_linear(snr_db)
    mu = np.sqrt(g / (1.0 + g))
    out = ((1.0 - mu) / 2.0) ** branches * sum(special.comb(branches - 1 + k, k) * ((1.0 + mu) / 2.0) ** k
                                               for k in range(branches))
    return out if np.ndim(out) else float(out)


def ber_theory(modulation: str, channel: str, snr_db):
    """Uncoded BER closed form for channel 'awgn' | 'rayleigh'; None where none exists here (e.g. 'rician')."""
    if channel == "awgn":
        return ber_awgn(modulation, snr_db)
    if channel == "rayleigh":
        return ber_rayleigh(modulation, snr_db)
    return None


def capacity_awgn(snr_db):
    """Shannon capacity of the complex AWGN channel, bit/s/Hz (bit per complex symbol): log2(1 + snr)."""
    out = np.log2(1.0 + db_to_linear(snr_db))
    return out if np.ndim(out) else float(out)


def _exp_e1(x: np.ndarray) -> np.ndarray:
    """exp(x) * E1(x) without overflow: direct for x < 500, asymptotic series (error < 1e-13 there) above."""
    x = np.asarray(x, dtype=np.float64)
    small = x < 500.0
    xs = np.where(small, x, 1.0)
    xl = np.where(small, 500.0, x)
    direct = np.exp(xs) * special.exp1(xs)
    asym = (1.0 - 1.0 / xl + 2.0 / xl**2 - 6.0 / xl**3 + 24.0 / xl**4) / xl
    return np.where(small, direct, asym)


def capacity_rayleigh(snr_db):
    """Ergodic capacity of Rayleigh fading with CSI at the receiver, E[log2(1 + |h|^2 snr)], bit per symbol:
    exp(1/snr) E1(1/snr) / ln 2 (closed form)."""
    snr = db_to_linear(snr_db)
    out = _exp_e1(1.0 / snr) / np.log(2.0)
    return out if np.ndim(out) else float(out)


def capacity_rayleigh_mc(snr_db: float, samples: int = 1_000_000, seed: int = 0) -> tuple[float, float]:
    """Monte Carlo E[log2(1 + |h|^2 snr)] with h ~ CN(0,1): (mean, standard error)."""
    rng = np.random.default_rng(seed)
    g = rng.exponential(1.0, samples)  # |h|^2 of CN(0,1)
    v = np.log2(1.0 + g * float(db_to_linear(snr_db)))
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(samples))
