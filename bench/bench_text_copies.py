"""What sending the question K times costs (the link option text_copies): per VQA request through the in-process
pipeline (the services' stages without gRPC), the wall time, the channel uses and the share of questions read
exactly, for K = 1, 2, 3 side by side, with each K's ratio to sending once.

    .venv/bin/python bench/bench_text_copies.py [--n 100] [--snr-db 0] [--copies 1,2,3]

Test questions of data/tiny with their scenes, scheme unitocom over Rayleigh block fading, request i with seed i (the
first copy crosses the fade of the question sent once), on one thread. The channel uses are the price that matters:
the combining itself (`link.diversity.mrc`) is a few multiply-adds per symbol.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom import client, config, pipeline  # noqa: E402
from unitocom.data.layouts import clevr_root  # noqa: E402
from unitocom.stages.request import from_wire  # noqa: E402
from unitocom.task_eval import clevr_png, question_read, vqa_items  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data/tiny"))
    ap.add_argument("--n", type=int, default=100, help="test questions")
    ap.add_argument("--snr-db", type=float, default=0.0, help="mean SNR of the Rayleigh channel (dB)")
    ap.add_argument("--copies", default="1,2,3", help="the K to compare, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = config.load("tiny")
    data = pathlib.Path(args.data)
    items, _ = vqa_items(data, "test", args.n)
    reqs = [(q, clevr_png(clevr_root(data) / "images" / "test" / q["image_filename"])) for q in items]
    rows = []
    for k in (int(c) for c in args.copies.split(",")):
        pipeline.run(from_wire(client.build_request(task="vqa", scheme="unitocom", image=reqs[0][1],
                                                    question=reqs[0][0]["question"], text_copies=k)), cfg)  # warm
        cost, uses, read, right = 0.0, 0, 0, 0.0
        for i, (q, png) in enumerate(reqs):
            req = from_wire(client.build_request(task="vqa", scheme="unitocom", snr_db=args.snr_db, channel="rayleigh",
                                                 seed=i, image=png, question=q["question"], answer=q["answer"],
                                                 text_copies=k))
            t = time.perf_counter()
            r = pipeline.run(req, cfg)
            cost += time.perf_counter() - t
            uses += r.channel_uses
            read += bool(question_read(r, q["question"]))
            right += r.quality["exact_match"]
        rows.append((k, 1e3 * cost / len(reqs), uses / len(reqs), read / len(reqs), right / len(reqs)))
    base = rows[0]
    print(f"{len(reqs)} test questions, unitocom, {args.snr_db:g} dB Rayleigh, in process, one thread")
    print(f"{'copies':>6s} {'ms/request':>11s} {'ratio':>6s} {'channel uses':>13s} {'ratio':>6s} {'read':>5s} {'VQA':>5s}")
    for k, ms, cu, rd, acc in rows:
        print(f"{k:6d} {ms:11.1f} {ms / base[1]:6.2f} {cu:13.1f} {cu / base[2]:6.2f} {rd:5.2f} {acc:5.2f}")


if __name__ == "__main__":
    main()
