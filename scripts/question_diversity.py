#!/usr/bin/env python3
"""How many typed questions a text link reads at 0 dB if the question is sent k times over independent Rayleigh
fades and the copies are combined by maximum-ratio combining (MRC): the probe, in process, that said the scheme was
worth building (issue 12, VQA at 0 dB). The request path has it since: the link option text_copies
(`unitocom.link.diversity`), measured through the services by `reproduce_results.sh text-copies`.

    .venv/bin/python scripts/question_diversity.py --n 1000 --snr-db 0,3,4.8 --copies 1,2,3

Each question's symbols (T's output, at power P) cross k block fades h_1..h_k with noise of N0 each; MRC gives
sum_k h_k* y_k / sqrt(sum |h_k|^2) = sqrt(G) z + n with G = sum |h_k|^2, which the link's LMMSE equaliser and R then
read as one stream of gain sqrt(G). k copies cost k times the question's channel uses (about 72 for a question,
beside the image's 256), and k times its energy: one copy at 10 log10(k) dB more is the same energy without the
diversity, the comparison that says which of the two helps. Read exactly by the argmax and with the staged language
prior. Val questions, so that the
test split stays for the services. Writes results/question-diversity.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def reads(link, prior, ids: list[list[int]], snr_db: float, copies: int, seed: int) -> tuple[list[bool], list[bool]]:
    """Per question, read exactly by the argmax and by the prior, after MRC of `copies` independent fades."""
    from unitocom.models.channel_torch import equalize, noise_variance
    from unitocom.train.data import TextBatches
    batch = TextBatches.pad(ids)
    x, mask = batch["x"], batch["mask"]
    gen = torch.Generator().manual_seed(seed)
    n = len(ids)
    with torch.no_grad():
        mu, _ = link.tokenize(x, mask)
        snr = torch.full((n,), float(snr_db))
        z = link.modulate(mu, snr, mask)
        n0 = noise_variance(snr)
        g = torch.randn(n, copies, 2, generator=gen) / 2 ** 0.5
        gain = (g ** 2).sum((1, 2))  # G = sum_k |h_k|^2
        w = torch.randn(*z.shape, 2, generator=gen) * torch.sqrt(n0 / 2)[:, None, None]
        h = torch.sqrt(gain)[:, None].to(z.dtype).expand_as(z)
        z_hat, sinr = equalize(h * z + torch.complex(w[..., 0], w[..., 1]), h, n0)
        log_q = link.detokenize(link.demodulate(z_hat, sinr), mask).log_softmax(-1)
    by_argmax = [log_q[i, :len(r)].argmax(-1).tolist() == r for i, r in enumerate(ids)]
    by_prior = [prior.decode(log_q[i, :len(r)]) == r for i, r in enumerate(ids)]
    return by_argmax, by_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="val questions, spread over the split")
    ap.add_argument("--snr-db", default="0", help="mean SNRs (dB) of each copy's Rayleigh channel, comma-separated")
    ap.add_argument("--copies", default="1,2,3", help="numbers of copies to combine, comma-separated")
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--link", default="checkpoints/next/text-sigma-genib.safetensors")
    ap.add_argument("--prior", default="checkpoints/next/text-prior.safetensors")
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    from unitocom.fig2 import make_header
    from unitocom.models.text_prior import load as load_prior
    from unitocom.models.text_tokenizer import encode_text, load_bpe
    from unitocom.models.token_link import load as load_link
    from unitocom.results import wilson
    from unitocom.task_eval import vqa_items
    from unitocom.train.provenance import file_sha256
    torch.set_num_threads(2)
    link, prior = load_link(args.link), load_prior(args.prior)
    bpe = load_bpe(ROOT / "checkpoints" / link.spec.bpe)
    items, _ = vqa_items(Path(args.data), "val", args.n)
    ids = [encode_text(bpe, q["question"])[: link.spec.tokens] for q in items]
    uses = sum(map(len, ids)) / len(ids) * link.spec.uses_per_token
    points = []
    for snr, k in ((float(s), int(c)) for s in args.snr_db.split(",") for c in args.copies.split(",")):
        a, p = reads(link, prior, ids, snr, k, seed=k)
        row = {"copies": k, "snr_db": snr, "channel": "rayleigh", "n": len(ids),
               "channel_uses_per_question": round(k * uses, 1)}
        for name, hits in (("argmax", a), ("prior", p)):
            row[f"read_{name}"] = sum(hits) / len(hits)
            row[f"read_{name}_ci"] = list(wilson(sum(hits), len(hits)))
        points.append(row)
        print(f"{snr:g} dB, {k} cop{'y' if k == 1 else 'ies'} ({row['channel_uses_per_question']:.0f} channel uses a "
              "question): "
              f"read exactly {row['read_argmax']:.3f} by argmax, {row['read_prior']:.3f} with the prior")
    header = make_header(["question-diversity"] + sys.argv[1:], {"data": args.data, "n": args.n},
                         ROOT / "checkpoints")
    header.update(format="unitocom-results/question-diversity/1",
                  command="scripts/question_diversity.py " + " ".join(sys.argv[1:]),
                  link_sha256=file_sha256(Path(args.link)), prior_sha256=file_sha256(Path(args.prior)))
    path = Path(args.out) / "question-diversity.json"
    path.write_text(json.dumps({"header": header, "points": points}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
