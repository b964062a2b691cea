"""Closed forms, and the simulated uncoded link against them (every modulation, AWGN and Rayleigh)."""
from __future__ import annotations

import numpy as np
import pytest

from unitocom.link import theory
from unitocom.link.ber import simulate_ber

# Es/N0 points per modulation where the BER lies between ~1e-3 and ~2e-1: enough errors to test with 1e6 bits.
AWGN_SNRS = {"bpsk": [0.0, 4.0, 7.0], "qpsk": [3.0, 7.0, 10.0], "qam16": [8.0, 12.0, 15.0], "qam64": [14.0, 18.0, 21.0]}
RAYLEIGH_SNRS = [5.0, 15.0, 25.0]


def _within(row: dict, bits_per_symbol: int) -> bool:
    # Bit errors in one symbol are correlated; inflating the binomial variance by bits/symbol bounds that.
    n, p = row["bits"], row["ber_theory"]
    sigma = np.sqrt(bits_per_symbol * n * p * (1 - p))
    return abs(row["bit_errors"] - n * p) <= 4 * sigma + 3


@pytest.mark.parametrize("modulation", list(AWGN_SNRS))
@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_uncoded_ber_matches_theory(modulation, channel):
    snrs = AWGN_SNRS[modulation] if channel == "awgn" else RAYLEIGH_SNRS
    rows = simulate_ber(modulation, channel, snrs, code="none", bits=1_000_000, seed=1, progress=False)
    m = {"bpsk": 1, "qpsk": 2, "qam16": 4, "qam64": 6}[modulation]
    for r in rows:
        assert r["ber_theory"] is not None and r["bler"] is None
        assert _within(r, m), r


def test_known_values():
    x = 10 ** (np.array([0.0, 6.0, 12.0]) / 10)
    q = theory.qfunc
    np.testing.assert_allclose(theory.ber_awgn("bpsk", [0.0, 6.0, 12.0]), q(np.sqrt(2 * x)), rtol=1e-12)
    np.testing.assert_allclose(theory.ber_awgn("qpsk", [0.0, 6.0, 12.0]), q(np.sqrt(x)), rtol=1e-12)
    a = np.sqrt(x / 5)  # 16-QAM Gray, exact: (3Q(a) + 2Q(3a) - Q(5a)) / 4 with a = sqrt(Es/(5 N0))
    np.testing.assert_allclose(theory.ber_awgn("qam16", [0.0, 6.0, 12.0]), (3 * q(a) + 2 * q(3 * a) - q(5 * a)) / 4,
                               rtol=1e-12)
    g = 10.0
    assert theory.ber_rayleigh("bpsk", 10.0) == pytest.approx(0.5 * (1 - np.sqrt(g / (1 + g))))
    assert theory.ber_rayleigh("qpsk", 10.0) == pytest.approx(0.5 * (1 - np.sqrt(g / 2 / (1 + g / 2))))
    assert theory.ber_awgn("qam64", 40.0) < 1e-20 and theory.ber_awgn("qam64", -30.0) == pytest.approx(0.5, abs=0.01)
    assert theory.ber_theory("qpsk", "rician", 10.0) is None


@pytest.mark.parametrize("modulation", ["bpsk", "qpsk", "qam16", "qam64"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_rayleigh_closed_form_equals_integration(modulation, snr_db):
    assert theory.ber_rayleigh(modulation, snr_db) == pytest.approx(theory.ber_rayleigh_numeric(modulation, snr_db), rel=1e-5)


def test_ebn0_conversion():
    assert theory.ebn0_db(10.0, "qam16") == pytest.approx(10 - 10 * np.log10(4))
    assert theory.ebn0_db(10.0, "qam16", 0.5) == pytest.approx(10 - 10 * np.log10(2))
    assert theory.esn0_db(theory.ebn0_db(7.0, "qam64", 0.75), "qam64", 0.75) == pytest.approx(7.0)


def test_capacity():
    assert theory.capacity_awgn(0.0) == pytest.approx(1.0)
    assert theory.capacity_awgn(np.array([10.0]))[0] == pytest.approx(np.log2(11))
    for snr in (-20.0, 0.0, 10.0, 30.0):
        mc, se = theory.capacity_rayleigh_mc(snr, 400_000, seed=int(snr) + 50)
        c = theory.capacity_rayleigh(snr)
        assert abs(mc - c) < 5 * se + 1e-9, (snr, mc, c, se)
        assert c < theory.capacity_awgn(snr)  # Jensen
    # low SNR: C ~ snr / ln 2 for both; no overflow far down
    assert theory.capacity_rayleigh(-60.0) == pytest.approx(1e-6 / np.log(2), rel=1e-5)
    assert np.all(np.isfinite(theory.capacity_rayleigh(np.linspace(-80, 60, 50))))
