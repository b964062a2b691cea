"""Next-token diffusion (eq. 17-19): a small per-token MLP eps_psi(c^r, r, h) conditioned on the backbone's
hidden state h_i, trained with the DDPM noise-prediction loss and sampled with a `diffusers` scheduler.

The MLP uses adaptive LayerNorm (scale, shift and gate from the condition), the form MAR and Transfusion use
for per-token heads: the condition steers every block rather than only the input.
"""
from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion steps t [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class AdaLNBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.modulation[1].weight)  # start as identity blocks: stable early training
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """eps_psi(c^r [B, d], r [B], h [B, H]) -> predicted noise [B, d]."""

    def __init__(self, token_dim: int, cond_dim: int, width: int, depth: int, train_steps: int = 1000):
        super().__init__()
        self.token_dim, self.width = token_dim, width
        self.inp = nn.Linear(token_dim, width)
        self.cond = nn.Linear(cond_dim, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(AdaLNBlock(width) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.out = nn.Linear(width, token_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Cosine schedule (phi_r of eq. 18): keeps signal at small r, where low-dimensional tokens live.
        self.scheduler = DDPMScheduler(num_train_timesteps=train_steps, beta_schedule="squaredcos_cap_v2",
                                       prediction_type="epsilon", clip_sample=False)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        cond = self.cond(h) + self.time(timestep_embedding(t, self.width).to(h.dtype))
        x = self.inp(noisy)
        for block in self.blocks:
            x = block(x, cond)
        return self.out(self.out_norm(x))

    def loss(self, c0: torch.Tensor, h: torch.Tensor, generator: torch.Generator | None = None,
             part: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Eq. (19): E ||eps - eps_psi(sqrt(w_r) c0 + sqrt(1 - w_r) eps, r, h)||^2 over r and eps. c0 [B, d], h [B, H].

        part (offset, rows, total, repeats): c0 is one rank's part of a batch spread over processes (`train.dist`):
        `repeats` copies of its rows [offset, offset + rows) of a whole of `total` rows. r and eps are drawn for
        the whole (the same draws as one process's), this part's kept, and the squared error summed over the
        part and divided by the whole's count: the ranks' values add up to the whole batch's mean."""
        steps = self.scheduler.config.num_train_timesteps
        if part is None:
            t = torch.randint(0, steps, (c0.shape[0],), device=c0.device, generator=generator)
            eps = torch.randn(c0.shape, device=c0.device, generator=generator, dtype=c0.dtype)
            noisy = self.scheduler.add_noise(c0, eps, t)
            return torch.mean((eps - self(noisy, t, h)) ** 2)
        offset, rows, total, repeats = part
        t = torch.randint(0, steps, (repeats * total,), device=c0.device, generator=generator)
        eps = torch.randn((repeats * total, self.token_dim), device=c0.device, generator=generator, dtype=c0.dtype)
        keep = (torch.arange(repeats, device=c0.device)[:, None] * total + offset
                + torch.arange(rows, device=c0.device)[None]).flatten()
        t, eps = t[keep], eps[keep]
        noisy = self.scheduler.add_noise(c0, eps, t)
        return torch.sum((eps - self(noisy, t, h)) ** 2) / (repeats * total * self.token_dim)

    @torch.no_grad()
    def sample(self, h: torch.Tensor, steps: int, generator: torch.Generator | list[torch.Generator] | None = None,
               h_uncond: torch.Tensor | None = None, guidance: float = 1.0) -> torch.Tensor:
        """Reverse process from pure noise, conditioned on h [B, H] -> tokens [B, d]. With h_uncond and
        guidance > 1, classifier-free guidance: eps = eps_u + g (eps_c - eps_u).
        generator: one for the whole batch, or one per row (a batch of requests, each with its own seed: row b
        draws exactly the noise it would draw alone with generator[b])."""
        sched = DDPMScheduler.from_config(self.scheduler.config)
        sched.set_timesteps(steps, device=h.device)
        # Drawn on the CPU and moved: the same seed gives the same tokens on any device.
        if isinstance(generator, list):
            x = torch.cat([torch.randn((1, self.token_dim), generator=g) for g in generator]).to(h.device, h.dtype)
        else:
            x = torch.randn((h.shape[0], self.token_dim), generator=generator).to(h.device, h.dtype)
        guided = h_uncond is not None and guidance != 1.0
        # With guidance, the conditional and unconditional rows go through one forward: the head is small, so a
        # step costs its calls, not its arithmetic, and one call of 2B rows takes about the time of one of B.
        hh = torch.cat([h, h_uncond]) if guided else h
        for t in sched.timesteps:
            tt = torch.full((hh.shape[0],), int(t), device=h.device, dtype=torch.long)
            if guided:
                eps, eps_u = self(torch.cat([x, x]), tt, hh).chunk(2)
                eps = eps_u + guidance * (eps - eps_u)
            else:
                eps = self(x, tt, hh)
            x = sched.step(eps, t, x, generator=generator).prev_sample.to(h.dtype)  # the schedule is float32
        return x
