"""Task metrics: WER and exact match as defined, FID's behaviour, the committed scene checker's accuracy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unitocom.metrics import scores
from unitocom.metrics.scene_checker import (PAIRS, caption_pairs, evaluate_checker, load_checker, pair_recall,
                                            scene_labels)

CHECKER = Path(__file__).resolve().parents[1] / "checkpoints/scene-checker.safetensors"


def test_wer_counts_substitutions_deletions_and_empty_hypotheses():
    assert scores.wer(["the red cube"], ["the red cube"]) == 0.0
    assert scores.wer(["the red cube"], ["the blue cube"]) == pytest.approx(1 / 3)
    assert scores.wer(["The  RED cube"], ["the red cube"]) == 0.0  # normalised as the model is trained
    assert scores.wer(["a b c d"], [""]) == 1.0
    assert scores.wer(["a b", "c d e f"], ["a b", "c"]) == pytest.approx(3 / 6)


def test_exact_match_is_normalised():
    assert scores.exact_match(" Yes ", "yes") == 1.0 and scores.exact_match("2", "3") == 0.0


def test_caption_pairs_finds_colour_shape_pairs():
    cap = "There is a small red square with a large cyan circle left of it and a brown triangle behind it."
    assert caption_pairs(cap) == {("red", "square"), ("cyan", "circle"), ("brown", "triangle")}
    assert caption_pairs("Two gray squares.") == {("gray", "square")}


def test_pair_recall_is_the_share_of_named_pairs_seen_and_none_without_pairs():
    cap = "A red square and a cyan circle."
    assert pair_recall(cap, {("red", "square"), ("cyan", "circle"), ("gray", "triangle")}) == 1.0
    assert pair_recall(cap, {("red", "square"), ("red", "circle")}) == 0.5  # the colour alone is not the pair
    assert pair_recall(cap, set()) == 0.0
    assert pair_recall("A picture.", {("red", "square")}) is None  # nothing named: not scored, not a zero


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Scenes the checker never saw: another seed, rendered at the preset size."""
    from unitocom.data.presets import data_preset
    from unitocom.data.scenes import render_scene, sample_scene
    p = data_preset("tiny")
    rng = np.random.default_rng(99)
    scenes = [sample_scene(rng, p, "test", i) for i in range(300)]
    images = torch.from_numpy(np.stack([render_scene(s, p.image_size_px) for s in scenes])).permute(0, 3, 1, 2)
    labels = [scene_labels(s) for s in scenes]
    return images.contiguous(), torch.stack([y for y, _ in labels]), torch.tensor([c for _, c in labels])


def test_committed_checker_recognises_fresh_scenes(fresh):
    m = load_checker(CHECKER)
    got = evaluate_checker(m, *fresh)
    # the manifest records 0.99 pair F1 on the val split; the floor leaves room for another seed's scenes
    assert got["pair_f1"] > 0.95 and got["count_accuracy"] > 0.95, got
    assert len(PAIRS) == 24


def test_fid_is_zero_on_identical_sets_and_grows_with_a_shift(fresh):
    m = load_checker(CHECKER)
    images = fresh[0][:200]
    same = scores.fid(images, images.clone(), m)
    shifted = scores.fid(images, (images.float() * 0.5).to(torch.uint8), m)
    assert abs(same) < 1e-2 and shifted > 10 * max(same, 1e-3)


def test_inception_fid_says_what_it_needs_when_it_cannot_run(fresh, tmp_path):
    try:
        import torch_fidelity  # noqa: F401
        pytest.skip("torch-fidelity is installed: the real path would run")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="torch-fidelity"):
        scores.fid_inception(fresh[0][:8], fresh[0][8:16], str(tmp_path / "pt_inception.pth"))


def test_logmel_distance_is_zero_for_the_same_wave_and_counts_what_is_missing():
    from unitocom.models.audio_tokenizer import MelFrontend
    fe = MelFrontend(16000, 512, 256, 64)
    noise = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)  # every band well lit
    assert scores.logmel_distance_db(noise, noise, fe) == pytest.approx(0.0, abs=1e-4)
    assert scores.logmel_distance_db(noise, np.concatenate([noise, noise]), fe) == pytest.approx(0.0, abs=1e-4)
    half = scores.logmel_distance_db(noise, noise[:8000], fe)  # the missing half counts as silence
    none = scores.logmel_distance_db(noise, None, fe)
    quieter = scores.logmel_distance_db(noise, noise * 10 ** (-6 / 20), fe)  # 6 dB in every band
    assert quieter == pytest.approx(6.0, abs=0.1)
    assert 6.0 < half < none


def test_ssim_equals_scikit_image_on_a_fixture_scene():
    """SSIM as the reference code defines it (Gaussian window, valid windows only): scikit-image's own, on a
    CLEVR fixture image at 32 px (the preset size) and 64 px, against a noisy and a blurred copy."""
    from PIL import Image, ImageFilter
    from skimage.metrics import structural_similarity
    path = Path(__file__).resolve().parent / "fixtures/clevr/CLEVR_v1.0/images/train/CLEVR_train_000000.png"
    rng = np.random.default_rng(0)
    for size in (32, 64):
        im = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
        ref = np.asarray(im)
        noisy = np.clip(ref + rng.normal(0, 20, ref.shape), 0, 255).astype(np.uint8)
        blurred = np.asarray(im.filter(ImageFilter.GaussianBlur(1.5)))
        assert scores.ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
        for test in (noisy, blurred):
            want = structural_similarity(ref, test, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=255)
            assert scores.ssim(ref, test) == pytest.approx(want, abs=1e-9)
            assert 0.0 < want < 0.99
    with pytest.raises(ValueError):
        scores.ssim(ref[:8, :8], ref[:8, :8])
