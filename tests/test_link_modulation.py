"""Gray constellations, hard and soft demapping, single-tap equalisation."""
from __future__ import annotations

import numpy as np
import pytest

from unitocom.config import POWER_P
from unitocom.link.equalize import equalize, mmse, mmse_biased, zf
from unitocom.link.modulation import MODULATIONS, Modulator, bits_per_symbol, constellation


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_constellation_energy_and_gray(modulation):
    pts = constellation(modulation).astype(np.complex128)
    m = bits_per_symbol(modulation)
    assert pts.size == 2**m and pts.dtype == np.complex128
    assert np.mean(np.abs(pts) ** 2) == pytest.approx(POWER_P, abs=1e-6)
    assert abs(pts.mean()) < 1e-6
    # Gray: every nearest neighbour differs in exactly one bit
    dmin = min(abs(a - b) for i, a in enumerate(pts) for b in pts[i + 1 :])
    for i, a in enumerate(pts):
        for j, b in enumerate(pts):
            if i != j and abs(abs(a - b) - dmin) < 1e-6:
                assert bin(i ^ j).count("1") == 1, (modulation, i, j)


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_map_hard_round_trip(modulation):
    mod = Modulator(modulation)
    bits = np.random.default_rng(0).integers(0, 2, 600 * mod.bits_per_symbol, dtype=np.uint8)
    z = mod.map(bits)
    assert z.dtype == np.complex64 and z.size == 600
    np.testing.assert_array_equal(mod.hard(z + 0.01 * (1 + 1j)), bits)
    with pytest.raises(ValueError):
        mod.map(bits[:-1]) if mod.bits_per_symbol > 1 else mod.map(np.zeros((), np.uint8))


def test_bad_names():
    with pytest.raises(ValueError, match="modulation must be one of"):
        Modulator("qam256")
    with pytest.raises(ValueError, match="demapper must be one of"):
        Modulator("qpsk").demap(np.zeros(2, np.complex64), 0.1, "soft")


def _exact_llr(y, n0, mod: Modulator) -> np.ndarray:
    pts = mod.points.astype(np.complex128)
    m = mod.bits_per_symbol
    labels = (np.arange(pts.size)[:, None] >> np.arange(m - 1, -1, -1)) & 1
    logp = -np.abs(y[:, None] - pts[None, :]) ** 2 / n0
    out = []
    for b in range(m):
        one = np.logaddexp.reduce(np.where(labels[:, b] == 1, logp, -np.inf), axis=1)
        zero = np.logaddexp.reduce(np.where(labels[:, b] == 0, logp, -np.inf), axis=1)
        out.append(one - zero)
    return np.stack(out, axis=1).reshape(-1)


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_soft_demapping_exact_and_maxlog(modulation):
    mod = Modulator(modulation)
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, 2000 * mod.bits_per_symbol, dtype=np.uint8)
    n0 = 0.2
    y = mod.map(bits) + (rng.standard_normal(2000) + 1j * rng.standard_normal(2000)).astype(np.complex64) * np.sqrt(n0 / 2)
    app = mod.demap(y, n0, "app")
    np.testing.assert_allclose(app, _exact_llr(y.astype(np.complex128), n0, mod), rtol=1e-3, atol=1e-3)
    maxlog = mod.demap(y, n0, "maxlog")
    # max-log decides like the nearest point (positive LLR = bit 1) and approximates the exact LLR
    np.testing.assert_array_equal((maxlog > 0).astype(np.uint8), mod.hard(y))
    assert np.mean(np.abs(maxlog - app)) < 0.3 * np.mean(np.abs(app))
    # per-symbol noise variance is honoured
    nv = np.full(2000, n0, np.float32)
    nv[:10] = 1e6
    per = mod.demap(y, nv, "app")
    assert np.all(np.abs(per[: 10 * mod.bits_per_symbol]) < 1e-3)
    np.testing.assert_allclose(per[10 * mod.bits_per_symbol :], app[10 * mod.bits_per_symbol :], rtol=1e-5)


def test_zf_and_mmse():
    rng = np.random.default_rng(2)
    z = Modulator("qam16").map(rng.integers(0, 2, 4 * 50_000, dtype=np.uint8))
    h = ((rng.standard_normal(z.size) + 1j * rng.standard_normal(z.size)) / np.sqrt(2)).astype(np.complex64)
    n0 = 0.3
    noise = (rng.standard_normal(z.size) + 1j * rng.standard_normal(z.size)) * np.sqrt(n0 / 2)
    y = (h * z + noise).astype(np.complex64)
    # noiseless ZF inverts the channel
    zz, _ = zf(h * z, h, 0.0)
    np.testing.assert_allclose(zz, z, atol=1e-4)
    zz, nv = zf(y, h, n0)
    np.testing.assert_allclose(nv, n0 / np.abs(h) ** 2, rtol=1e-4)
    # unbiased MMSE is ZF for one tap
    zm, nvm = mmse(y, h, n0)
    np.testing.assert_allclose(zm, zz, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(nvm, nv, rtol=1e-4)
    # the biased MMSE estimate has lower MSE than ZF, and its predicted MSE is right on average
    zb, mse_pred = mmse_biased(y, h, n0)
    mse_zf = np.mean(np.abs(zz - z) ** 2)
    mse_b = np.mean(np.abs(zb - z) ** 2)
    assert mse_b < mse_zf and mse_b < POWER_P
    assert mse_b == pytest.approx(np.mean(mse_pred), rel=0.05)
    # estimation error adds noise; a dead gain yields no information instead of a division by zero
    _, nv_e = equalize(y, h, n0, "zf", est_error_var=0.1)
    np.testing.assert_allclose(nv_e, (n0 + 0.1) / np.abs(h) ** 2, rtol=1e-4)
    zd, nvd = equalize(np.ones(3, np.complex64), np.zeros(3, np.complex64), n0, "mmse")
    assert np.all(zd == 0) and np.all(nvd >= 1e11)
    with pytest.raises(ValueError, match="equalizer"):
        equalize(y, h, n0, "dfe")
