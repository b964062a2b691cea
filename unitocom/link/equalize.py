"""Single-tap equalisation of y = h*z + n: symbol estimates plus the noise variance the demapper should assume.

For one antenna and flat fading the *unbiased* MMSE estimate equals ZF (both are y/h with noise N0/|h|^2);
MMSE differs only in its bias, which shrinks the estimate towards 0 and lowers the mean-squared error but
would distort a demapper that expects the constellation at full scale. `equalize(..., "mmse")` therefore
returns the unbiased estimate and `mmse_biased` the textbook one, for comparison and tests.
"""
from __future__ import annotations

import numpy as np

from unitocom.config import POWER_P

EQUALIZERS: tuple[str, ...] = ("zf", "mmse")

# Where |h|^2 is below this (erased frame, deep fade with ZF) the symbol carries no information:
# report it as 0 with a huge noise variance so that the demapper gives LLR ~ 0.
_H2_FLOOR = 1e-12
_NOISE_CEIL = 1e12


def _inputs(y, h, noise_var):
    y = np.asarray(y, dtype=np.complex64).reshape(-1)
    h = np.broadcast_to(np.asarray(h, dtype=np.complex64).reshape(-1) if np.ndim(h) else np.complex64(h), y.shape)
    if not (np.isfinite(noise_var) and noise_var >= 0):
        raise ValueError(f"noise_var must be finite and >= 0, got {noise_var}")
    return y, h, float(noise_var)


def zf(y: np.ndarray, h: np.ndarray, noise_var: float, est_error_var: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Zero forcing. y complex [N], h complex [N] (or scalar), N0 -> (z_hat complex64 [N], noise var float32 [N]).

    `est_error_var` is the variance of h_est - h when h is an estimate: it acts as extra noise of power
    est_error_var * P, so the effective noise is (N0 + est_error_var*P) / |h|^2."""
    y, h, n0 = _inputs(y, h, noise_var)
    h2 = (h.real.astype(np.float64) ** 2 + h.imag.astype(np.float64) ** 2)
    dead = h2 < _H2_FLOOR
    safe_h = np.where(dead, 1.0, h)
    z = np.where(dead, 0.0, y / safe_h).astype(np.complex64)
    eff = (n0 + est_error_var * POWER_P) / np.where(dead, 1.0, h2)
    eff = np.where(dead, _NOISE_CEIL, np.minimum(eff, _NOISE_CEIL)).astype(np.float32)
    return z, eff


def mmse(y: np.ndarray, h: np.ndarray, noise_var: float, est_error_var: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased (per-symbol SINR-preserving) MMSE: y complex [N], h [N], N0 -> (z_hat complex64 [N], noise var [N]).

    Computed as the MMSE filter h*/(|h|^2 + N0/P) followed by removal of its bias |h|^2/(|h|^2 + N0/P);
    for a single tap this equals ZF, as theory says, and the noise variance is P / SINR = (N0 + e*P)/|h|^2."""
    y, h, n0 = _inputs(y, h, noise_var)
    n_eff = n0 + est_error_var * POWER_P
    h2 = (h.real.astype(np.float64) ** 2 + h.imag.astype(np.float64) ** 2)
    g = h2 / (h2 + n_eff / POWER_P)  # bias of the MMSE estimate
    zb = np.conj(h) * y / (h2 + n_eff / POWER_P)
    dead = (h2 < _H2_FLOOR) | (g <= 0)
    z = np.where(dead, 0.0, zb / np.where(dead, 1.0, g)).astype(np.complex64)
    eff = np.where(dead, _NOISE_CEIL, np.minimum(n_eff / np.where(dead, 1.0, h2), _NOISE_CEIL)).astype(np.float32)
    return z, eff


def mmse_biased(y: np.ndarray, h: np.ndarray, noise_var: float, est_error_var: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Textbook MMSE estimate h* y / (|h|^2 + N0/P) -> (z_hat complex64 [N], its MSE E|z_hat - z|^2 per symbol [N]).

    The MSE is P * N0' / (|h|^2 P + N0') with N0' = N0 + e*P; always below ZF's N0'/|h|^2."""
    y, h, n0 = _inputs(y, h, noise_var)
    n_eff = n0 + est_error_var * POWER_P
    h2 = (h.real.astype(np.float64) ** 2 + h.imag.astype(np.float64) ** 2)
    den = h2 + n_eff / POWER_P
    # a zero gain on a noiseless channel (the upper bound's N0 = 0 beside an erased symbol) is 0/0: nothing
    # arrived, so the estimate is the prior mean 0 with the prior's MSE P, the limit of N0 -> 0 at h = 0
    z = np.where(den > 0, np.conj(h) * y / np.where(den > 0, den, 1.0), 0.0).astype(np.complex64)
    mse = (POWER_P * n_eff / (h2 * POWER_P + n_eff)) if n_eff > 0 else np.where(h2 > 0, 0.0, POWER_P)
    return z, np.asarray(mse, dtype=np.float32)


def equalize(y: np.ndarray, h: np.ndarray, noise_var: float, method: str = "mmse",
             est_error_var: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch to `zf` or (unbiased) `mmse`; returns (z_hat complex64 [N], effective noise variance float32 [N])."""
    if method == "zf":
        return zf(y, h, noise_var, est_error_var)
    if method == "mmse":
        return mmse(y, h, noise_var, est_error_var)
    raise ValueError(f"equalizer must be one of {list(EQUALIZERS)}, got {method!r}")
