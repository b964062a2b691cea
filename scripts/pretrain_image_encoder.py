#!/usr/bin/env python3
"""Pretrain an MLLM's image encoder on the object slots alone: `unitocom train image-encoder` under this script's
older options (--mllm for --init, --out for the file), kept because results/ and run records name it.

    .venv/bin/python scripts/pretrain_image_encoder.py --steps 6000 --out runs/encoder/pretrained.safetensors

runs `unitocom train image-encoder --init checkpoints/mllm-sigma-genib.safetensors --steps 6000 --run-dir
runs/encoder/pretrained-run` and copies the result to --out. Every other option is the command's
(`unitocom train image-encoder --help`).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    ap.add_argument("--mllm", default="checkpoints/mllm-sigma-genib.safetensors", help="the MLLM to add it to")
    ap.add_argument("--out", default="runs/encoder/pretrained.safetensors")
    args, rest = ap.parse_known_args(argv)
    out = Path(args.out)
    run = out.with_name(out.stem + "-run")
    from unitocom.cli import main as cli
    argv = ["train", "image-encoder", "--init", args.mllm, *rest, "--run-dir", str(run)]
    sys.argv = ["unitocom", *argv]  # the checkpoint records the command it ran
    rc = cli(argv)
    if rc == 0:
        shutil.copyfile(run / "mllm.safetensors", out)
        print(f"copied to {out}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
