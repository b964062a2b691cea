#!/usr/bin/env python3
"""Pretrain an MLLM's image encoder on the object slots alone, before the MLLM reads it (issue 12).

`train mllm --image-encoder 2 --object-slots 1` grows the encoder inside a fine-tune, from scratch at the fine-tune's
learning rate and on its VQA steps only: after 1000 steps its slots read colour at 0.56 and shape at 0.48, where
the probe's reader, taught the objects on every step at 1e-3, read 0.99 and 0.95. This is the two-stage recipe of
BLIP-2 and LLaVA (train what reads the picture, then connect it to the language model): the installed MLLM's
image projection and positions stay frozen, the encoder and the slot head learn to read each received scene's
objects (size, colour, shape, material, centre; left to right) from the same received tokens the MLLM gets, and
the result is written as that MLLM with the encoder added. Its encoder's output projection is still zero, so it
answers exactly as the MLLM it came from; `train mllm --init OUT --object-slots 1` then connects it.

    .venv/bin/python scripts/pretrain_image_encoder.py --steps 6000 --out runs/encoder/pretrained.safetensors
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom import config  # noqa: E402
from unitocom.link.snr import snr_interval_arg  # noqa: E402
from unitocom.mllm import slots  # noqa: E402
from unitocom.mllm.checkpoint import load_links, load_mllm, save_mllm  # noqa: E402
from unitocom.mllm.data import TaskData  # noqa: E402
from unitocom.mllm.model import MLLM  # noqa: E402
from unitocom.models.channel_torch import TorchChannelSpec  # noqa: E402
from unitocom.train.provenance import file_sha256, git_state  # noqa: E402


def with_encoder(src: MLLM, layers: int) -> MLLM:
    """`src` with a fresh image encoder of `layers` layers and a slot head; every tensor of `src` copied."""
    cfg = dataclasses.replace(src.cfg, image_encoder=layers, object_slots=src.cfg.object_slots or slots.SLOTS)
    model = MLLM(cfg)
    state = model.state_dict()
    state.update(src.state_dict())
    model.load_state_dict(state)
    return model


def trainable(model: MLLM) -> list[torch.nn.Parameter]:
    """The encoder's layers and the slot head; the rest (the MLLM, and the encoder's output projection, which
    stays zero so that the MLLM is unchanged) is frozen."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.image_encoder.layers.parameters(), *model.image_encoder.norm.parameters(),
              *model.slots.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


@torch.no_grad()
def reading(model: MLLM, data: TaskData, targets: torch.Tensor, n: int, snr_db: float,
            channel: TorchChannelSpec) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1357)
    rx = data._received_scenes(data.clevr_mu[:n], torch.full((n,), snr_db), channel, gen)
    return slots.reading(model.slots(model.image_features(rx)), targets[:n])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mllm", default="checkpoints/mllm-sigma-genib.safetensors", help="the MLLM to add it to")
    ap.add_argument("--layers", type=int, default=2, help="the encoder's bidirectional layers")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=64, help="scenes a step")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warm-up 100 steps, cosine to 0)")
    ap.add_argument("--snr-db", type=snr_interval_arg, default=(-5.0, 25.0),
                    help="training SNR range LO:HI in dB, drawn per scene (the MLLM's)")
    ap.add_argument("--channel", default="rayleigh")
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--n-val", type=int, default=500, help="val scenes each reading is scored on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/encoder/pretrained.safetensors")
    args = ap.parse_args(argv)
    if args.layers < 1 or args.steps < 1 or args.batch_size < 1:
        ap.error("--layers, --steps and --batch-size are at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from tqdm import tqdm

    src, std, meta = load_mllm(args.mllm)
    if src.cfg.image_encoder:
        ap.error(f"--mllm {args.mllm} has an image encoder already")
    model = with_encoder(src, args.layers)
    params = trainable(model)
    cfg = config.load("tiny")
    # the MLLM's own image link: an encoder taught on another objective's tokens reads noise once connected
    objective = meta.get("objective") or "sigma-genib"
    image_link, _, _, vocab, paths = load_links(cfg, None, objective)
    want = (meta.get("links") or {}).get("image")
    if want and Path(paths["image"]).name != want:
        ap.error(f"--mllm {args.mllm} reads the image link {want}; the {objective} default here is "
                 f"{Path(paths['image']).name}")
    print(f"objective {objective}: image link {paths['image']}")
    size = cfg.preset.image_size_px
    train, val = (TaskData(args.data, split, image_link, None, None, vocab, size) for split in ("train", "val"))
    targets = {split: slots.targets(args.data, split, len(d.clevr_mu)) for split, d in (("train", train),
                                                                                         ("val", val))}
    if targets["train"] is None or targets["val"] is None:
        ap.error(f"--data {args.data}: no scene records to read the objects from")
    channel = TorchChannelSpec(model=args.channel)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(  # warm-up 100 steps, cosine to 0
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    gen = torch.Generator().manual_seed(args.seed)
    lo, hi = args.snr_db
    log, t0 = [], time.time()
    model.train()
    bar = tqdm(range(1, args.steps + 1), desc="encoder", mininterval=5)
    for step in bar:
        idx = torch.randint(len(train.clevr_mu), (args.batch_size,), generator=gen)
        snr = lo + (hi - lo) * torch.rand(args.batch_size, generator=gen)
        with torch.no_grad():
            rx = train._received_scenes(train.clevr_mu[idx], snr, channel, gen)
        loss = slots.loss_per_example(model.slots(model.image_features(rx)), targets["train"][idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            row = {"step": step, "loss": round(loss.item(), 4), "wall_s": round(time.time() - t0, 1)}
            for db in (20.0, 0.0):
                row[f"{db:g}db"] = {k: round(v, 4) for k, v in
                                    reading(model, val, targets["val"], args.n_val, db, channel).items()}
            log.append(row)
            tqdm.write(json.dumps(row))
            model.train()
    model.eval()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "image_encoder_pretraining": {
        "command": " ".join(["scripts/pretrain_image_encoder.py", *sys.argv[1:]]), "git": git_state(),
        "source": args.mllm, "source_sha256": file_sha256(Path(args.mllm)),
        "steps": args.steps, "batch": args.batch_size, "lr": args.lr, "snr_db": [lo, hi], "channel": args.channel,
        "data": args.data, "seed": args.seed, "log": log}}
    save_mllm(model, std, out, meta)
    print(f"wrote {out}: {src.cfg.layers} x {src.cfg.hidden} MLLM + a {args.layers}-layer image encoder; "
          f"val reading at 20 dB: {json.dumps(log[-1]['20db'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
