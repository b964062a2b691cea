#!/usr/bin/env python3
"""How hard each task pulls on a trained MLLM's shared backbone: the gradient norm of one training batch per task.

A multitask run (`unitocom train mllm`) trains one task per step with ONE AdamW, whose second moments (the
running mean of squared gradients, about the last 1000 steps at beta2 0.999) set every step's size. Where one
task's backbone gradients are much smaller than the others', its steps move the backbone by a fraction of the
learning rate: it trains slower than on its own. This prints, per task, the loss and the gradient norms of a
batch (mean over --batches draws) over the backbone's layers (shared by every task), and over all parameters (what
`clip_grad_norm_(..., 1.0)` clips), and each task's backbone norm over the largest, the factor `train mllm
--loss-scale TASK=S` can even out.

    .venv/bin/python scripts/mllm_grad_probe.py checkpoints/mllm-sigma-genib.safetensors [--data data/tiny]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mllm", help="an MLLM checkpoint (or a run dir with mllm.safetensors)")
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--tasks", default=None,
                    help="comma list of tasks to probe (default: the tasks of the MLLM's own training mix)")
    ap.add_argument("--batch", type=int, default=64, help="examples per batch (the training batch)")
    ap.add_argument("--batches", type=int, default=4, help="batches per task (their norms are averaged)")
    ap.add_argument("--examples", type=int, default=512, help="training examples loaded per task")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)

    import torch

    from unitocom import config
    from unitocom.data.layouts import require_data
    from unitocom.mllm import sequences as seq
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import TrainConfig, draw_batch, loss_of
    from unitocom.models.channel_torch import TorchChannelSpec
    torch.set_num_threads(1)
    path = Path(args.mllm)
    path = path / "mllm.safetensors" if path.is_dir() else path
    model, std, meta = load_mllm(path)
    cfg = config.load(meta.get("preset", "tiny"))
    image, audio, frontend, vocab, _ = load_links(cfg, None, meta.get("objective") or "sigma-genib")
    data = TaskData(str(require_data(args.data)), "train", image, audio, frontend, vocab, cfg.preset.image_size_px,
                    args.examples)
    data.image_std = std  # the standardisation the model was trained with
    own = [t for t, _ in (meta.get("train_config") or {}).get("task_weights") or [("vqa", 2), ("t2i", 1), ("asr", 1)]]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else own
    tc = TrainConfig(task_weights=tuple((t, 1) for t in tasks))
    channel = TorchChannelSpec(model=tc.channel)
    model.train()
    shared = [p for n, p in model.named_parameters() if ".layers." in n]
    out: dict[str, dict] = {}
    for task in tasks:
        if not data.counts().get(task):
            print(f"{task}: no training examples in {args.data}", file=sys.stderr)
            continue
        rows = {"loss": 0.0, "backbone_grad_norm": 0.0, "total_grad_norm": 0.0}
        for k in range(args.batches):
            g = torch.Generator().manual_seed(k)
            model.zero_grad(set_to_none=True)
            losses = loss_of(model, seq.pack(model, draw_batch(data, task, args.batch, tc, g, channel)),
                             tc.diffusion_repeats, g)
            losses["loss"].backward()
            norm = lambda ps: float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in ps  # noqa: E731
                                                   if p.grad is not None)))
            rows["loss"] += float(losses["loss"].detach()) / args.batches
            rows["backbone_grad_norm"] += norm(shared) / args.batches
            rows["total_grad_norm"] += norm(list(model.parameters())) / args.batches
        out[task] = rows
    top = max(r["backbone_grad_norm"] for r in out.values())
    for r in out.values():
        r["backbone_share_of_largest"] = r["backbone_grad_norm"] / top
    if args.json:
        print(json.dumps({"mllm": str(path), "data": args.data, "batch": args.batch, "batches": args.batches,
                          "tasks": out}, indent=2))
        return 0
    print(f"{path} on {args.data} (batches of {args.batch}, mean of {args.batches})")
    print(f"{'task':6} {'loss':>8} {'backbone |g|':>13} {'all |g|':>9} {'of largest':>11}")
    for t, r in out.items():
        print(f"{t:6} {r['loss']:8.4f} {r['backbone_grad_norm']:13.4f} {r['total_grad_norm']:9.4f} "
              f"{r['backbone_share_of_largest']:11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
