"""Time diversity: one symbol stream sent K times over independent fades, combined before the receiver.

Copy k arrives as y_k = h_k z + n_k, n_k ~ CN(0, N0). Maximal-ratio combining weights each copy by conj(h_k):

    y = sum_k conj(h_k) y_k / sqrt(G) = sqrt(G) z + n,   G = sum_k |h_k|^2,   n ~ CN(0, N0),

so the combined stream is one copy's channel with gain sqrt(G) and the same noise: every receiver built for one
copy (LMMSE then R, or demapping and LDPC) reads it unchanged with h_est = sqrt(G), and its SNR is the sum of the
copies' (Brennan 1959; Proakis, Digital Communications, 13.4). A symbol whose h_k is 0 (a lost packet, an erased
frame) adds nothing; where every copy is lost the combined gain is 0, as for one lost copy.

With estimated CSI the weights are conj(h_est_k): the estimation error e_k = h_est_k - h_k leaves sum_k w_k e_k z
with w_k = conj(h_est_k) / sqrt(G_est), of power P var(e) sum_k |w_k|^2 = P var(e), the same extra noise as for one
copy, so est_error_var is unchanged.
"""
from __future__ import annotations

import numpy as np


def mrc(y: np.ndarray, h_est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """K received copies y complex [K, N] with their channel estimates h_est complex [K, N] -> the combined stream
    (y complex64 [N], its gain h complex64 [N], real and >= 0)."""
    y = np.asarray(y, np.complex128)
    h = np.asarray(h_est, np.complex128)
    if y.ndim != 2 or h.shape != y.shape:
        raise ValueError(f"mrc takes copies [K, N] with gains of the same shape, got {y.shape} and {h.shape}")
    g2 = np.sum(np.abs(h) ** 2, axis=0)
    gain = np.sqrt(g2)
    combined = np.sum(np.conj(h) * y, axis=0) / np.where(gain > 0, gain, 1.0)
    return combined.astype(np.complex64), gain.astype(np.complex64)
