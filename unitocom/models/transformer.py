"""The Transformer pieces every tokenizer shares: a pre-norm block and the latent-query encoder/decoder pair.

`LatentQueryEncoder` is the TiTok idea: S learned latent queries ride along with the P input patches through a
bidirectional Transformer; what the queries hold at the end is the 1-D token sequence, whatever P is.
`LatentQueryDecoder` is its mirror: P learned mask queries attend to the S (received) tokens and become patches.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def sincos(positions: int, width: int, grid: int = 0) -> torch.Tensor:
    """Fixed sine-cosine position codes [1, positions, width] (values in [-1, 1]), used to INITIALISE the learned
    positions: a 0.02-scale random start leaves "where" buried under "what", and the tiny models then sat at the
    mean image for hundreds of steps before they learnt positions. `grid` > 0: a 2-D raster of grid x grid
    (half the channels code the row, half the column), as in MAE."""
    def codes_1d(n: int, w: int) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32)[:, None]
        freq = torch.exp(-torch.arange(0, w, 2, dtype=torch.float32) * (torch.log(torch.tensor(1e4)) / w))
        out = torch.zeros(n, w)
        out[:, 0::2] = torch.sin(pos * freq)
        out[:, 1::2] = torch.cos(pos * freq)[:, : w // 2]
        return out
    if grid:
        assert grid * grid == positions and width % 4 == 0
        rows = codes_1d(grid, width // 2).repeat_interleave(grid, 0)
        cols = codes_1d(grid, width // 2).repeat(grid, 1)
        return torch.cat([rows, cols], 1)[None]
    return codes_1d(positions, width)[None]


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        assert width % heads == 0, f"width {width} is not a multiple of heads {heads}"
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, W]; mask bool [B, L] (True = a real position) or None -> [B, L, W]."""
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(y.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x)) with a 4x GELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class LatentQueryEncoder(nn.Module):
    """patches [B, P, patch_dim] -> token features [B, S, width] (S = `tokens` learned queries)."""

    def __init__(self, patches: int, patch_dim: int, tokens: int, width: int, layers: int, heads: int,
                 grid: int = 0):
        super().__init__()
        self.patches = patches
        self.embed = nn.Linear(patch_dim, width)
        self.pos = nn.Parameter(sincos(patches, width, grid))  # grid: 2-D image patches, else 1-D (audio frames)
        self.queries = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b = patches.shape[0]
        x = torch.cat([self.embed(patches) + self.pos, self.queries.expand(b, -1, -1)], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x[:, self.patches:])


class LatentQueryDecoder(nn.Module):
    """tokens [B, S, token_dim] -> patches [B, P, patch_dim]."""

    def __init__(self, patches: int, patch_dim: int, tokens: int, token_dim: int, width: int, layers: int,
                 heads: int, grid: int = 0):
        super().__init__()
        self.patches = patches
        self.embed = nn.Linear(token_dim, width)
        self.pos = nn.Parameter(sincos(tokens, width))  # which token is which
        # one query per output patch: its position, plus a little noise so that the queries start distinct
        self.queries = nn.Parameter(sincos(patches, width, grid) + torch.randn(1, patches, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.out = nn.Linear(width, patch_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        x = torch.cat([self.queries.expand(b, -1, -1), self.embed(tokens) + self.pos], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.out(self.ln(x[:, :self.patches]))


class AlignedEncoder(nn.Module):
    """patches [B, P, patch_dim] -> one token feature per patch [B, P, width]: a plain bidirectional Transformer.
    For audio the tokens are time-aligned frames, the usual layout of continuous audio latents; with latent
    queries instead, the tiny audio model sat at the mean spectrogram for 1000 steps."""

    def __init__(self, patches: int, patch_dim: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(patch_dim, width)
        self.pos = nn.Parameter(sincos(patches, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.embed(patches) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x)


class AlignedDecoder(nn.Module):
    """tokens [B, P, token_dim] -> patches [B, P, patch_dim], one patch per token."""

    def __init__(self, patches: int, patch_dim: int, token_dim: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(token_dim, width)
        self.pos = nn.Parameter(sincos(patches, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.out = nn.Linear(width, patch_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.out(self.ln(x))
