"""Gray-labelled BPSK, QPSK, 16-QAM and 64-QAM: bits -> symbols and symbols -> bits or LLRs.

Every constellation has average energy exactly `config.POWER_P` over its points (uniform bits), so a
transmitter that maps uniform bits meets the power constraint of eq. (1) without a measured rescaling.
LLRs follow Sionna's convention: positive LLR means bit 1 (llr = log p(b=1|y) / p(b=0|y)).
Bits are uint8 0/1, most significant bit first within a symbol (Sionna's labelling).
"""
from __future__ import annotations

import functools

import numpy as np

from unitocom.config import POWER_P

BITS_PER_SYMBOL: dict[str, int] = {"bpsk": 1, "qpsk": 2, "qam16": 4, "qam64": 6}
MODULATIONS: tuple[str, ...] = tuple(BITS_PER_SYMBOL)
DEMAPPERS: tuple[str, ...] = ("app", "maxlog")

# Demapping materialises a [symbols, points] distance matrix; chunking bounds it to a few tens of MB.
_CHUNK_SYMBOLS = 1 << 16


def bits_per_symbol(modulation: str) -> int:
    try:
        return BITS_PER_SYMBOL[modulation]
    except KeyError:
        raise ValueError(f"modulation must be one of {list(MODULATIONS)}, got {modulation!r}") from None


def _check_demapper(method: str) -> None:
    if method not in DEMAPPERS:
        raise ValueError(f"demapper must be one of {list(DEMAPPERS)}, got {method!r}")


@functools.lru_cache(maxsize=None)
def _sionna_constellation(modulation: str):
    from sionna.phy.mapping import Constellation

    m = bits_per_symbol(modulation)
    # Sionna's QAM needs an even number of bits; BPSK is its 1-bit PAM (points +-1 on the real axis).
    kind = "pam" if m == 1 else "qam"
    return Constellation(kind, m, normalize=True)


@functools.lru_cache(maxsize=None)
def constellation(modulation: str) -> np.ndarray:
    """complex64 [2^m] points; index i carries the bits of i written MSB first. Mean energy == POWER_P."""
    pts = _sionna_constellation(modulation)().detach().cpu().numpy().astype(np.complex128)
    # Sionna normalises in float32; rescale in float64 so the average energy is P to machine precision.
    pts *= np.sqrt(POWER_P / np.mean(np.abs(pts) ** 2))
    out = pts.astype(np.complex64)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def _labels(modulation: str) -> np.ndarray:
    m = bits_per_symbol(modulation)
    idx = np.arange(2**m)
    return ((idx[:, None] >> np.arange(m - 1, -1, -1)) & 1).astype(np.uint8)  # [2^m, m]


class Modulator:
    """One modulation scheme: `map` bits to symbols, `demap` symbols to LLRs, `hard` symbols to bits."""

    def __init__(self, modulation: str = "qam16"):
        self.modulation = modulation
        self.bits_per_symbol = bits_per_symbol(modulation)
        self.points = constellation(modulation)

    def map(self, bits: np.ndarray) -> np.ndarray:
        """uint8 bits [..., n*m] -> complex64 symbols [..., n]. n*m must be a multiple of bits_per_symbol."""
        bits = np.asarray(bits)
        m = self.bits_per_symbol
        if bits.ndim == 0 or bits.shape[-1] % m:
            raise ValueError(f"bit count {bits.shape[-1] if bits.ndim else 0} is not a multiple of {m} ({self.modulation})")
        b = bits.reshape(*bits.shape[:-1], bits.shape[-1] // m, m).astype(np.int64)
        idx = (b << np.arange(m - 1, -1, -1)).sum(axis=-1)
        return self.points[idx]

    def demap(self, y: np.ndarray, noise_var: float | np.ndarray, method: str = "app") -> np.ndarray:
        """complex symbols [N] (after equalisation), noise variance N0 scalar or per symbol [N]
        -> float32 LLRs [N*m], positive = bit 1. `app` is the exact log-MAP, `maxlog` its max-log approximation."""
        import torch

        _check_demapper(method)
        y = np.ascontiguousarray(y, dtype=np.complex64).reshape(-1)
        # A zero noise variance (a noiseless test, a perfect equaliser) would turn distances into inf - inf = NaN.
        nv = np.broadcast_to(np.maximum(np.asarray(noise_var, dtype=np.float32), np.float32(1e-9 * POWER_P)), y.shape)
        dem = _demapper(self.modulation, method)
        out = np.empty(y.size * self.bits_per_symbol, dtype=np.float32)
        m = self.bits_per_symbol
        scale = np.float32(np.sqrt(POWER_P))
        for s in range(0, y.size, _CHUNK_SYMBOLS):
            e = min(s + _CHUNK_SYMBOLS, y.size)
            # Sionna's points have unit energy; scaling y and N0 to that reference gives the same LLRs.
            yt = torch.from_numpy(y[s:e] / scale)
            nt = torch.from_numpy(np.ascontiguousarray(nv[s:e]) / scale**2)
            with torch.no_grad():
                out[s * m : e * m] = dem(yt, nt).numpy()
        return out

    def hard(self, y: np.ndarray) -> np.ndarray:
        """complex symbols [N] -> uint8 bits [N*m] of the nearest constellation point (ML for AWGN)."""
        y = np.asarray(y, dtype=np.complex64).reshape(-1)
        idx = np.empty(y.size, dtype=np.int64)
        for s in range(0, y.size, _CHUNK_SYMBOLS):
            d = np.abs(y[s : s + _CHUNK_SYMBOLS, None] - self.points[None, :])
            idx[s : s + _CHUNK_SYMBOLS] = d.argmin(axis=1)
        return _labels(self.modulation)[idx].reshape(-1)


@functools.lru_cache(maxsize=None)
def _demapper(modulation: str, method: str):
    from sionna.phy.mapping import Demapper

    return Demapper(method, constellation=_sionna_constellation(modulation))

