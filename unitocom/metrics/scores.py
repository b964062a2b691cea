"""Task scores as the letter reports them: VQA answer accuracy (exact match), WER for ASR, FID for text-to-image
(with the scene checker's features), PSNR / SSIM for reconstructions and the log-mel distance for speech."""
from __future__ import annotations

import numpy as np
import torch

from unitocom.mllm.sequences import normalize


def exact_match(predicted: str, truth: str) -> float:
    return float(normalize(predicted) == normalize(truth))


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over a corpus (jiwer), after the same normalisation the model is trained with.
    An empty hypothesis is all deletions, not an error of the scorer."""
    import jiwer
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    if any(not r for r in refs):
        raise ValueError("a reference transcript is empty")
    errors = sum(jiwer.process_words(r, h).wer * len(r.split()) if h else len(r.split()) for r, h in zip(refs, hyps))
    return errors / sum(len(r.split()) for r in refs)


def logmel_distance_db(reference: np.ndarray, test: np.ndarray | None, fe) -> float:
    """RMS difference in dB between the log-mel spectrograms (`fe`: a MelFrontend at the waves' rate) of a
    reference wave [T] and a received one, floored at -80 dB; lower is better. Compared over the reference's
    length: a missing remainder counts as silence, a longer test is cut. It scores what a listener (and an ASR
    front end) hears, unlike a waveform SNR, which Griffin-Lim's free phase would make meaningless."""
    from unitocom.models.audio_tokenizer import mel_distance_db
    ref = np.ascontiguousarray(reference, np.float32)
    got = np.zeros_like(ref) if test is None else np.asarray(test, np.float32)
    got = np.pad(got[:len(ref)], (0, max(0, len(ref) - len(got))))
    return float(mel_distance_db(fe.logmel(torch.from_numpy(ref)), fe.logmel(torch.from_numpy(got))))


def fid(real_u8: torch.Tensor, fake_u8: torch.Tensor, feature: torch.nn.Module) -> float:
    """Frechet distance between real and generated images, uint8 [N, 3, H, W], in `feature`'s space (torchmetrics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    metric = FrechetInceptionDistance(feature=feature, normalize=False, input_img_size=tuple(real_u8.shape[1:]))
    metric.update(real_u8, real=True)
    metric.update(fake_u8, real=False)
    return float(metric.compute())


def fid_inception(real_u8: torch.Tensor, fake_u8: torch.Tensor, weights_path: str) -> float:
    """FID in Inception-v3's pool features from a local weights file (torchmetrics with torch-fidelity), for a
    user who has them; nothing is downloaded. torch-fidelity needs torchvision, which does not install beside
    the CPU torch of this project's machines, so this path is untested here."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=weights_path)
    except (ImportError, ModuleNotFoundError) as e:
        raise RuntimeError(f"Inception FID needs torch-fidelity and torchvision ({e}); "
                           "the scene-checker FID works without them") from None
    metric.update(real_u8, real=True)
    metric.update(fake_u8, real=False)
    return float(metric.compute())


SSIM_SIGMA = 1.5  # Gaussian window of Wang et al. (2004): sigma 1.5, 11 taps
_SSIM_PAD = 5


def ssim(ref_u8: np.ndarray, test_u8: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two uint8 [H, W, 3] images, channels averaged: Gaussian window (sigma 1.5, 11
    taps), K1 = 0.01, K2 = 0.03, averaged over the windows that lie inside the image, as the reference code and
    `skimage.metrics.structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)` do (torchmetrics'
    own mean also counts the reflect-padded border windows). The map is torchmetrics'."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim_fn
    if ref_u8.shape != test_u8.shape or min(ref_u8.shape[:2]) <= 2 * _SSIM_PAD:
        raise ValueError(f"SSIM needs two images of one shape, at least {2 * _SSIM_PAD + 1} px a side; "
                         f"got {ref_u8.shape} and {test_u8.shape}")
    a = torch.from_numpy(np.array(ref_u8, np.float64)).permute(2, 0, 1)[None] / 255.0
    b = torch.from_numpy(np.array(test_u8, np.float64)).permute(2, 0, 1)[None] / 255.0
    _, full = ssim_fn(b, a, data_range=1.0, sigma=SSIM_SIGMA, return_full_image=True)
    return float(full[..., _SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD].mean())
