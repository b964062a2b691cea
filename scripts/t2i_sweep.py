"""Text-to-image sampling settings, in process: the scene checker's pair recall of generated scenes for each
classifier-free guidance scale and number of diffusion steps, on held-out captions. Chooses the base station's
defaults (`stages.mllm.T2I_GUIDANCE`, the preset's diffusion_sample_steps); not a benchmark of speed.

    .venv/bin/python scripts/t2i_sweep.py --n 100 --guidance 1,2,3,5 --steps 50
    UNITOCOM_CHECKPOINTS=runs/retrain .venv/bin/python scripts/t2i_sweep.py ...   (checkpoints elsewhere)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=100, help="captions (one per image, spread over the split)")
    ap.add_argument("--guidance", default="1,2,3,5", help="comma-separated guidance scales")
    ap.add_argument("--steps", default="50", help="comma-separated diffusion sampling steps")
    ap.add_argument("--objective", default="sigma-genib")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from unitocom import config
    from unitocom.data.layouts import coco_annotation_file, read_json
    from unitocom.metrics.scene_checker import caption_pairs, load_checker, pair_recall
    from unitocom.mllm import tasks
    from unitocom.mllm.checkpoint import load_links, load_mllm, mllm_path
    from unitocom.schemes import learned
    cfg = config.load("tiny")
    model, std, _ = load_mllm(mllm_path(args.objective))
    image_link, _, _, vocab, _ = load_links(cfg, None, args.objective)
    checker = load_checker(learned.checkpoint_dir() / "scene-checker.safetensors")
    ann = read_json(coco_annotation_file(Path(args.data) / "coco", args.split))["annotations"]
    seen_images, caps = set(), []
    for a in ann:
        if a["image_id"] not in seen_images and caption_pairs(a["caption"]):
            seen_images.add(a["image_id"])
            caps.append(a["caption"])
    caps = caps[:: max(1, len(caps) // args.n)][: args.n]
    rows = []
    for steps in [int(s) for s in args.steps.split(",")]:
        for g in [float(x) for x in args.guidance.split(",")]:
            t0 = time.perf_counter()
            recall, full = 0.0, 0
            for i, cap in enumerate(caps):
                gen = torch.Generator().manual_seed(i)
                tok = tasks.imagine(model, vocab, cap, image_link.spec.tokens, guidance=g, steps=steps, generator=gen)
                img = learned.tokens_to_images(image_link, learned.clean_tokens(image_link, std.inverse(tok)[None]))
                seen = checker.recognise(torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255.0)[0]
                want = caption_pairs(cap)
                recall += pair_recall(cap, seen)
                full += want <= seen
            row = {"guidance": g, "steps": steps, "n": len(caps), "pair_recall": round(recall / len(caps), 3),
                   "all_pairs_found": round(full / len(caps), 3), "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
