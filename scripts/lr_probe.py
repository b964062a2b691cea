#!/usr/bin/env python3
"""A learning-rate probe for a wider MLLM backbone (issue 12), on the shipped recipe's real runs.

Twice the width (4 x 256, 4.7 M parameters) is what is left to try for VQA and text-to-image; at the preset's
peak learning rate (2e-3, tuned at width 128) it trained slower than the 4 x 128 model. This script runs the
first steps of `train all`'s MLLM recipe (10000 steps of 64, the cycle VQA 2 : T2I 1 : ASR 1 : captioning 1,
T2I's loss x 8, on data/tiny-speech96) for each RUN, all stopped at the same step with `train mllm --stop-at`
(the learning rates of the full 10000-step schedule, so each probe is the beginning of the run it would be),
and compares their validations there and on the way:

    scripts/lr_probe.py                      # the default runs, two at a time (one core each), then the files
    scripts/lr_probe.py --dry-run            # the commands
    scripts/lr_probe.py --runs wide-2e-3=hidden=256,heads=8,intermediate=688@2e-3 --stop-at 2000
    scripts/lr_probe.py --runs "shipped=@2e-3;wide-5e-4=hidden=256,heads=8,intermediate=688@5e-4" \
        --stop-at 4000 --name lr-probe-4000     # two of them on to step 4000, beside the first files
    scripts/lr_probe.py --runs "wide-5e-4=hidden=256,heads=8,intermediate=688@5e-4" --stop-at 10000 \
        --jobs 1 --threads 2 --name lr-probe-10000   # one to the recipe's end (its checkpoint in its run dir)

A RUN is NAME=ARCH@LR, ARCH being `train mllm --mllm-arch`'s NAME=N,... (empty: the preset's 4 x 128). The
defaults: `shipped` (the installed MLLM's recipe as it is, the reference: its validation at the stop step is
that of the installed MLLM's run at the same step), and the wide model at 1e-3 and 5e-4. Each run's directory
(runs/lr-probe/NAME) keeps its state: the same `train mllm` command without --stop-at continues it to the full
10000 steps (then `train mllm-head`, as `train all` does), so the probe's best run is not thrown away.

Writes results/lr-probe.json (a header with the command, commit, data checksum, the tokenizers' sha256 and each
run's command; a point per run and validation step: VQA at 0 and 20 dB on the 256 val questions with Wilson 95 %
intervals, the held-out T2I diffusion loss and caption gain, ASR WER at 20 dB, the captioning loss, the running
training losses, steps per second) and results/lr-probe.png (the validation figures against step and the
logged steps' training loss, one line per run). A run already at the stop step is not trained again.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom.data.make import dataset_checksum  # noqa: E402
from unitocom.results import wilson  # noqa: E402
from unitocom.train.provenance import file_sha256, git_state, write_atomic  # noqa: E402

FORMAT = "unitocom-results/lr-probe/1"
WIDE = "hidden=256,heads=8,intermediate=688"
DEFAULT_RUNS = f"shipped=@2e-3;wide-1e-3={WIDE}@1e-3;wide-5e-4={WIDE}@5e-4"
# train all's MLLM recipe (unitocom/train/retrain.py), its first part (mllm-<objective>-base), less the install
RECIPE = ["--objective", "sigma-genib", "--task-weights", "vqa=2,t2i=1,asr=1,cap=1", "--steps", "10000",
          "--batch-size", "64", "--snr-db=-5:25", "--loss-scale", "t2i=8"]
STEPS = int(RECIPE[RECIPE.index("--steps") + 1])  # the schedule every probe is the beginning of
LINKS = ("image-sigma-genib-s32.safetensors", "audio-sigma-genib-s32.safetensors", "text-bpe.json")
TASKS = ("vqa", "t2i", "asr", "cap")


def parse_runs(text: str) -> list[tuple[str, str, str]]:
    """'NAME=ARCH@LR;...' -> [(name, arch, lr)]; ARCH may be empty (the preset's sizes)."""
    runs = []
    for item in filter(None, (s.strip() for s in text.split(";"))):
        name, eq, rest = item.partition("=")
        arch, at, lr = rest.rpartition("@")
        if not eq or not at or not name:
            raise SystemExit(f"error: --runs {item!r}: write NAME=ARCH@LR (ARCH may be empty: NAME=@2e-3)")
        float(lr)
        runs.append((name, arch, lr))
    return runs


def command(name: str, arch: str, lr: str, args) -> list[str]:
    cmd = ["unitocom", "train", "mllm", *RECIPE, "--data", args.data, "--val-every", str(args.val_every),
           "--lr", lr, "--stop-at", str(args.stop_at), "--log-every", str(args.log_every), "--no-install",
           "--run-dir", str(Path(args.run_root) / name)]
    cmd += ["--threads", str(args.threads)] if args.threads != 1 else []
    return cmd + (["--mllm-arch", arch] if arch else [])


def log_rows(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(validation rows, per-step loss records) of a run's log.jsonl."""
    path = run_dir / "log.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return [r for r in rows if "task" not in r], [r for r in rows if "task" in r]


def reached(run_dir: Path, step: int) -> bool:
    return any(r["step"] >= step for r in log_rows(run_dir)[0])


def sizes(arch: str) -> dict[str, int]:
    """The backbone's layers and width: the tiny preset's, with --mllm-arch's changes."""
    from unitocom import config
    pre = config.PRESETS["tiny"]
    given = dict(kv.split("=") for kv in arch.split(",") if kv)
    return {"layers": int(given.get("layers", pre.mllm_layers)), "hidden": int(given.get("hidden", pre.mllm_hidden))}


def parameters(run_dir: Path) -> int:
    """The model's parameter count, from the run state's header (no tensor read)."""
    from safetensors import safe_open
    with safe_open(str(run_dir / "train_state.safetensors"), framework="pt") as f:
        total = 0
        for k in f.keys():
            if k.startswith("model."):
                n = 1
                for s in f.get_slice(k).get_shape():
                    n *= s
                total += n
    return total


def launch(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env)  # a resumed run adds on


def train(runs: list[tuple[str, str, str]], args) -> None:
    """The runs not yet at the stop step, `args.jobs` at a time, each on `args.threads` cores; a log per run."""
    todo = [r for r in runs if not reached(Path(args.run_root) / r[0], args.stop_at)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    exe = str(Path(sys.executable).parent / "unitocom")
    running: list[tuple[str, subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            name, arch, lr = todo.pop(0)
            cmd = command(name, arch, lr, args)
            log = Path(args.run_root) / f"{name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"training {name} to step {args.stop_at} (log: {log}): {shlex.join(cmd)}", flush=True)
            running.append((name, launch([exe, *cmd[1:]], log, env)))
        time.sleep(5)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                if proc.returncode:
                    raise SystemExit(f"error: {name} failed (exit {proc.returncode}); see "
                                     f"{Path(args.run_root) / (name + '.log')}")
                print(f"{name}: at step {args.stop_at}", flush=True)


def points(name: str, arch: str, lr: str, run_dir: Path, stop_at: int) -> list[dict]:
    """A point per validation up to the stop step (a run continued past it, by a later probe, keeps its rows)."""
    out = []
    for r in (r for r in log_rows(run_dir)[0] if r["step"] <= stop_at):
        n = int(r.get("val_vqa_n", 0))
        p = {"run": name, "arch": arch or "preset", "lr": float(lr), "step": r["step"], "time_s": r.get("time_s"),
             "steps_per_s": r.get("steps_per_s"), "val_vqa_n": n,
             "train_loss": {t: r.get(f"{t}_loss") for t in TASKS if f"{t}_loss" in r}}
        for snr in (0, 20):
            acc = r.get(f"val_vqa_acc_{snr}db")
            if acc is not None and n:
                lo, hi = wilson(round(acc * n), n)
                p[f"vqa_{snr}db"] = {"value": acc, "ci_low": lo, "ci_high": hi}
        for k in ("val_t2i_diffusion", "val_t2i_caption_gain", "val_asr_wer_20db", "val_cap_lm_20db"):
            if k in r:
                p[k[4:]] = r[k]
        out.append(p)
    return out


def plot(runs: list[tuple[str, str, str]], args, path: Path) -> None:
    """Validation against step (VQA at 20 dB with its interval, the held-out T2I diffusion loss, ASR WER), and the
    training loss of the logged steps (with --log-every 50 in the 5-step cycle, the captioning steps)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = (("vqa_20db", "VQA val accuracy, 20 dB"), ("t2i_diffusion", "T2I held-out diffusion loss"),
              ("asr_wer_20db", "ASR val WER, 20 dB"), (None, "training loss of the logged steps"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for i, (name, arch, lr) in enumerate(runs):
        run_dir = Path(args.run_root) / name
        colour = f"C{i}"
        pts = points(name, arch, lr, run_dir, args.stop_at)
        for ax, (key, _) in zip(axes, panels):
            if key is None:
                continue
            xs = [p["step"] for p in pts if key in p]
            if key == "vqa_20db":
                ys = [p[key]["value"] for p in pts if key in p]
                err = [[y - p[key]["ci_low"] for y, p in zip(ys, pts)], [p[key]["ci_high"] - y for y, p in zip(ys, pts)]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colour, label=f"{name} (lr {lr})")
            else:
                ax.plot(xs, [p[key] for p in pts if key in p], marker="o", color=colour)
        by_task: dict[str, list[tuple[int, float]]] = {}
        for r in log_rows(run_dir)[1]:
            if r["step"] <= args.stop_at:
                by_task.setdefault(r["task"], []).append((r["step"], r["loss"]))
        for j, (task, rec) in enumerate(sorted(by_task.items())):
            ema, ys = None, []
            for _, loss in rec:
                ema = loss if ema is None else 0.8 * ema + 0.2 * loss
                ys.append(ema)
            axes[-1].plot([x for x, _ in rec], ys, color=colour, linestyle=("-", "--", ":", "-.")[j % 4],
                          label=f"{name}: {task}")
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[-1].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[-1].legend(fontsize=7)
    span = "the" if args.stop_at >= STEPS else f"the first {args.stop_at} steps of the"
    fig.suptitle(f"{span} {STEPS}-step MLLM recipe, per width and peak learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=DEFAULT_RUNS, help="NAME=ARCH@LR;... (ARCH: --mllm-arch's value, or empty)")
    ap.add_argument("--stop-at", type=int, default=2000, help="the step every run stops at")
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--log-every", type=int, default=50,
                    help="a training-loss record every N steps, for the plot (50: always the captioning step of the "
                         "5-step cycle, the task that reads all of a scene's tokens)")
    ap.add_argument("--data", default="data/tiny-speech96")
    ap.add_argument("--run-root", default="runs/lr-probe")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at a time")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per run (`train mllm --threads`): 1 for two runs on 2 cores; a single wide run "
                         "(--jobs 1) trains 1.7 times faster on 2")
    ap.add_argument("--out", default="results")
    ap.add_argument("--name", default="lr-probe", help="the files' stem in --out: NAME.json, NAME.png")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    args = ap.parse_args(argv)
    runs = parse_runs(args.runs)
    if args.threads < 1 or args.jobs < 1:
        raise SystemExit("error: --threads and --jobs must be at least 1")
    if args.dry_run:
        for name, arch, lr in runs:
            print(shlex.join(command(name, arch, lr, args)))
        return 0
    if not (Path(args.data) / "manifest.json").is_file():
        raise SystemExit(f"error: no data set at {args.data} (make it: unitocom data make --preset tiny --out "
                         f"{args.data} --train-clips 12000 --train-speakers 96 --no-spoken-questions)")
    commit, dirty = git_state(ROOT)  # what trained: the tree as the runs start (hours before the files)
    train(runs, args)
    ck = Path(os.environ.get("UNITOCOM_CHECKPOINTS", ROOT / "checkpoints"))
    header = {"format": FORMAT,
              "command": shlex.join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
              "git_commit": commit, "git_dirty": dirty,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "data": args.data, "data_checksum": dataset_checksum(args.data, use_manifest=True),
              "stop_at": args.stop_at, "steps": STEPS,
              "links_sha256": {f: file_sha256(ck / f) for f in LINKS if (ck / f).exists()},
              "runs": {name: {"arch": arch or "preset", "lr": float(lr), **sizes(arch),
                              "parameters": parameters(Path(args.run_root) / name),
                              "command": shlex.join(command(name, arch, lr, args))} for name, arch, lr in runs},
              "note": "validation on the val split: 256 questions (Rayleigh, 0 and 20 dB), the T2I diffusion loss on "
                      "held-out captions, ASR on the val speech; one training seed per run"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pts = [p for name, arch, lr in runs for p in points(name, arch, lr, Path(args.run_root) / name, args.stop_at)]
    write_atomic(out / f"{args.name}.json", json.dumps({"header": header, "points": pts}, indent=1) + "\n")
    plot(runs, args, out / f"{args.name}.png")
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
