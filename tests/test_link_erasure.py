"""Packet erasure processes against their closed forms: loss rate, mean burst, lag-1 correlation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unitocom.link.erasure import PacketLoss, burst_lengths

N = 400_000


def _within(measured: float, expected: float, sigma: float, k: float = 5.0) -> None:
    assert abs(measured - expected) <= k * sigma, f"{measured:.5f} vs {expected:.5f} (sigma {sigma:.2e})"


@pytest.mark.parametrize("L,B", [(0.1, None), (0.3, None), (0.05, 4.0), (0.2, 2.5), (0.5, 8.0), (0.3, None)])
def test_loss_rate_and_mean_burst_match_their_parameters(L, B):
    proc = PacketLoss(L, B)
    lost = proc.draw(N, np.random.default_rng(7))
    a, b = proc.transitions()
    rho = 1.0 - a - b  # lag-1 correlation of the two-state chain: inflates the variance of the mean
    _within(lost.mean(), L, math.sqrt(L * (1 - L) / N * (1 + rho) / (1 - rho)))
    runs = burst_lengths(lost)
    mean_burst = B if B is not None else 1.0 / (1.0 - L)
    _within(runs.mean(), mean_burst, math.sqrt((1 - 1 / mean_burst) * mean_burst**2 / len(runs)))
    x = lost.astype(float) - lost.mean()
    _within(float(np.dot(x[1:], x[:-1]) / np.dot(x, x)), rho, 1 / math.sqrt(N))


def test_the_first_packet_is_lost_at_the_stationary_rate():
    proc = PacketLoss(0.2, 5.0)
    firsts = np.array([proc.draw(3, np.random.default_rng(s))[0] for s in range(4000)])
    _within(firsts.mean(), 0.2, math.sqrt(0.2 * 0.8 / 4000))


def test_edges_and_reproducibility():
    rng = np.random.default_rng
    assert not PacketLoss(0.0, 3.0).draw(1000, rng(0)).any()
    assert PacketLoss(1.0).draw(1000, rng(0)).all()
    assert PacketLoss(0.0).draw(0, rng(0)).shape == (0,)
    assert np.array_equal(PacketLoss(0.3, 4.0).draw(500, rng(1)), PacketLoss(0.3, 4.0).draw(500, rng(1)))
    assert list(burst_lengths(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1], bool))) == [2, 1, 3]


@pytest.mark.parametrize("L,B,match", [(-0.1, None, "loss_rate"), (float("nan"), None, "loss_rate"),
                                       (0.2, 0.5, "mean_burst"), (0.5, 1.5, "shorter than an i.i.d."),
                                       (0.2, float("inf"), "mean_burst")])
def test_impossible_parameters_are_refused_with_the_reason(L, B, match):
    with pytest.raises(ValueError, match=match):
        PacketLoss(L, B)
