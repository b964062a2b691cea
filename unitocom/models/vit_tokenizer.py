"""Image tokenizer F_v and de-tokenizer F_v^-1: a ViT with learned latent queries (TiTok-style 1-D tokens).

x float32 [B, 3, H, W] in [0, 1] -> a 3x3 convolution stem (`stem` channels) -> patches of p x p -> Transformer
with S latent queries -> token features [B, S, W] (the Posterior head of `objectives` turns them into S_v tokens
of dimension d). The de-tokenizer puts H*W/p^2 learned mask queries next to the S received tokens, reads
`head`-channel feature patches off the mask positions and renders them to RGB with two 3x3 convolutions.
The convolutions are there for edges (early convolutions help a ViT see; a per-patch linear read-out on its own
drew every shape as a blob at this size and budget); they cost a few percent of the Transformer's work.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from unitocom.models.transformer import LatentQueryDecoder, LatentQueryEncoder


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)(W/p), C p p], patches in raster order."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(patches: torch.Tensor, p: int, size: int, channels: int = 3) -> torch.Tensor:
    """[B, (H/p)(W/p), C p p] -> [B, C, H, W] (square images)."""
    b = patches.shape[0]
    g = size // p
    x = patches.view(b, g, g, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, size, size)


class ImageTokenizer(nn.Module):
    def __init__(self, size_px: int, patch_px: int, tokens: int, width: int, layers: int, heads: int,
                 stem: int = 32):
        super().__init__()
        if size_px % patch_px:
            raise ValueError(f"image size {size_px} is not a multiple of the patch size {patch_px}")
        self.p = patch_px
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1), nn.GELU())
        g = size_px // patch_px
        self.encoder = LatentQueryEncoder(g * g, stem * patch_px ** 2, tokens, width, layers, heads, grid=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] in [0, 1] -> token features [B, S, width]."""
        return self.encoder(patchify(self.stem(x * 2.0 - 1.0), self.p))


class ImageDetokenizer(nn.Module):
    def __init__(self, size_px: int, patch_px: int, tokens: int, token_dim: int, width: int, layers: int,
                 heads: int, head: int = 16):
        super().__init__()
        self.p, self.size, self.head_ch = patch_px, size_px, head
        g = size_px // patch_px
        self.decoder = LatentQueryDecoder(g * g, head * patch_px ** 2, tokens, token_dim, width, layers, heads, grid=g)
        self.render = nn.Sequential(nn.GELU(), nn.Conv2d(head, head, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(head, 3, 3, padding=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, S, d] -> x_hat [B, 3, H, W], about [0, 1] (not clamped: the MSE sees the raw output)."""
        feats = unpatchify(self.decoder(tokens), self.p, self.size, self.head_ch)
        return self.render(feats) * 0.5 + 0.5


def image_distortion(x: torch.Tensor, x_hat: torch.Tensor, obs_var: float) -> torch.Tensor:
    """-log q(x|t) up to a constant, a Gaussian of variance obs_var per pixel: SSE / (2 obs_var), [B] nats."""
    return ((x_hat - x) ** 2).flatten(1).sum(1) / (2.0 * obs_var)


def psnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR [B] in dB, peak 1, after clamping x_hat to [0, 1] and rounding both to 8 bits (what a PNG
    would hold), so the figure matches the services' uint8 scoring."""
    a = torch.round(x.clamp(0, 1) * 255.0)
    b = torch.round(x_hat.clamp(0, 1) * 255.0)
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(255.0 ** 2 / mse)
