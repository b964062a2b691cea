"""Validation figures of a TokenLink on fixed data through the differentiable channel (no gradients).

The deterministic path is scored (mu is what the services transmit): image PSNR (dB, 8-bit), audio log-mel
distance (dB RMS, in the mel domain, before the Griffin-Lim inversion, floored 80 dB below the peak), text token accuracy and exact match; for every modality the cosine similarity of R's output and the sent
token (`token_cos`, the one-token-space check).
"""
from __future__ import annotations

import torch

from unitocom.models.channel_torch import TorchChannelSpec
from unitocom.models.token_link import TokenLink, token_cosine
from unitocom.models.vit_tokenizer import psnr_db

VAL_SNRS_DB: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 20.0)


@torch.no_grad()
def figures(model: TokenLink, batch: dict, snr_db: float, channel: TorchChannelSpec, seed: int = 1234,
            chunk: int = 128) -> dict[str, float]:
    """Mean figures over `batch` ({"x", "mask"?}) at one SNR; the channel draws come from `seed`."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    x_all, m_all = batch["x"].to(dev), None if batch.get("mask") is None else batch["mask"].to(dev)
    sums: dict[str, float] = {}
    n = x_all.shape[0]
    for i in range(0, n, chunk):
        x = x_all[i: i + chunk]
        mask = None if m_all is None else m_all[i: i + chunk]
        mu, _ = model.tokenize(x, mask)
        snr = torch.full((x.shape[0],), float(snr_db), device=dev)
        t_hat = model.through_channel(mu, snr, channel, gen, mask)
        x_hat = model.detokenize(t_hat, mask)
        m = model.spec.modality
        if m == "image":
            vals = {"psnr_db": psnr_db(x, x_hat)}
        elif m == "audio":  # back to dB; silence floored 80 dB below each chunk's peak, as in the evaluation
            from unitocom.models.audio_tokenizer import mel_distance_db
            sp = model.spec
            vals = {"mel_distance_db": mel_distance_db(x * sp.db_std + sp.db_mean, x_hat * sp.db_std + sp.db_mean)}
        else:
            ok = (x_hat.argmax(-1) == x) | ~mask
            vals = {"token_accuracy": (ok & mask).sum(1).float() / mask.sum(1), "exact_match": ok.all(1).float()}
        # one token space: how close R's output is to the token that was sent
        vals["token_cos"] = token_cosine(mu if mask is None else mu * mask[..., None],
                                         t_hat if mask is None else t_hat * mask[..., None])
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    model.train(was_training)
    return {k: v / n for k, v in sums.items()}


def sweep(model: TokenLink, batch: dict, snrs_db=VAL_SNRS_DB, channels=("awgn", "rayleigh"), seed: int = 1234
          ) -> dict[str, dict[str, float]]:
    """{"awgn@10dB": {"psnr_db": ...}, ...} over channels x SNRs."""
    out = {}
    for ch in channels:
        for snr in snrs_db:
            out[f"{ch}@{snr:g}dB"] = figures(model, batch, snr, TorchChannelSpec(model=ch), seed)
    return out
