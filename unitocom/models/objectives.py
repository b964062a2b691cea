"""The tokenization objectives of the letter, for any modality.

With a Gaussian posterior p_alpha(t|x) = N(mu, diag(sigma^2)) and the prior N(0, I), the three objectives
differ only in the posterior's variance (they share xi, K and the distortion):

- GenIB, eq. (12): xi * KL(p_alpha(t|x) || N(0, I)) - E_p log q_beta(x|t), the expectation by K
  reparameterised samples. Eq. (12) leaves the posterior family open; with a learned variance it would be the
  VAE baseline below, so GenIB here is the fixed-variance family N(mu(x), C_sigma I): the step between the VAE
  (learned sigma) and sigma-GenIB (random sigma plus the deterministic path).
- sigma-GenIB, eq. (13)-(14): mu = F_alpha(x) and t = mu + sigma * eps with eps ~ N(0, I) and
  sigma ~ N(0, C_sigma) drawn once per example (a random noise level, as in LatentLM's sigma-VAE);
  loss = xi * KL(N(mu, sigma^2) || N(0, I)) + lambda * (1/K) sum_k D(x, F_beta(t_k))
  + (1 - lambda) * D(x, F_beta(mu)).
- VAE baseline: a learned variance (the encoder outputs log sigma^2), the same loss as eq. (12) with the KL
  weight `vae_xi` (the preset sets it equal to xi, as VAE tokenizers for generation use a small KL weight;
  with the ELBO's weight 1 the tiny image VAE collapsed to its prior: KL 66 nats, 18.9 dB, the mean image).

-log q_beta(x|t) is the distortion D in nats per example: for images and audio a Gaussian of variance
`obs_var` per element (D = SSE / (2 obs_var), the MSE of the letter's note up to a constant), for text the
summed cross-entropy of the token ids. The KL is summed over every token and dimension of an example, so both
terms are per-example totals on the same scale; both are then averaged over the batch.
Everything here is modality-blind: the caller supplies the distortion of each reconstruction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

OBJECTIVES: tuple[str, ...] = ("sigma-genib", "genib", "vae")
# The learned schemes of the letter (lower-case `unitocom.v1.Scheme` names) -> the objective their tokenizers and
# MLLM were trained with: UniToCom is sigma-GenIB, its VAE baseline the VAE. The one definition of this map.
SCHEME_OBJECTIVE: dict[str, str] = {"unitocom": "sigma-genib", "vae": "vae"}


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str  # sigma-genib | genib | vae
    xi: float
    lam: float = 0.5  # sigma-GenIB only
    k_samples: int = 1
    c_sigma: float = 0.1  # sigma-GenIB only: Var(sigma)

    def __post_init__(self):
        if self.name not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {self.name!r}")
        if self.k_samples < 1:
            raise ValueError(f"K must be >= 1, got {self.k_samples}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {self.lam}")

    @property
    def learned_variance(self) -> bool:
        return self.name == "vae"


class Posterior(nn.Module):
    """Token features [B, S, W] -> mu [B, S, d], and log sigma^2 [B, S, d] when the variance is learned."""

    def __init__(self, width: int, token_dim: int, learned_variance: bool):
        super().__init__()
        self.mu = nn.Linear(width, token_dim)
        self.logvar = nn.Linear(width, token_dim) if learned_variance else None

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mu = self.mu(feats)
        if self.logvar is None:
            return mu, None
        return mu, self.logvar(feats).clamp(-12.0, 6.0)  # keeps exp() finite early in training


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)) per example, summed over every dimension but the first: [B].

    Closed form 0.5 * sum(mu^2 + var - 1 - log var). `mask` bool [B, S] drops padded tokens (text)."""
    var = var.expand_as(mu).clamp_min(1e-12)
    kl = 0.5 * (mu ** 2 + var - 1.0 - torch.log(var))
    if mask is not None:
        kl = kl * mask[..., None]
    return kl.flatten(1).sum(1)


def sample_sigma(batch: int, c_sigma: float, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """sigma ~ N(0, C_sigma), one per example: [B, 1, 1] (its sign is irrelevant: eps is symmetric)."""
    return torch.randn(batch, 1, 1, generator=generator, device=device) * math.sqrt(c_sigma)


@dataclass
class Latents:
    """What goes through the channel in one training step for one batch of B examples."""

    tokens: torch.Tensor  # [n * B, S, d]: n reconstructions per example, stacked along the batch
    weights: list[float]  # n weights: how each reconstruction's distortion enters the loss
    kl: torch.Tensor  # [B] per-example KL (nats)
    kl_mu: torch.Tensor  # [B] 0.5 * ||mu||^2, the part of the KL that depends on mu alone (for the logs)
    mean_var: torch.Tensor  # scalar: mean posterior variance (sigma^2), the variance-collapse diagnostic


def draw_latents(spec: ObjectiveSpec, mu: torch.Tensor, logvar: torch.Tensor | None,
                 generator: torch.Generator | None = None, mask: torch.Tensor | None = None) -> Latents:
    """Algorithm 1 lines 4-6: the KL of eq. (8) and the K stochastic tokens (plus mu for sigma-GenIB)."""
    b = mu.shape[0]
    kl_mu = 0.5 * ((mu ** 2) * (mask[..., None] if mask is not None else 1.0)).flatten(1).sum(1)
    k = spec.k_samples
    if spec.name == "sigma-genib":
        sigma = sample_sigma(b, spec.c_sigma, generator, mu.device)
        var = sigma ** 2
        kl = kl_to_standard_normal(mu, var, mask)
        eps = torch.randn((k,) + tuple(mu.shape), generator=generator, device=mu.device)
        samples = [mu + sigma * eps[i] for i in range(k)]
        weights = [spec.lam / k] * k
        if spec.lam < 1.0:  # the deterministic representation of eq. (13)
            samples.append(mu)
            weights.append(1.0 - spec.lam)
        mean_var = var.mean()
    else:
        if spec.name == "genib":  # fixed variance C_sigma
            var = torch.full((1,) * mu.dim(), spec.c_sigma, device=mu.device)
        elif logvar is None:
            raise ValueError(f"{spec.name} needs a learned variance (a Posterior with learned_variance=True)")
        else:
            var = torch.exp(logvar)
        kl = kl_to_standard_normal(mu, var, mask)
        std = torch.sqrt(var)
        eps = torch.randn((k,) + tuple(mu.shape), generator=generator, device=mu.device)
        samples = [mu + std * eps[i] for i in range(k)]
        weights = [1.0 / k] * k
        mean_var = var.mean()
    return Latents(torch.cat(samples, 0), weights, kl, kl_mu, mean_var.detach())


def total_loss(spec: ObjectiveSpec, latents: Latents, distortion: torch.Tensor) -> dict[str, torch.Tensor]:
    """distortion [n * B] (nats per example, in the order of latents.tokens) -> {"loss", "kl", "distortion", ...}.

    loss = xi * mean_B(KL) + sum_j w_j mean_B(D_j): eq. (12) or (13) with (14)."""
    n = len(latents.weights)
    d = distortion.view(n, -1).mean(1)  # [n]
    dist = sum(w * d[j] for j, w in enumerate(latents.weights))
    kl = latents.kl.mean()
    out = {"loss": spec.xi * kl + dist, "kl": kl.detach(), "kl_mu": latents.kl_mu.mean().detach(),
           "distortion": dist.detach(), "posterior_var": latents.mean_var}
    if spec.name == "sigma-genib" and spec.lam < 1.0:
        out["distortion_det"] = d[-1].detach()
    return out
