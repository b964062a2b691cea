"""The convolutional image tokenizer (tokens on a spatial grid), the token-consistency term and the mixed channel."""
from __future__ import annotations

import pytest
import torch

from unitocom import config
from unitocom.models.channel_torch import TorchChannelSpec, apply_channel
from unitocom.models.conv_tokenizer import ConvImageDetokenizer, ConvImageTokenizer, token_grid
from unitocom.models.token_link import LinkSpec, TokenLink, load, save, token_cosine, token_nmse


@pytest.mark.parametrize("tokens, grid", [(16, (4, 4)), (32, (4, 8)), (64, (8, 8)), (128, (8, 16))])
def test_token_grid_covers_every_token(tokens, grid):
    assert token_grid(tokens) == grid


def test_token_grid_refuses_what_it_cannot_lay_out():
    with pytest.raises(ValueError, match="power-of-two"):
        token_grid(24)
    with pytest.raises(ValueError, match="not a power-of-two multiple"):
        ConvImageTokenizer(48, 32, 32, 1, 4)


@pytest.mark.parametrize("tokens", [16, 32, 64, 128])
def test_shapes_for_every_token_length(tokens):
    enc = ConvImageTokenizer(32, tokens, width=32, layers=1, heads=4, stem=8)
    dec = ConvImageDetokenizer(32, tokens, token_dim=16, width=32, layers=1, heads=4, stem=8)
    feats = enc(torch.rand(3, 3, 32, 32))
    assert feats.shape == (3, tokens, 32)
    assert dec(torch.randn(3, tokens, 16)).shape == (3, 3, 32, 32)


def test_a_token_owns_its_region_of_the_picture():
    """Tokens on a grid: changing the top-left corner of the image moves the top-left token far more than the
    bottom-right one (the Transformer over the grid mixes a little, the convolutions do not)."""
    torch.manual_seed(0)
    enc = ConvImageTokenizer(32, 32, width=32, layers=0, heads=4, stem=8).eval()
    x = torch.rand(1, 3, 32, 32)
    y = x.clone()
    y[:, :, :8, :4] = 1.0 - y[:, :, :8, :4]
    with torch.no_grad():
        d = (enc(x) - enc(y)).norm(dim=-1)[0]
    assert d[0] > 10 * d[-1]


def test_the_preset_builds_the_conv_link_and_old_checkpoints_stay_vits(tmp_path):
    cfg = config.load("tiny")
    spec = LinkSpec.from_config(cfg, "image", "sigma-genib")
    assert spec.image_arch == "conv" and spec.consistency > 0
    m = TokenLink(spec)
    assert isinstance(m.tokenizer, ConvImageTokenizer)
    save(m, tmp_path / "c.safetensors")
    back = load(tmp_path / "c.safetensors")
    assert back.spec == spec
    # a spec written before the fields existed (no image_arch, no consistency) is the ViT, no consistency
    old = {k: v for k, v in spec.__dict__.items() if k not in ("image_arch", "consistency", "image_cap",
                                                                 "image_blocks")}
    legacy = LinkSpec.from_dict(old)
    assert legacy.image_arch == "vit" and legacy.consistency == 0.0
    with pytest.raises(ValueError, match="image_arch"):
        TokenLink(LinkSpec.from_dict({**old, "image_arch": "mlp"}))


def test_token_nmse_and_cosine_closed_forms():
    t = torch.randn(4, 8, 16)
    assert torch.allclose(token_nmse(t, t), torch.zeros(4))
    assert torch.allclose(token_nmse(t, 2 * t), torch.ones(4))  # ||t||^2 / ||t||^2
    assert torch.allclose(token_nmse(t, torch.zeros_like(t)), torch.ones(4))
    assert torch.allclose(token_cosine(t, 3 * t), torch.ones(4), atol=1e-6)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:, 4:] = False
    noisy = t.clone()
    noisy[:, 4:] += 100.0  # padded tokens do not count
    assert torch.allclose(token_nmse(t, noisy, mask), torch.zeros(4))


def test_consistency_term_enters_the_loss_and_pulls_R_towards_the_token():
    torch.manual_seed(0)
    cfg = config.load("tiny")
    small = dict(width=32, layers=1, image_stem=8)
    x = torch.rand(8, 3, 32, 32)
    snr = torch.full((8,), 20.0)
    losses = {}
    for c in (0.0, 1.0):
        torch.manual_seed(0)
        m = TokenLink(LinkSpec.from_config(cfg, "image", "genib", consistency=c, **small))
        out = m.loss(x, snr, TorchChannelSpec(), torch.Generator().manual_seed(1))
        losses[c] = out
    # same weights, same draws: the loss differs by exactly c * E[nmse * elems / 2]
    elems = 32 * 16
    extra = float(losses[1.0]["loss"].detach() - losses[0.0]["loss"].detach())
    assert extra == pytest.approx(float(losses[1.0]["token_nmse"]) * elems / 2, rel=1e-4)
    # training R on the consistency term alone drives R(T(t)) towards t
    torch.manual_seed(0)
    m = TokenLink(LinkSpec.from_config(cfg, "image", "genib", consistency=1.0, **small))
    opt = torch.optim.Adam(list(m.modulator.parameters()) + list(m.demodulator.parameters()), 3e-3)
    t = torch.randn(16, 32, 16)
    gen = torch.Generator().manual_seed(0)
    first = None
    for _ in range(150):
        t_hat = m.through_channel(t, torch.full((16,), 20.0), TorchChannelSpec(), gen)
        loss = token_nmse(t, t_hat).mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first


def test_mixed_channel_is_awgn_for_some_examples_and_rayleigh_for_others():
    z = torch.ones(4000, 16, dtype=torch.complex64)
    _, h, _ = apply_channel(z, torch.full((4000,), 30.0), TorchChannelSpec(model="mixed"),
                            torch.Generator().manual_seed(0))
    flat = (h == 1).all(1)
    assert 1800 < int(flat.sum()) < 2200  # about half
    faded = h[~flat]
    assert torch.allclose(faded, faded[:, :1].expand_as(faded))  # block fading: one h per example
    assert abs(float((faded[:, 0].abs() ** 2).mean()) - 1.0) < 0.1  # E|h|^2 = 1 (standard error 0.02)
    with pytest.raises(ValueError, match="mixed"):
        TorchChannelSpec(model="rician")


def test_token_nmse_gives_no_gradient_towards_smaller_tokens():
    """Scaling t and t_hat together leaves the NMSE unchanged, so its gradient along that direction is zero."""
    t = torch.randn(2, 8, 16, requires_grad=True)
    t_hat = (t * 0.9 + 0.1 * torch.randn(2, 8, 16)).detach()
    a = torch.tensor(1.0, requires_grad=True)
    token_nmse(a * t, a * t_hat).sum().backward()
    assert abs(float(a.grad)) < 1e-5
