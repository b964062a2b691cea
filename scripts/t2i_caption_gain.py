#!/usr/bin/env python3
"""How much an MLLM's diffusion head reads the caption: its T2I diffusion loss on val images with their own
caption and with another image's, under the same noise (`unitocom.mllm.train.caption_gain`; training logs it at
every validation as val_t2i_caption_gain). Teacher-forced: a gain here that the generated pictures do not show
(pair recall at chance) points at sampling, not at conditioning.

    .venv/bin/python scripts/t2i_caption_gain.py checkpoints/mllm-sigma-genib.safetensors [--n 256]
"""
from __future__ import annotations

import argparse
import json

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mllm", help="an MLLM checkpoint (mllm-*.safetensors)")
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--n", type=int, default=256, help="val images (one caption each)")
    ap.add_argument("--objective", default="sigma-genib", help="the tokenizers it was trained on")
    args = ap.parse_args(argv)
    from unitocom import config
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import caption_gain
    torch.set_num_threads(1)
    model, std, meta = load_mllm(args.mllm)
    model.eval()
    cfg = config.load(meta.get("preset", "tiny"), image_tokens=int(meta.get("image_tokens") or 0) or None)
    image_link, _, frontend, vocab, _ = load_links(cfg, None, args.objective)
    data = TaskData(args.data, "val", image_link, None, frontend, vocab, cfg.preset.image_size_px, args.n)
    data.image_std = std
    print(json.dumps({"mllm": args.mllm, "n": args.n, **caption_gain(model, data, args.n)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
