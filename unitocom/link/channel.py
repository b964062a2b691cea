"""The channel of eq. (2), y = h*z + n, for one modality stream: AWGN, Rayleigh or Rician, block or fast fading,
perfect or pilot-estimated CSI, and whole-frame erasures.

SNR is Es/N0 in dB against the power constraint P (`config.POWER_P`): the noise variance is N0 = P/10^(snr/10)
whatever the power of the frame actually sent, because the transmitter normalises to P and a channel that
rescaled by the measured power would hide a transmitter that did not.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unitocom.config import POWER_P, noise_variance

MODELS: tuple[str, ...] = ("awgn", "rayleigh", "rician", "noiseless")
FADINGS: tuple[str, ...] = ("block", "fast")
CSI_MODES: tuple[str, ...] = ("perfect", "estimated")


@dataclass(frozen=True)
class ChannelSpec:
    """What the channel does to one stream. Field names match `config.ChannelDefaults`."""

    model: str = "awgn"  # awgn | rayleigh | rician | noiseless
    fading: str = "block"  # block | fast
    block_length: int = 0  # symbols per fading block, counted across frames; 0 = one h for the whole stream
    rician_k_db: float = 10.0  # K = LOS power / scattered power, in dB
    csi: str = "perfect"  # perfect | estimated
    pilots: int = 8  # pilot symbols (at power P) per fading block for the LS estimate
    erasure_prob: float = 0.0  # probability that a whole frame is lost

    def validate(self) -> None:
        """Raise ValueError naming the offending field (`channel.<field>`)."""
        if self.model not in MODELS:
            raise ValueError(f"channel.model must be one of {list(MODELS)}, got {self.model!r}")
        if self.fading not in FADINGS:
            raise ValueError(f"channel.fading must be one of {list(FADINGS)}, got {self.fading!r}")
        if isinstance(self.block_length, bool) or not isinstance(self.block_length, (int, np.integer)) or self.block_length < 0:
            raise ValueError(f"channel.block_length must be an integer >= 0, got {self.block_length!r}")
        if not isinstance(self.rician_k_db, (int, float, np.floating)) or not math.isfinite(self.rician_k_db):
            raise ValueError(f"channel.rician_k_db must be a finite number, got {self.rician_k_db!r}")
        if self.csi not in CSI_MODES:
            raise ValueError(f"channel.csi must be one of {list(CSI_MODES)}, got {self.csi!r}")
        if isinstance(self.pilots, bool) or not isinstance(self.pilots, (int, np.integer)) or self.pilots < 1:
            raise ValueError(f"channel.pilots must be an integer >= 1, got {self.pilots!r}")
        if (not isinstance(self.erasure_prob, (int, float, np.floating)) or not math.isfinite(self.erasure_prob)
                or not 0.0 <= self.erasure_prob <= 1.0):
            raise ValueError(f"channel.erasure_prob must be in [0, 1], got {self.erasure_prob!r}")

    @property
    def rician_k(self) -> float:
        return 10.0 ** (self.rician_k_db / 10.0)


@dataclass
class ChannelOutput:
    y: np.ndarray  # complex64 [N] received symbols (zeros where erased)
    h: np.ndarray  # complex64 [N] the true per-symbol gain applied
    h_est: np.ndarray  # complex64 [N] the receiver's estimate (== h when csi == "perfect")
    noise_var: float  # N0, complex noise variance actually used
    erased: bool
    # Variance of h_est - h (0 with perfect CSI): an equaliser may add est_error_var * P to N0.
    est_error_var: float = 0.0


class _NoiseStream:
    """The float32 standard normals of one stream's noise, optionally drawn one frame ahead in a thread.

    Sequential draws give the same numbers however they are split, so drawing ahead changes only *when* they
    are drawn: numpy fills release the GIL, so the next frame's noise is made while gRPC moves this one."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.buf = np.zeros(0, np.float32)
        self.ahead: list[np.ndarray] = []
        self.thread: threading.Thread | None = None

    def take(self, count: int, prefetch: bool) -> np.ndarray:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
            self.buf = self.ahead.pop() if self.buf.size == 0 else np.concatenate([self.buf, self.ahead.pop()])
        if self.buf.size < count:
            more = self.rng.standard_normal(count - self.buf.size, dtype=np.float32)
            self.buf = more if self.buf.size == 0 else np.concatenate([self.buf, more])
        out, self.buf = self.buf[:count], self.buf[count:]
        if prefetch:
            self.thread = threading.Thread(target=lambda: self.ahead.append(
                self.rng.standard_normal(count, dtype=np.float32)), daemon=True)
            self.thread.start()
        return out


class FadingChannel:
    """Stateful over the frames of ONE stream: eq. (2) y = h*z + n.

    SNR is Es/N0 in dB against the power constraint P (config.POWER_P): N0 = P / 10^(snr_db/10), regardless of
    the actual frame power. Rayleigh: h ~ CN(0,1). Rician with K: h = sqrt(K/(K+1)) e^{j theta} +
    sqrt(1/(K+1)) CN(0,1), E|h|^2 = 1; the LOS phase theta is drawn once per stream (the geometry of one link).
    AWGN: h = 1. Noiseless: h = 1 and N0 = 0, y = z exactly whatever snr_db says: the letter's upper bound
    (Fig. 2), where the receiver gets the transmitted symbols, so the MLLM reads the tokens as sent.

    Block fading: one h per `block_length` symbols, counted across successive frames of the stream, so a block
    that straddles two frames keeps its h; block_length 0 = a single h for the whole stream.
    Fast fading: a new h per symbol (block_length is ignored).

    Estimated CSI: per fading block the receiver sees `pilots` known pilot symbols of power P through the same h
    and fresh noise, and forms the least-squares estimate h_est = h + e, e ~ CN(0, N0/(pilots*P)). Pilots are
    modelled out of band: they do not appear in y and are not counted in N. With fast fading every symbol is its
    own block, an optimistic idealisation.

    Erasure: with probability `erasure_prob` a frame is lost; y is all zeros and `erased` is True. The fading
    process and noise still advance, so later frames do not depend on which frames were erased.

    Reproducible: independent random streams (gains, noise, pilots, erasures) are spawned from `seed`; the same
    (spec, snr_db, seed) and the same frame sizes give identical outputs. Gains, estimates and noise depend only on
    the symbol positions, not on how the stream is cut into frames (erasures, drawn per frame, do).
    """

    def __init__(self, spec: ChannelSpec, snr_db: float, seed: int | Sequence[int]):
        spec.validate()
        self.spec = spec
        self.snr_db = float(snr_db)
        self.noise_var = noise_variance(self.snr_db)  # raises on non-finite SNR
        if spec.model == "noiseless":
            self.noise_var = 0.0
        # A SeedSequence is accepted too, so that simulations can spawn independent channels from one seed.
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        g_h, g_n, g_p, g_e, g_los = (np.random.default_rng(s) for s in ss.spawn(5))
        self._rng_h, self._rng_pilot, self._rng_erase = g_h, g_p, g_e
        self._los_phase = float(g_los.uniform(0.0, 2.0 * np.pi))
        self._noise = _NoiseStream(g_n)
        self._pos = 0  # symbols of this stream already through the channel
        self._block_index = -1  # index of the fading block whose h/h_est are cached
        self._block_h = np.complex64(1.0)
        self._block_h_est = np.complex64(1.0)

    @property
    def est_error_var(self) -> float:
        """Variance of the LS estimation error, N0 / (pilots * P); 0 with perfect CSI."""
        if self.spec.csi == "perfect":
            return 0.0
        return self.noise_var / (self.spec.pilots * POWER_P)

    def _draw_gains(self, count: int) -> np.ndarray:
        """count fresh gains, complex128 [count], from the model's distribution (E|h|^2 = 1)."""
        if self.spec.model in ("awgn", "noiseless"):
            return np.ones(count, dtype=np.complex128)
        # Draw (re, im) pairs so that the sequence of gains does not depend on how the stream is cut into frames.
        g = self._rng_h.standard_normal((count, 2)).view(np.complex128)[:, 0] / np.sqrt(2.0)
        if self.spec.model == "rayleigh":
            return g
        k = self.spec.rician_k
        return np.sqrt(k / (k + 1.0)) * np.exp(1j * self._los_phase) + np.sqrt(1.0 / (k + 1.0)) * g

    def _estimate(self, h: np.ndarray) -> np.ndarray:
        """LS pilot estimate for each gain in h: mean over `pilots` of (sqrt(P) h + n)/sqrt(P).

        The mean of `pilots` independent CN(0, N0) draws is one CN(0, N0 / pilots) draw: drawing it directly keeps
        memory at one sample per gain whatever the pilot count (fast fading with many pilots drew symbols x pilots)."""
        if self.spec.csi == "perfect":
            return h
        noise = self._rng_pilot.standard_normal((h.size, 2)).view(np.complex128)[:, 0]
        noise *= np.sqrt(self.noise_var / (2.0 * self.spec.pilots))
        return h + noise / np.sqrt(POWER_P)

    def _gains(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """True and estimated gains, complex64 [n], for the next n symbols of the stream."""
        spec = self.spec
        if spec.fading == "fast":
            h = self._draw_gains(n)
            h64 = h.astype(np.complex64)
            return h64, (h64 if spec.csi == "perfect" else self._estimate(h).astype(np.complex64))
        if n == 0:
            return np.zeros(0, np.complex64), np.zeros(0, np.complex64)
        length = spec.block_length
        # Blocks touched by symbols [pos, pos + n) and how many of those symbols each one covers. Repeating
        # per-block gains avoids per-symbol index arithmetic (this path moves 1e6-symbol frames).
        if length == 0:
            first, last, counts = 0, 0, np.array([n])
        else:
            first, last = self._pos // length, (self._pos + n - 1) // length
            edges = np.clip(np.arange(first, last + 2, dtype=np.int64) * length, self._pos, self._pos + n)
            counts = np.diff(edges)
        fresh = last - max(first, self._block_index + 1) + 1 if last > self._block_index else 0
        # Gains of blocks [first .. last]; the first may be the block cached from the previous frame.
        if first == self._block_index:
            old_h, old_e = np.array([self._block_h]), np.array([self._block_h_est])
        else:
            old_h, old_e = np.zeros(0, np.complex128), np.zeros(0, np.complex128)
        new_h = self._draw_gains(fresh)
        new_e = self._estimate(new_h)
        hb = np.concatenate([old_h, new_h])
        eb = np.concatenate([old_e, new_e])
        self._block_index, self._block_h, self._block_h_est = last, hb[-1], eb[-1]
        h = np.repeat(hb.astype(np.complex64), counts)
        return h, (h if eb is hb or spec.csi == "perfect" else np.repeat(eb.astype(np.complex64), counts))

    def gains(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The true and estimated gains, complex64 [n], of the stream's next n symbols, without noise: for a
        channel that adds several streams' h z and draws one noise for them (`link.multiaccess.superpose`)."""
        h, h_est = self._gains(int(n))
        self._pos += int(n)
        return h, h_est

    def __call__(self, z: np.ndarray, prefetch_next: bool = False) -> ChannelOutput:
        """z complex64 [N] (one frame of the stream) -> ChannelOutput with arrays of length N.
        prefetch_next: another frame of about this size follows; start drawing its noise now."""
        z = np.asarray(z)
        if z.ndim != 1:
            raise ValueError(f"z must be a 1-D array of symbols, got shape {z.shape}")
        # One pass without a boolean temporary: any NaN or inf makes the float64 sum non-finite.
        if not np.isfinite(np.sum(z.view(np.float32) if z.dtype == np.complex64 else z, dtype=np.float64)):
            raise ValueError("z must contain only finite values")
        z = z.astype(np.complex64, copy=False)
        n = z.size
        h, h_est = self._gains(n)
        # float32 normals and in-place complex64 arithmetic: the noise draw dominates a 1e6-symbol frame.
        y = self._noise.take(2 * n, prefetch_next).view(np.complex64)
        y *= np.float32(np.sqrt(self.noise_var / 2.0))
        erased = bool(self._rng_erase.random() < self.spec.erasure_prob)
        self._pos += n
        if erased:
            y = np.zeros(n, dtype=np.complex64)
        else:
            y += h * z
        return ChannelOutput(y=y, h=h, h_est=h_est, noise_var=self.noise_var, erased=erased,
                             est_error_var=self.est_error_var)
