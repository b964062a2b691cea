"""The learned schemes through the service path: any image size, text and speech, `unitocom` and `vae`;
and the committed checkpoints: present, intact, and above a stated quality floor."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from tests.conftest import need
from unitocom import client, config, pipeline
from unitocom.messages import LinkSettings, Modality, StreamHeader
from unitocom.models import token_link
from unitocom.models.token_link import LinkSpec, TokenLink
from unitocom.options import Scheme
from unitocom.schemes import learned
from unitocom.stages.request import RequestError, SourcePayload, from_wire

torch.set_num_threads(1)
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SMALL = dict(width=32, layers=1, heads=2, cm_hidden=16)


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory):
    """Untrained, narrow checkpoints under the names the schemes look for, in a private directory."""
    from unitocom.models.text_tokenizer import train_bpe
    d = tmp_path_factory.mktemp("checkpoints")
    cfg = config.load("tiny")
    tok = train_bpe(["there is a red circle", "how many squares are there?"] * 10, 300)
    tok.save(str(d / "text-bpe.json"))
    torch.manual_seed(0)
    for obj in ("sigma-genib", "vae"):
        token_link.save(TokenLink(LinkSpec.from_config(cfg, "image", obj, **SMALL)), d / f"image-{obj}-s32.safetensors")
        token_link.save(TokenLink(LinkSpec.from_config(cfg, "audio", obj, chunk_frames=32, mels=16, n_fft=128, hop=64,
                                                       db_mean=-40.0, db_std=20.0, **SMALL)),
                        d / f"audio-{obj}-s32.safetensors")
        token_link.save(TokenLink(LinkSpec.from_config(cfg, "text", obj, text_vocab=tok.get_vocab_size(),
                                                       bpe="text-bpe.json", tokens=8, **SMALL)),
                        d / f"text-{obj}.safetensors")
    mp = pytest.MonkeyPatch()
    mp.setenv("UNITOCOM_CHECKPOINTS", str(d))
    yield d
    mp.undo()


def _png(h: int, w: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(h * w)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_fit_image_says_what_it_did():
    img = np.zeros((60, 100, 3), np.uint8)
    out, note = learned.fit_image(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert note == "centre-cropped 100x60 -> 60x60; resized 60x60 -> 32x32 (bicubic)"
    assert learned.fit_image(np.zeros((32, 32, 3), np.uint8), 32)[1] == "none (32x32 already)"


@pytest.mark.parametrize("scheme", ["unitocom", "vae"])
@pytest.mark.parametrize("size, mode", [((48, 80), "RGB"), ((32, 32), "L"), ((300, 200), "RGBA")])
def test_image_of_any_size_and_mode_through_the_service_path(small_checkpoints, scheme, size, mode):
    req = client.build_request(image=_png(*size, mode), scheme=scheme, snr_db=10.0, channel="rayleigh", seed=2)
    res = pipeline.run(from_wire(req), config.load("tiny"))
    (out,) = res.outputs
    assert out.decoded and out.image_png
    assert np.asarray(Image.open(io.BytesIO(out.image_png))).shape == (32, 32, 3)
    assert "psnr_db" in res.quality and np.isfinite(res.quality["psnr_db"])
    assert res.channel_uses == out.channel_uses == 32 * 8
    assert "preprocessing" in out.note and ("32x32" in out.note)
    if size[0] != size[1]:
        assert "centre-cropped" in out.note


def test_encode_header_and_power(small_checkpoints):
    cfg = config.load("tiny")
    link = LinkSettings(scheme=Scheme.UNITOCOM, snr_db=5.0)
    enc = learned.encode(3, SourcePayload(Modality.IMAGE, np.zeros((64, 64, 3), np.uint8)), link, cfg)
    h = enc.header
    assert (h.stream_id, h.scheme, h.modality, h.tokenizer) == (3, Scheme.UNITOCOM, Modality.IMAGE,
                                                                "image-sigma-genib-s32")
    assert list(h.token_shape) == [32, 16] and h.num_symbols == len(enc.symbols) == 256
    assert h.preprocessing.startswith("resized 64x64 -> 32x32 (bicubic); ")
    assert "trained on 32x32 CLEVR-style scenes only" in h.preprocessing  # a photo's smear is not the scheme's quality
    assert enc.symbols.dtype == np.complex64
    assert np.mean(np.abs(enc.symbols) ** 2) == pytest.approx(config.POWER_P, rel=1e-5)
    assert enc.reference.shape == (32, 32, 3)


@pytest.mark.parametrize("scheme", ["unitocom", "vae"])
def test_text_and_speech_through_the_service_path(small_checkpoints, scheme):
    cfg = config.load("tiny")
    text = "how many squares are there? Ünïcödé too, and a long tail " * 2  # more than one 8-token segment
    res = pipeline.run(from_wire(client.build_request(text=text, scheme=scheme, snr_db=20.0, seed=1)), cfg)
    (out,) = res.outputs
    assert out.decoded and isinstance(out.text, str) and "exact_match" in res.quality
    assert "BPE tokens" in out.note and "segments" in out.note
    t = np.arange(22050) / 22050
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 22050, format="WAV")
    res = pipeline.run(from_wire(client.build_request(audio=buf.getvalue(), scheme=scheme, snr_db=10.0, seed=1)), cfg)
    (out,) = res.outputs
    wave, rate = sf.read(io.BytesIO(out.audio_wav))
    assert rate == 16000 and len(wave) == 16000  # 1 s resampled, the last chunk's padding cut
    assert "resampled 22050 -> 16000 Hz" in out.note
    assert "audio_snr_db" not in res.quality  # waveform SNR of a Griffin-Lim output would mislead
    assert 0 < res.quality["mel_distance_db"] < 200  # scored in log-mel instead, against the input as sent


def test_decode_refuses_bad_headers(small_checkpoints):
    cfg = config.load("tiny")
    y = np.zeros(256, np.complex64)
    h = np.ones(256, np.complex64)
    for header, field in [
        (StreamHeader(modality=Modality.IMAGE, scheme=Scheme.UNITOCOM, tokenizer="../../etc/passwd",
                      token_shape=[32, 16]), "header.tokenizer"),
        (StreamHeader(modality=Modality.IMAGE, scheme=Scheme.UNITOCOM, tokenizer="image-sigma-genib-s32",
                      token_shape=[31, 16]), "header.token_shape"),
        (StreamHeader(modality=Modality.TEXT, scheme=Scheme.UNITOCOM, tokenizer="image-sigma-genib-s32",
                      token_shape=[32, 16]), "header.modality"),
    ]:
        with pytest.raises(RequestError) as e:
            learned.decode(header, y, h, 0.1, False, cfg)
        assert e.value.field == field
    with pytest.raises(RequestError) as e:
        learned.model("image-sigma-genib-s999")
    assert e.value.code == "failed_precondition"


def test_erased_frames_still_give_an_image_and_say_so(small_checkpoints):
    cfg = config.load("tiny")
    enc = learned.encode(0, SourcePayload(Modality.IMAGE, np.zeros((32, 32, 3), np.uint8)),
                         LinkSettings(scheme=Scheme.VAE, snr_db=10.0), cfg)
    out = learned.decode(enc.header, np.zeros(256, np.complex64), np.ones(256, np.complex64), 0.1, True, cfg)
    assert out.decoded and out.image_png and "erased" in out.note


# --- the committed checkpoints ----------------------------------------------------------------------------------

def _manifest() -> dict:
    path = CHECKPOINTS / "manifest.json"
    need(path.exists(), "no committed checkpoints")
    return json.loads(path.read_text())["checkpoints"]


def test_committed_checkpoints_are_intact_small_and_reproducible():
    entries = _manifest()
    total = 0
    for name, e in entries.items():
        f = CHECKPOINTS / e["file"]
        assert f.exists(), name
        assert hashlib.sha256(f.read_bytes()).hexdigest() == e["sha256"], f"{name} differs from its manifest"
        total += f.stat().st_size
        assert f"--seed {e['seed']}" in e["command"] and len(e["dataset"]["checksum"]) == 64
        if e.get("resilient_of"):  # a resilient companion (issue 16): its base link's hash and its loss curves
            assert e["command"].startswith(f"unitocom train resilient --base {e['resilient_of']} ")
            assert e["base_sha256"] == entries[e["resilient_of"]]["sha256"], f"{name} was trained on another base"
            assert e["validation"]["psnr_vs_token_loss"] and e["validation"]["psnr_vs_budget"]
        else:
            assert e["command"].startswith("unitocom train tokenizer ") and e["validation"]["figures"]
        assert token_link.LinkSpec.from_dict(e["config"]) == token_link.LinkSpec.from_json(
            token_link.read_metadata(f)["spec"])
    assert total < 40e6
    assert "image-sigma-genib-s32" in entries


@pytest.fixture(scope="module")
def fresh_scenes(tmp_path_factory):
    """Scenes the checkpoints never saw (another seed), at the preset size."""
    from unitocom.data.make import make_dataset
    from unitocom.train.data import load_images
    d = tmp_path_factory.mktemp("scenes")
    make_dataset(d, "tiny", seed=12345, scenes=64, speech=False, workers=1, progress=False, log=lambda s: None)
    return load_images(d, "train", 32).permute(0, 2, 3, 1).numpy()


# Floors about 1.5 dB under what the checkpoints reach on these scenes (the mid-grey image scores 16.4 dB), so
# that a broken checkpoint or receiver fails and noise does not: the retrained conv tokenizers reach about 34 dB
# (sigma-GenIB) and 33.6 dB (VAE) at 20 dB AWGN (the first ViT VAE 27.3).
PSNR_FLOOR_DB = {"image-sigma-genib-s32": 32.0, "image-vae-s32": 32.0}


@pytest.mark.parametrize("name", sorted(PSNR_FLOOR_DB))
def test_committed_image_checkpoint_beats_its_floor_at_high_snr(name, fresh_scenes):
    from unitocom.link_eval import eval_learned_images
    need(name in _manifest(), f"{name} not committed")
    mp = pytest.MonkeyPatch()
    mp.setenv("UNITOCOM_CHECKPOINTS", str(CHECKPOINTS))
    try:
        rows = eval_learned_images(name, list(fresh_scenes), "awgn", 20.0, seed=0)
    finally:
        mp.undo()
    psnr = float(np.mean([r["metric"] for r in rows]))
    grey = float(np.mean([10 * np.log10(255 ** 2 / np.mean((s.astype(float) - 128) ** 2)) for s in fresh_scenes]))
    assert psnr > PSNR_FLOOR_DB[name] > grey + 2, (psnr, grey)


def _committed(name: str):
    from unitocom.schemes import learned
    mp = pytest.MonkeyPatch()
    mp.setenv("UNITOCOM_CHECKPOINTS", str(CHECKPOINTS))
    try:
        return learned.model(name)
    finally:
        mp.undo()


def test_one_token_space_the_detokenizer_reads_the_tokenizers_means(fresh_scenes):
    """A link trained with the consistency term: R's output is the sent token, so tokens the base station
    makes itself (a decoded JPEG tokenized there, generated image tokens) are read as they are, and decode as
    well as the tokens that crossed a clean channel."""
    from unitocom.codecs import psnr_db
    from unitocom.schemes import learned
    m = _committed("image-sigma-genib-s32")
    assert m.spec.consistency > 0
    x = torch.from_numpy(fresh_scenes).permute(0, 3, 1, 2).float() / 255.0
    mu, _ = m.tokenize(x)
    assert learned.clean_tokens(m, mu) is mu
    raw = learned.tokens_to_images(m, mu)
    p_raw = np.mean([psnr_db(a, b) for a, b in zip(fresh_scenes, raw)])
    assert p_raw > PSNR_FLOOR_DB["image-sigma-genib-s32"], p_raw


def test_a_link_without_one_token_space_keeps_the_clean_link_pass(fresh_scenes):
    """The first tiny links (no consistency term; the GenIB ablation is one) read R's private space: tokens made
    at the receiver must pass R(T(.)) first, or they decode to noise."""
    from unitocom.codecs import psnr_db
    from unitocom.schemes import learned
    m = _committed("image-genib-s32")
    if m.spec.consistency > 0:
        pytest.skip("image-genib-s32 is retrained with the consistency term: no first-generation link left")
    x = torch.from_numpy(fresh_scenes).permute(0, 3, 1, 2).float() / 255.0
    mu, _ = m.tokenize(x)
    clean = learned.tokens_to_images(m, learned.clean_tokens(m, mu))
    raw = learned.tokens_to_images(m, mu)
    p_clean = np.mean([psnr_db(a, b) for a, b in zip(fresh_scenes, clean)])
    p_raw = np.mean([psnr_db(a, b) for a, b in zip(fresh_scenes, raw)])
    assert p_clean > 25.0 and p_clean > p_raw + 5, (p_clean, p_raw)


def test_committed_text_checkpoint_is_faithful_to_any_text():
    need("text-sigma-genib" in _manifest(), "text-sigma-genib not committed")
    mp = pytest.MonkeyPatch()
    mp.setenv("UNITOCOM_CHECKPOINTS", str(CHECKPOINTS))
    try:
        cfg = config.load("tiny")
        for text, snr in [("Tokens are the units that large models compute with.", 20.0),  # outside the corpus
                          ("Are there more red squares than blue circles?", 0.0)]:  # a corpus-like question
            res = pipeline.run(from_wire(client.build_request(text=text, scheme="unitocom", snr_db=snr, seed=1)), cfg)
            assert res.output_text == text, (snr, res.output_text)
    finally:
        mp.undo()


def test_a_noiseless_symbol_is_read_at_the_top_of_the_training_range():
    """The upper bound's channel has N0 = 0: R is told the cleanest SINR it was trained on, not the clamp's 60 dB
    (where it extrapolates and recovers worse tokens), and a zero gain still reads as nothing arrived."""
    y = np.array([1 + 1j, 0.5, 0], np.complex64)
    z, sinr = learned.equalize(y, np.array([1, 1, 0], np.complex64), 0.0)
    np.testing.assert_allclose(z[:2], y[:2], rtol=1e-6)
    assert z[2] == 0  # not 0/0's NaN, which R would turn into NaN tokens
    assert list(sinr) == [learned.CLEAN_SNR_DB, learned.CLEAN_SNR_DB, learned.SNR_DB_CLAMP[0]]
    _, sinr = learned.equalize(y, np.ones(3, np.complex64), 1e-7)  # 70 dB: the clamp as before
    assert sinr.max() == learned.SNR_DB_CLAMP[1]
