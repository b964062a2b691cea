"""Packet erasure processes: which packets of a stream the link loses (issue 16's token packets).

Two processes, both set by what a user measures on a real link, the long-run loss rate L and the mean length B of
a run of consecutive losses (packets):

- i.i.d.: each packet lost with probability L. Its mean burst is 1 / (1 - L), so B is not free.
- Gilbert (the Gilbert-Elliott model with a lossless good state and an always-lossy bad state): a two-state
  Markov chain, good -> bad with probability a, bad -> good with probability b. The stationary loss rate is
  a / (a + b) and a loss run lasts a geometric number of packets with mean 1 / b, so b = 1 / B and
  a = L b / (1 - L). It needs B >= 1 / (1 - L) for a <= 1, i.e. bursts at least as long as i.i.d. ones.

The chain starts from its stationary distribution, so every packet, the first included, is lost with
probability L.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PacketLoss:
    loss_rate: float = 0.0  # L: long-run fraction of packets lost, in [0, 1]
    mean_burst: float | None = None  # B: mean run of consecutive lost packets (packets); None: i.i.d.

    def __post_init__(self):
        L, B = self.loss_rate, self.mean_burst
        if not (isinstance(L, (int, float)) and math.isfinite(L) and 0.0 <= L <= 1.0):
            raise ValueError(f"loss_rate must be in [0, 1], got {L!r}")
        if B is not None:
            if not (isinstance(B, (int, float)) and math.isfinite(B) and B >= 1.0):
                raise ValueError(f"mean_burst must be >= 1 packet (or None for i.i.d.), got {B!r}")
            if 0.0 < L < 1.0 and B < self.iid_burst - 1e-12:
                raise ValueError(f"mean_burst {B:g} is shorter than an i.i.d. loss of rate {L:g} gives "
                                 f"({self.iid_burst:.4g} packets): a Gilbert channel cannot be less bursty")

    @property
    def iid_burst(self) -> float:
        """Mean run of losses of an i.i.d. process with this loss rate: 1 / (1 - L) packets."""
        return math.inf if self.loss_rate >= 1.0 else 1.0 / (1.0 - self.loss_rate)

    def transitions(self) -> tuple[float, float]:
        """(a, b) = P(good -> bad), P(bad -> good) per packet. i.i.d. is the chain with a = L, b = 1 - L."""
        L = self.loss_rate
        if self.mean_burst is None or L in (0.0, 1.0):
            return L, 1.0 - L
        b = 1.0 / self.mean_burst
        return L * b / (1.0 - L), b

    def draw(self, n_packets: int, rng: np.random.Generator) -> np.ndarray:
        """bool [n_packets]: True where the packet is lost."""
        if n_packets < 0:
            raise ValueError(f"n_packets must be >= 0, got {n_packets}")
        return PacketLossStream(self, rng).upto(n_packets)


class PacketLossStream:
    """The losses of one stream's packets, drawn as its frames arrive: the chain goes on from packet to packet
    across calls (the same losses however the stream is cut into frames, for the same seed)."""

    def __init__(self, process: PacketLoss, rng: np.random.Generator):
        self.process, self.rng = process, rng
        self.lost = np.zeros(0, bool)

    def upto(self, n_packets: int) -> np.ndarray:
        """bool [>= n_packets]: the losses of packets 0..n_packets-1 (more drawn when needed; exactly n_packets
        the first time)."""
        if n_packets > len(self.lost):
            u = self.rng.random(n_packets - len(self.lost))
            a, b = self.process.transitions()
            if self.process.mean_burst is None or a + b == 1.0:  # memoryless: the next state ignores the last
                new = u < self.process.loss_rate
            else:
                new = np.empty(len(u), bool)
                bad = bool(self.lost[-1]) if len(self.lost) else None  # None: the chain starts stationary
                for i, x in enumerate(u):  # packets per request are few (tens to thousands): a loop is clear
                    bad = x < self.process.loss_rate if bad is None else x < ((1.0 - b) if bad else a)
                    new[i] = bad
            self.lost = np.concatenate([self.lost, new])
        return self.lost


def burst_lengths(lost: np.ndarray) -> np.ndarray:
    """int [runs]: the lengths of the runs of consecutive True in a bool array (the measured bursts)."""
    x = np.concatenate([[False], np.asarray(lost, bool), [False]]).astype(np.int8)
    d = np.diff(x)
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
