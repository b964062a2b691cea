"""What learned successive interference cancellation leaves for the user decoded second: two speech users
superposed over Rayleigh block fading (shares 0.8 / 0.2, the services' default), decoded with
`link.multiaccess.sic` and the services' learned receiver, against the same user with the first user's sent
signal subtracted (a genie) and alone in the channel with the same gains and noise.

    .venv/bin/python scripts/sic_residual.py --pairs 4

Per pair: the order, each user's SINR as SIC computes it, and cos(t_hat, t) of the second user's tokens against
its own clean tokens (R on its noiseless symbols) after learned SIC, after the genie's, alone, and against the
first user's clean tokens. In-process: no services, the installed checkpoints.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from unitocom import config
from unitocom.config import noise_variance
from unitocom.link import multiaccess as ma
from unitocom.link.channel import FadingChannel
from unitocom.messages import LinkSettings, Modality
from unitocom.models.token_link import token_cosine
from unitocom.options import Channel, Scheme
from unitocom.schemes import learned
from unitocom.stages.request import SourcePayload, validate_link
from unitocom.task_eval import speech_items


def cos(t_hat: torch.Tensor, t: torch.Tensor) -> float:
    """cos(t_hat, t) as the README's tables measure it (`token_link.token_cosine`: the clip's tokens flattened),
    over the shorter clip's chunks."""
    n = min(len(t_hat), len(t))
    return float(token_cosine(t[None, :n].float(), t_hat[None, :n].float())[0])


def measure_pair(clips: list[Path], pair: int, snr_db: float, cfg) -> dict:
    """Two clips superposed (seeded by `pair`) -> the SIC order, SINRs and the second user's cosines."""
    link = LinkSettings(scheme=Scheme.UNITOCOM, snr_db=snr_db, channel=Channel.RAYLEIGH)
    spec, nv, powers = validate_link(link, cfg), noise_variance(snr_db), ma.default_powers(2)
    encs = []
    for k, path in enumerate(clips):
        wave, rate = sf.read(path, dtype="float32")
        encs.append(learned.encode(k, SourcePayload(Modality.AUDIO, wave, rate), link, cfg))
    clean = [learned.decode_with_tokens(e.header, e.symbols, np.ones(len(e.symbols), np.complex64), 1e-6,
                                        False, cfg)[1] for e in encs]
    # the channel's way (stages.multiuser): each device's symbols at power P, sqrt(p_k) in its gain
    gains = [FadingChannel(spec, snr_db, (pair, k)).gains(len(e.symbols))[0] * np.sqrt(powers[k])
             for k, e in enumerate(encs)]
    n = max(len(e.symbols) for e in encs)
    rng = np.random.default_rng(pair)
    noise = (rng.standard_normal((n, 2)) @ np.array([1.0, 1j])) * np.sqrt(nv / 2)
    y = ma.superpose([e.symbols for e in encs], gains, noise)
    got = {}

    def decode(k, yk, gk, nvk):
        _, got[k] = learned.decode_with_tokens(encs[k].header, yk, gk, nvk, False, cfg)
        return learned.remodulate(encs[k].header, got[k], snr_db)
    steps = ma.sic(y, gains, nv, decode)
    first, second = sorted(range(2), key=lambda k: steps[k].order)
    n2 = len(encs[second].symbols)
    genie = y.copy()
    genie[: len(encs[first].symbols)] -= gains[first] * encs[first].symbols
    alone = gains[second] * encs[second].symbols + noise[:n2]
    g2 = gains[second].astype(np.complex64)
    t_genie = learned.decode_with_tokens(encs[second].header, genie[:n2].astype(np.complex64), g2, nv, False, cfg)[1]
    t_alone = learned.decode_with_tokens(encs[second].header, alone.astype(np.complex64), g2, nv, False, cfg)[1]
    return {"first": first, "second": second, "sinr_db": [steps[k].sinr_db for k in range(2)],
            "cos_sic": cos(got[second], clean[second]), "cos_genie": cos(t_genie, clean[second]),
            "cos_alone": cos(t_alone, clean[second]), "cos_first": cos(got[second], clean[first])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/tiny-seed77-speech", help="a data set with test speech")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--snr-db", type=float, default=20.0)
    args = ap.parse_args()
    cfg = config.load("tiny")
    items = speech_items(Path(args.data), "test", 2 * args.pairs)
    print("pair  order (SINR dB)       second user's cos: learned SIC  genie  alone  | vs the first user's")
    for pair in range(args.pairs):
        r = measure_pair([path for path, _ in items[2 * pair: 2 * pair + 2]], pair, args.snr_db, cfg)
        f, s2 = r["first"], r["second"]
        print(f"{pair:4d}  user {f} ({r['sinr_db'][f]:5.1f}), user {s2} ({r['sinr_db'][s2]:5.1f})"
              f"            {r['cos_sic']:.3f}  {r['cos_genie']:.3f}  {r['cos_alone']:.3f}  | {r['cos_first']:.3f}")


if __name__ == "__main__":
    main()
