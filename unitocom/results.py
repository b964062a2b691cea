"""95 % intervals for the letter's task scores: pure functions on arrays (no gRPC, no models).

- an accuracy (k correct of n): the Wilson score interval, which stays inside [0, 1] and is not degenerate at
  0/n or n/n as the normal (Wald) interval is;
- a corpus WER (total edits / total reference words) and a mean (the T2I pair recall): the percentile bootstrap
  over examples (resample the utterances or captions with replacement, recompute the statistic), with a fixed
  seed so that a rerun prints the same interval;
- an FID: the normal bootstrap interval, FID +- 1.96 x the standard deviation of the FIDs of resampled
  (generated, real) pairs (see below why not the percentile one).

The bootstrap resamples examples, so it states the sampling uncertainty of the test set, not that of the channel
draws on top (each example is sent once, with its own seed). FID is biased upward at small n, and a resample
(with its repeated pairs) is a smaller effective sample: its bootstrap distribution sits above the point estimate,
and at n = 100 with 256 features the percentile interval lies wholly above it. The spread of that distribution is
still a fair measure of how much the FID moves with the examples drawn, so the interval is centred on the FID
itself; it does not correct FID's own small-n bias (compare FIDs only at equal n, beside the real-vs-real floor).
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
              seed: int = 0, level: float = LEVEL, method: str = "percentile") -> tuple[float, float]:
    """Bootstrap interval of `statistic(*arrays)` over examples: every array has one row per example, and a
    resample draws the same example indices from each (pairs stay pairs). `percentile`: the quantiles of the
    resampled statistics; `normal`: statistic(*arrays) +- z x their standard deviation."""
    if method not in ("percentile", "normal"):
        raise ValueError(f"method must be percentile or normal, got {method!r}")
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
    if method == "normal":
        from statistics import NormalDist
        value = float(statistic(*arrays))
        spread = float(np.std(stats, ddof=1)) if n_resamples > 1 else 0.0
        half = NormalDist().inv_cdf(1.0 - alpha) * spread
        return value - half, value + half
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
    """Normal bootstrap interval of the FID (centred on it; see the module's docstring), resampling the (real,
    generated) pairs and recomputing it from the features (each resample costs a D x D eigen-decomposition,
    hence fewer resamples by default)."""
    return bootstrap(frechet_distance, [real_features, fake_features], n_resamples, seed, method="normal")
