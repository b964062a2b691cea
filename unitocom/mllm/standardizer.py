"""The per-dimension standardiser of image token means, which the diffusion head and the layout renderer draw in."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Standardizer:
    """Per-dimension mean and std of token means; the diffusion head works on standardised tokens."""

    mean: torch.Tensor  # [d]
    std: torch.Tensor  # [d]

    @classmethod
    def fit(cls, mu: torch.Tensor) -> "Standardizer":
        flat = mu.reshape(-1, mu.shape[-1])
        return cls(flat.mean(0), flat.std(0).clamp_min(1e-3))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.mean) / self.std

    def inverse(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.std + self.mean
