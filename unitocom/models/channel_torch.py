"""A differentiable eq. (2), y = h*z + n, for training with the channel in the loop (Algorithm 1, line 8).

Same SNR definition as `unitocom.link.channel.FadingChannel`: Es/N0 in dB against the power constraint P,
N0 = P / 10^(snr_db/10) whatever the frame's actual power. AWGN: h = 1. Rayleigh: h ~ CN(0, 1), one gain per
`block_length` symbols (0: one gain per example, i.e. per modality stream, the services' default) or per symbol
(`fading="fast"`). The receiver knows h (perfect CSI) and equalises one tap at a time.

Equalisers, from y [B, N], h [B, N], N0 [B] -> z_hat [B, N] and the per-symbol SINR |h|^2 P / N0:
- "mmse": the textbook (biased) LMMSE estimate conj(h) y / (|h|^2 + N0/P). It shrinks towards 0 in deep fades,
  so a learned receiver never sees the huge values ZF produces there; `unitocom.link.equalize.mmse_biased`.
- "zf": y / h.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from unitocom.config import POWER_P

SNR_DB_CLAMP = (-30.0, 60.0)  # the range the learned receiver sees (deep fades, erasures land at the bottom)


@dataclass(frozen=True)
class TorchChannelSpec:
    model: str = "awgn"  # awgn | rayleigh | mixed (training: each example AWGN or Rayleigh with probability 1/2)
    fading: str = "block"  # block | fast
    block_length: int = 0  # symbols per fading block; 0 = one h per example
    equalizer: str = "mmse"  # mmse | zf

    def __post_init__(self):
        if self.model not in ("awgn", "rayleigh", "mixed"):
            raise ValueError(f"channel model must be awgn, rayleigh or mixed, got {self.model!r}")
        if self.fading not in ("block", "fast"):
            raise ValueError(f"fading must be block or fast, got {self.fading!r}")
        if self.equalizer not in ("mmse", "zf"):
            raise ValueError(f"equalizer must be mmse or zf, got {self.equalizer!r}")


def noise_variance(snr_db: torch.Tensor, power: float = POWER_P) -> torch.Tensor:
    """N0 [B] for Es/N0 = snr_db [B] against P: P / 10^(snr/10)."""
    return power / torch.pow(10.0, snr_db / 10.0)


def power_normalize(z: torch.Tensor, power: float = POWER_P, mask: torch.Tensor | None = None) -> torch.Tensor:
    """z complex [B, N] -> the same direction with (1/N) ||z||^2 = P exactly, per example (eq. 1's constraint).

    `mask` bool [B, N] marks the symbols really sent (text batches are padded): the others are zeroed and N
    counts only the real ones."""
    if mask is not None:
        z = z * mask
        n = mask.sum(-1, keepdim=True).clamp_min(1)
    else:
        n = z.shape[-1]
    energy = (z.real ** 2 + z.imag ** 2).sum(-1, keepdim=True)
    return z * torch.sqrt(power * n / energy.clamp_min(1e-12))


def rayleigh_gains(batch: int, n: int, spec: TorchChannelSpec, generator: torch.Generator | None = None,
                   device=None) -> torch.Tensor:
    """h complex64 [B, N] with E|h|^2 = 1, block or fast fading."""
    if spec.fading == "fast":
        blocks, length = n, 1
    elif spec.block_length <= 0:
        blocks, length = 1, n
    else:
        length = spec.block_length
        blocks = -(-n // length)
    g = torch.randn(batch, blocks, 2, generator=generator, device=device) / (2.0 ** 0.5)
    h = torch.complex(g[..., 0], g[..., 1])
    return h.repeat_interleave(length, dim=1)[:, :n]


def apply_channel(z: torch.Tensor, snr_db: torch.Tensor, spec: TorchChannelSpec,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z complex64 [B, N], snr_db [B] -> (y [B, N], h [B, N], N0 [B]). Differentiable in z."""
    b, n = z.shape
    n0 = noise_variance(snr_db.to(torch.float32))
    if spec.model == "awgn":
        h = torch.ones(b, n, dtype=z.dtype, device=z.device)
    else:
        h = rayleigh_gains(b, n, spec, generator, z.device).to(z.dtype)
        if spec.model == "mixed":  # a tokenizer that serves both of the letter's channels sees both
            flat = torch.rand(b, 1, generator=generator, device=z.device) < 0.5
            h = torch.where(flat, torch.ones_like(h), h)
    w = torch.randn(b, n, 2, generator=generator, device=z.device) * torch.sqrt(n0 / 2.0)[:, None, None]
    return h * z + torch.complex(w[..., 0], w[..., 1]), h, n0


def equalize(y: torch.Tensor, h: torch.Tensor, n0: torch.Tensor, method: str = "mmse"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """y, h complex [B, N], N0 [B] -> (z_hat complex [B, N], per-symbol SINR in dB [B, N], clamped)."""
    h2 = h.real ** 2 + h.imag ** 2
    n0 = n0.to(h2.dtype)[:, None]
    if method == "mmse":
        z_hat = torch.conj(h) * y / (h2 + n0 / POWER_P)
    elif method == "zf":
        z_hat = y / torch.where(h2 > 1e-12, h, torch.ones_like(h))
    else:
        raise ValueError(f"equalizer must be mmse or zf, got {method!r}")
    sinr_db = 10.0 * torch.log10((h2 * POWER_P / n0).clamp_min(1e-6))
    return z_hat, sinr_db.clamp(*SNR_DB_CLAMP)


def transmit(z: torch.Tensor, snr_db: torch.Tensor, spec: TorchChannelSpec,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel then equaliser with perfect CSI: z [B, N], snr_db [B] -> (z_hat [B, N], SINR dB [B, N])."""
    y, h, n0 = apply_channel(z, snr_db, spec, generator)
    return equalize(y, h, n0, spec.equalizer)
