"""Audio tokenizer F_a and de-tokenizer F_a^-1 on log-mel spectrograms, with a fixed Griffin-Lim inversion.

Waveform at the preset rate -> STFT (Hann, `n_fft`, hop `hop`) -> power -> `mels` triangular mel bands (HTK
scale, 0 Hz .. Nyquist) -> dB (floor -100 dB) -> standardised with the training set's mean and std -> chunks of
`chunk_frames` frames. Each chunk -> groups of chunk_frames / S_a frames -> Transformer -> S_a time-aligned tokens;
the de-tokenizer mirrors it back to a log-mel chunk.

Back to a waveform (fixed, not learned, documented here): dB -> power -> linear-frequency power by a
non-negative least-squares fit through the mel matrix (100 multiplicative updates) -> magnitude -> 32 iterations of fast Griffin-Lim (momentum
0.99, Perraudin et al. 2013) from zero phase -> iSTFT. Deterministic: the same spectrogram gives the same wave.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from unitocom.models.transformer import AlignedDecoder, AlignedEncoder

DB_FLOOR = -100.0
GRIFFIN_LIM_ITERS = 32
GRIFFIN_LIM_MOMENTUM = 0.99
NNLS_ITERS = 100


def mel_filterbank(rate_hz: int, n_fft: int, mels: int) -> np.ndarray:
    """HTK triangular filters, float32 [mels, n_fft/2 + 1], unnormalised (peak 1)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0.0, rate_hz / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(rate_hz / 2.0), mels + 2))
    fb = np.zeros((mels, freqs.size), np.float32)
    for i in range(mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down))
    return fb


class MelFrontend:
    """Fixed waveform <-> log-mel transforms (no parameters to learn)."""

    def __init__(self, rate_hz: int, n_fft: int, hop: int, mels: int):
        self.rate_hz, self.n_fft, self.hop, self.mels = rate_hz, n_fft, hop, mels
        self.window = torch.hann_window(n_fft)
        self.fb = torch.from_numpy(mel_filterbank(rate_hz, n_fft, mels))  # [M, F]

    def frames(self, samples: int) -> int:
        return samples // self.hop

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """wave [T] or [B, T] -> mel dB [(B,) T // hop, M]."""
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # [(B,) F, frames]
        mel = torch.matmul(self.fb, power)
        db = 10.0 * torch.log10(mel.clamp_min(10.0 ** (DB_FLOOR / 10.0)))
        return db.transpose(-1, -2)[..., : self.frames(wave.shape[-1]), :]

    def mel_to_linear(self, mel_power: torch.Tensor, iters: int = NNLS_ITERS) -> torch.Tensor:
        """Non-negative least squares fit of linear-frequency power [F, frames] to mel power [M, frames]:
        Lee-Seung multiplicative updates from the normalised transpose (the pseudo-inverse clamped at 0 is
        ~20 dB off; this is ~2 dB)."""
        fb, fbt = self.fb, self.fb.T
        target = torch.matmul(fbt, mel_power)
        x = target / fb.sum(0)[:, None].clamp_min(1e-8)
        for _ in range(iters):
            x = x * target / torch.matmul(fbt, torch.matmul(fb, x)).clamp_min(1e-20)
        return x

    def invert(self, mel_db: torch.Tensor, samples: int, iters: int = GRIFFIN_LIM_ITERS) -> torch.Tensor:
        """mel dB [frames, M] -> wave float32 [samples] (fast Griffin-Lim from zero phase)."""
        power = torch.pow(10.0, mel_db.T / 10.0)  # [M, frames]
        mag = torch.sqrt(self.mel_to_linear(power))  # [F, frames]
        frames_needed = samples // self.hop + 1  # what a centred STFT of `samples` samples has
        if mag.shape[1] < frames_needed:  # the last frame(s) dropped by `logmel`: repeat the final one
            mag = torch.cat([mag, mag[:, -1:].expand(-1, frames_needed - mag.shape[1])], dim=1)
        angles = torch.ones_like(mag, dtype=torch.complex64)
        prev = torch.zeros_like(angles)
        for _ in range(iters):
            wave = torch.istft(mag * angles, self.n_fft, self.hop, window=self.window, center=True, length=samples)
            rebuilt = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
            new = rebuilt - GRIFFIN_LIM_MOMENTUM / (1.0 + GRIFFIN_LIM_MOMENTUM) * prev
            angles = new / new.abs().clamp_min(1e-8)
            prev = rebuilt
        return torch.istft(mag * angles, self.n_fft, self.hop, window=self.window, center=True, length=samples)


def mel_distance_db(ref_db: torch.Tensor, test_db: torch.Tensor, floor_db: float = -80.0) -> torch.Tensor:
    """RMS difference of two log-mel spectrograms [..., frames, M] in dB, both floored at `floor_db` below the
    reference's peak (silence should not dominate): [...]."""
    peak = ref_db.amax(dim=(-1, -2), keepdim=True)
    a = torch.maximum(ref_db, peak + floor_db)
    b = torch.maximum(test_db, peak + floor_db)
    return torch.sqrt(((a - b) ** 2).mean(dim=(-1, -2)))


def frames_per_token(frames: int, tokens: int) -> int:
    if tokens <= 0 or frames % tokens:
        raise ValueError(f"S_a = {tokens} tokens must divide the chunk's {frames} frames")
    return frames // tokens


class AudioTokenizer(nn.Module):
    """standardised log-mel chunk [B, frames, M] -> token features [B, S_a, width]; token i covers frames
    [i * frames/S_a, (i+1) * frames/S_a) (time-aligned tokens, a plain Transformer: `transformer.AlignedEncoder`)."""

    def __init__(self, frames: int, mels: int, tokens: int, width: int, layers: int, heads: int):
        super().__init__()
        self.pf = frames_per_token(frames, tokens)
        self.encoder = AlignedEncoder(tokens, self.pf * mels, width, layers, heads)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        b, f, m = mel.shape
        return self.encoder(mel.reshape(b, f // self.pf, self.pf * m))


class AudioDetokenizer(nn.Module):
    """tokens [B, S_a, d] -> standardised log-mel chunk [B, frames, M]."""

    def __init__(self, frames: int, mels: int, tokens: int, token_dim: int, width: int, layers: int, heads: int):
        super().__init__()
        self.frames, self.mels = frames, mels
        self.decoder = AlignedDecoder(tokens, frames_per_token(frames, tokens) * mels, token_dim, width, layers, heads)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens).reshape(tokens.shape[0], self.frames, self.mels)


def audio_distortion(mel: torch.Tensor, mel_hat: torch.Tensor, obs_var: float) -> torch.Tensor:
    """SSE over the standardised log-mel chunk / (2 obs_var): [B] nats."""
    return ((mel_hat - mel) ** 2).flatten(1).sum(1) / (2.0 * obs_var)

