"""Base-station MLLM throughput: prefill tokens/s, and generation tokens/s with and without the KV cache.

    .venv/bin/python bench/bench_mllm.py [--preset tiny] [--prompt 40] [--new 32] [--batch 1] [--threads 2]

Without the cache every new token re-runs the whole sequence (quadratic); with it, one position per step.
On CUDA the model runs in bf16 (as the base station serves it) and the table adds the model FLOP utilisation,
2 x parameters x tokens/s against the GPU's dense bf16 peak (bench_train.PEAK_BF16_TFLOPS, or --peak-tflops):

    python bench/bench_mllm.py --preset paper --device cuda --batch 8 --json out/mllm-paper.json
"""
from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (default: known GPUs)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = config.load(args.preset).preset
    cfg = MLLMConfig.from_preset(p, vocab=1034)
    if args.layers or args.hidden:
        cfg = MLLMConfig(**{**cfg.__dict__, "layers": args.layers or cfg.layers, "hidden": args.hidden or cfg.hidden,
                            "intermediate": int(2.7 * (args.hidden or cfg.hidden))})
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32  # what the base station serves with (stages.mllm.assistant)
    model = MLLM(cfg).eval().to(args.device, dtype)
    prefix = torch.randn(args.batch, args.prompt, cfg.hidden, device=args.device, dtype=dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    eos = 10 ** 6  # never produced: every run generates exactly --new tokens

    with torch.no_grad():
        prefill = timed(lambda: (model.hidden(prefix), sync()), args.repeats)
        gen_cache = timed(lambda: (model.generate_text(prefix, args.new, eos, use_cache=True), sync()), args.repeats)
        gen_full = timed(lambda: (model.generate_text(prefix, args.new, eos, use_cache=False), sync()),
                         max(1, args.repeats // 2))
    toks = args.batch * args.new
    print(f"MLLM {args.preset}: {cfg.layers} layers x {cfg.hidden}, {count_parameters(model) / 1e6:.2f}M parameters, "
          f"batch {args.batch}, prompt {args.prompt}, {args.new} new tokens, {args.threads} threads, {args.device}")
    print(f"{'phase':28s} {'tokens/s':>10s}")
    print(f"{'prefill':28s} {args.batch * args.prompt / prefill:10.0f}")
    print(f"{'generate, KV cache':28s} {toks / gen_cache:10.0f}")
    print(f"{'generate, full recompute':28s} {toks / gen_full:10.0f}")
    print(f"KV cache speed-up: {gen_full / gen_cache:.2f}x")
    params = count_parameters(model)
    figures = {"preset": args.preset, "device": args.device, "dtype": str(dtype).removeprefix("torch."),
               "parameters": params, "batch": args.batch, "prompt_tokens": args.prompt, "new_tokens": args.new,
               "prefill_tokens_per_s": args.batch * args.prompt / prefill,
               "generate_kv_tokens_per_s": toks / gen_cache, "generate_recompute_tokens_per_s": toks / gen_full}
    peak = args.peak_tflops
    if peak is None and cuda:
        from bench_train import peak_tflops
        peak = peak_tflops(torch.device(args.device))
    if peak:  # a forward pass is 2 x parameters FLOPs per token (attention over a short prompt left out)
        for phase in ("prefill", "generate_kv"):
            figures[f"{phase}_mfu"] = 2 * params * figures[f"{phase}_tokens_per_s"] / (peak * 1e12)
        print(f"model FLOP utilisation against {peak:g} TFLOP/s: prefill {figures['prefill_mfu']:.1%}, "
              f"generation {figures['generate_kv_mfu']:.1%}")
    elif cuda:
        print("model FLOP utilisation: unknown GPU (give --peak-tflops)")
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
