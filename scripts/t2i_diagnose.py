#!/usr/bin/env python3
"""Where an MLLM's text-to-image loses the caption, in three numbers on held-out scenes:

  caption gain      the T2I diffusion loss with another image's caption minus with the image's own, under the
                    same noise (`unitocom.mllm.train.caption_gain`, logged at every validation): does the model
                    read the caption at all?
  teacher-forced    every image token sampled from the diffusion head given the caption and the TRUE previous
                    tokens (no drift from earlier samples), decoded by the serving path (R(T(.)), the
                    de-tokenizer) and scored by the scene checker's pair recall against the caption; beside it
                    the true tokens' recall (the path's ceiling), the recall of the next caption's true tokens
                    (chance) and the mean squared error of the samples and of
                    the head's mean (eta 0, no noise) to the true tokens (standardised: 1.0 is a token's variance)
  generated         the pictures the base station draws (tasks.imagine_batch), same captions, at each
                    --guidance; and the teacher-forced recall with other samplers (--samplers: the head's DDPM
                    at the preset's steps and at 200, DDIM with eta 0 from noise at temperature 1 and 0.7)

  probe             (--probe-steps N) how much the backbone's hidden state h says about the next token: a
                    two-layer MLP trained N steps to regress the token from h on --probe-images training
                    pictures, its mean squared error on the --n held-out pictures beside the head's mean's. A
                    probe well below the head means h holds more than the head takes from it (`train mllm-head`).

If teacher-forced recall is far below the true tokens', the head cannot draw a token from its context: sampling
tricks (guidance, steps, temperature) will not help, capacity and training will (issue 12).

    .venv/bin/python scripts/t2i_diagnose.py checkpoints/mllm-sigma-genib.safetensors [--n 64]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mllm", help="an MLLM checkpoint (mllm-*.safetensors)")
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--split", default="test", help="scenes and captions for the recall (the gain reads val)")
    ap.add_argument("--n", type=int, default=64, help="captions (one per image)")
    ap.add_argument("--objective", default="sigma-genib", help="the tokenizers it was trained on")
    ap.add_argument("--guidance", default="3", help="comma list of classifier-free guidance scales to generate at")
    ap.add_argument("--samplers", action="store_true", help="also the teacher-forced recall with other samplers")
    ap.add_argument("--probe-steps", type=int, default=0, help="train the MLP probe of h for N steps (0: no probe)")
    ap.add_argument("--probe-images", type=int, default=4000, help="training pictures for the probe")
    args = ap.parse_args(argv)
    guidance = [float(g) for g in args.guidance.split(",")]
    from PIL import Image

    from unitocom import config
    from unitocom.metrics.scene_checker import pair_recall
    from unitocom.mllm import tasks
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.head_train import hidden_rows
    from unitocom.mllm.train import caption_gain
    from unitocom.schemes import learned
    from unitocom.stages.mllm import scene_checker
    from unitocom.task_eval import caption_items
    torch.set_num_threads(1)
    model, std, meta = load_mllm(args.mllm)
    model.eval()
    cfg = config.load(meta.get("preset", "tiny"), image_tokens=int(meta.get("image_tokens") or 0) or None)
    link, _, frontend, vocab, _ = load_links(cfg, None, args.objective)
    checker = scene_checker()
    if checker is None:
        raise SystemExit("error: needs checkpoints/scene-checker.safetensors (`unitocom train checker`)")
    val = TaskData(args.data, "val", link, None, frontend, vocab, cfg.preset.image_size_px, args.n)
    val.image_std = std
    out: dict = {"mllm": args.mllm, "n": args.n, **caption_gain(model, val, args.n)}

    items = caption_items(args.data, args.split, args.n)
    caps = [c for c, _ in items]
    size = cfg.preset.image_size_px
    x = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size))) for _, f in items]))
    x = x.permute(0, 3, 1, 2).float() / 255.0

    def recall(tokens: torch.Tensor) -> float:  # standardised tokens [N, S, d] -> mean pair recall
        images = learned.tokens_to_images(link, learned.clean_tokens(link, std.inverse(tokens)))
        seen = checker.recognise(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0)
        return float(np.mean([pair_recall(c, s) or 0.0 for c, s in zip(caps, seen)]))

    with torch.no_grad():
        true = std.forward(link.tokenize(x)[0])
        cond, flat = hidden_rows(model, vocab, caps, true)
        drawn = model.diffusion.sample(cond, cfg.preset.diffusion_sample_steps, torch.Generator().manual_seed(0))
        mean = _head_mean(model.diffusion, cond, cfg.preset.diffusion_sample_steps)
        made = {g: tasks.imagine_batch(model, vocab, caps, link.spec.tokens, guidance=g,
                                       generators=[torch.Generator().manual_seed(i) for i in range(len(caps))])
                for g in guidance}
        variants = {}
        if args.samplers:
            ddpm200 = model.diffusion.sample(cond, 200, torch.Generator().manual_seed(0))
            variants = {"ddpm_200_steps": ddpm200,
                        **{f"ddim_eta0_temperature_{tau:g}": _ddim(model.diffusion, cond, 50, tau) for tau in (1.0, 0.7)}}
    out.update({"recall_true_tokens": recall(true), "recall_other_captions_true_tokens": recall(true.roll(1, 0)),
                "recall_teacher_forced": recall(drawn.reshape(true.shape)),
                **{f"recall_generated_guidance_{g:g}": recall(m.float()) for g, m in made.items()},
                **{f"recall_teacher_forced_{k}": recall(v.reshape(true.shape)) for k, v in variants.items()},
                "mse_teacher_forced_sample": float(((drawn - flat) ** 2).mean()),
                "mse_head_mean": float(((mean - flat) ** 2).mean())})
    if args.probe_steps:
        out["mse_probe_mlp"] = _probe(model, std, link, frontend, vocab, args, size, cond, flat)
    print(json.dumps(out, indent=1))
    return 0


def _probe(model, std, link, frontend, vocab, args, size: int, h_test: torch.Tensor, test: torch.Tensor) -> float:
    """Held-out MSE of an MLP (h -> token) trained on the first caption of each of --probe-images pictures."""
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.head_train import features, rows_of
    data = TaskData(args.data, "train", link, None, frontend, vocab, size, args.probe_images)
    h, c = features(model, data, std, [r for r in rows_of(data, first_only=True) if r[1]])
    h, c = h.float(), c.float()
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(h.shape[1], 512), torch.nn.SiLU(), torch.nn.Linear(512, 512),
                              torch.nn.SiLU(), torch.nn.Linear(512, c.shape[1]))
    opt = torch.optim.AdamW(mlp.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.probe_steps):
        i = torch.randint(len(h), (1024,), generator=gen)
        loss = ((mlp(h[i]) - c[i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(((mlp(h_test) - test) ** 2).mean())


def _head_mean(head, h: torch.Tensor, steps: int) -> torch.Tensor:
    """The head's deterministic draw from zero noise (DDIM, eta 0): about its conditional mean."""
    return _ddim(head, h, steps, 0.0)


def _ddim(head, h: torch.Tensor, steps: int, temperature: float) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from noise scaled by `temperature` (0: from zeros)."""
    from diffusers import DDIMScheduler
    sched = DDIMScheduler.from_config(head.scheduler.config)
    sched.set_timesteps(steps)
    x = temperature * torch.randn((h.shape[0], head.token_dim), generator=torch.Generator().manual_seed(0))
    for t in sched.timesteps:
        x = sched.step(head(x, torch.full((h.shape[0],), int(t), dtype=torch.long), h), t, x, eta=0.0).prev_sample
    return x


if __name__ == "__main__":
    raise SystemExit(main())
