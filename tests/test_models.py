"""Tokenizers, objectives, coding-modulation and the differentiable channel on tiny configurations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unitocom import config
from unitocom.link.channel import ChannelSpec, FadingChannel
from unitocom.link.equalize import mmse_biased
from unitocom.models import objectives as obj
from unitocom.models.channel_torch import TorchChannelSpec, apply_channel, equalize, noise_variance, transmit
from unitocom.models.coding_modulation import AdaptiveDemodulator, AdaptiveModulator
from unitocom.models.token_link import LinkSpec, TokenLink

torch.set_num_threads(1)


def small_spec(modality: str, objective: str = "sigma-genib", **kw) -> LinkSpec:
    """The tiny preset's layout, narrower, so that a test step takes milliseconds."""
    cfg = config.load("tiny")
    fields = dict(width=32, layers=1, heads=2, cm_hidden=16)
    if modality == "audio":
        fields.update(chunk_frames=16, mels=16, n_fft=128, hop=64)
    if modality == "text":
        fields.update(text_vocab=50)
    fields.update(kw)
    tokens = fields.pop("tokens", 8 if modality != "text" else 12)
    return LinkSpec.from_config(cfg, modality, objective, tokens=tokens, **fields)


# --- the differentiable channel against the numpy one -----------------------------------------------------------

@pytest.mark.parametrize("snr_db", [-5.0, 10.0])
def test_awgn_noise_matches_fading_channel(snr_db):
    n = 200_000
    z = np.ones(n, np.complex64)
    ref = FadingChannel(ChannelSpec("awgn"), snr_db, 0)(z)
    y, h, n0 = apply_channel(torch.ones(1, n, dtype=torch.complex64), torch.tensor([snr_db]), TorchChannelSpec("awgn"),
                             torch.Generator().manual_seed(0))
    noise_t = (y - h).numpy().ravel()
    noise_n = ref.y - z
    assert float(n0) == pytest.approx(ref.noise_var, rel=1e-6) == pytest.approx(noise_variance(torch.tensor(snr_db)))
    for noise in (noise_t, noise_n):
        assert np.mean(np.abs(noise) ** 2) == pytest.approx(ref.noise_var, rel=0.02)
        assert np.var(noise.real) == pytest.approx(ref.noise_var / 2, rel=0.02)  # split evenly over I and Q
        assert np.var(noise.imag) == pytest.approx(ref.noise_var / 2, rel=0.02)


def test_rayleigh_gains_match_fading_channel_in_distribution():
    # block fading with one h per stream: compare |h|^2 over many streams (examples) with FadingChannel's
    streams = 20_000
    h_t = apply_channel(torch.ones(streams, 4, dtype=torch.complex64), torch.zeros(streams),
                        TorchChannelSpec("rayleigh"), torch.Generator().manual_seed(1))[1]
    assert torch.all(h_t == h_t[:, :1])  # one gain per example
    g_t = (h_t[:, 0].abs() ** 2).numpy()
    g_n = np.array([np.abs(FadingChannel(ChannelSpec("rayleigh"), 0.0, s)(np.ones(1, np.complex64)).h[0]) ** 2
                    for s in range(4000)])
    for g in (g_t, g_n):  # |h|^2 ~ Exp(1): mean 1, variance 1, P(|h|^2 < 0.1) = 1 - e^-0.1
        assert g.mean() == pytest.approx(1.0, abs=0.05)
        assert g.var() == pytest.approx(1.0, abs=0.12)
        assert np.mean(g < 0.1) == pytest.approx(1 - math.exp(-0.1), abs=0.015)
    # block and fast fading layouts
    h = apply_channel(torch.ones(2, 10, dtype=torch.complex64), torch.zeros(2),
                      TorchChannelSpec("rayleigh", block_length=4), torch.Generator().manual_seed(2))[1]
    assert torch.all(h[:, :4] == h[:, :1]) and torch.all(h[:, 8:] == h[:, 8:9]) and torch.all(h[:, 4] != h[:, 0])
    h = apply_channel(torch.ones(1, 10, dtype=torch.complex64), torch.zeros(1),
                      TorchChannelSpec("rayleigh", fading="fast"), torch.Generator().manual_seed(3))[1]
    assert len(set(h[0].tolist())) == 10


def test_torch_mmse_equals_link_mmse_biased():
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(64) + 1j * rng.standard_normal(64)).astype(np.complex64)
    h = (rng.standard_normal(64) + 1j * rng.standard_normal(64)).astype(np.complex64) / np.sqrt(2)
    n0 = noise_variance(torch.tensor([7.0]))
    z_t, sinr = equalize(torch.from_numpy(y)[None], torch.from_numpy(h)[None], n0, "mmse")
    z_n, _ = mmse_biased(y, h, float(n0))
    np.testing.assert_allclose(z_t[0].numpy(), z_n, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sinr[0].numpy(), 10 * np.log10(np.abs(h) ** 2 / float(n0)), rtol=1e-4, atol=1e-4)
    z_zf, _ = equalize(torch.from_numpy(y)[None], torch.from_numpy(h)[None], n0, "zf")
    np.testing.assert_allclose(z_zf[0].numpy(), y / h, rtol=1e-4, atol=1e-5)


# --- coding-modulation ------------------------------------------------------------------------------------------

def test_power_constraint_after_T():
    torch.manual_seed(0)
    t = AdaptiveModulator(token_dim=16, uses=8, hidden=16)
    tokens = torch.randn(5, 7, 16) * torch.tensor([0.01, 1, 10, 100, 1e3])[:, None, None]
    z = t(tokens, torch.tensor([-10.0, 0.0, 5.0, 20.0, 40.0]))
    assert z.shape == (5, 7 * 8) and z.dtype == torch.complex64
    power = (z.abs() ** 2).mean(1)  # (1/N) ||z||^2 per example
    torch.testing.assert_close(power, torch.full((5,), config.POWER_P), rtol=1e-5, atol=1e-5)
    # padded tokens send nothing and do not count towards N
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[:, 5:] = False
    z = t(tokens, torch.zeros(5), mask)
    assert torch.all(z[:, 5 * 8:] == 0)
    torch.testing.assert_close((z[:, : 5 * 8].abs() ** 2).mean(1), torch.full((5,), config.POWER_P))


def test_snr_changes_the_modulation_and_R_shapes():
    torch.manual_seed(0)
    t, r = AdaptiveModulator(16, 4, 16), AdaptiveDemodulator(16, 4, 16)
    tokens = torch.randn(2, 3, 16)
    assert not torch.allclose(t(tokens, torch.tensor([0.0, 0.0])), t(tokens, torch.tensor([20.0, 20.0])))
    z_hat, sinr = transmit(t(tokens, torch.tensor([10.0, 10.0])), torch.tensor([10.0, 10.0]), TorchChannelSpec())
    assert r(z_hat, sinr).shape == (2, 3, 16)


# --- objectives -------------------------------------------------------------------------------------------------

def test_kl_equals_closed_form_and_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6, 5), torch.randn(4, 6, 5)
    kl = obj.kl_to_standard_normal(mu, logvar.exp())
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(kl, ref)
    closed = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    torch.testing.assert_close(kl, closed)
    # Monte-Carlo estimate E_q[log q - log p] agrees too
    q = torch.distributions.Normal(mu[:1], (0.5 * logvar[:1]).exp())
    t = q.sample((200_000,))
    mc = (q.log_prob(t) - torch.distributions.Normal(0.0, 1.0).log_prob(t)).flatten(2).sum(2).mean(0)
    assert float(mc[0]) == pytest.approx(float(kl[0]), rel=0.02)


def test_kl_is_summed_per_example_not_averaged():
    # the pitfall: a per-element mean against a per-example SSE starves the tokens
    mu = torch.ones(2, 32, 16)
    kl = obj.kl_to_standard_normal(mu, torch.ones(1))
    torch.testing.assert_close(kl, torch.full((2,), 0.5 * 32 * 16))


def test_sigma_genib_latents_follow_eq_13_14():
    spec = obj.ObjectiveSpec("sigma-genib", xi=0.1, lam=0.3, k_samples=3, c_sigma=0.25)
    mu = torch.randn(1000, 4, 2, requires_grad=True)
    lat = obj.draw_latents(spec, mu, None, torch.Generator().manual_seed(0))
    assert lat.tokens.shape == (4 * 1000, 4, 2)
    assert lat.weights == pytest.approx([0.1, 0.1, 0.1, 0.7]) and sum(lat.weights) == pytest.approx(1.0)
    torch.testing.assert_close(lat.tokens[3000:], mu)  # the deterministic representation comes last
    noise = (lat.tokens[:1000] - mu).detach()
    sigma = noise.flatten(1).std(1)  # one sigma per example, |sigma| ~ half-normal with E sigma^2 = C_sigma
    assert float((noise.flatten(1) ** 2).mean()) == pytest.approx(0.25, rel=0.15)
    assert float(sigma.std()) > 0.05  # sigma varies between examples
    # the KL's gradient in mu is xi * mu: the sigma terms are constants
    out = obj.total_loss(spec, lat, torch.zeros(4 * 1000))
    out["loss"].backward()
    torch.testing.assert_close(mu.grad, 0.1 * mu.detach() / 1000)
    # lambda = 1: only the K stochastic reconstructions
    lat1 = obj.draw_latents(obj.ObjectiveSpec("sigma-genib", xi=0.1, lam=1.0, k_samples=2), mu, None)
    assert lat1.weights == [0.5, 0.5] and lat1.tokens.shape[0] == 2000


def test_vae_samples_with_its_learned_variance_and_genib_with_a_fixed_one():
    mu = torch.zeros(20_000, 1, 2)
    logvar = torch.log(torch.tensor([0.25, 4.0])).expand(20_000, 1, 2)
    lat = obj.draw_latents(obj.ObjectiveSpec("vae", xi=1.0, k_samples=2), mu, logvar, torch.Generator().manual_seed(0))
    assert lat.weights == [0.5, 0.5]
    assert lat.tokens.var(0).ravel().tolist() == pytest.approx([0.25, 4.0], rel=0.05)
    torch.testing.assert_close(lat.kl, obj.kl_to_standard_normal(mu, logvar.exp()))
    # GenIB (eq. 12) with the fixed-variance posterior N(mu, C_sigma I): no log-variance head needed
    lat = obj.draw_latents(obj.ObjectiveSpec("genib", xi=1.0, k_samples=1, c_sigma=0.09), mu, None,
                           torch.Generator().manual_seed(0))
    assert lat.weights == [1.0]
    assert lat.tokens.var(0).ravel().tolist() == pytest.approx([0.09, 0.09], rel=0.05)
    torch.testing.assert_close(lat.kl, torch.full((20_000,), 2 * 0.5 * (0.09 - 1 - math.log(0.09))))
    with pytest.raises(ValueError):
        obj.draw_latents(obj.ObjectiveSpec("vae", xi=1.0), mu, None)


# --- whole links ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("modality", ["image", "audio", "text"])
@pytest.mark.parametrize("objective", ["sigma-genib", "genib", "vae"])
def test_shapes_and_gradients_reach_every_part_through_the_channel(modality, objective):
    torch.manual_seed(0)
    spec = small_spec(modality, objective)
    model = TokenLink(spec)
    b = 3
    mask = None
    if modality == "image":
        x = torch.rand(b, 3, spec.image_size_px, spec.image_size_px)
    elif modality == "audio":
        x = torch.randn(b, spec.chunk_frames, spec.mels)
    else:
        x = torch.randint(1, spec.text_vocab, (b, 9))
        mask = torch.ones(b, 9, dtype=torch.bool)
        mask[0, 6:] = False
        x[0, 6:] = 0
    mu, logvar = model.tokenize(x, mask)
    s = spec.tokens if modality != "text" else 9
    assert mu.shape == (b, s, spec.token_dim)
    assert (logvar is None) == (objective != "vae")
    z = model.modulate(mu, torch.full((b,), 5.0), mask)
    assert z.shape == (b, s * spec.uses_per_token)
    x_hat = model.detokenize(model.through_channel(mu, torch.full((b,), 5.0), TorchChannelSpec("rayleigh"),
                                                   mask=mask), mask)
    assert x_hat.shape == (x.shape if modality != "text" else (b, 9, spec.text_vocab))
    out = model.loss(x, torch.tensor([-5.0, 5.0, 20.0]), TorchChannelSpec("rayleigh"), mask=mask)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for part in ("tokenizer", "posterior", "modulator", "demodulator", "detokenizer"):
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads), part
        assert sum(float(g.abs().sum()) for g in grads) > 0, f"no gradient reached {part}"


def test_checkpoint_round_trip(tmp_path):
    from unitocom.models import token_link
    spec = small_spec("image", "vae")
    model = TokenLink(spec).eval()
    token_link.save(model, tmp_path / "m.safetensors", half=False, extra={"note": "x"})
    again = token_link.load(tmp_path / "m.safetensors")
    assert again.spec == spec
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(again.tokenize(x)[0], model.tokenize(x)[0])
    assert token_link.read_metadata(tmp_path / "m.safetensors")["note"] == '"x"'
    token_link.save(model, tmp_path / "h.safetensors", half=True)  # fp16 storage, fp32 at load
    assert (tmp_path / "h.safetensors").stat().st_size < 0.6 * (tmp_path / "m.safetensors").stat().st_size
    assert next(token_link.load(tmp_path / "h.safetensors").parameters()).dtype == torch.float32


# --- audio front end and text tokenizer -------------------------------------------------------------------------

def test_griffin_lim_inverts_a_log_mel_spectrogram():
    from unitocom.models.audio_tokenizer import MelFrontend, mel_distance_db
    fe = MelFrontend(16000, 512, 256, 64)
    t = torch.arange(16384) / 16000
    wave = 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.sin(2 * math.pi * 1800 * t) * (t > 0.5)
    mel = fe.logmel(wave)
    assert mel.shape == (64, 64)
    back = fe.invert(mel, len(wave))
    assert back.shape == wave.shape
    assert float(mel_distance_db(mel, fe.logmel(back))) < 6.0  # dB RMS; Griffin-Lim from the true magnitude: 4.4
    assert float(mel_distance_db(mel, fe.logmel(torch.zeros_like(wave)))) > 20.0


def test_bpe_round_trips_any_text_and_keeps_corpus_words_whole():
    from unitocom.models.text_tokenizer import PAD_ID, decode_ids, encode_text, train_bpe
    corpus = ["There is a large red circle left of a small blue square.",
              "How many cyan triangles are there?", "What color is the small circle?"] * 20
    tok = train_bpe(corpus, 400)
    assert tok.token_to_id("<pad>") == PAD_ID
    for text in ["How many cyan triangles are there?", "Ünïcödé, 信道 and digits 0123 round-trip", "  two  spaces"]:
        ids = encode_text(tok, text)
        assert PAD_ID not in ids
        assert decode_ids(tok, ids) == text
    assert len(encode_text(tok, "How many cyan triangles are there?")) <= 7  # about one token per word
