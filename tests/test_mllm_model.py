"""The MLLM's machinery on tiny configs: causality, KV cache, next-token diffusion, the paper preset's size."""
from __future__ import annotations

import pytest
import torch

from unitocom import config
from unitocom.mllm.diffusion_head import DiffusionHead
from unitocom.mllm.model import MLLM, MLLMConfig, count_parameters

torch.set_num_threads(1)


def tiny(vocab: int = 64) -> MLLM:
    torch.manual_seed(0)
    cfg = MLLMConfig(vocab=vocab, hidden=64, layers=2, heads=4, intermediate=128, max_positions=128, token_dim=8,
                     head_width=64, head_depth=2, diffusion_sample_steps=20)
    return MLLM(cfg).eval()


def test_causal_masking_later_token_cannot_change_earlier_outputs():
    m = tiny()
    x = torch.randn(1, 12, 64)
    h1, _ = m.hidden(x)
    x2 = x.clone()
    x2[:, 7:] = torch.randn(1, 5, 64) * 3
    h2, _ = m.hidden(x2)
    assert torch.allclose(h1[:, :7], h2[:, :7], atol=1e-5)
    assert not torch.allclose(h1[:, 7:], h2[:, 7:], atol=1e-3)


def test_kv_cache_generation_equals_full_recompute():
    m = tiny()
    prefix = torch.cat([m.embed_text(torch.tensor([[1, 5, 9, 3]])), m.embed_tokens(torch.randn(1, 6, 8), "image")], 1)
    prefix = prefix.repeat(2, 1, 1)
    prefix[1] += 0.1 * torch.randn_like(prefix[1])
    with_cache = m.generate_text(prefix, max_new=12, eos_id=999, use_cache=True)  # no eos: full length
    without = m.generate_text(prefix, max_new=12, eos_id=999, use_cache=False)
    assert with_cache == without and len(with_cache[0]) == 12
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = m.generate_tokens(prefix, 4, "image", steps=5, use_cache=True, generator=g1)
    b = m.generate_tokens(prefix, 4, "image", steps=5, use_cache=False, generator=g2)
    assert a.shape == (2, 4, 8) and torch.allclose(a, b, atol=1e-4)


def test_cached_hidden_states_match_full_pass():
    from transformers import DynamicCache
    m = tiny()
    x = torch.randn(1, 10, 64)
    full, _ = m.hidden(x)
    cache = DynamicCache()
    h_a, cache = m.hidden(x[:, :6], cache=cache)
    h_b, cache = m.hidden(x[:, 6:], cache=cache)
    assert torch.allclose(torch.cat([h_a, h_b], 1), full, atol=1e-5)


def test_prefix_lm_mask_lets_the_prompt_read_both_ways_and_keeps_the_rest_causal():
    from unitocom.mllm.model import prefix_lm_mask
    seen = prefix_lm_mask(torch.tensor([[0, 1, 1, 1, 1, 1]]), 1, 6, 0, 4, torch.float32, torch.device("cpu"))[0, 0] == 0
    # column 0 is padding; the prompt is columns 1-3 (prefix 4 counts the padding); 4 and 5 are predicted
    assert seen[1, 1:4].all() and seen[3, 1:4].all() and not seen[1:4, 4:].any()
    assert seen[4, 1:5].all() and not seen[4, 5] and seen[5, 1:6].all()
    assert not seen[1:, 0].any() and seen[0, 0]  # nobody reads the padding; the padding query reads itself only
    # with a cache of 4 columns, one new query: causal over what is real
    step = prefix_lm_mask(torch.tensor([[0, 1, 1, 1, 1]]), 1, 1, 4, 4, torch.float32, torch.device("cpu"))[0, 0]
    assert ((step == 0) == torch.tensor([[False, True, True, True, True]])).all()


def test_prefix_attention_changes_the_prompt_s_states_and_a_prefix_of_one_is_causal():
    import dataclasses
    m = tiny()
    p = MLLM(dataclasses.replace(m.cfg, prefix_attention=True)).eval()
    p.load_state_dict(m.state_dict())
    x = torch.randn(2, 12, 64)
    causal, _ = m.hidden(x, prefix=8)  # a causal MLLM ignores the prompt's length
    assert torch.equal(causal, m.hidden(x)[0])
    assert torch.allclose(p.hidden(x, prefix=1)[0], causal, atol=1e-5)
    both, _ = p.hidden(x, prefix=torch.tensor([8, 8]))
    assert not torch.allclose(both[:, :7], causal[:, :7], atol=1e-3)  # earlier prompt positions read later ones
    x2 = x.clone()
    x2[:, 8:] = torch.randn(2, 4, 64) * 3
    assert torch.allclose(p.hidden(x2, prefix=8)[0][:, :8], both[:, :8], atol=1e-5)  # nothing reads ahead of it


def test_prefix_lm_generation_with_a_cache_equals_full_recompute_and_padding_changes_nothing():
    import dataclasses
    m = tiny()
    p = MLLM(dataclasses.replace(m.cfg, prefix_attention=True)).eval()
    p.load_state_dict(m.state_dict())
    prefix = torch.cat([p.embed_text(torch.tensor([[1, 5, 9, 3]])), p.embed_tokens(torch.randn(1, 6, 8), "image")], 1)
    cached = p.generate_text(prefix, max_new=10, eos_id=999, use_cache=True)
    assert cached == p.generate_text(prefix, max_new=10, eos_id=999, use_cache=False)
    assert cached != m.generate_text(prefix, max_new=10, eos_id=999)  # the mask is in force
    padded = torch.cat([torch.zeros(1, 3, 64), prefix], 1)
    mask = torch.tensor([[0, 0, 0] + [1] * 10])
    assert p.generate_text(padded, max_new=10, eos_id=999, mask=mask) == cached
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = p.generate_tokens(prefix, 4, "image", steps=5, use_cache=True, generator=g1)
    b = p.generate_tokens(prefix, 4, "image", steps=5, use_cache=False, generator=g2)
    assert torch.allclose(a, b, atol=1e-4)


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    g = torch.Generator().manual_seed(0)
    picks = {int(MLLM._pick(logits, 0.8, g)) for _ in range(200)}
    assert picks == {0, 1}
    assert int(MLLM._pick(logits, None, None)) == 0


def test_diffusion_loss_falls_and_sampling_reproduces_a_conditional_gaussian():
    """Toy: c ~ N(mu(h), diag(s^2)) with mu depending on the condition. After training, samples conditioned on
    h have the right mean and standard deviation per dimension."""
    torch.manual_seed(0)
    d, hdim = 4, 8
    head = DiffusionHead(d, hdim, width=64, depth=2, train_steps=1000)
    mu_a, mu_b = torch.tensor([1.5, -1.0, 0.5, 0.0]), torch.tensor([-1.0, 1.0, 0.0, 2.0])
    std = torch.tensor([0.3, 0.5, 0.2, 0.4])
    ha, hb = torch.zeros(hdim), torch.zeros(hdim)
    ha[0], hb[1] = 1.0, 1.0
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for step in range(1500):
        which = torch.rand(256, generator=g) < 0.5
        mu = torch.where(which[:, None], mu_a, mu_b)
        h = torch.where(which[:, None], ha, hb)
        c0 = mu + std * torch.randn(256, d, generator=g)
        loss = head.loss(c0, h, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:100]) / 100, sum(losses[-100:]) / 100
    assert last < 0.7 * first, (first, last)
    for h, mu in ((ha, mu_a), (hb, mu_b)):
        s = head.sample(h.repeat(2000, 1), steps=50, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(s.mean(0), mu, atol=0.12), (s.mean(0), mu)
        assert torch.allclose(s.std(0), std, atol=0.12), (s.std(0), std)


def test_guided_sampling_is_eps_u_plus_g_times_the_difference_with_both_rows_in_one_forward():
    """sample() runs the conditional and unconditional rows of classifier-free guidance as one forward; the
    tokens are those of the textbook loop that calls the head twice a step."""
    from diffusers import DDPMScheduler
    torch.manual_seed(3)
    head = DiffusionHead(token_dim=4, cond_dim=16, width=32, depth=2).eval()
    for prm in head.parameters():  # the zero-initialised output and gates would make eps 0 whatever the rows
        torch.nn.init.normal_(prm, std=0.3)
    h, hu = torch.randn(3, 16), torch.randn(3, 16)
    got = head.sample(h, 10, torch.Generator().manual_seed(5), h_uncond=hu, guidance=3.0)
    sched = DDPMScheduler.from_config(head.scheduler.config)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(5)
    x = torch.randn((3, 4), generator=g)
    with torch.no_grad():
        for t in sched.timesteps:
            tt = torch.full((3,), int(t), dtype=torch.long)
            eps_c, eps_u = head(x, tt, h), head(x, tt, hu)
            x = sched.step(eps_u + 3.0 * (eps_c - eps_u), t, x, generator=g).prev_sample
    assert torch.allclose(got, x, atol=1e-5), (got - x).abs().max()
    plain = head.sample(h, 10, torch.Generator().manual_seed(5), h_uncond=hu, guidance=1.0)
    assert not torch.allclose(plain, got, atol=1e-3)  # guidance changes the tokens: the test could fail


def test_paper_preset_is_about_1_4b_parameters():
    cfg = MLLMConfig.from_preset(config.load("paper").preset)
    with torch.device("meta"):
        m = MLLM(cfg)
    n = count_parameters(m)
    backbone = count_parameters(m.backbone)
    assert cfg.hidden == 2048 and cfg.layers == 24
    assert 1.25e9 < backbone < 1.35e9, backbone
    assert 1.35e9 < n < 1.45e9, n  # the letter's 1.4B: backbone + untied LM head + projections + diffusion head


def test_backbone_loads_from_a_local_hugging_face_directory(tmp_path):
    m = tiny()
    m.backbone.save_pretrained(tmp_path)
    loaded = MLLM.with_local_backbone(m.cfg, str(tmp_path))
    for (k, a), (_, b) in zip(m.backbone.state_dict().items(), loaded.backbone.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="hidden size"):
        MLLM.with_local_backbone(MLLMConfig(**{**m.cfg.__dict__, "hidden": 32}), str(tmp_path))


def test_image_positions_follow_the_token_index_in_packing_and_in_generation():
    torch.manual_seed(0)
    cfg = MLLMConfig(vocab=64, hidden=32, layers=1, heads=2, intermediate=64, max_positions=128, token_dim=4,
                     head_width=32, head_depth=1, image_positions=8)
    m = MLLM(cfg).eval()
    t = torch.randn(2, 5, 4)
    whole = m.embed_tokens(t, "image")
    # token by token, as generation feeds them back, gives the same embeddings as the whole sequence
    parts = torch.cat([m.embed_tokens(t[:, i:i + 1], "image", offset=i) for i in range(5)], 1)
    torch.testing.assert_close(parts, whole)
    # the same token at two places differs by the two positions; audio tokens carry none
    same = t[:, :1].expand(2, 2, 4)
    e = m.embed_tokens(same, "image")
    torch.testing.assert_close(e[:, 1] - e[:, 0], (m.image_pos[1] - m.image_pos[0]).expand(2, 32))
    torch.testing.assert_close(m.embed_tokens(t, "audio"), m.in_proj["audio"](t))
    with pytest.raises(ValueError, match="positions for 8"):
        m.embed_tokens(torch.randn(1, 9, 4), "image")
    out = m.generate_tokens(m.embed_text(torch.tensor([[1, 2]])), 8, "image", steps=2,
                            generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 8, 4)


def test_an_mllm_config_saved_before_image_positions_loads_without_them():
    old = dict(vocab=64, hidden=32, layers=1, heads=2, intermediate=64, max_positions=128, token_dim=4,
               head_width=32, head_depth=1, diffusion_train_steps=1000, diffusion_sample_steps=50)
    m = MLLM(MLLMConfig(**old))
    assert m.cfg.image_positions == 0 and not hasattr(m, "image_pos")
    assert MLLMConfig.from_preset(config.load("tiny").preset).image_positions == 128


def test_an_mlp_projector_is_built_saved_and_loaded_and_old_configs_stay_linear(tmp_path):
    """projector_depth 2 (LLaVA-1.5's MLP) for the ablation; a config written before the field reads as linear."""
    import dataclasses
    import json

    from unitocom.mllm.checkpoint import load_mllm, save_mllm
    from unitocom.mllm.data import Standardizer
    cfg = MLLMConfig(vocab=40, hidden=32, layers=1, heads=2, intermediate=64, max_positions=64, token_dim=4,
                     head_width=16, head_depth=1)
    old = {k: v for k, v in cfg.__dict__.items() if k != "projector_depth"}
    assert MLLMConfig(**json.loads(json.dumps(old))).projector_depth == 1
    assert isinstance(MLLM(cfg).in_proj["image"], torch.nn.Linear)
    m = MLLM(dataclasses.replace(cfg, projector_depth=2)).eval()
    assert isinstance(m.in_proj["image"], torch.nn.Sequential) and len(m.in_proj["image"]) == 3
    t = torch.randn(2, 5, 4)
    save_mllm(m, Standardizer(torch.zeros(4), torch.ones(4)), tmp_path / "m.safetensors", {})
    back, _, _ = load_mllm(tmp_path / "m.safetensors")
    torch.testing.assert_close(back.embed_tokens(t, "image"), m.embed_tokens(t, "image"))
    with pytest.raises(ValueError, match="at least 1"):
        MLLM(dataclasses.replace(cfg, projector_depth=0))
