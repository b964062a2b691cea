"""The channel of eq. (2): SNR calibration, fading statistics (against Sionna), block/fast fading, CSI, erasures."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from unitocom.config import POWER_P, noise_variance
from unitocom.link.channel import ChannelSpec, FadingChannel
from unitocom.link.modulation import Modulator


def qam16(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return Modulator("qam16").map(rng.integers(0, 2, 4 * n, dtype=np.uint8))


@pytest.mark.parametrize(
    "field,kwargs",
    [("model", {"model": "nakagami"}), ("fading", {"fading": "slow"}), ("block_length", {"block_length": -1}),
     ("rician_k_db", {"rician_k_db": float("nan")}), ("csi", {"csi": "oracle"}), ("pilots", {"pilots": 0}),
     ("erasure_prob", {"erasure_prob": 1.5})],
)
def test_validate_names_the_field(field, kwargs):
    with pytest.raises(ValueError, match=f"channel.{field}"):
        ChannelSpec(**kwargs).validate()
    with pytest.raises(ValueError, match=f"channel.{field}"):
        FadingChannel(ChannelSpec(**kwargs), 10.0, 0)


def test_defaults_validate_and_bad_inputs():
    ChannelSpec().validate()
    with pytest.raises(ValueError):
        FadingChannel(ChannelSpec(), float("inf"), 0)
    ch = FadingChannel(ChannelSpec(), 10.0, 0)
    with pytest.raises(ValueError, match="1-D"):
        ch(np.zeros((2, 2), np.complex64))
    out = ch(np.zeros(0, np.complex64))
    assert out.y.shape == out.h.shape == out.h_est.shape == (0,)


@pytest.mark.parametrize("model", ["awgn", "rayleigh", "rician"])
@pytest.mark.parametrize("snr_db", [-5.0, 3.0, 17.0])
def test_measured_snr_matches_request(model, snr_db):
    z = qam16(100_000)
    assert abs(np.mean(np.abs(z) ** 2) - POWER_P) < 0.02
    out = FadingChannel(ChannelSpec(model=model, fading="fast"), snr_db, 1)(z)
    noise = out.y - out.h * z
    measured = 10 * np.log10(POWER_P / np.mean(np.abs(noise) ** 2))
    assert abs(measured - snr_db) < 0.1
    assert out.noise_var == pytest.approx(noise_variance(snr_db))


def test_noise_is_not_normalised_to_frame_power():
    z = 0.5 * qam16(50_000)  # a transmitter sending below P must not get a cleaner channel
    out = FadingChannel(ChannelSpec(), 10.0, 2)(z)
    assert np.mean(np.abs(out.y - z) ** 2) == pytest.approx(noise_variance(10.0), rel=0.03)


def test_awgn_noise_matches_sionna_awgn():
    import sionna.phy
    import torch
    from sionna.phy.channel import AWGN

    n0 = noise_variance(5.0)
    n = 20_000
    ours = FadingChannel(ChannelSpec(), 5.0, 3)(np.zeros(n, np.complex64)).y
    sionna.phy.config.seed = 0  # Sionna draws from its own generators, not torch's global one
    theirs = AWGN()(torch.zeros(n, dtype=torch.complex64), n0).numpy()
    for part in (np.real, np.imag):
        assert stats.ks_2samp(part(ours), part(theirs)).pvalue > 1e-3
    assert np.var(ours) == pytest.approx(n0, rel=0.05)


def test_rayleigh_gain_matches_sionna_block_fading():
    import sionna.phy
    import torch
    from sionna.phy.channel import RayleighBlockFading

    sionna.phy.config.seed = 0  # Sionna draws from its own generators, not torch's global one
    a, _ = RayleighBlockFading(1, 1, 1, 1)(batch_size=5000, num_time_steps=1)
    theirs = a.numpy().reshape(-1)
    ours = FadingChannel(ChannelSpec(model="rayleigh", block_length=1), 10.0, 4)(np.ones(5000, np.complex64)).h
    assert stats.ks_2samp(np.abs(ours) ** 2, np.abs(theirs) ** 2).pvalue > 1e-3
    assert stats.ks_2samp(np.angle(ours), np.angle(theirs)).pvalue > 1e-3
    # |h|^2 of CN(0,1) is Exp(1)
    assert stats.kstest(np.abs(ours) ** 2, "expon").pvalue > 1e-3


def test_block_fading_constant_within_blocks_across_frames():
    spec = ChannelSpec(model="rayleigh", block_length=100)
    ch = FadingChannel(spec, 10.0, 5)
    h = np.concatenate([ch(np.ones(37, np.complex64)).h for _ in range(30)])  # frames straddle blocks
    blocks = h[: 1100].reshape(11, 100)
    assert np.all(blocks == blocks[:, :1])
    assert len(np.unique(blocks[:, 0])) == 11
    # the gain sequence does not depend on how the stream is cut into frames
    whole = FadingChannel(spec, 10.0, 5)(np.ones(37 * 30, np.complex64)).h
    np.testing.assert_array_equal(h, whole)


def test_block_length_zero_is_one_gain_per_stream():
    ch = FadingChannel(ChannelSpec(model="rician", block_length=0), 10.0, 6)
    h = np.concatenate([ch(np.ones(n, np.complex64)).h for n in (5, 1000, 1, 77)])
    assert np.all(h == h[0])


def test_fast_fading_varies_per_symbol():
    h = FadingChannel(ChannelSpec(model="rayleigh", fading="fast"), 10.0, 7)(np.ones(20_000, np.complex64)).h
    assert len(np.unique(h)) == h.size
    lag1 = np.abs(np.mean(h[1:] * np.conj(h[:-1])))
    assert lag1 < 0.03  # independent draws: correlation ~ 1/sqrt(N)


@pytest.mark.parametrize("k_db", [0.0, 10.0])
def test_rician_k_factor(k_db):
    h = FadingChannel(ChannelSpec(model="rician", fading="fast", rician_k_db=k_db), 10.0, 8)(np.ones(100_000, np.complex64)).h
    h = h.astype(np.complex128)
    mean = h.mean()  # the LOS component (phase fixed per stream)
    k_hat = np.abs(mean) ** 2 / np.mean(np.abs(h - mean) ** 2)
    assert 10 * np.log10(k_hat) == pytest.approx(k_db, abs=0.2)
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0, rel=0.02)


def test_perfect_csi_equals_truth():
    out = FadingChannel(ChannelSpec(model="rayleigh", block_length=10), 5.0, 9)(qam16(1000))
    np.testing.assert_array_equal(out.h, out.h_est)
    assert out.est_error_var == 0.0


def test_pilot_estimate_error_shrinks_with_pilots():
    errs = []
    for pilots in (1, 4, 16, 64):
        spec = ChannelSpec(model="rayleigh", block_length=1, csi="estimated", pilots=pilots)
        ch = FadingChannel(spec, 5.0, 10)
        out = ch(np.ones(20_000, np.complex64))
        err = np.mean(np.abs(out.h_est - out.h) ** 2)
        assert err == pytest.approx(noise_variance(5.0) / pilots, rel=0.05)  # LS: N0 / (pilots * P)
        assert out.est_error_var == pytest.approx(noise_variance(5.0) / pilots)
        errs.append(err)
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_many_pilots_cost_no_memory():
    # 2**31 pilots per gain on 10^5 fast-fading symbols: one CN(0, N0/pilots) draw per gain, not pilots of them
    # (the wire allows pilots up to 2**32; drawing symbols x pilots samples would need petabytes)
    spec = ChannelSpec(model="rayleigh", fading="fast", csi="estimated", pilots=2**31)
    out = FadingChannel(spec, 0.0, 3)(np.ones(100_000, np.complex64))
    err = np.mean(np.abs(out.h_est.astype(np.complex128) - out.h) ** 2)
    assert err < 1e-6


def test_erasure_rate_and_erased_frames_are_zero():
    p, frames = 0.3, 2000
    ch = FadingChannel(ChannelSpec(erasure_prob=p), 10.0, 11)
    outs = [ch(np.ones(4, np.complex64)) for _ in range(frames)]
    erased = sum(o.erased for o in outs)
    lo, hi = stats.binom.ppf([1e-4, 1 - 1e-4], frames, p)
    assert lo <= erased <= hi
    assert all(np.all(o.y == 0) for o in outs if o.erased)
    assert all(np.any(o.y != 0) for o in outs if not o.erased)
    assert not any(FadingChannel(ChannelSpec(erasure_prob=0.0), 10.0, 1)(np.ones(1, np.complex64)).erased for _ in range(50))


def test_reproducible_by_seed():
    spec = ChannelSpec(model="rician", block_length=50, csi="estimated", erasure_prob=0.2)
    z = qam16(300)

    def run(seed):
        ch = FadingChannel(spec, 8.0, seed)
        return [ch(z[i : i + 100]) for i in range(0, 300, 100)]

    a, b, c = run(123), run(123), run([1, 2, 3])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.y, y.y)
        np.testing.assert_array_equal(x.h_est, y.h_est)
        assert x.erased == y.erased
    assert any(not np.array_equal(x.h, y.h) for x, y in zip(a, c))
    assert all(o.y.dtype == np.complex64 and o.h.dtype == np.complex64 and o.h_est.dtype == np.complex64 for o in a)


def test_noise_drawn_ahead_is_the_same_noise():
    """prefetch_next only changes when the noise is drawn (in a thread), never which noise a symbol gets,
    even when the next frame is shorter or longer than the one that prompted the prefetch."""
    from unitocom.link.channel import ChannelSpec, FadingChannel
    spec = ChannelSpec(model="rayleigh", fading="block", block_length=700)
    rng = np.random.default_rng(5)
    sizes = [1000, 1000, 300, 2500, 1000]
    frames = [(rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64) for n in sizes]
    plain, ahead = FadingChannel(spec, 7.0, 42), FadingChannel(spec, 7.0, 42)
    for i, z in enumerate(frames):
        a = plain(z)
        b = ahead(z, prefetch_next=i < len(frames) - 1)
        assert np.array_equal(a.y, b.y) and np.array_equal(a.h, b.h)


@pytest.mark.parametrize("csi", ["perfect", "estimated"])
def test_noiseless_channel_delivers_the_symbols_exactly(csi):
    """The upper bound of Fig. 2: y = z, h = 1, N0 = 0 whatever snr_db says (and an exact pilot estimate)."""
    rng = np.random.default_rng(3)
    z = (rng.standard_normal(1000) + 1j * rng.standard_normal(1000)).astype(np.complex64)
    out = FadingChannel(ChannelSpec(model="noiseless", csi=csi), snr_db=-20.0, seed=1)(z)
    assert out.noise_var == 0.0 and out.est_error_var == 0.0 and not out.erased
    np.testing.assert_array_equal(out.y, z)
    np.testing.assert_array_equal(out.h_est, np.ones(1000, np.complex64))
