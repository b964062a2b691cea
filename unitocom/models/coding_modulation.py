"""Adaptive coding-modulation: T maps tokens to complex channel symbols, R maps equalised symbols back.

SNR adaptation follows SwinJSCC's modulation network: after every hidden layer a small MLP turns the SNR into a
channel-wise scaling mask in (0, 1) that multiplies the features, so one set of weights serves every SNR.
T sees the nominal SNR (what the transmitter is told); R sees the per-symbol SINR after equalisation, which with
fading and CSI is what actually arrived, and the equalised symbols themselves.

Each token of `token_dim` reals becomes `uses` complex symbols (the bandwidth ratio, channel uses per token);
T normalises every example to (1/N) ||z||^2 = P exactly.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from unitocom.models.channel_torch import power_normalize

SNR_SCALE_DB = 20.0  # SNRs enter the mask MLPs as snr_db / 20, so -10..25 dB is about -0.5..1.25


class SNRMask(nn.Module):
    """snr_db [...] -> sigmoid mask [..., width]: SwinJSCC's SNR -> channel-wise scaling."""

    def __init__(self, width: int, hidden: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, width), nn.Sigmoid())

    def forward(self, snr_db: torch.Tensor) -> torch.Tensor:
        return self.mlp(snr_db[..., None] / SNR_SCALE_DB)


class AdaptiveMLP(nn.Module):
    """x [B, S, in] and snr_db broadcastable to [B, S] -> [B, S, out]; residual hidden layers, each SNR-masked."""

    def __init__(self, d_in: int, d_out: int, hidden: int, layers: int = 2):
        super().__init__()
        self.inp = nn.Linear(d_in, hidden)
        self.layers = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU())
                                    for _ in range(layers))
        self.masks = nn.ModuleList(SNRMask(hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer, mask in zip(self.layers, self.masks):
            h = h + layer(h) * mask(snr_db)
        return self.out(h)


class AdaptiveModulator(nn.Module):
    """T: tokens [B, S, d] + nominal SNR [B] -> complex64 symbols [B, S * uses] at power P."""

    def __init__(self, token_dim: int, uses: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.uses = uses
        self.net = AdaptiveMLP(token_dim, 2 * uses, hidden, layers)

    def forward(self, tokens: torch.Tensor, snr_db: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask bool [B, S] (padded text batches): padded tokens send nothing and do not count in N."""
        b, s, _ = tokens.shape
        v = self.net(tokens, snr_db[:, None].expand(b, s)).float().view(b, s, self.uses, 2)  # complex needs fp32
        z = torch.complex(v[..., 0], v[..., 1]).reshape(b, s * self.uses)
        sym_mask = None if mask is None else mask.repeat_interleave(self.uses, dim=1)
        return power_normalize(z, mask=sym_mask)


class AdaptiveDemodulator(nn.Module):
    """R: equalised symbols [B, S * uses] + per-symbol SINR dB [B, S * uses] -> tokens [B, S, d]."""

    def __init__(self, token_dim: int, uses: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.uses = uses
        # input per token: Re, Im of its symbols and their SINRs (how much to trust each one)
        self.net = AdaptiveMLP(3 * uses, token_dim, hidden, layers)

    def forward(self, z_hat: torch.Tensor, sinr_db: torch.Tensor) -> torch.Tensor:
        b, n = z_hat.shape
        s = n // self.uses
        z = z_hat.view(b, s, self.uses)
        q = sinr_db.view(b, s, self.uses)
        x = torch.cat([z.real, z.imag, q / SNR_SCALE_DB], dim=-1)
        return self.net(x, q.mean(-1))
