"""`unitocom train text-prior`: the language prior the base station reads text streams with (models.text_prior).

Fitting is counting: the training split's texts (captions, questions, transcripts: what the BPE learnt on) as BPE
ids. The prior's weight is then chosen on the val split: its questions and captions go through a text link over
Rayleigh block fading at a low SNR (0 dB: where the argmax misreads most), and the weight that reads the most of
them exactly wins. Random id strings of the questions' lengths are read too and reported: what the prior costs a
text unlike the corpus. About a minute on one core.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

DEFAULT_WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.7, 1.0)  # 0: the argmax, as a reference row


def random_texts(like: list[list[int]], vocab: int, seed: int) -> list[list[int]]:
    """Uniformly random ids 1..V-1 with the lengths of `like`: texts unlike the corpus, as the links are trained on
    (`train.data.TextBatches`), to show what the prior costs them."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab, (len(r),), generator=gen).tolist() for r in like]


def read_rates(link, prior, ids: list[list[int]], weights, snr_db: float, seed: int) -> dict[str, float]:
    """Share of the texts `ids` read back exactly through `link` over Rayleigh block fading at snr_db, for each
    prior weight (0: each id's argmax). One channel draw per text, the same for every weight."""
    from unitocom.models.channel_torch import TorchChannelSpec
    from unitocom.train.data import TextBatches
    batch = TextBatches.pad(ids)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mu, _ = link.tokenize(batch["x"], batch["mask"])
        t_hat = link.through_channel(mu, torch.full((len(ids),), float(snr_db)), TorchChannelSpec("rayleigh"), gen,
                                     batch["mask"])
        log_q = link.detokenize(t_hat, batch["mask"]).log_softmax(-1)
    out = {}
    for w in weights:
        prior.weight = float(w)
        hits = sum((log_q[i, :len(r)].argmax(-1).tolist() if w == 0 else prior.decode(log_q[i, :len(r)])) == r
                   for i, r in enumerate(ids))
        out[f"{w:g}"] = round(hits / len(ids), 4)
    return out


def fit(data_dir: str, out: Path, order: int, weights, beam: int, link_name: str, snr_db: float, count: int,
        command: str, progress=print) -> dict:
    from unitocom.data.layouts import clevr_root, coco_annotation_file, read_json
    from unitocom.data.make import dataset_checksum
    from unitocom.models.text_prior import NgramPrior
    from unitocom.models.text_tokenizer import encode_text, load_bpe
    from unitocom.models.token_link import load
    from unitocom.train.data import text_corpus
    from unitocom.train.provenance import file_sha256, manifest_entry
    t0 = time.time()
    folder = out.parent
    bpe_path = folder / "text-bpe.json"
    if not bpe_path.exists():
        raise FileNotFoundError(f"{bpe_path}: the prior counts the ids of the BPE beside it; train a text link "
                                f"into {folder} first (`unitocom train tokenizer --modality text`)")
    link_path = folder / f"{link_name}.safetensors"
    if not link_path.exists():
        raise FileNotFoundError(f"{link_path}: the weight is chosen by reading val texts through this link")
    bpe, link = load_bpe(bpe_path), load(link_path)
    corpus = text_corpus(data_dir, "train")
    progress(f"counting {len(corpus)} training texts as {order}-grams")
    prior = NgramPrior.fit([encode_text(bpe, t)[: link.spec.tokens] for t in corpus], bpe.get_vocab_size(), order,
                           beam=beam)
    qs = read_json(clevr_root(data_dir) / "questions" / "CLEVR_val_questions.json")["questions"]
    caps = read_json(coco_annotation_file(Path(data_dir) / "coco", "val"))["annotations"]
    val = {"questions": [q["question"] for q in qs[:: max(1, len(qs) // count)][:count]],
           "captions": [c["caption"].strip() for c in caps[:: max(1, len(caps) // count)][:count]]}
    progress(f"choosing the weight on {count} val questions, captions and random id strings through {link_name} at {snr_db:g} dB "
             "Rayleigh")
    val = {k: [encode_text(bpe, t)[: link.spec.tokens] for t in v] for k, v in val.items()}
    val["random ids"] = random_texts(val["questions"], bpe.get_vocab_size(), seed=0)
    rates = {k: read_rates(link, prior, v, weights, snr_db, seed=0) for k, v in val.items()}
    score = {w: rates["questions"][w] + rates["captions"][w] for w in rates["questions"]}
    best = max((w for w in score if float(w) > 0), key=lambda w: score[w])
    prior.weight = float(best)
    meta = {"bpe": bpe_path.name, "bpe_sha256": file_sha256(bpe_path), "texts": len(corpus),
            "distinct_texts": len(prior.texts), "data_dir": str(data_dir), "data_checksum": dataset_checksum(data_dir)}
    out.parent.mkdir(parents=True, exist_ok=True)
    prior.save(out, meta)
    validation = {"split": "val", "link": link_name, "link_sha256": file_sha256(link_path), "channel": "rayleigh",
                  "snr_db": snr_db, "count": count, "exact_read_by_weight": rates, "chosen_weight": prior.weight}
    manifest_entry(out, {"command": command, "seed": 0, **meta, "order": order, "beam": beam,
                         "weight": prior.weight, "validation": validation, "wall_s": round(time.time() - t0, 1)})
    progress(f"weight {best}: val read exactly " + ", ".join(
        f"{rates[k][best]} of {k} (argmax {rates[k]['0']})" for k in rates))
    progress(f"wrote {out} and its entry in {out.parent / 'manifest-tasks.json'}")
    return validation


def add_train_command(sub) -> None:
    from unitocom.config import checkpoint_dir
    p = sub.add_parser(
        "text-prior", help="the language prior the base station reads text streams with (an n-gram of the corpus)",
        description="Count the training split's texts as an n-gram of BPE ids (interpolated Witten-Bell) and choose "
                    "its weight on val texts read through a text link at a low SNR. A base station reads every "
                    "whole text stream with it when text-prior.safetensors is beside its checkpoints: the best "
                    "text of the stream's length under log q(x|t_hat) + weight * log P(x), by beam search. It reads "
                    "texts like the corpus better where the channel leaves doubt, and pulls texts unlike the corpus "
                    "towards it there. Writes OUT and its entry in manifest-tasks.json beside it. The default OUT "
                    "installs it: base stations started afterwards read every text with it (the project's own prior "
                    "is installed, `train all`'s text-prior step; checkpoints/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="data/tiny", help="data set whose training texts are counted")
    p.add_argument("--out", default=str(checkpoint_dir() / "text-prior.safetensors"),
                   help="the prior's file; its folder holds the BPE (text-bpe.json) and the --link checkpoint")
    p.add_argument("--order", type=int, default=5, help="n of the n-gram (ids of context + 1)")
    p.add_argument("--beam", type=int, default=16, help="texts the decoder keeps at each position")
    p.add_argument("--weights", default=",".join(f"{w:g}" for w in DEFAULT_WEIGHTS), metavar="W,...",
                   help="prior weights tried on val (0, the argmax, is reported and never chosen)")
    p.add_argument("--link", default="text-sigma-genib", help="the text link val texts are read through")
    p.add_argument("--snr-db", type=float, default=0.0, help="val SNR in dB (Rayleigh block fading)")
    p.add_argument("--count", type=int, default=500, help="val questions, and as many captions")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    import math

    from unitocom.data.layouts import require_data
    from unitocom.train.provenance import recorded_command
    require_data(args.data)
    try:
        weights = [float(w) for w in args.weights.split(",") if w.strip()]
    except ValueError:
        print(f"error: --weights must be numbers separated by commas, got {args.weights!r}", file=sys.stderr)
        return 2
    bad = [w for w in weights if not (math.isfinite(w) and w >= 0)]
    if bad or not any(w > 0 for w in weights) or args.order < 1 or args.beam < 1 or args.count < 1:
        print("error: --weights must hold a positive finite weight (and none negative); --order, --beam and "
              "--count must be >= 1", file=sys.stderr)
        return 2
    if not math.isfinite(args.snr_db):
        print(f"error: --snr-db must be finite, got {args.snr_db}", file=sys.stderr)
        return 2
    fit(args.data, Path(args.out), args.order, weights, args.beam, args.link, args.snr_db, args.count,
        recorded_command())
    return 0
