"""Base-station MLLM throughput: prefill tokens/s, and generation tokens/s with and without the KV cache.

    .venv/bin/python bench/bench_mllm.py [--preset tiny] [--prompt 40] [--new 32] [--batch 1] [--threads 2]

Without the cache every new token re-runs the whole sequence (quadratic); with it, one position per step.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from unitocom import config  # noqa: E402
from unitocom.mllm.model import MLLM, MLLMConfig, count_parameters  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--layers", type=int, default=None, help="override the preset's depth (a mid-size model)")
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--prompt", type=int, default=40, help="prompt length (e.g. 3 specials + 32 image tokens + question)")
    ap.add_argument("--new", type=int, default=32, help="tokens to generate")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny ops on a shared 2-core machine spin with more)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = config.load(args.preset).preset
    cfg = MLLMConfig.from_preset(p, vocab=1034)
    if args.layers or args.hidden:
        cfg = MLLMConfig(**{**cfg.__dict__, "layers": args.layers or cfg.layers, "hidden": args.hidden or cfg.hidden,
                            "intermediate": int(2.7 * (args.hidden or cfg.hidden))})
    model = MLLM(cfg).eval().to(args.device)
    prefix = torch.randn(args.batch, args.prompt, cfg.hidden, device=args.device)
    eos = 10 ** 6  # never produced: every run generates exactly --new tokens

    with torch.no_grad():
        prefill = timed(lambda: model.hidden(prefix), args.repeats)
        gen_cache = timed(lambda: model.generate_text(prefix, args.new, eos, use_cache=True), args.repeats)
        gen_full = timed(lambda: model.generate_text(prefix, args.new, eos, use_cache=False), max(1, args.repeats // 2))
    toks = args.batch * args.new
    print(f"MLLM {args.preset}: {cfg.layers} layers x {cfg.hidden}, {count_parameters(model) / 1e6:.2f}M parameters, "
          f"batch {args.batch}, prompt {args.prompt}, {args.new} new tokens, {args.threads} threads, {args.device}")
    print(f"{'phase':28s} {'tokens/s':>10s}")
    print(f"{'prefill':28s} {args.batch * args.prompt / prefill:10.0f}")
    print(f"{'generate, KV cache':28s} {toks / gen_cache:10.0f}")
    print(f"{'generate, full recompute':28s} {toks / gen_full:10.0f}")
    print(f"KV cache speed-up: {gen_full / gen_cache:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
