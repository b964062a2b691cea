"""Resilient tokens and token budgets (issue 16): the loss patterns, the mask token, the importance head, the
lost-token embedding of the MLLM, and the budget and variant options through the services."""
from __future__ import annotations

import dataclasses

import grpc
import numpy as np
import pytest
import torch

from tests.conftest import need, scene_png
from unitocom import client, config
from unitocom.models import resilience as rz
from unitocom.models.token_link import LinkSpec, TokenLink
from unitocom.schemes import learned

RESILIENT = learned.checkpoint_dir() / "image-sigma-genib-s32-resilient.safetensors"
BASE = learned.checkpoint_dir() / "image-sigma-genib-s32.safetensors"


def _resilient_installed():
    need(RESILIENT.exists(), f"{RESILIENT.name} is not installed (unitocom train resilient)")


# ---- loss patterns --------------------------------------------------------------------------------------------

def test_packets_lose_consecutive_tokens_whole():
    gen = torch.Generator().manual_seed(0)
    lost = rz.lost_packets(2000, 32, torch.full((2000,), 0.3), 4, gen)
    blocks = lost.view(2000, 8, 4)
    assert (blocks.all(-1) == blocks.any(-1)).all()
    assert abs(lost.float().mean().item() - 0.3) < 0.02


def test_keep_top_keeps_exactly_the_k_highest():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    lost = rz.keep_top(scores, torch.tensor([2, 1]))
    assert lost.tolist() == [[True, False, False, True], [False, True, True, True]]


def test_training_mask_mixes_the_patterns_at_the_rates_asked():
    gen = torch.Generator().manual_seed(1)
    lost = rz.training_mask(20_000, 32, gen)
    per = lost.float().mean(1)
    none = dict(rz.PATTERNS)["none"]
    # "none" examples, and about as many more with rate ~0 by chance, lose nothing
    assert none - 0.02 < (per == 0).float().mean().item() < none + 0.1
    # the others lose U(0, MAX_LOSS) on average: the mean over all is about (1 - none) * MAX_LOSS / 2
    assert abs(per.mean().item() - (1 - none) * rz.MAX_LOSS / 2) < 0.02
    # a whole picture lost is rare (all 4 packets of 8 tokens, or all i.i.d. tokens): the models see mostly partial loss
    assert (per == 1).float().mean().item() < 0.02


def test_nan_rows_round_trip():
    t = torch.randn(3, 5, 4)
    lost = torch.rand(3, 5) < 0.5
    assert torch.equal(rz.nan_rows(rz.with_nan_rows(t, lost)), lost)


# ---- the resilient link ---------------------------------------------------------------------------------------

def _tiny_link(resilient: bool) -> TokenLink:
    spec = LinkSpec.from_config(config.load("tiny"), "image", "sigma-genib", 16, image_arch="conv", resilient=resilient)
    torch.manual_seed(0)
    return TokenLink(spec).eval()


def test_fill_lost_replaces_only_lost_tokens_and_only_on_a_resilient_link():
    r, plain = _tiny_link(True), _tiny_link(False)
    with torch.no_grad():
        r.mask_token.fill_(7.0)
    t = torch.randn(2, 16, r.spec.token_dim)
    lost = torch.zeros(2, 16, dtype=torch.bool)
    lost[0, 3] = lost[1, 0] = True
    out = r.fill_lost(t, lost)
    assert torch.equal(out[~lost], t[~lost]) and (out[lost] == 7.0).all()
    assert torch.equal(plain.fill_lost(t, lost), t)
    with pytest.raises(ValueError, match="importance head"):
        plain.importance(torch.rand(1, 3, 32, 32))


def test_a_resilient_companion_sends_the_base_links_tokens_and_freezes_them():
    from unitocom.models.token_link import load
    from unitocom.train.resilient import FROZEN, from_base
    need(BASE.exists(), f"{BASE.name} is not installed")
    base = load(BASE)
    r = from_base(base)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(r.tokenize(x)[0], base.tokenize(x)[0])
        snr = torch.full((4,), 10.0)
        assert torch.equal(r.modulate(base.tokenize(x)[0], snr), base.modulate(base.tokenize(x)[0], snr))
    for name in FROZEN:
        assert not any(p.requires_grad for p in getattr(r, name).parameters())
    assert r.mask_token.requires_grad and all(p.requires_grad for p in r.detokenizer.parameters())


@pytest.mark.parametrize("base_name", ["image-sigma-genib-s32", "audio-sigma-genib-s32", "text-sigma-genib"])
def test_the_installed_resilient_link_is_the_base_link_with_a_new_reader(base_name):
    """What makes the variant safe to offer: the same tokens on the air (F_alpha, T, R as the base link's), so the
    letter's MLLM and the resilient one read the same thing."""
    from unitocom.models.token_link import load
    path = learned.checkpoint_dir() / f"{base_name}-resilient.safetensors"
    need(path.exists(), f"{path.name} is not installed (unitocom train resilient --base {base_name})")
    base, r = load(learned.checkpoint_dir() / f"{base_name}.safetensors"), load(path)
    assert r.spec.resilient and dataclasses.replace(r.spec, resilient=False) == base.spec
    b = base.state_dict()
    for k, v in r.state_dict().items():
        if k.split(".")[0] in ("tokenizer", "posterior", "modulator", "demodulator"):
            assert torch.equal(v, b[k]), k


@torch.no_grad()
def test_the_resilient_link_degrades_gracefully_and_its_budget_picks_tokens_that_matter(heldout_data):
    """Quality pinned on held-out scenes (a seed no checkpoint saw) through Rayleigh at 10 dB: with a quarter of
    the tokens lost the mask token beats R's reading of the zeros, and the importance head's 16 tokens beat 16
    random ones."""
    from unitocom.models.token_link import load
    from unitocom.train.data import ImageBatches
    from unitocom.train.resilient import evaluate
    _resilient_installed()
    val = ImageBatches(heldout_data, "val", 32, limit=128).fixed(128)
    f = evaluate(load(BASE), load(RESILIENT), val, 10.0, rates=(0.0, 0.25), budgets=(0.5,))
    loss = f["psnr_vs_token_loss"]
    assert loss["0.25"]["resilient"] > loss["0.25"]["base"] + 1.0
    assert loss["0"]["resilient"] > loss["0"]["base"] - 1.0  # what the dropout training costs at no loss: little
    budget = f["psnr_vs_budget"]["0.5"]
    assert budget["importance"] > budget["random"]


# ---- the MLLM's lost-token embedding -------------------------------------------------------------------------

def _tiny_mllm(lost_token: bool):
    from unitocom.mllm.model import MLLM, MLLMConfig
    cfg = MLLMConfig(vocab=50, hidden=32, layers=1, heads=2, intermediate=64, max_positions=64, token_dim=8,
                     head_width=16, head_depth=1, image_positions=16, lost_token=lost_token)
    torch.manual_seed(0)
    return MLLM(cfg).eval()


def test_a_nan_row_is_read_as_the_lost_embedding_and_other_rows_are_untouched():
    m = _tiny_mllm(True)
    t = torch.randn(1, 16, 8)
    lost = torch.zeros(1, 16, dtype=torch.bool)
    lost[0, [2, 9]] = True
    with torch.no_grad():
        e = m.embed_tokens(rz.with_nan_rows(t, lost), "image")
        plain = m.embed_tokens(t, "image")
    assert torch.equal(e[~lost], plain[~lost])
    assert torch.allclose(e[0, 2] - m.image_pos[2], m.lost["image"])
    assert torch.isfinite(e).all()
    # an MLLM without the embedding reads a lost token as a zero token, never as NaN
    old = _tiny_mllm(False)
    with torch.no_grad():
        assert torch.isfinite(old.embed_tokens(rz.with_nan_rows(t, lost), "image")).all()


# ---- through the services (in process: the pipeline the services run) --------------------------------------

def _run(**kw):
    from unitocom import pipeline, wire
    req = wire.from_pb(client.build_request(**kw))
    return pipeline.run(req, config.load("tiny"))


@pytest.mark.parametrize("budget", [5, 16, 31])
def test_a_budget_of_k_tokens_sends_exactly_its_channel_uses(budget):
    _resilient_installed()
    uses = learned.model("image-sigma-genib-s32-resilient").spec.uses_per_token
    r = _run(image=scene_png(32), scheme="unitocom", variant="resilient", token_budget=budget, snr_db=20.0)
    assert r.channel_uses == budget * uses
    assert f"the {budget} most important of 32 tokens sent" in r.outputs[0].note
    assert f"{32 - budget} of 32 tokens missing" in r.outputs[0].note


def test_without_losses_the_standard_variant_is_unchanged():
    """received_image_tokens gives what R gives a whole stream: the letter's path is untouched by the new code."""
    m = learned.model("image-sigma-genib-s32")
    n = m.spec.tokens * m.spec.uses_per_token
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    h = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    from unitocom.messages import Modality, StreamHeader
    header = StreamHeader(modality=Modality.IMAGE, tokenizer="image-sigma-genib-s32", token_shape=[32, m.spec.token_dim])
    tokens, lost = learned.received_image_tokens(m, [learned.StreamJob(header, y, h, 0.1, False)])
    z, sinr = learned.equalize(y, h, 0.1)
    assert torch.equal(tokens, learned.symbols_to_tokens(m, z[None], sinr[None])) and not lost.any()


def test_resilient_vqa_with_every_image_packet_lost_answers_with_a_note():
    _resilient_installed()
    from unitocom.mllm.checkpoint import mllm_path
    need(mllm_path(resilient=True).exists(), "mllm-sigma-genib-resilient is not installed")
    r = _run(image=scene_png(32), question="how many objects are there?", task="vqa", scheme="unitocom",
             variant="resilient", token_budget=1, packet_loss=1.0, snr_db=20.0)
    assert r.output_text
    assert any("32 of 32 tokens missing" in o.note for o in r.outputs)


def test_aggregated_packing_sends_every_token_once_and_reads_them_back_in_place():
    """Over a noiseless channel the order the tokens travel in changes nothing; the header names the order."""
    _resilient_installed()
    common = dict(image=scene_png(32), scheme="unitocom", variant="resilient", channel="noiseless")
    seq = _run(**common)
    agg = _run(**common, packing="aggregated", tokens_per_packet=4)
    assert agg.outputs[0].image_png == seq.outputs[0].image_png and agg.channel_uses == seq.channel_uses
    assert "packets aggregated" in agg.outputs[0].note


def test_aggregation_spreads_important_tokens_and_neighbours_over_packets():
    from unitocom.models.conv_tokenizer import token_grid
    adj = rz.grid_adjacency(*token_grid(32))
    imp = torch.zeros(32)
    imp[:4] = 5.0  # the four most important tokens are neighbours on the first row
    order = rz.aggregate(imp, adj, 4)
    assert sorted(order.tolist()) == list(range(32))
    packets = order.view(8, 4)
    assert all(sum(int(t) < 4 for t in p) <= 1 for p in packets)  # one important token per packet at most
    neighbours = sum(bool(adj[a, b]) for p in packets for i, a in enumerate(p) for b in p[i + 1:])
    sequential = sum(bool(adj[a, b]) for p in torch.arange(32).view(8, 4) for i, a in enumerate(p) for b in p[i + 1:])
    assert neighbours < sequential


@pytest.mark.parametrize("options, field", [
    ({"scheme": "unitocom", "token_budget": 8}, "link.token_budget"),  # a budget needs the resilient models
    ({"scheme": "traditional", "variant": "resilient"}, "link.variant"),
    ({"scheme": "unitocom", "variant": "resilient", "token_budget": 5000}, "link.token_budget"),
    ({"scheme": "unitocom", "packing": "aggregated"}, "link.packing"),
])
def test_bad_budget_and_variant_requests_name_the_field(tx, options, field):
    with pytest.raises(grpc.RpcError) as e:
        tx.send(client.build_request(image=scene_png(32), snr_db=10.0, **options))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in e.value.details()


def test_a_header_with_bad_sent_tokens_is_refused():
    from unitocom.messages import Modality, StreamHeader
    from unitocom.stages.request import RequestError
    m = learned.model("image-sigma-genib-s32")
    for sent in ([3, 3], [40]):
        header = StreamHeader(modality=Modality.IMAGE, tokenizer="image-sigma-genib-s32",
                              token_shape=[32, m.spec.token_dim], sent_tokens=sent)
        with pytest.raises(RequestError, match="sent_tokens"):
            learned.decode(header, np.zeros(len(sent) * m.spec.uses_per_token, np.complex64),
                           np.ones(len(sent) * m.spec.uses_per_token, np.complex64), 0.1, False, config.load("tiny"))


def test_the_resilient_mllm_reads_lost_speech_tokens_as_lost():
    """ASR with variant resilient: the audio link has no mask token, but the MLLM was trained with audio token
    dropout, so the tokens of lost packets reach it as its lost embedding (NaN rows), not as R's reading of zeros;
    the letter's MLLM gets R's reading, as before."""
    from unitocom.messages import LinkSettings, Modality, ModalityOutput
    from unitocom.mllm.checkpoint import mllm_path
    from unitocom.options import Scheme
    from unitocom.stages import mllm as stage
    from unitocom.stages.request import SourcePayload
    need(mllm_path(resilient=True).exists(), "mllm-sigma-genib-resilient is not installed")
    cfg = config.load("tiny")
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    enc = learned.encode(0, SourcePayload(Modality.AUDIO, wave, 16000), LinkSettings(scheme=Scheme.UNITOCOM,
                                                                                       snr_db=20.0), cfg)
    uses = learned.model(enc.header.tokenizer).spec.uses_per_token
    h = np.ones(len(enc.symbols), np.complex64)
    h[: 8 * uses] = 0  # the first 8 tokens' packets lost: zeros with h_est 0, as the channel delivers them
    y = np.where(h == 0, 0, enc.symbols).astype(np.complex64)
    r = stage.Received(enc.header, ModalityOutput(modality=Modality.AUDIO, decoded=True), y, h, 0.01, False, 0.0)
    lost = rz.nan_rows(stage.audio_tokens(stage.assistant(Scheme.UNITOCOM, cfg, resilient=True), r))
    assert lost[:8].all() and not lost[8:].any()
    assert not rz.nan_rows(stage.audio_tokens(stage.assistant(Scheme.UNITOCOM, cfg), r)).any()


def test_resilient_speech_reads_lost_packets_through_the_mask_and_degrades_less(heldout_data):
    """Speech through the services' path (in process): with the resilient variant a lost packet's tokens are the
    mask token, and the log-mel distance to the input grows less than when R reads the zeros."""
    from unitocom.train.data import speech_files
    path = learned.checkpoint_dir() / "audio-sigma-genib-s32-resilient.safetensors"
    need(path.exists(), f"{path.name} is not installed")
    wav = speech_files(heldout_data, "val")[0].read_bytes()
    got = {}
    for variant in ("standard", "resilient"):
        dist = []
        for seed in range(6):
            r = _run(audio=wav, scheme="unitocom", variant=variant, snr_db=20.0, packet_loss=0.3, seed=seed)
            dist.append(r.quality["mel_distance_db"])
            if variant == "resilient" and "packets lost" in r.outputs[0].note:
                assert "read as the learned mask token" in r.outputs[0].note
        got[variant] = float(np.mean(dist))
    assert got["resilient"] < got["standard"]


def test_resilient_text_reads_lost_packets_through_the_mask_and_keeps_more_words(heldout_data, monkeypatch):
    """A question through the services' path (in process) losing 30 % of its packets: the resilient text
    de-tokenizer reads the lost tokens as its mask token and fills them from the words around them, so fewer
    words are wrong than when the letter's de-tokenizer reads the zeros that arrived. Same packets lost for both
    (the loss draw depends on the seed only). Each id read by its argmax, as a base station without the language
    prior reads it: with the prior, the letter's de-tokenizer gets most lost words back too (below)."""
    import json

    import jiwer
    from unitocom.data.layouts import clevr_questions_file
    path = learned.checkpoint_dir() / "text-sigma-genib-resilient.safetensors"
    need(path.exists(), f"{path.name} is not installed (unitocom train resilient --base text-sigma-genib)")
    need((learned.checkpoint_dir() / learned.PRIOR_FILE).exists(), "the language prior is not installed")
    qs = json.loads(clevr_questions_file(heldout_data, "val").read_text())["questions"]
    questions = [q["question"] for q in qs[:12]]
    prior = learned.text_prior
    wer = {}
    for reading in ("argmax", "prior"):
        monkeypatch.setattr(learned, "text_prior", (lambda m: None) if reading == "argmax" else prior)
        for variant in ("standard", "resilient"):
            got = []
            for i, q in enumerate(questions):
                r = _run(text=q, scheme="unitocom", variant=variant, snr_db=20.0, packet_loss=0.3,
                         tokens_per_packet=2, seed=i)
                got.append(r.output_text)
                if variant == "resilient" and "packets lost" in r.outputs[0].note:
                    assert "read as the learned mask token" in r.outputs[0].note
            wer[reading, variant] = jiwer.wer(questions, got)
    assert wer["argmax", "resilient"] < wer["argmax", "standard"] - 0.05, wer
    # the prior fills the letter's de-tokenizer's lost words from the corpus: it keeps more words than the argmax
    assert wer["prior", "standard"] < wer["argmax", "standard"] - 0.05, wer


@pytest.mark.parametrize("budget", [8, 20])
def test_a_budget_keeps_the_power_constraint_and_t_s_own_scale(budget):
    """The sent tokens' symbols are T's (modulated with all the tokens, as T was trained), scaled to mean power
    P; the header carries the scale, and the receiver that divides it out reads what R was trained on."""
    from unitocom.config import POWER_P
    from unitocom.messages import LinkSettings, Modality
    from unitocom.options import Scheme
    from unitocom.stages.request import SourcePayload
    from PIL import Image
    import io
    _resilient_installed()
    img = np.asarray(Image.open(io.BytesIO(scene_png(32))).convert("RGB"))
    link = LinkSettings(scheme=Scheme.UNITOCOM, snr_db=20.0, variant="resilient", token_budget=budget)
    enc = learned.encode(0, SourcePayload(Modality.IMAGE, img), link, config.load("tiny"))
    assert np.mean(np.abs(enc.symbols) ** 2) == pytest.approx(POWER_P, rel=1e-4)
    m = learned.model(enc.header.tokenizer)
    with torch.no_grad():
        full = m.modulate(learned.images_to_tokens(m, img[None]), torch.full((1,), 20.0)).numpy()[0]
    sent = np.asarray(enc.header.sent_tokens)
    cut = full.reshape(32, -1)[sent].ravel()
    np.testing.assert_allclose(enc.symbols, cut * 10 ** (enc.header.symbol_gain_db / 20), rtol=1e-4, atol=1e-5)


def test_the_budget_is_planned_for_every_preset_not_only_tiny(monkeypatch):
    """The budget and the packing are the transmitter's, whatever the preset (the tiny preset only adds a note)."""
    import copy
    from PIL import Image
    import io
    from unitocom.messages import LinkSettings, Modality
    from unitocom.options import Scheme
    from unitocom.stages.request import SourcePayload
    _resilient_installed()
    m = copy.deepcopy(learned.model("image-sigma-genib-s32-resilient"))
    m.spec = dataclasses.replace(m.spec, preset="other")
    monkeypatch.setattr(learned, "model", lambda name: m)
    img = np.asarray(Image.open(io.BytesIO(scene_png(32))).convert("RGB"))
    link = LinkSettings(scheme=Scheme.UNITOCOM, snr_db=20.0, variant="resilient", token_budget=8)
    enc = learned.encode(0, SourcePayload(Modality.IMAGE, img), link, config.load("tiny"))
    assert len(enc.header.sent_tokens) == 8 and len(enc.symbols) == 8 * m.spec.uses_per_token
