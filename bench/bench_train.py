"""MLLM training throughput on synthetic tokens, stepped exactly as `unitocom train mllm` steps (issue 15).

    python bench/bench_train.py --preset paper --device cuda --steps 100 --batch-size 8
    torchrun --standalone --nproc_per_node 2 bench/bench_train.py --preset paper --device cuda --fsdp --steps 100
    python bench/bench_train.py --preset tiny --device cpu --steps 3 --batch-size 2      (the CPU miniature)

The preset's MLLM, randomly initialised (the paper preset: the letter's 1.4B, 24 x 2048). Steps alternate a
VQA-like batch (S_v received image tokens, a question, an answer the LM head predicts) and a T2I-like one (a
caption, S_v image tokens the diffusion head predicts), random ids and tokens of the preset's sizes, through the
training step of `mllm.train` (Objective: packing, LM and diffusion losses; DDP, or FSDP2 with --fsdp, under
torchrun; bf16 autocast, activation checkpointing (the paper preset's default on CUDA) and fused AdamW on CUDA).
Rank 0 prints one JSON line: parameters, seconds per step, trained tokens per second, peak memory per GPU and
model FLOP utilisation (6 x parameters x tokens per step, against --peak-tflops x the number of GPUs).
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
from unitocom.mllm import sequences as seq  # noqa: E402
from unitocom.mllm import train as T  # noqa: E402
from unitocom.mllm.model import MLLM, MLLMConfig, count_parameters  # noqa: E402
from unitocom.train import dist, scaffold  # noqa: E402

# Dense bf16 peak of the GPUs this is likely to meet, TFLOP/s (vendor data sheets, without sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def synthetic_batch(task: str, n: int, mcfg: MLLMConfig, s_v: int, text: int, gen: torch.Generator):
    """n examples of `task` (vqa or t2i) with random ids below the specials and random tokens."""
    base = mcfg.vocab - len(seq.SPECIALS)
    sp = {s: base + i for i, s in enumerate(seq.SPECIALS)}

    def ids(k):
        return torch.randint(0, base, (k,), generator=gen).tolist()
    rows = []
    for _ in range(n):
        img = torch.randn(s_v, mcfg.token_dim, generator=gen)
        if task == "vqa":
            rows.append([seq.Segment("text", [sp["<bos>"], sp["<vqa>"], sp["<boi>"]]), seq.Segment("image", img),
                         seq.Segment("text", [sp["<eoi>"]] + ids(text) + [sp["<sep>"]]),
                         seq.Segment("text", ids(4) + [sp["<eos>"]], target=True)])
        else:
            rows.append([seq.Segment("text", [sp["<bos>"], sp["<t2i>"]] + ids(text) + [sp["<boi>"]]),
                         seq.Segment("image", img, target=True)])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(config.PRESETS))
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup-steps untimed ones)")
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8, help="examples per step per process")
    ap.add_argument("--text", type=int, default=24, help="question / caption length in ids")
    ap.add_argument("--vocab", type=int, default=None, help="text vocabulary (default: the preset's)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense bf16 peak per GPU for the utilisation (default: known GPUs' data sheets)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures here (rank 0)")
    dist.add_compute_flags(ap, mllm=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    d = dist.from_env()
    compute = dist.compute_from_args(args).resolved(d.local_rank if d.on else None)
    device = torch.device(compute.device)
    dist.init(d, device)
    preset = config.load(args.preset).preset
    mcfg = MLLMConfig.from_preset(preset, vocab=args.vocab or preset.mllm_vocab)
    torch.manual_seed(0)
    t_build = time.perf_counter()
    model = MLLM(mcfg).to(device)
    ac = T.activation_checkpointing(compute, preset)
    if ac:
        T.enable_activation_checkpointing(model)
    objective = T.Objective(model, 2, d)
    if compute.fsdp and d.on:
        step_module = T.shard(objective, model, compute)
    else:
        step_module = dist.wrap_ddp(objective, d, device)
    opt = scaffold.adamw(model, 2e-4, 0.01, fused=compute.fused_adamw and compute.cuda)
    build_s = time.perf_counter() - t_build
    params = count_parameters(model)
    gen = torch.Generator().manual_seed(1)
    dgen = torch.Generator(device=device).manual_seed(2)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=compute.autocast_bf16)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokens, losses, t0 = 0, [], None
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            sync()
            t0, tokens = time.perf_counter(), 0
        task = ("vqa", "t2i")[step % 2]
        rows = dist.part(synthetic_batch(task, args.batch_size * d.world, mcfg, preset.image_tokens, args.text, gen), d)
        tokens += sum(sum(len(s.value) for s in r) for r in rows) * d.world
        with autocast:
            out = step_module(rows, dgen)
        scaffold.set_lr(opt, 2e-4)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(dist.mean_over_ranks({"loss": out["loss"]}, d)["loss"])
    sync()
    wall = time.perf_counter() - t0
    step_s = wall / max(args.steps, 1)
    tok_s = tokens / wall
    peak = args.peak_tflops or peak_tflops(device)
    gpus = d.world if device.type == "cuda" else 0
    mfu = (6 * params * tok_s) / (peak * 1e12 * gpus) if peak and gpus else None
    fig = {"preset": args.preset, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "processes": d.world, "sharding": "fsdp" if compute.fsdp and d.on else ("ddp" if d.on else "none"),
           "bf16_autocast": compute.autocast_bf16, "activation_checkpointing": ac,
           "fused_adamw": compute.fused_adamw and compute.cuda, "parameters": params, "build_s": round(build_s, 2),
           "global_batch": args.batch_size * d.world, "steps": args.steps, "step_s": round(step_s, 4),
           "tokens_per_s": round(tok_s, 1),
           "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if gpus else None,
           "peak_bf16_tflops_per_gpu": peak, "mfu": None if mfu is None else round(mfu, 4),
           "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
           "finite": all(x == x and abs(x) < float("inf") for x in losses)}
    if d.main:
        print(json.dumps(fig))
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(fig, indent=2) + "\n")
    dist.finish(d)
    return 0 if fig["finite"] else 1


if __name__ == "__main__":
    rc = main()
    dist.leave(rc)  # several ranks under torchrun: end without ~ProcessGroupGloo (see unitocom.train.dist.finish)
    sys.exit(rc)
