"""What reading a text stream with the language prior costs (models.text_prior): per text, the de-tokenizer and
its argmax beside the de-tokenizer and the prior's beam search, on the same received tokens, and how often each
reads the text exactly.

    .venv/bin/python bench/bench_text_prior.py [--prior checkpoints/next/text-prior.safetensors] [--n 200]

Val questions and captions of data/tiny through the installed sigma-GenIB text link over Rayleigh block fading,
one text at a time (as the base station decodes a request), on one thread.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom.data.layouts import clevr_root, coco_annotation_file, read_json  # noqa: E402
from unitocom.models.channel_torch import TorchChannelSpec  # noqa: E402
from unitocom.models.text_prior import load as load_prior  # noqa: E402
from unitocom.models.text_tokenizer import encode_text, load_bpe  # noqa: E402
from unitocom.models.token_link import load as load_link  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default=str(ROOT / "checkpoints/next/text-prior.safetensors"))
    ap.add_argument("--link", default=str(ROOT / "checkpoints/text-sigma-genib.safetensors"))
    ap.add_argument("--data", default=str(ROOT / "data/tiny"))
    ap.add_argument("--n", type=int, default=200, help="val questions, and as many captions")
    ap.add_argument("--snr-db", default="0,20", help="mean SNRs (dB), comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    prior = load_prior(args.prior)
    print(f"prior: {prior.order}-gram of {len(prior.texts)} distinct texts, weight {prior.weight:g}, beam "
          f"{prior.beam}; loaded in {time.perf_counter() - t0:.1f} s")
    link, bpe = load_link(args.link), load_bpe(ROOT / "checkpoints/text-bpe.json")
    qs = read_json(clevr_root(args.data) / "questions" / "CLEVR_val_questions.json")["questions"][: args.n]
    caps = read_json(coco_annotation_file(pathlib.Path(args.data) / "coco", "val"))["annotations"][: args.n]
    sets = {"questions": [q["question"] for q in qs], "captions": [c["caption"].strip() for c in caps]}
    print(f"{'texts':10s} {'SNR':>5s} {'argmax ms':>10s} {'prior ms':>9s} {'ratio':>6s} {'read argmax':>12s} "
          f"{'read prior':>11s}")
    for snr in (float(s) for s in args.snr_db.split(",")):
        for name, texts in sets.items():
            gen = torch.Generator().manual_seed(0)
            cost, hits = {"argmax": 0.0, "prior": 0.0}, {"argmax": 0, "prior": 0}
            for text in texts:
                ids = encode_text(bpe, text)[: link.spec.tokens]
                x = torch.tensor([ids])
                mask = torch.ones_like(x, dtype=torch.bool)
                with torch.no_grad():
                    mu, _ = link.tokenize(x, mask)
                    t_hat = link.through_channel(mu, torch.tensor([snr]), TorchChannelSpec("rayleigh"), gen, mask)
                    t = time.perf_counter()
                    got = link.detokenize(t_hat, mask).argmax(-1)[0].tolist()
                    cost["argmax"] += time.perf_counter() - t
                    hits["argmax"] += got == ids
                    t = time.perf_counter()
                    got = prior.decode(link.detokenize(t_hat, mask).log_softmax(-1)[0])
                    cost["prior"] += time.perf_counter() - t
                    hits["prior"] += got == ids
            ms = {k: 1000 * v / len(texts) for k, v in cost.items()}
            print(f"{name:10s} {snr:5g} {ms['argmax']:10.2f} {ms['prior']:9.2f} {ms['prior'] / ms['argmax']:5.1f}x "
                  f"{hits['argmax'] / len(texts):12.3f} {hits['prior'] / len(texts):11.3f}")


if __name__ == "__main__":
    main()
