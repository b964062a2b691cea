"""Algorithm 1 as a command: a short run learns, resumes where it stopped, exports a checkpoint and its manifest."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch

from tests.conftest import need
from unitocom.config import TrainCompute
from unitocom.models.channel_torch import TorchChannelSpec
from unitocom.models.token_link import TokenLink, load
from unitocom.train.loop import TrainOptions, lr_at, train

torch.set_num_threads(1)
SMALL = {"width": 32, "layers": 1, "heads": 2, "cm_hidden": 16}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A few scenes, captions, questions (and speech where espeak-ng is installed) in the real layouts."""
    from unitocom.data.make import make_dataset
    from unitocom.data.speech import tools_missing
    d = tmp_path_factory.mktemp("data") / "tiny"
    make_dataset(d, "tiny", seed=3, scenes=24, clips=6, speech=not tools_missing(), workers=1, progress=False,
                 log=lambda s: None)
    return d


def test_loss_goes_down_over_a_short_run():
    from tests.test_models import small_spec
    torch.manual_seed(0)
    model = TokenLink(small_spec("image", "sigma-genib", tokens=8))
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    # a fixed batch of simple pictures: coloured squares on grey
    x = torch.full((16, 3, 32, 32), 0.5)
    for i in range(16):
        r, c = (i * 5) % 20, (i * 7) % 20
        x[i, i % 3, r: r + 10, c: c + 10] = 1.0
    losses = []
    for step in range(60):
        out = model.loss(x, torch.full((16,), 15.0), TorchChannelSpec(), gen)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, (first, last)  # measured: 1285 -> 954 (the mean image is learnt first)


def test_lr_schedule_warms_up_then_decays():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(55, 100, 1.0, 10) == pytest.approx(0.55, abs=0.01)


def _opts(tmp_path, data_dir, modality, objective, steps, **kw):
    return TrainOptions(modality=modality, objective=objective, tokens=None if modality == "text" else 8,
                        snr_db=(-5.0, 20.0), steps=steps, batch_size=4, data_dir=str(data_dir),
                        run_dir=str(tmp_path / "run"), out=str(tmp_path / "ck" / f"{modality}.safetensors"),
                        val_every=3, save_every=2, val_count=2, log_every=1, progress=False,
                        overrides=dict(SMALL), **kw)


def test_train_exports_checkpoint_manifest_and_resumes(tmp_path, data_dir):
    entry = train(_opts(tmp_path, data_dir, "image", "sigma-genib", 4), log=lambda s: None)
    ck = tmp_path / "ck" / "image.safetensors"
    assert ck.exists() and entry["sha256"] and entry["parameters"] > 0
    manifest = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    rec = manifest["checkpoints"]["image-sigma-genib-s8"]
    assert rec["command"].startswith("unitocom train tokenizer --modality image --objective sigma-genib --tokens 8")
    assert "--snr-db=-5:20" in rec["command"] and "--width 32" in rec["command"]
    assert rec["dataset"]["checksum"] == json.loads((data_dir / "manifest.json").read_text())["checksum"]
    assert set(rec["validation"]["figures"]) >= {"awgn@20dB", "rayleigh@0dB"}
    assert "psnr_db" in rec["validation"]["figures"]["awgn@20dB"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    assert any("val" in r for r in log)
    model = load(ck)
    assert isinstance(model, TokenLink) and model.spec.tokens == 8
    # resume: the state at step 4 continues to step 6 instead of starting again
    train(_opts(tmp_path, data_dir, "image", "sigma-genib", 6), log=lambda s: None)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_resume_reproduces_an_uninterrupted_run(tmp_path, data_dir):
    a = tmp_path / "a"
    b = tmp_path / "b"
    train(_opts(a, data_dir, "image", "vae", 4), log=lambda s: None)
    train(_opts(b, data_dir, "image", "vae", 2), log=lambda s: None)
    # a fresh process would start from the saved state; so does a second call with more steps
    train(_opts(b, data_dir, "image", "vae", 4), log=lambda s: None)
    wa = load(a / "ck" / "image.safetensors").state_dict()
    wb = load(b / "ck" / "image.safetensors").state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=2e-3)  # fp16 storage


def test_text_run_learns_a_bpe_and_trains(tmp_path, data_dir):
    entry = train(_opts(tmp_path, data_dir, "text", "genib", 3), log=lambda s: None)
    assert (tmp_path / "ck" / "text-bpe.json").exists()
    assert entry["config"]["bpe"] == "text-bpe.json" and entry["config"]["text_vocab"] > 256
    assert "token_accuracy" in entry["validation"]["figures"]["awgn@20dB"]


def test_audio_run_trains_on_log_mel_chunks(tmp_path, data_dir):
    need((data_dir / "LibriSpeech").exists(), "no speech in the test data (espeak-ng missing)")
    entry = train(_opts(tmp_path, data_dir, "audio", "vae", 2), log=lambda s: None)
    assert entry["config"]["db_std"] > 0
    assert "mel_distance_db" in entry["validation"]["figures"]["awgn@20dB"]


def test_cli_parses_the_documented_command():
    from unitocom.train.cli import add_subparser
    p = argparse.ArgumentParser()
    add_subparser(p.add_subparsers())
    a = p.parse_args(["train", "tokenizer", "--modality", "image", "--objective", "vae", "--tokens", "16",
                      "--snr-db=-10:25", "--channel", "rayleigh", "--steps", "5", "--xi", "0.5"])
    assert (a.modality, a.objective, a.tokens, a.snr_db, a.channel, a.steps, a.xi) == \
        ("image", "vae", 16, (-10.0, 25.0), "rayleigh", 5, 0.5)
    with pytest.raises(SystemExit):
        p.parse_args(["train", "tokenizer", "--modality", "image", "--snr-db=25:-10"])


def test_warm_start_resamples_the_token_axis():
    from tests.test_models import small_spec
    from unitocom.train.loop import warm_start
    torch.manual_seed(0)
    # the ViT's latent queries are the tensors with a token axis (the conv tokenizer's grid has none)
    src = TokenLink(small_spec("image", "sigma-genib", tokens=8, image_arch="vit"))
    for s in (4, 16):
        dst = TokenLink(small_spec("image", "sigma-genib", tokens=s, image_arch="vit"))
        note = warm_start(dst, src)
        assert "2 resampled" in note
        assert dst.tokenizer.encoder.queries.shape == (1, s, 32)
        torch.testing.assert_close(dst.tokenizer.encoder.queries[:, 0], src.tokenizer.encoder.queries[:, 0])
        torch.testing.assert_close(dst.modulator.net.inp.weight, src.modulator.net.inp.weight)


def test_warm_started_run_records_its_init(tmp_path, data_dir):
    train(_opts(tmp_path / "a", data_dir, "image", "sigma-genib", 2), log=lambda s: None)
    src = tmp_path / "a" / "ck" / "image.safetensors"
    opts = _opts(tmp_path / "b", data_dir, "image", "sigma-genib", 2, init=str(src), warmup=1)
    opts.tokens = 4
    notes = []
    entry = train(opts, log=notes.append)
    assert any("warm start" in n and "resampled" in n for n in notes)
    assert f"--init {src}" in entry["command"] and "--warmup 1" in entry["command"]
    assert entry["train"]["init"] == str(src) and entry["tokens"] == 4
    assert entry["train"]["init_sha256"] == json.loads((tmp_path / "a" / "ck" / "manifest.json").read_text())[
        "checkpoints"]["image-sigma-genib-s8"]["sha256"]  # the file it started from, by hash


def test_an_init_name_is_looked_up_beside_out_and_a_missing_one_says_where(tmp_path, data_dir):
    from unitocom.errors import UserError
    train(_opts(tmp_path / "a", data_dir, "text", "sigma-genib", 2), log=lambda s: None)  # a/ck/text.safetensors
    opts = _opts(tmp_path / "a", data_dir, "text", "sigma-genib", 2, init="text", warmup=1)
    opts.out, opts.run_dir = str(tmp_path / "a" / "ck" / "again.safetensors"), str(tmp_path / "a" / "run2")
    assert "--init text" in train(opts, log=lambda s: None)["command"]  # its sibling in ck/
    opts.out, opts.run_dir = str(tmp_path / "elsewhere" / "again.safetensors"), str(tmp_path / "run3")
    with pytest.raises(UserError, match=r"--init text: .*elsewhere.* does not exist .*beside --out"):
        train(opts, log=lambda s: None)


@pytest.mark.gpu
@pytest.mark.parametrize("modality", ["image", "text"])
def test_training_on_cuda_writes_the_same_checkpoint_format_and_resumes(tmp_path, data_dir, modality):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    entry = train(_opts(tmp_path, data_dir, modality, "sigma-genib", 4, compute=TrainCompute(device="cuda")),
                  log=lambda s: None)
    assert "--device cuda" in entry["command"]
    m = load(tmp_path / "ck" / f"{modality}.safetensors")  # loads on the CPU like any other
    assert next(m.parameters()).device.type == "cpu"
    opts = _opts(tmp_path, data_dir, modality, "sigma-genib", 6, compute=TrainCompute(device="cuda"))
    notes = []
    train(opts, log=notes.append)
    assert any("resumed" in n and "step 4" in n for n in notes)
