"""Users sharing the channel (issue 17): K devices in one access group, orthogonal or superposed.

Plain numpy on arrays; the services call these (channel: `superpose`; base station: `sic`), the tests call them
directly.

- **Orthogonal access**: the users' signals occupy disjoint resource blocks of one frame (`resource_blocks`):
  user k's N_k channel uses follow user k-1's, each user alone in its block at the full power P, with its own
  h_k and noise. Nothing interferes; each user is decoded as a single user is. The frame costs sum_k N_k uses.
- **Superposed access** (power-domain NOMA): every user starts at channel use 0 and transmits x_k = sqrt(p_k) z_k
  (z_k at mean power P, p_k its share of the power budget, sum_k p_k <= 1), and the channel adds them with one
  noise: y = sum_k h_k x_k + n (`superpose`). The frame costs max_k N_k uses. The base station decodes the users
  in order of received power and cancels each one's re-modulated signal before the next (`sic`).

Why the budget is a sum of shares: the comparison with orthogonal access is at equal power per channel use (P,
one user at a time there, all of them here), so superposition gains channel uses, not power.

Power and gains: a device scales its own symbols by sqrt(p_k) (its power control); the channel applies h_k; the
base station, which assigned the powers, equalises with the effective gain g_k = sqrt(p_k) h_k.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ACCESS: tuple[str, ...] = ("orthogonal", "superposed")
MAX_USERS = 8  # one access group; the base station decodes the users of one request one after another
POWER_TOLERANCE = 1e-6  # shares that sum to 1 up to rounding (0.1 + 0.2 + 0.7) are within the budget


def default_powers(k: int) -> np.ndarray:
    """The default power shares of K superposed users, strongest first: p_j proportional to 4^-j (6 dB between
    successive users), summing to 1. With equal mean channel gains the cancellation order is then the user order,
    and every user's SINR before its own decoding stays above 0 dB at high SNR (p_j > sum of the weaker ones)."""
    if not 1 <= k <= MAX_USERS:
        raise ValueError(f"users must be in 1..{MAX_USERS}, got {k}")
    p = 4.0 ** -np.arange(k, dtype=np.float64)
    return p / p.sum()


def check_powers(powers: Sequence[float], k: int) -> np.ndarray:
    """The K power shares as float64 [K]; ValueError saying which entry is wrong and why (a count that is not K,
    NaN or infinite, not > 0, a sum over the budget)."""
    p = np.asarray(list(powers), dtype=np.float64)
    if p.size != k:
        raise ValueError(f"{p.size} powers given for {k} users; give one share of P per user")
    for i, v in enumerate(p):
        if not math.isfinite(v):
            raise ValueError(f"[{i}] is {v}: a power share must be a finite number")
        if v <= 0.0:
            raise ValueError(f"[{i}] is {v:g}: a power share must be > 0 (a user without power sends nothing)")
    total = float(p.sum())
    if total > 1.0 + POWER_TOLERANCE:
        raise ValueError(f"the shares sum to {total:g}, over the power budget P (they must sum to at most 1)")
    return p


def resource_blocks(lengths: Sequence[int]) -> np.ndarray:
    """Orthogonal access: the first channel use of each user's block in one frame, int64 [K] (user order)."""
    n = np.asarray(lengths, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(n)[:-1]]) if n.size else n


def frame_uses(lengths: Sequence[int], access: str) -> int:
    """Channel uses of one frame: the sum of the users' lengths (orthogonal) or the longest (superposed)."""
    if access not in ACCESS:
        raise ValueError(f"access must be one of {list(ACCESS)}, got {access!r}")
    lengths = [int(n) for n in lengths]
    if not lengths:
        return 0
    return sum(lengths) if access == "orthogonal" else max(lengths)


def superpose(signals: Sequence[np.ndarray], gains: Sequence[np.ndarray], noise: np.ndarray) -> np.ndarray:
    """y = sum_k g_k x_k + n over max_k N_k channel uses: user k's transmitted signal x_k [N_k] (its power already
    applied) through its gains g_k [N_k] (or a scalar); `noise` [max N_k], the one noise of the group. A user whose
    signal is shorter than the frame is silent after it. -> complex64 [max N_k]."""
    n = len(noise)
    if any(len(x) > n for x in signals):
        raise ValueError(f"a user's signal is longer than the noise of the frame ({n} channel uses)")
    y = np.array(noise, dtype=np.complex128)
    for x, g in zip(signals, gains):
        y[: len(x)] += np.asarray(g) * np.asarray(x, dtype=np.complex128)
    return y.astype(np.complex64)


@dataclass
class SicStep:
    """What the cancellation of one user left (`sic`)."""

    user: int
    order: int  # 0: decoded first
    sinr_db: float  # mean SINR over its channel uses when it was decoded (the users after it counted as noise)
    residual_db: float  # estimated power left by the cancellations so far over its channel uses, dB against its own


def sinr_db(gains: Sequence[np.ndarray], noise_var: float, order: Sequence[int]) -> list[float]:
    """The SINR each user is decoded at under SIC with perfect cancellation, in user order: for user k,
    mean |g_k|^2 / (sum over the users decoded after it of their mean |g_j|^2 over k's uses + N0), the closed form
    p_k|h_k|^2 / (sum_weaker p_j|h_j|^2 + N0) for block gains."""
    out = [0.0] * len(gains)
    for pos, k in enumerate(order):
        n_k = len(gains[k])
        interf = sum(_power(gains[j], n_k).mean() for j in order[pos + 1:]) if n_k else 0.0
        signal = float(np.mean(np.abs(gains[k]) ** 2)) if n_k else 0.0
        out[k] = 10.0 * math.log10(max(signal, 1e-30) / max(interf + noise_var, 1e-30))
    return out


def _power(g: np.ndarray, n: int) -> np.ndarray:
    """|g|^2 over the first n channel uses of a frame (0 where the user is silent), float64 [n]."""
    out = np.zeros(n)
    m = min(n, len(g))
    out[:m] = np.abs(np.asarray(g, dtype=np.complex128)[:m]) ** 2  # as `sic` computes it: differences cancel
    return out


def cancellation_order(gains: Sequence[np.ndarray]) -> list[int]:
    """Users in order of mean received power mean|g_k|^2, strongest first (ties: the lower user index first)."""
    power = [float(np.mean(np.abs(g) ** 2)) if len(g) else 0.0 for g in gains]
    return sorted(range(len(gains)), key=lambda k: (-power[k], k))


# decode(user, y_white, g_white, noise_var) -> that user's symbols as re-modulated from what was decoded, at the
# device's own scale (mean power P, before sqrt(p_k): g holds it), complex [N_k].
Decoder = Callable[[int, np.ndarray, np.ndarray, float], np.ndarray]


def sic(y: np.ndarray, gains: Sequence[np.ndarray], noise_var: float, decode: Decoder) -> list[SicStep]:
    """Successive interference cancellation over one superposed frame.

    y complex [N] received; gains[k] complex [N_k] the effective gains sqrt(p_k) h_k of user k over its channel
    uses [0, N_k); noise_var N0 > 0. Users are decoded strongest first (`cancellation_order`). For user k the
    users not yet cancelled are interference: treated as Gaussian noise of their known power, so at channel use t
    the noise is v(t) = N0 + sum_j |g_j(t)|^2. The decoders (the schemes' receivers) take one scalar noise
    variance, so y and g_k are whitened first: both scaled by sqrt(N0 / v(t)), which leaves y/g (the equalised
    symbol) unchanged and gives every channel use its own SINR |g_k(t)|^2 / v(t) against noise N0 -- exact for the
    LLRs and the learned R's SNR input.

    After decoding, decode() re-modulates what it decoded (x_hat_k: the digital scheme re-encodes its decoded
    bits, the learned scheme runs T on R's tokens) and g_k x_hat_k is subtracted from y. What is left of user k
    is the residual g_k (z_k - x_hat_k): none when its bits were decoded right (a CRC that passed); for learned
    tokens, R's token error carried through T. The receiver does not know it, so the next users see it as noise
    that their SINR does not count; `SicStep.residual_db` estimates it from the power left in y.
    -> one SicStep per user, in user order."""
    if not noise_var > 0:
        raise ValueError(f"SIC needs noise_var > 0 (it whitens by it), got {noise_var}")
    y = np.array(y, dtype=np.complex128)
    k_users = len(gains)
    n = len(y)
    if any(len(g) > n for g in gains):
        raise ValueError(f"a user's gains are longer than the frame ({n} channel uses)")
    order = cancellation_order(gains)
    sinrs = sinr_db(gains, noise_var, order)
    left = sum((_power(g, n) for g in gains), np.zeros(n))  # power of the users still in y, per channel use
    steps: list[SicStep | None] = [None] * k_users
    for pos, k in enumerate(order):
        g = np.asarray(gains[k], dtype=np.complex128)
        n_k = len(g)
        g2 = np.abs(g) ** 2
        v = noise_var + left[:n_k] - g2  # the others still in y, and the noise
        scale = np.sqrt(noise_var / v)
        x_hat = np.asarray(decode(k, (y[:n_k] * scale).astype(np.complex64), (g * scale).astype(np.complex64),
                                  noise_var), dtype=np.complex128)
        if x_hat.shape != (n_k,):
            raise ValueError(f"user {k}: the decoder re-modulated {x_hat.shape} symbols, expected ({n_k},)")
        y[:n_k] -= g * x_hat
        left[:n_k] -= g2
        # What y holds beyond the users still in it and the noise: the residual of every cancellation so far.
        residual = float(np.mean(np.abs(y[:n_k]) ** 2) - np.mean(left[:n_k]) - noise_var) if n_k else 0.0
        own = float(np.mean(g2)) if n_k else 1.0
        steps[k] = SicStep(user=k, order=pos, sinr_db=sinrs[k],
                           residual_db=10.0 * math.log10(max(residual, 1e-6 * own) / max(own, 1e-30)))
    return steps  # type: ignore[return-value]
