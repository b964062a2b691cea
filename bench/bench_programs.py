"""What answering by a written program costs (an MLLM trained with the prog task, `mllm.tasks.answer_by_program`):
per VQA question, the MLLM answering itself (the LM head, a few ids) against writing the program (up to 14 ids),
reading the scene's objects with the slots and running the program, one question at a time and in batches, with
the ratio and each way's accuracy side by side.

    .venv/bin/python bench/bench_programs.py [--mllm checkpoints/mllm-sigma-genib.safetensors] [--n 200] [--snr-db 20]

Test questions of data/tiny, each scene received at --snr-db over Rayleigh fading (the same draws for both ways),
the question clean; in process, on one thread. The base station's batching puts up to --batch questions together.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom import config  # noqa: E402
from unitocom.mllm import sequences as seq, tasks  # noqa: E402
from unitocom.mllm.checkpoint import load_links, load_mllm, saved_links  # noqa: E402
from unitocom.mllm.data import TaskData  # noqa: E402
from unitocom.models.channel_torch import TorchChannelSpec  # noqa: E402
from unitocom.task_eval import vqa_items  # noqa: E402


def timed(fn, chunks) -> tuple[float, list[str]]:
    out, t = [], time.perf_counter()
    for scenes, questions in chunks:
        out += fn(scenes, questions)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mllm", default=str(ROOT / "checkpoints/mllm-sigma-genib.safetensors"),
                    help="an MLLM trained with the prog task (checkpoint or run dir; default: the installed one)")
    ap.add_argument("--data", default=str(ROOT / "data/tiny"))
    ap.add_argument("--n", type=int, default=200, help="test questions")
    ap.add_argument("--snr-db", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=32, help="questions answered together in the batched rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = pathlib.Path(args.mllm)
    path = path / "mllm.safetensors" if path.is_dir() else path
    model, _, meta = load_mllm(path)
    if not model.cfg.answer_by_program:
        raise SystemExit(f"error: {path} was not trained with the prog task: it answers by its LM head only")
    model.eval()
    cfg = config.load("tiny")
    image_link, _, frontend, vocab, _ = load_links(cfg, saved_links(meta, path))
    items, _ = vqa_items(pathlib.Path(args.data), "test", args.n)
    data = TaskData(args.data, "test", image_link, None, frontend, vocab, cfg.preset.image_size_px,
                    limit=max(q["image_index"] for q in items) + 1)
    idx = torch.tensor([q["image_index"] for q in items])
    rx = data._received_scenes(data.clevr_mu[idx], torch.full((len(items),), args.snr_db),
                               TorchChannelSpec(model="rayleigh"), torch.Generator().manual_seed(0))
    scenes, questions = list(rx), [q["question"] for q in items]
    truth = [seq.normalize(q["answer"]) for q in items]
    ways = {"itself": lambda s, q, b: tasks._answer(model, vocab, s, q, 8, tasks.NOT_TIMED, b),
            "by program": lambda s, q, b: tasks.answer_by_program(model, vocab, s, q, batched=b)[0]}
    print(f"{len(items)} test questions, {args.snr_db:g} dB Rayleigh, in process, one thread, {path}")
    print(f"{'rows':>12s} {'way':>11s} {'ms/question':>12s} {'ratio':>6s} {'VQA':>6s}")
    with torch.no_grad():
        for rows, size in (("one at a time", 1), (f"batches of {args.batch}", args.batch)):
            chunks = [(scenes[i:i + size], questions[i:i + size]) for i in range(0, len(items), size)]
            base = None
            for way, fn in ways.items():
                fn(scenes[:size], questions[:size], size > 1)  # warm
                seconds, answers = timed(lambda s, q: fn(s, q, size > 1), chunks)
                ms = 1e3 * seconds / len(items)
                base = base or ms
                acc = sum(seq.normalize(a) == t for a, t in zip(answers, truth)) / len(items)
                print(f"{rows:>12s} {way:>11s} {ms:12.1f} {ms / base:6.2f} {acc:6.3f}")


if __name__ == "__main__":
    main()
