"""How well an MLLM trained with the "obj" task reads a received scene's objects: it lists the objects of n test
scenes sent over Rayleigh fading at each SNR, and each listing is compared with the scene record's, position by
position (`unitocom.mllm.objects.agreement`).

    .venv/bin/python scripts/listing_read.py --mllm listing-2000=runs/obj/ft-obj --out results/listing-read.json

Where VQA accuracy says whether answers are right, this says what the model sees: how many objects, and of each its
size, colour, material, shape and third of the picture, the MLLM-side twin of the probe's slots table
(results/vqa-probe-objects-w1.json). An MLLM never trained on the task is refused: its listing would be noise.
Writes {"header", "points"}: per MLLM and SNR, each field's mean over scenes with a bootstrap 95 % interval over
scenes, and the first few listings beside the truth.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from unitocom import config  # noqa: E402
from unitocom.ablation import named_mllm  # noqa: E402
from unitocom.link.snr import snr_points_arg  # noqa: E402
from unitocom.mllm import objects, tasks  # noqa: E402
from unitocom.mllm.checkpoint import load_links, load_mllm, saved_links  # noqa: E402
from unitocom.mllm.data import TaskData  # noqa: E402
from unitocom.models.channel_torch import TorchChannelSpec  # noqa: E402
from unitocom.results import mean_interval  # noqa: E402
from unitocom.train.provenance import file_sha256, git_state, write_atomic  # noqa: E402

FORMAT = "unitocom-results/listing-read/1"
SHOWN = 5  # listings kept in the file per point, beside the truth


def read_listings(model, data: TaskData, n: int, snr_db: float, batch: int, seed: int) -> list[str]:
    """The MLLM's listings of the first n scenes of `data`, each received at snr_db over Rayleigh fading."""
    gen = torch.Generator().manual_seed(seed)
    rows = data.examples("obj", list(range(n)), torch.full((n,), snr_db), TorchChannelSpec(model="rayleigh"), gen)
    said: list[str] = []
    for i in range(0, n, batch):
        part = rows[i:i + batch]
        said += tasks.answer(model, data.vocab, [r[1].value for r in part], [objects.PROMPT] * len(part),
                             max_new=96, batched=True)
    return said


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mllm", action="append", type=named_mllm, required=True, metavar="NAME=PATH",
                    help="an MLLM trained with obj in its --task-weights (a checkpoint or a run dir); repeatable")
    ap.add_argument("--data", default="data/tiny-speech96", help="a data set whose split has scene records")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=500, help="scenes per point (the split's first n)")
    ap.add_argument("--snr-db", type=snr_points_arg, default="0,20", help="A:B:STEP or a comma list (dB)")
    ap.add_argument("--batch", type=int, default=100, help="listings generated together")
    ap.add_argument("--seed", type=int, default=0, help="the channel draws' seed (the same for every MLLM)")
    ap.add_argument("--out", default="results/listing-read.json")
    args = ap.parse_args(argv)
    cfg = config.load("tiny")
    commit, dirty = git_state(ROOT)
    header = {"format": FORMAT, "command": " ".join(shlex.quote(a) for a in [
        ".venv/bin/python", "scripts/listing_read.py", *(sys.argv[1:] if argv is None else argv)]),
        "git_commit": commit, "git_dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": args.data, "split": args.split, "channel": "rayleigh", "seed": args.seed, "mllms": {}}
    points = []
    for name, path in args.mllm:
        model, _, meta = load_mllm(path)
        weights = dict(meta.get("train_config", {}).get("task_weights", []))
        if "obj" not in weights:
            raise SystemExit(f"error: {name}={path} was not trained on the obj task (its task weights: "
                             f"{weights or 'none recorded'}); its listings would be noise")
        image_link, _, frontend, vocab, _ = load_links(cfg, saved_links(meta, path))
        data = TaskData(args.data, args.split, image_link, None, frontend, vocab, cfg.preset.image_size_px,
                        limit=args.n)
        if not data.listings:
            raise SystemExit(f"error: {args.data} has no scene records for {args.split}: nothing to compare with")
        data.question_first = model.cfg.question_first
        n = len(data.listings)
        header["mllms"][name] = {"path": str(path), "sha256": file_sha256(path), "task_weights": weights,
                                 "steps": meta.get("train_config", {}).get("steps"),
                                 "init": meta.get("train_config", {}).get("init")}
        for snr_db in args.snr_db:
            said = read_listings(model, data, n, snr_db, args.batch, args.seed)
            scores = [objects.agreement(s, t) for s, (_, t) in zip(said, data.listings)]
            point = {"mllm": name, "snr_db": snr_db, "n": n}
            for field in scores[0]:
                values = np.array([s[field] for s in scores])
                lo, hi = mean_interval(values)
                point[field] = {"value": round(float(values.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)]}
            point["shown"] = [{"said": s, "truth": t} for s, (_, t) in list(zip(said, data.listings))[:SHOWN]]
            points.append(point)
            print(f"{name} at {snr_db:g} dB: " + ", ".join(f"{f} {point[f]['value']:.3f}" for f in scores[0]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(args.out), json.dumps({"header": header, "points": points}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
