#!/usr/bin/env python3
"""Which typed questions the base station misreads at low SNR: by the question's own fade. A question crosses one
Rayleigh h (block fading, one h per stream); this sorts the test questions by the |h|^2 their stream drew and gives,
per bin, the share read back exactly and the VQA accuracy, for the installed text links (or the set --installed
names) and for those staged in checkpoints/next (`reproduce_results.sh text-links` stages them).

    .venv/bin/python scripts/question_fades.py --n 1000 --snr-db 0 [--with-prior]

--with-prior adds each set read with the language prior staged in checkpoints/next (`unitocom train text-prior`),
on the same requests, and the paired difference in VQA that reading makes (bootstrap over questions). --copies K
adds each set with every question sent K times over independent fades (the link option text_copies), binned by the
fade of the first copy (the one the question sent once crosses), and the paired difference the copies make; with
--name question-fades-copies it writes that file instead.

In process (`unitocom.pipeline`: the services' stages without gRPC), request i with seed i as `unitocom fig2` sends
it, so the draws are those of results/text-links-*.json. Writes results/question-fades.json (its table in the README
by scripts/results_tables.py).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# |h|^2 bins: a deep fade first; at 0 dB the mean SNR is 1, so |h|^2 is the question's own SNR (linear)
EDGES = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, float("inf"))


def measure(n: int, snr_db: float, data: Path, copies: int = 0) -> list[dict]:
    """Each of the first n test questions through the in-process pipeline with the checkpoints of
    $UNITOCOM_CHECKPOINTS, sent `copies` times (text_copies; 0: once) -> per question: the mean |h|^2 its stream
    (the first copy) crossed, read exactly, answered right."""
    from unitocom import client, config, pipeline, wire
    from unitocom.data.layouts import clevr_root, read_json
    from unitocom.messages import Modality
    from unitocom.stages import channel as channel_stage
    from unitocom.stages import transmitter
    from unitocom.stages.request import from_wire
    from unitocom.task_eval import clevr_png, question_read, vqa_items
    cfg = config.load("tiny")
    items, _ = vqa_items(data, "test", n)
    # a question word for word among the training questions (a prior of the corpus could have learnt it whole)
    seen = {q["question"] for q in read_json(clevr_root(data) / "questions" / "CLEVR_train_questions.json")["questions"]}
    gains: dict[int, list[np.ndarray]] = {}
    apply, prepare = channel_stage.ChannelCore.apply, transmitter.prepare
    text_ids: set[int] = set()

    def recording_apply(self, frame):  # the h each frame crossed, as the channel reports it
        out = apply(self, frame)
        gains.setdefault(frame.stream_id, []).append(
            wire.runs_decode(out.csi.h, out.csi.h_runs, len(frame.symbols)))
        return out

    def recording_prepare(req, cfg):  # which streams carry the question
        prep = prepare(req, cfg)
        text_ids.update(s.stream_id for s in prep.header.streams if s.modality == Modality.TEXT and not s.copy)
        return prep
    rows = []
    channel_stage.ChannelCore.apply, pipeline.transmitter.prepare = recording_apply, recording_prepare
    try:
        for i, q in enumerate(items):
            gains.clear()
            text_ids.clear()
            png = clevr_png(clevr_root(data) / "images" / "test" / q["image_filename"])
            req = client.build_request(task="vqa", scheme="unitocom", snr_db=snr_db, channel="rayleigh", seed=i,
                                       image=png, question=q["question"], answer=q["answer"], text_copies=copies)
            r = pipeline.run(from_wire(req), cfg)
            (sid,) = text_ids
            h = np.concatenate(gains[sid])
            rows.append({"gain": float(np.mean(np.abs(h) ** 2)), "read": bool(question_read(r, q["question"])),
                         "correct": float(r.quality["exact_match"]), "seen": q["question"] in seen})
    finally:
        channel_stage.ChannelCore.apply, pipeline.transmitter.prepare = apply, prepare
    return rows


def by_fade(rows: list[dict]) -> list[dict]:
    """Per |h|^2 bin (EDGES): the questions in it, the share read exactly and the VQA accuracy (Wilson 95 %)."""
    from unitocom.results import wilson
    out = []
    for lo, hi in itertools.pairwise(EDGES):
        sel = [r for r in rows if lo <= r["gain"] < hi]
        if not sel:
            continue
        read, right = sum(r["read"] for r in sel), round(sum(r["correct"] for r in sel))
        out.append({"gain_low": lo, "gain_high": hi, "n": len(sel),
                    "read": read / len(sel), "read_ci": list(wilson(read, len(sel))),
                    "accuracy": right / len(sel), "accuracy_ci": list(wilson(right, len(sel)))})
    return out


PRIOR = "text-prior.safetensors"


def served_set(name: str, own: list[Path], root: Path, base: Path) -> Path:
    """A checkpoint folder under `root`: links to every checkpoint of `base` but its prior, with the files `own` in
    their place (the staged text links, the prior), as a base station would have them installed."""
    from unitocom.fig2 import checkpoint_files
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    for f in checkpoint_files(base):
        if f.name != PRIOR:
            (d / f.name).symlink_to(f.resolve())
    for f in own:
        (d / f.name).unlink(missing_ok=True)
        (d / f.name).symlink_to(f.resolve())
    return d


def by_seen(rows: list[dict]) -> dict:
    """The share read exactly among the questions seen word for word in training and among the others."""
    out = {}
    for key, flag in (("seen", True), ("unseen", False)):
        sel = [r for r in rows if r["seen"] is flag]
        out[key] = {"n": len(sel), "read": sum(r["read"] for r in sel) / len(sel) if sel else None}
    return out


def paired_difference(a: list[dict], b: list[dict], draws: int = 10000, seed: int = 0) -> dict:
    """Mean of b's correct minus a's over the same questions, with a bootstrap 95 % interval over questions."""
    diff = np.array([y["correct"] - x["correct"] for x, y in zip(a, b, strict=True)])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (draws, len(diff)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"n": len(diff), "difference": float(diff.mean()), "ci": [float(lo), float(hi)],
            "changed": int((diff != 0).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="test questions (the first n, as fig2 sends them)")
    ap.add_argument("--snr-db", type=float, default=0.0, help="mean SNR of the Rayleigh channel")
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--installed", default=None, metavar="DIR",
                    help="the set called `installed`, read by argmax (default: the checkpoint folder without its "
                         "prior; reproduce_results.sh passes the set installed before 2026-12-07, runs/text-before)")
    ap.add_argument("--next", default="checkpoints/next", help="the staged set (skipped when it has no text link)")
    ap.add_argument("--with-prior", action="store_true",
                    help=f"also each set read with the language prior ({PRIOR} in --next), and the paired difference")
    ap.add_argument("--copies", type=int, default=0, metavar="K",
                    help="also each set with the question sent K times (text_copies), and the paired difference")
    ap.add_argument("--name", default="question-fades", help="the file stem under --out")
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    from unitocom.fig2 import checkpoint_hashes, make_header
    from unitocom.schemes.learned import checkpoint_dir
    nxt, sets_root = Path(args.next), ROOT / "runs" / "question-fades-sets"
    links = sorted(f for f in nxt.glob("text-*.safetensors") if f.name != PRIOR and not f.is_symlink())
    base = Path(args.installed) if args.installed else checkpoint_dir()
    sets = [("installed", served_set("installed", [], sets_root, base))]
    sets += [("next", served_set("next", links, sets_root, base))] if links else []
    if args.with_prior:
        if not (nxt / PRIOR).is_file():
            sys.exit(f"error: {nxt / PRIOR} is missing: `unitocom train text-prior --out {nxt / PRIOR}`")
        sets += [(f"{name}+prior", served_set(f"{name}+prior", (links if name == "next" else []) + [nxt / PRIOR],
                                              sets_root, base)) for name, _ in list(sets)]
    copies = {name: 0 for name, _ in sets}
    if args.copies > 1:
        copies.update({f"{name} x{args.copies}": args.copies for name, _ in sets})
        sets += [(f"{name} x{args.copies}", folder) for name, folder in list(sets)]
    points, hashes, rows_by, seen_split = [], {}, {}, {}
    for name, folder in sets:
        os.environ["UNITOCOM_CHECKPOINTS"] = str(folder)
        rows = rows_by[name] = measure(args.n, args.snr_db, Path(args.data), copies[name])
        hashes[name] = checkpoint_hashes(checkpoint_dir())
        seen_split[name] = by_seen(rows)
        print(f"{name:9s} read exactly: " + ", ".join(f"{v['read']:.3f} of {v['n']} {k} in training"
                                                     for k, v in seen_split[name].items() if v["n"]))
        for b in by_fade(rows):
            points.append({"links": name, "snr_db": args.snr_db, "channel": "rayleigh", **b})
            print(f"{name:9s} |h|^2 in [{b['gain_low']:g}, {b['gain_high']:g}): n={b['n']:4d}  read exactly "
                  f"{b['read']:.2f}  VQA {b['accuracy']:.2f} [{b['accuracy_ci'][0]:.2f}, {b['accuracy_ci'][1]:.2f}]")
    os.environ.pop("UNITOCOM_CHECKPOINTS", None)
    paired = []
    for name in [n for n in rows_by if f"{n}+prior" in rows_by]:
        d = paired_difference(rows_by[name], rows_by[f"{name}+prior"])
        paired.append({"links": name, "reading": "prior - argmax", "snr_db": args.snr_db, **d})
        print(f"{name}: VQA with the prior - without {d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] "
              f"({d['changed']} of {d['n']} answers changed)")
    for name in [n for n in rows_by if f"{n} x{args.copies}" in rows_by]:
        d = paired_difference(rows_by[name], rows_by[f"{name} x{args.copies}"])
        paired.append({"links": name, "reading": f"{args.copies} copies - once", "snr_db": args.snr_db, **d})
        print(f"{name}: VQA with {args.copies} copies - once {d['difference']:+.3f} [{d['ci'][0]:+.3f}, "
              f"{d['ci'][1]:+.3f}] ({d['changed']} of {d['n']} answers changed)")
    header = make_header(["question-fades"] + sys.argv[1:], {"data": args.data, "n": args.n,
                                                             **({"copies": args.copies} if args.copies > 1 else {})},
                         checkpoint_dir())
    header.update(format="unitocom-results/question-fades/1",
                  command="scripts/question_fades.py " + " ".join(sys.argv[1:]), checkpoints_sha256_by_links=hashes)
    path = Path(args.out) / f"{args.name}.json"
    path.write_text(json.dumps({"header": header, "points": points, "read_by_seen": seen_split,
                                **({"paired": paired} if paired else {})}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
