"""What the object slots' perception answers when the reasoning is exact: neural-symbolic VQA (NS-VQA, Yi et al.
2018) on the received tokens.

An MLLM with an image encoder and object slots (`scripts/pretrain_image_encoder.py`, `train mllm --image-encoder N
--object-slots W`) reads each received scene's objects: count, size, colour, material, shape, centre. This script
turns that reading into a scene (objects left to right, their centres on the ground plane) and runs each test
question's CLEVR program on it (`unitocom.data.programs`); a program that cannot run (a `unique` that finds no
object, or several) is answered with its family's most common training answer, as chance would. On the scene record
itself the programs give every recorded answer (the first row; tests check it).

    .venv/bin/python scripts/slots_reason.py --mllm runs/encoder/pretrained.safetensors --out results/slots-reason.json

The MLLM answers from the same perception through its backbone. Where this reasoner answers far better than the
MLLM, the objects reach the slots and what the MLLM lacks is the reasoning over them (relations, comparisons):
training steps. Where it answers no better, the perception is what is missing. Writes {"header", "points"}: per
reader and SNR, accuracy with Wilson 95 % intervals overall and per family, and the share of programs that ran.
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

import torch  # noqa: E402

from unitocom import config  # noqa: E402
from unitocom.data.layouts import load_clevr_scenes  # noqa: E402
from unitocom.data.programs import ProgramFailed, execute  # noqa: E402
from unitocom.link.snr import snr_points_arg  # noqa: E402
from unitocom.mllm import slots  # noqa: E402
from unitocom.mllm.checkpoint import load_links, load_mllm, saved_links  # noqa: E402
from unitocom.mllm.data import TaskData  # noqa: E402
from unitocom.models.channel_torch import TorchChannelSpec  # noqa: E402
from unitocom.results import wilson  # noqa: E402
from unitocom.task_eval import vqa_by_family, vqa_items  # noqa: E402
from unitocom.train.provenance import file_sha256, git_state, write_atomic  # noqa: E402

FORMAT = "unitocom-results/slots-reason/1"


def answer_all(items: list[dict], scenes: list[list[dict]], guess: list[str]) -> tuple[list[str], list[bool]]:
    """Each question's program on its scene; a program that fails is answered with its family's majority guess."""
    answers, ran = [], []
    for q, objs, g in zip(items, scenes, guess):
        try:
            answers.append(execute(q["program"], objs))
            ran.append(True)
        except ProgramFailed:
            answers.append(g)
            ran.append(False)
    return answers, ran


def point(reader: str, snr_db: float | None, items: list[dict], answers: list[str], ran: list[bool],
          guess: list[str]) -> dict:
    correct = [float(a == q["answer"]) for a, q in zip(answers, items)]
    n = len(items)
    lo, hi = wilson(round(sum(correct)), n)
    return {"reader": reader, "snr_db": snr_db, "n": n, "accuracy": round(sum(correct) / n, 4),
            "ci95": [round(lo, 4), round(hi, 4)], "programs_ran": round(sum(ran) / n, 4),
            "chance": round(sum(g == q["answer"] for g, q in zip(guess, items)) / n, 4),
            "by_family": vqa_by_family(items, correct, guess)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mllm", default="runs/encoder/pretrained.safetensors",
                    help="an MLLM with an image encoder and object slots (a checkpoint, or a run dir)")
    ap.add_argument("--data", default="data/tiny", help="a data set whose split has scene records and programs")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=5000, help="questions, spread over the split as `unitocom ablate` takes")
    ap.add_argument("--snr-db", type=snr_points_arg, default="0,20", help="A:B:STEP or a comma list (dB)")
    ap.add_argument("--seed", type=int, default=0, help="the channel draws' seed")
    ap.add_argument("--batch", type=int, default=250, help="scenes read together")
    ap.add_argument("--out", default="results/slots-reason.json")
    args = ap.parse_args(argv)
    path = Path(args.mllm)
    path = path / "mllm.safetensors" if path.is_dir() else path
    model, _, meta = load_mllm(path)
    if not (model.cfg.image_encoder and getattr(model, "slots", None) is not None):
        raise SystemExit(f"error: {path} has no image encoder with object slots (image_encoder "
                         f"{model.cfg.image_encoder}, object_slots {model.cfg.object_slots}): nothing reads objects")
    model.eval()
    cfg = config.load("tiny")
    image_link, _, frontend, vocab, _ = load_links(cfg, saved_links(meta, path))
    items, guess = vqa_items(Path(args.data), args.split, args.n)
    data = TaskData(args.data, args.split, image_link, None, frontend, vocab, cfg.preset.image_size_px,
                    limit=max(q["image_index"] for q in items) + 1)
    records = load_clevr_scenes(args.data, args.split)
    commit, dirty = git_state(ROOT)
    header = {"format": FORMAT, "command": " ".join(shlex.quote(a) for a in [
        ".venv/bin/python", "scripts/slots_reason.py", *(sys.argv[1:] if argv is None else argv)]),
        "git_commit": commit, "git_dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mllm": {"path": str(path), "sha256": file_sha256(path)}, "data": args.data, "split": args.split,
        "channel": "rayleigh", "seed": args.seed}
    truth = [records[q["image_index"]]["objects"] for q in items]
    points = [point("scene record", None, items, *answer_all(items, truth, guess), guess)]
    idx = torch.tensor([q["image_index"] for q in items])
    for snr_db in args.snr_db:
        gen = torch.Generator().manual_seed(args.seed)
        scenes: list[list[dict]] = []
        with torch.no_grad():
            for i in range(0, len(items), args.batch):
                part = idx[i:i + args.batch]  # each question's scene received on its own draw, as a request is
                rx = data._received_scenes(data.clevr_mu[part], torch.full((len(part),), snr_db),
                                           TorchChannelSpec(model="rayleigh"), gen)
                scenes += slots.scene_objects(model.slots(model.image_features(rx)))
        points.append(point("slots + programs", snr_db, items, *answer_all(items, scenes, guess), guess))
    for p in points:
        where = "no channel" if p["snr_db"] is None else f"{p['snr_db']:g} dB"
        print(f"{p['reader']} ({where}): {p['accuracy']:.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}], "
              f"programs ran {p['programs_ran']:.2f}; " +
              ", ".join(f"{f} {v['accuracy']:.2f}" for f, v in sorted(p["by_family"].items())))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(args.out), json.dumps({"header": header, "points": points}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
