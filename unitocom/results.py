"""95 % intervals for the letter's task scores: pure functions on arrays (no gRPC, no models).

- an accuracy (k correct of n): the Wilson score interval, which stays inside [0, 1] and is not degenerate at
  0/n or n/n as the normal (Wald) interval is;
- a corpus WER (total edits / total reference words), a mean (the T2I pair recall) and an FID: the percentile
  bootstrap over examples (resample the utterances, captions or generated/real pairs with replacement, recompute
  the statistic), with a fixed seed so that a rerun prints the same interval.

The bootstrap resamples examples, so it states the sampling uncertainty of the test set, not that of the channel
draws on top (each example is sent once, with its own seed). FID is biased upward at small n, and a resample
(with its repeated pairs) is a smaller effective sample: its bootstrap distribution sits above the point estimate
and the percentile interval need not contain it. That is a property of FID, kept visible rather than recentred.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
LEVEL = 0.95


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (two-sided, 95 % with the default z)."""
    if n <= 0:
        raise ValueError(f"a proportion needs n > 0 trials, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # k = 0 and k = n give exactly 0 and 1 in exact arithmetic; keep them so through rounding.
    lo = 0.0 if k == 0 else max(0.0, float(centre - half))
    hi = 1.0 if k == n else min(1.0, float(centre + half))
    return lo, hi


def bootstrap(statistic: Callable[..., float], arrays: Sequence[np.ndarray], n_resamples: int = 1000,
              seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*arrays)` over examples: every array has one row per example,
    and a resample draws the same example indices from each (pairs stay pairs)."""
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if n == 0:
        raise ValueError("a bootstrap needs at least one example")
    if any(len(a) != n for a in arrays):
        raise ValueError(f"the arrays hold different numbers of examples: {[len(a) for a in arrays]}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = rng.integers(0, n, n)
        stats[b] = statistic(*(a[idx] for a in arrays))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def ratio_of_sums(edits: np.ndarray, words: np.ndarray) -> float:
    """Corpus WER from per-utterance counts: total edits / total reference words."""
    return float(np.sum(edits) / np.sum(words))


def wer_interval(edits: Sequence[float], words: Sequence[float], n_resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the corpus WER, resampling utterances (edits and reference words stay together)."""
    words = np.asarray(words, dtype=float)
    if np.any(words <= 0):
        raise ValueError("every utterance needs at least one reference word")
    return bootstrap(ratio_of_sums, [np.asarray(edits, dtype=float), words], n_resamples, seed)


def mean_interval(values: Sequence[float], n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of a mean over examples (e.g. the T2I pair recall)."""
    return bootstrap(lambda v: float(np.mean(v)), [np.asarray(values, dtype=float)], n_resamples, seed)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D] (FID's formula, unbiased covariance
    as torchmetrics and pytorch-fid use): |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)). The trace of the
    square root is the sum of the square roots of the eigenvalues of S_r S_f (real and >= 0 up to rounding)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    eig = np.linalg.eigvals(s_r @ s_f)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(eig.real, 0.0, None))))
    return float(np.sum((mu_r - mu_f) ** 2) + np.trace(s_r) + np.trace(s_f) - 2.0 * tr_sqrt)


def fid_interval(real_features: np.ndarray, fake_features: np.ndarray, n_resamples: int = 200,
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the FID, resampling the (real, generated) pairs and recomputing it from the
    features (each resample costs a D x D eigen-decomposition, hence fewer resamples by default)."""
    return bootstrap(frechet_distance, [real_features, fake_features], n_resamples, seed)
