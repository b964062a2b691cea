"""`unitocom evaluate-link` and `unitocom variance-collapse` on small untrained checkpoints and a few scenes."""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import need
from tests.test_learned import small_checkpoints  # noqa: F401  (fixture)
from unitocom import config, link_eval

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from unitocom.data.make import make_dataset
    from unitocom.data.speech import tools_missing
    d = tmp_path_factory.mktemp("evaldata")
    make_dataset(d, "tiny", seed=5, scenes=30, clips=6, speech=not tools_missing(), workers=1, progress=False,
                 log=lambda s: None)
    return d


def test_image_sweep_rows_csv_and_plot(small_checkpoints, data_dir, tmp_path):  # noqa: F811
    import shutil
    shutil.copy(Path(__file__).resolve().parents[1] / "checkpoints" / "scene-checker.safetensors", small_checkpoints)
    cfg = config.load("tiny")
    rows = link_eval.run("image", ["unitocom", "vae", "traditional"], ["awgn", "rayleigh"], [0.0, 30.0], data_dir,
                        "train", count=4, traditional_count=2, tokens=[None], seed=0, cfg=cfg, log=lambda s: None)
    assert len(rows) == 3 * 2 * 2
    by = {(r["scheme"], r["channel"], r["snr_db"]): r for r in rows}
    assert by[("sigma-genib", "awgn", 0.0)]["channel_uses"] == 256 and by[("vae", "awgn", 0.0)]["items"] == 4
    trad = by[("traditional", "awgn", 30.0)]
    assert trad["decoded_frac"] == 1.0 and trad["channel_uses"] > 256 and trad["mean"] > 20
    assert by[("traditional", "awgn", 0.0)]["decoded_frac"] == 0.0  # 16-QAM rate 1/2 LDPC at 0 dB: the cliff
    # the checker recognises the scenes in decoded JPEGs, and nothing in the mid-grey a broken one becomes
    assert trad["pair_f1"] > 0.8 and trad["count_acc"] > 0.8
    assert by[("traditional", "awgn", 0.0)]["pair_f1"] < 0.2
    # SSIM beside PSNR: the decoded JPEG keeps the structure the mid-grey stand-in for a broken one lacks
    assert trad["ssim"] > 0.5 and trad["ssim"] > by[("traditional", "awgn", 0.0)]["ssim"]
    assert all(-1.0 <= r["ssim"] <= 1.0 for r in rows)
    # cos(t_hat, t) for the token schemes (these small links are untrained: only its range); none for the bit pipe
    for sch in ("sigma-genib", "vae"):
        assert all(-1.0 <= by[(sch, ch, snr)]["token_cos"] <= 1.0 for ch in ("awgn", "rayleigh") for snr in (0.0, 30.0))
    assert math.isnan(trad["token_cos"])
    link_eval.write_csv(rows, tmp_path / "image.csv")
    link_eval.plot(rows, tmp_path / "image.png", "test")
    with open(tmp_path / "image.csv") as f:
        got = list(csv.DictReader(f))
    assert len(got) == len(rows) and {"scheme", "snr_db", "mean", "ssim", "channel_uses", "decoded_frac", "pair_f1"} <= set(got[0])
    assert (tmp_path / "image.png").stat().st_size > 10_000


def test_audio_sweep(small_checkpoints, data_dir):  # noqa: F811
    need((data_dir / "LibriSpeech").exists(), "no speech (espeak-ng missing)")
    rows = link_eval.run("audio", ["unitocom"], ["awgn"], [10.0], data_dir, "train", count=2, traditional_count=0,
                        tokens=[None], seed=0, cfg=config.load("tiny"), log=lambda s: None)
    (r,) = rows
    assert r["metric"] == "mel_distance_db" and np.isfinite(r["mean"]) and r["mean"] > 0


def test_variance_collapse_statistics(small_checkpoints):  # noqa: F811
    x = torch.rand(40, 3, 32, 32)
    vae = link_eval.latent_statistics("image-vae-s32", x)
    sig = link_eval.latent_statistics("image-sigma-genib-s32", x)
    assert vae["units"] == sig["units"] == 32 * 16
    assert vae["posterior_var"].shape == (512,) and np.all(vae["posterior_var"] > 0)
    assert np.allclose(sig["posterior_var"], config.load("tiny").preset.tokenizer.c_sigma)
    assert 0 <= vae["active_units"] <= 512


def test_cli_registers_evaluate_link_and_variance_collapse():
    p = argparse.ArgumentParser()
    link_eval.add_subparser(p.add_subparsers())
    a = p.parse_args(["evaluate-link", "--modality", "image", "--snr-db=-10:25:5", "--tokens", "16,32"])
    assert a.func is link_eval._evaluate and a.tokens == "16,32" and a.snr_db == [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0,
                                                                                  20.0, 25.0]
    a = p.parse_args(["variance-collapse", "--checkpoints", "image-vae-s32"])
    assert a.func is link_eval._variance
