"""`unitocom fig3`: the letter's Fig. 3 at the task level: one MLLM per image token length, equal budgets.

    unitocom fig3 --tokens 16,32,64,128 --steps 8000 --val-every 250 --snr-db 0:20:5 --channel rayleigh \\
        --n-vqa 500 --out results --runs runs/fig3

For each length N it
  1. trains an MLLM on the `image-sigma-genib-sN` tokens (`unitocom train mllm --image-tokens N --no-install`)
     into RUNS/sN/ with the SAME steps, batch, learning rate, SNR range and seed for every N (equal budget:
     the same number of examples seen; longer token sequences cost more compute per step). Training resumes
     from RUNS/sN/ when interrupted; a finished run (its mllm.safetensors trained with this very configuration)
     is reused as it is; a run dir made with another configuration is refused (move it away);
  2. measures VQA accuracy (exact match) against SNR over the test split IN PROCESS through
     `unitocom.pipeline.run` (the cores the three services call, without gRPC), the transmitter sending the
     image with the sN tokenizer and the base station reading it with RUNS/sN/mllm.safetensors. Request i
     carries seed + i at every length and SNR (the same questions and channel seeds everywhere);
  3. reads validation VQA accuracy against training step from RUNS/sN/log.jsonl (`val_vqa_acc_20db`,
     `val_vqa_acc_0db`, on val_vqa_n validation questions): the convergence panel.

It writes
  OUT/fig3.json  a header (the command, git commit and dirty flag, date, the sha256 of every checkpoint used:
                 the sN tokenizers, the text link and BPE, the runs' mllm.safetensors; each run's training config
                 and measured training steps/s), `points` (tokens, task, snr_db, channel, n, metric, value, ci_low,
                 ci_high: 95 %, Wilson for accuracy, bootstrap over captions for pair recall), `curves` (tokens,
                 step, metric, value, n, ci) and `verdict` (whether 32 tokens come out best, in words);
  OUT/fig3.csv   points and curve points, one row each (column `kind`);
  OUT/fig3.png   (a) VQA accuracy vs SNR per length with 95 % error bars, (b) validation VQA accuracy vs
                 training step per length [(c) T2I pair recall vs SNR when --t2i-n > 0].

Cost. Training throughput at one thread (tiny preset, batch 64, the task cycle VQA, VQA, T2I, ASR), measured
with this code on the 2-core development machine while other training shared it (load average 5-7):
s16 0.65, s32 0.59, s64 0.55, s128 0.40 steps/s (the ASR and T2I steps do not depend on the image length, so
the spread is small until 128). The default --steps 8000 (the recipe of the shipped mllm-sigma-genib, which
ran at ~1 step/s on a quieter machine) is then about 3.4 + 3.8 + 4.0 + 5.6 = ~17 CPU hours of training for the
four lengths under that load (~9-10 on idle cores), plus a validation every --val-every steps (256 questions
at two SNRs, ASR, T2I loss: 12 s each, measured with the shipped 32-token MLLM; 32 of them per length).
The lengths are independent: run one process per length (`--tokens 16 --train-only`, `--tokens 32
--train-only`, ... with the same --runs), then once more with all of them and --skip-train to evaluate; the
wall time is then that of s128. Evaluation: 0.04 s per VQA request in process (measured, shipped 32-token
MLLM; 4 lengths x 5 SNRs x 500 = 10000 requests, ~10 min). GPU (--device cuda): not measured; the link and
token preparation stay on the CPU, so expect a few times faster, not orders of magnitude, for the tiny MLLM.
T2I (--t2i-n) costs ~2 s per caption on the CPU per length and SNR when the captions go one at a time, so it is
skipped by default (0); --workers 16 keeps 16 requests in flight and the in-process base station then generates
them together (its dynamic batching, as the service does), many times faster on a CPU.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import io
import json
import shlex
import sys
from pathlib import Path

from unitocom.errors import CheckpointMissing, UserError, require_at_least_one
from unitocom.link.snr import snr_interval_arg, snr_points_arg
from unitocom.train.provenance import command_argv, file_sha256, git_state, write_atomic

FORMAT = "unitocom-results/fig3/1"
ROOT = Path(__file__).resolve().parents[1]
OBJECTIVE = "sigma-genib"  # the letter's scheme: UniToCom with sigma-GenIB tokenizers
SCHEME = "unitocom"
CURVE_METRICS = ("val_vqa_acc_20db", "val_vqa_acc_0db")
CSV_FIELDS = ["kind", "tokens", "task", "snr_db", "channel", "n", "metric", "value", "ci_low", "ci_high", "step"]


# ---- provenance ---------------------------------------------------------------------------------------------

def parse_tokens(text: str) -> list[int]:
    """'16,32,64,128' -> [16, 32, 64, 128] (sorted, no repeats); ValueError otherwise."""
    try:
        out = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(f"--tokens takes a comma list of image token counts, e.g. 16,32,64,128; got {text!r}") \
            from None
    if not out or out[0] < 1:
        raise ValueError(f"--tokens needs at least one positive count, got {text!r}")
    return out


def _tokens_arg(text: str) -> list[int]:
    try:
        return parse_tokens(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ---- intervals, summaries and the files ---------------------------------------------------------------------

def accuracy_point(tokens: int, snr_db: float, channel: str, correct: list[float]) -> dict:
    """A VQA point: accuracy of `correct` (0/1 per question) with its Wilson 95 % interval."""
    from unitocom.results import wilson
    n = len(correct)
    k = int(round(sum(correct)))
    lo, hi = wilson(k, n)
    return {"tokens": int(tokens), "task": "vqa", "snr_db": float(snr_db), "channel": channel, "n": n,
            "metric": "accuracy", "value": k / n, "ci_low": lo, "ci_high": hi,
            "correct": "".join("1" if c else "0" for c in correct)}  # per question, request i = seed + i: pairs


def recall_point(tokens: int, snr_db: float, channel: str, recalls: list[float], seed: int = 0) -> dict:
    """A T2I point: mean pair recall with its percentile-bootstrap 95 % interval over captions."""
    import numpy as np

    from unitocom.results import mean_interval
    lo, hi = mean_interval(recalls, seed=seed)
    return {"tokens": int(tokens), "task": "t2i", "snr_db": float(snr_db), "channel": channel, "n": len(recalls),
            "metric": "pair_recall", "value": float(np.mean(recalls)), "ci_low": lo, "ci_high": hi}


def curves_from_log(log: Path, tokens: int) -> list[dict]:
    """Validation VQA accuracy against step from a run's log.jsonl, with Wilson intervals where the log says
    on how many questions (`val_vqa_n`)."""
    from unitocom.results import wilson
    out = []
    if not Path(log).exists():
        return out
    for line in Path(log).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        n = row.get("val_vqa_n")
        for m in CURVE_METRICS:
            if m in row:
                v = float(row[m])
                lo, hi = wilson(int(round(v * n)), n) if n else (None, None)
                out.append({"tokens": int(tokens), "step": int(row["step"]), "metric": m, "value": v, "n": n,
                            "ci_low": lo, "ci_high": hi})
    return out


def throughput(log: Path) -> float | None:
    """Median training steps/s recorded in a run's log (validation time excluded), None if not recorded."""
    import statistics
    if not Path(log).exists():
        return None
    vals = [json.loads(x).get("steps_per_s") for x in Path(log).read_text().splitlines() if x.strip()]
    vals = [v for v in vals if v]
    return round(statistics.median(vals), 4) if vals else None


def convergence(curves: list[dict], metric: str = "val_vqa_acc_20db", share: float = 0.9) -> dict[str, dict]:
    """Per length: final and best validation accuracy, and the first step at which it reached `share` of its
    own best (how fast it converges)."""
    out: dict[str, dict] = {}
    for n in sorted({c["tokens"] for c in curves}):
        rows = sorted((c for c in curves if c["tokens"] == n and c["metric"] == metric), key=lambda c: c["step"])
        if not rows:
            continue
        best = max(c["value"] for c in rows)
        reach = next((c["step"] for c in rows if c["value"] >= share * best), None) if best > 0 else None
        out[str(n)] = {"final": rows[-1]["value"], "best": best, "last_step": rows[-1]["step"],
                       f"step_to_{int(share * 100)}pct_of_best": reach}
    return out


def verdict(points: list[dict], conv: dict[str, dict], reference: int = 32) -> dict:
    """Whether `reference` tokens come out best in VQA accuracy, said plainly, with what the intervals allow."""
    vqa = [p for p in points if p["task"] == "vqa"]
    lengths = sorted({p["tokens"] for p in vqa})
    if reference not in lengths or len(lengths) < 2:
        return {"reference_tokens": reference, "best_tokens": None, "reference_best": None,
                "statement": f"{reference} tokens were not compared with another length: no verdict."}
    snrs = sorted({p["snr_db"] for p in vqa})
    at = {(p["tokens"], p["snr_db"]): p for p in vqa}
    common = [s for s in snrs if all((n, s) in at for n in lengths)]
    mean = {n: sum(at[(n, s)]["value"] for s in common) / len(common) for n in lengths} if common else {}
    tops = [n for n in lengths if mean and mean[n] == max(mean.values())]
    best = tops[0] if len(tops) == 1 else None
    per_snr, wins, clear = [], 0, 0
    for s in common:
        hi = max(at[(n, s)]["value"] for n in lengths)
        top = [n for n in lengths if at[(n, s)]["value"] == hi]
        top = top[0] if len(top) == 1 else None  # a tie: no single best length at this SNR
        ref = at[(reference, s)]
        others = [at[(n, s)] for n in lengths if n != reference]
        separated = all(ref["ci_low"] > o["ci_high"] for o in others)
        wins += top == reference
        clear += top == reference and separated
        per_snr.append({"snr_db": s, "best_tokens": top, "reference_separated": separated})
    words = ", ".join(f"{n}: {mean[n]:.3f}" for n in lengths)
    # SNRs at which the best length's 95 % interval is clear of (above) the reference's: a lead the noise allows
    beats = [s for s in common if best not in (None, reference)
             and at[(best, s)]["ci_low"] > at[(reference, s)]["ci_high"]]
    if not common:
        statement = "no SNR measured at every length: no verdict."
    elif best is None:
        statement = (f"no single length comes out best: {', '.join(map(str, tops))} tokens tie on mean VQA accuracy "
                     f"over {len(common)} SNR(s) ({words}); {reference} is best alone at {wins} of {len(common)}.")
    elif best == reference:
        statement = (f"{reference} image tokens come out best: mean VQA accuracy over {len(common)} SNR(s) "
                     f"({words}); best at {wins} of {len(common)} SNR(s), with 95 % intervals clear of every "
                     f"other length at {clear}.")
    elif not beats:
        statement = (f"{reference} image tokens are not best on mean VQA accuracy over {len(common)} SNR(s) "
                     f"({words}; {reference} is best at {wins} of {len(common)}), but {best} tokens' 95 % interval "
                     f"is clear of {reference}'s at none of them: within noise, these runs do not say that "
                     f"{best} beats {reference}.")
    else:
        statement = (f"{reference} image tokens do NOT come out best: {best} tokens do (mean VQA accuracy over "
                     f"{len(common)} SNR(s): {words}), with 95 % intervals clear of {reference}'s at "
                     f"{len(beats)} of {len(common)} SNR(s); {reference} is best at {wins} of {len(common)}.")
    key = next((k for v in conv.values() for k in v if k.startswith("step_to_")), None)
    if key:
        reached = {int(n): v[key] for n, v in conv.items() if v[key] is not None}
        if reached:
            fastest = min(reached.values())
            statement += (" Convergence (first validation step at 90 % of the run's own best 20 dB accuracy): "
                          + ", ".join(f"{n}: {reached[n]}" for n in sorted(reached))
                          + f"; fastest: {', '.join(str(n) for n in sorted(reached) if reached[n] == fastest)}.")
    return {"reference_tokens": reference, "best_tokens": best, "reference_best": bool(common) and best == reference,
            "best_clear_of_reference_at_snr_db": beats,
            "mean_accuracy": {str(n): v for n, v in mean.items()}, "per_snr": per_snr, "statement": statement}


def write_json(path: Path, header: dict, points: list[dict], curves: list[dict], verdict_: dict | None = None
               ) -> None:
    doc = {"header": header, "points": points, "curves": curves, "verdict": verdict_}
    write_atomic(Path(path), json.dumps(doc, indent=2) + "\n")


def write_csv(path: Path, points: list[dict], curves: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for p in points:
        w.writerow({**p, "kind": "point"})
    for c in curves:
        w.writerow({**c, "kind": "curve", "task": "vqa"})
    write_atomic(Path(path), buf.getvalue())


def _yerr(rows: list[dict]) -> list[list[float]]:
    lo = [max(0.0, r["value"] - r["ci_low"]) if r.get("ci_low") is not None else 0.0 for r in rows]
    hi = [max(0.0, r["ci_high"] - r["value"]) if r.get("ci_high") is not None else 0.0 for r in rows]
    return [lo, hi]


def plot(path: Path, points: list[dict], curves: list[dict], recall_reference: dict | None = None) -> None:
    """`recall_reference` (task_eval.pair_recall_references) draws the T2I panel's chance level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t2i = [p for p in points if p["task"] == "t2i"]
    panels = 3 if t2i else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 3.9), squeeze=False)
    axes = axes[0]
    lengths = sorted({p["tokens"] for p in points} | {c["tokens"] for c in curves})
    colours = {n: f"C{i}" for i, n in enumerate(lengths)}
    for ax, task, label in ((axes[0], "vqa", "VQA accuracy"), *(((axes[2], "t2i", "T2I pair recall"),) if t2i else ())):
        pts = [p for p in points if p["task"] == task]
        for n in lengths:
            line = sorted((p for p in pts if p["tokens"] == n), key=lambda p: p["snr_db"])
            if line:
                ax.errorbar([p["snr_db"] for p in line], [p["value"] for p in line], yerr=_yerr(line), marker="o",
                            capsize=3, color=colours[n], label=f"{n} tokens")
        if task == "t2i" and recall_reference:
            ax.axhline(recall_reference["other"]["value"], color="grey", ls=":",
                       label="chance (real scene of another caption)")
        chans = sorted({p["channel"] for p in pts})
        ns = sorted({p["n"] for p in pts})
        ax.set_xlabel(f"SNR (dB), {', '.join(chans)}" if chans else "SNR (dB)")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"({'a' if task == 'vqa' else 'c'}) {label} (n={','.join(map(str, ns))}, 95 % CI)", fontsize=9)
        ax.grid(alpha=0.3)
        if pts:
            ax.legend(fontsize=7)
    ax = axes[1]
    for n in lengths:
        for m, style in zip(CURVE_METRICS, ("-", "--")):
            line = sorted((c for c in curves if c["tokens"] == n and c["metric"] == m), key=lambda c: c["step"])
            if line:
                ax.errorbar([c["step"] for c in line], [c["value"] for c in line], yerr=_yerr(line), ls=style,
                            marker=".", capsize=2, color=colours[n],
                            label=f"{n} tokens, {m.rsplit('_', 1)[-1].replace('db', ' dB')}")
    ax.set_xlabel("training step (equal budgets)")
    ax.set_ylabel("validation VQA accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("(b) convergence (validation, 95 % CI)", fontsize=9)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---- training -----------------------------------------------------------------------------------------------

def train_config(args):
    from unitocom.config import TrainCompute
    from unitocom.mllm.train import TrainConfig
    return TrainConfig(steps=args.steps, batch=args.batch_size, lr=args.lr, snr_db=tuple(args.train_snr_db),
                       channel=args.train_channel, val_every=args.val_every, val_n=args.val_n, seed=args.seed,
                       compute=TrainCompute(device=args.device))


def _jsonable(x):
    return json.loads(json.dumps(x))


def _budget(train_config: dict | None) -> dict:
    """A run's training configuration less where and how it ran (the device, the compute options and the step
    log change no budget); fields added later at their defaults left out, so earlier runs still compare equal."""
    later_defaults = {"init_backbone": None}
    return _jsonable({k: v for k, v in (train_config or {}).items()
                      if k not in ("device", "compute", "log_every")
                      and not (k in later_defaults and later_defaults[k] == v)})


def _plan(mllm: Path) -> dict:
    """What a fig3 run dir was made with (fig3-run.json beside its mllm.safetensors), {} if not by fig3."""
    f = Path(mllm).parent / "fig3-run.json"
    return json.loads(f.read_text()) if f.exists() else {}


def ensure_trained(tokens: int, args, tc, progress=print, command: str = "") -> tuple[Path, dict, float | None]:
    """RUNS/s<tokens>/mllm.safetensors trained with `tc` (reused when finished, resumed when interrupted,
    trained when absent; with --skip-train taken as it is) -> (its path, its meta, the seconds spent training
    now or None)."""
    import time

    from unitocom.mllm.checkpoint import load_mllm
    d = Path(args.runs) / f"s{tokens}"
    ckpt = d / "mllm.safetensors"
    plan = _jsonable({"image_tokens": tokens, "preset": args.preset, "objective": OBJECTIVE, "data": str(args.data),
                      "limit": args.limit, "train_config": _budget(dataclasses.asdict(tc))})
    plan_file = d / "fig3-run.json"
    if plan_file.exists() and not args.skip_train:
        old = json.loads(plan_file.read_text())
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise UserError(f"{d} holds a run made with another configuration ({', '.join(diff)} differ): move it "
                            f"away, or give the same options (equal budgets), or use another --runs")
    if ckpt.exists():
        _, _, meta = load_mllm(ckpt)
        if args.skip_train or (meta.get("image_tokens") == tokens
                               and _budget(meta.get("train_config")) == plan["train_config"]):
            progress(f"s{tokens}: reusing the finished run {ckpt}")
            return ckpt, meta, None
    if args.skip_train:
        raise CheckpointMissing(f"--skip-train: {ckpt} is missing; run `unitocom fig3` without --skip-train "
                                f"(or with --tokens {tokens}) to train it")
    from unitocom.mllm.train import train
    d.mkdir(parents=True, exist_ok=True)
    write_atomic(plan_file, json.dumps(plan, indent=2) + "\n")
    progress(f"s{tokens}: training {tc.steps} steps into {d} (resumes from its last validation)")
    t = time.time()
    meta = train(str(args.data), str(d), args.preset, tc=tc, limit=args.limit, resume=True,
                 command=f"{command} [its s{tokens} run]".strip(), objective=OBJECTIVE, image_tokens=tokens)
    return ckpt, meta, time.time() - t


# ---- evaluation (in process, the services' cores) -----------------------------------------------------------

def send(req, cfg):
    """One request through `unitocom.pipeline.run`: the protobuf Request `client.build_request` makes, converted
    to the `unitocom.messages` dataclass the pipeline takes, as the transmitter service converts it."""
    from unitocom import pipeline
    from unitocom.stages.request import from_wire
    return pipeline.run(from_wire(req), cfg)


def eval_config(args, tokens: int, mllm: Path):
    """The sN config; with --workers > 1 the base station's dynamic batching is on in process (batch_max =
    workers), as the service runs it: the requests in flight are answered in one forward (T2I: one generation)."""
    from unitocom import config
    workers = max(1, getattr(args, "workers", 1))
    limits = dataclasses.replace(config.ServiceLimits(), batch_max=workers)
    return config.load(args.preset, image_tokens=tokens, mllm_path=str(mllm), device=args.device, limits=limits)


def _request_failed(e) -> UserError:
    return UserError(f"a request failed in process: {e} ({getattr(e, 'code', 'error')})")


def measure_vqa(cfg, items: list[dict], data_dir: Path, split: str, snr_db: float, channel: str, seed: int,
                desc: str, quiet: bool, workers: int = 1, scheme: str = SCHEME) -> list[float]:
    """Exact match (0/1) per question, in question order; `workers` requests in flight at a time; `scheme`
    "vae" sends with the VAE link (its MLLM the config's)."""
    from unitocom import client
    from unitocom.data.layouts import clevr_root
    from unitocom.stages.request import RequestError
    from unitocom.task_eval import gather

    def one(i: int) -> float:
        q = items[i]
        png = (clevr_root(data_dir) / "images" / split / q["image_filename"]).read_bytes()
        req = client.build_request(task="vqa", scheme=scheme, snr_db=snr_db, channel=channel, seed=seed + i,
                                   image=png, question=q["question"], answer=q["answer"])
        try:
            return float(send(req, cfg).quality["exact_match"])
        except RequestError as e:
            raise _request_failed(e) from None
    return gather(one, len(items), workers, desc, not quiet)


def measure_asr(cfg, items: list[tuple[Path, str]], snr_db: float, channel: str, seed: int, desc: str,
                quiet: bool, workers: int = 1, scheme: str = SCHEME) -> list[str]:
    """The transcript per (clip, reference) of `items`, in order; `workers` requests in flight at a time."""
    from unitocom import client
    from unitocom.stages.request import RequestError
    from unitocom.task_eval import gather

    def one(i: int) -> str:
        path, text = items[i]
        req = client.build_request(task="asr", scheme=scheme, snr_db=snr_db, channel=channel, seed=seed + i,
                                   audio=path.read_bytes(), transcript=text)
        try:
            return send(req, cfg).output_text
        except RequestError as e:
            raise _request_failed(e) from None
    return gather(one, len(items), workers, desc, not quiet)


def measure_t2i(cfg, captions: list[str], snr_db: float, channel: str, seed: int, desc: str, quiet: bool,
                workers: int = 1, scheme: str = SCHEME) -> list[float]:
    """Pair recall per caption that names (colour, shape) pairs, in caption order; `workers` in flight."""
    from unitocom import client
    from unitocom.stages.request import RequestError
    from unitocom.task_eval import gather

    def one(i: int) -> float | None:
        req = client.build_request(task="t2i", scheme=scheme, snr_db=snr_db, channel=channel, seed=seed + i,
                                   text=captions[i])
        try:
            return send(req, cfg).quality.get("t2i_pair_recall")
        except RequestError as e:
            raise _request_failed(e) from None
    # run() keeps only captions that name (colour, shape) pairs, so a missing recall is not expected
    return [float(r) for r in gather(one, len(captions), workers, desc, not quiet) if r is not None]


# ---- the command --------------------------------------------------------------------------------------------

def point_key(p: dict) -> tuple:
    return (p["tokens"], p["task"], round(float(p["snr_db"]), 6), p["channel"], int(p["n"]))


def run(args, argv: list[str]) -> dict:
    import torch

    from unitocom.data.layouts import require_data
    from unitocom.schemes.learned import checkpoint_dir
    from unitocom.task_eval import caption_items, vqa_items
    torch.set_num_threads(max(1, args.threads))
    data_dir = require_data(args.data)
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(args.out)
    paths = {k: out / f"fig3.{k}" for k in ("json", "csv", "png")}
    tc = train_config(args)
    ck = checkpoint_dir()
    for n in args.tokens:  # fail before hours of training, not after
        f = ck / f"image-{OBJECTIVE}-s{n}.safetensors"
        if not f.exists():
            raise CheckpointMissing(f"{f} is missing: train it with `unitocom train tokenizer --modality image "
                                    f"--objective {OBJECTIVE} --tokens {n}`")

    command = "unitocom " + " ".join(shlex.quote(a) for a in argv)
    runs: dict[int, dict] = {}
    for n in args.tokens:
        mllm, meta, train_s = ensure_trained(n, args, tc, log, command)
        log_file = mllm.parent / "log.jsonl"
        runs[n] = {"mllm": mllm, "meta": meta, "train_s_now": train_s, "steps_per_s": throughput(log_file),
                   "curves": curves_from_log(log_file, n)}
    if args.train_only:
        return {"trained": {n: str(r["mllm"]) for n, r in runs.items()},
                "steps_per_s": {n: r["steps_per_s"] for n, r in runs.items()}}
    out.mkdir(parents=True, exist_ok=True)
    budgets = {n: _budget(r["meta"].get("train_config")) for n, r in runs.items()}
    equal = len({json.dumps(b, sort_keys=True) for b in budgets.values()}) == 1
    if not equal:
        log("warning: the runs were not trained with equal budgets (see header.runs): the comparison is unfair")

    commit, dirty = git_state(ROOT)
    used = [ck / f"image-{OBJECTIVE}-s{n}.safetensors" for n in args.tokens] + [ck / f"text-{OBJECTIVE}.safetensors"]
    used += [ck / name for r in runs.values() for name in (r["meta"].get("links") or {}).values()]  # trained with
    if args.t2i_n:
        used.append(ck / "scene-checker.safetensors")
    sums = {p.name: file_sha256(p) for p in dict.fromkeys(used) if p.exists()}
    sums.update({str(r["mllm"]): file_sha256(r["mllm"]) for r in runs.values()})
    header = {
        "format": FORMAT, "command": command,
        "git_commit": commit, "git_dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoints_dir": str(ck), "checkpoints_sha256": sums, "scheme": SCHEME, "objective": OBJECTIVE,
        "preset": args.preset, "data": str(args.data), "split": args.split, "seed": args.seed,
        "tokens": args.tokens, "equal_budget": equal,
        "runs": {str(n): {"dir": str(r["mllm"].parent), "image_tokens": r["meta"].get("image_tokens"),
                          "train_config": budgets[n], "train_limit": _plan(r["mllm"]).get("limit"), "data_checksum":
                          r["meta"].get("data_checksum"), "train_wall_s": r["meta"].get("wall_s"),
                          "steps_per_s": r["steps_per_s"], "validation": r["meta"].get("validation")}
                 for n, r in runs.items()},
    }
    curves = [c for n in args.tokens for c in runs[n]["curves"]]

    kept: dict[tuple, dict] = {}
    if args.resume and paths["json"].exists():
        old = json.loads(paths["json"].read_text())
        osums = old.get("header", {}).get("checkpoints_sha256", {})
        for p in old.get("points", []):
            mllm = str(runs[p["tokens"]]["mllm"]) if p.get("tokens") in runs else None
            if mllm and osums.get(mllm) == sums.get(mllm) and old["header"].get("seed") == args.seed:
                kept[point_key(p)] = p
        log(f"resuming: {len(kept)} point(s) of {paths['json']} measured with the same checkpoints")

    points: list[dict] = []

    def save():
        write_json(paths["json"], header, points, curves)
        write_csv(paths["csv"], points, curves)

    items = captions = []
    if args.n_vqa:
        items, _ = vqa_items(data_dir, args.split, args.n_vqa)
        if not items:
            raise UserError(f"no questions in the {args.split} split of {data_dir}")
    if args.t2i_n:
        from unitocom.metrics.scene_checker import caption_pairs
        from unitocom.stages.mllm import scene_checker
        if scene_checker() is None:
            raise CheckpointMissing("--t2i-n: the pair recall needs checkpoints/scene-checker.safetensors (train it "
                                    "with `unitocom train checker`)")
        captions = [c for c, _ in caption_items(data_dir, args.split, 4 * args.t2i_n) if caption_pairs(c)]
        captions = captions[:args.t2i_n]
        if not captions:
            raise UserError(f"--t2i-n: no caption in the {args.split} split of {data_dir} names a (colour, shape) "
                            "pair the scene checker scores")
        from unitocom.task_eval import pair_recall_references  # the recall's scale: a right picture, chance
        header["t2i_pair_recall_reference"] = pair_recall_references(data_dir, args.split, len(captions),
                                                                     seed=args.seed)
    for n in args.tokens:
        cfg = eval_config(args, n, runs[n]["mllm"])
        for task, what, count in (("vqa", items, args.n_vqa), ("t2i", captions, args.t2i_n)):
            if not count:
                continue
            for snr in args.snr_db:
                key = (n, task, round(float(snr), 6), args.channel, len(what))
                if key in kept:
                    points.append(kept[key])
                    continue
                desc = f"{task} s{n} {snr:g} dB {args.channel}"
                if task == "vqa":
                    p = accuracy_point(n, snr, args.channel, measure_vqa(cfg, what, data_dir, args.split, snr,
                                                                         args.channel, args.seed, desc, args.quiet,
                                                                         args.workers))
                else:
                    p = recall_point(n, snr, args.channel,
                                     measure_t2i(cfg, what, snr, args.channel, args.seed, desc, args.quiet,
                                                 args.workers),
                                     seed=args.seed)
                points.append(p)
                log(f"  {desc}: {p['metric']} {p['value']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}] n={p['n']}")
                save()
    conv = convergence(curves)
    v = verdict(points, conv)
    v["convergence"] = conv
    write_json(paths["json"], header, points, curves, v)
    write_csv(paths["csv"], points, curves)
    plot(paths["png"], points, curves, header.get("t2i_pair_recall_reference"))
    return {"header": header, "points": points, "curves": curves, "verdict": v, "paths": paths}


def summary(res: dict) -> str:
    h = res["header"]
    lines = [f"fig3: {len(res['points'])} point(s), {len(res['curves'])} validation point(s); equal budgets: "
             f"{h['equal_budget']}"]
    for n, r in h["runs"].items():
        lines.append(f"  s{n}: {r['dir']}, training {r['steps_per_s']} steps/s (median, 1 thread)")
    for p in res["points"]:
        lines.append(f"  {p['task']:4s} s{p['tokens']:<4d} {p['snr_db']:>5g} dB {p['channel']:9s} n={p['n']:<4d} "
                     f"{p['metric']} {p['value']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}]")
    lines.append("  " + res["verdict"]["statement"])
    lines += [f"  wrote {p}" for p in res["paths"].values() if p.exists()]
    return "\n".join(lines)


def add_subparser(sub) -> None:
    p = sub.add_parser("fig3", help="Fig. 3 at the task level: one MLLM per image token length (16..128, equal "
                       "budgets), VQA accuracy vs SNR and convergence -> results/fig3.{json,csv,png}",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=_tokens_arg, default="16,32,64,128",
                   help="image token counts S_v (each needs checkpoints/image-sigma-genib-s<N>.safetensors)")
    g = p.add_argument_group("training (the same for every length: equal budgets)")
    g.add_argument("--steps", type=int, default=8000,
                   help="training steps per length (8000: the shipped 32-token MLLM's recipe)")
    g.add_argument("--val-every", type=int, default=250, help="validation (the convergence panel) every K steps")
    g.add_argument("--val-n", type=int, default=256, help="validation questions per SNR (20 and 0 dB)")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--train-snr-db", type=snr_interval_arg, default="-5:25", metavar="A:B",
                   help="training SNR range (write --train-snr-db=-5:25)")
    g.add_argument("--train-channel", default="rayleigh", choices=["awgn", "rayleigh"])
    g.add_argument("--limit", type=int, default=None,
                   help="train on the first N scenes only (tests and smoke runs; default: all)")
    g.add_argument("--runs", default="runs/fig3", help="run dirs RUNS/s<N>/ (resumed, reused when finished)")
    g.add_argument("--skip-train", action="store_true",
                   help="evaluate the runs already in RUNS as they are; a missing one is an error")
    g.add_argument("--train-only", action="store_true",
                   help="train (or finish) the runs and stop: no evaluation, no files under OUT")
    g.add_argument("--device", default="cpu", help="cpu, or cuda (training and the base station's MLLM)")
    e = p.add_argument_group("evaluation (in process through unitocom.pipeline.run)")
    e.add_argument("--snr-db", type=snr_points_arg, default="0:20:5", help="A:B:STEP or a comma list (dB)")
    e.add_argument("--channel", default="rayleigh", help="awgn | rayleigh | rician | noiseless")
    e.add_argument("--n-vqa", type=int, default=500, help="test questions per (length, SNR) point")
    e.add_argument("--t2i-n", type=int, default=0,
                   help="captions per (length, SNR) point for T2I pair recall; ~2 s per caption on a CPU, so 0 "
                        "(skipped) by default")
    e.add_argument("--data", default="data/tiny")
    e.add_argument("--split", default="test")
    e.add_argument("--seed", type=int, default=0, help="training seed; request i carries seed + i")
    e.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    e.add_argument("--threads", type=int, default=1, help="torch threads for the evaluation")
    e.add_argument("--workers", type=int, default=1,
                   help="requests in flight at a time; above 1 the base station's dynamic batching runs in process "
                        "(batch_max = workers), so T2I captions are generated together: 16 makes T2I affordable "
                        "on a CPU")
    e.add_argument("--out", default="results", help="folder for fig3.json, fig3.csv, fig3.png")
    e.add_argument("--resume", action="store_true",
                   help="keep the points of OUT/fig3.json measured with the same MLLM files and seed")
    e.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    p.set_defaults(func=_cmd_fig3)


def require_channel(channel: str) -> None:
    """A UserError unless `channel` is a channel model the pipeline knows (noiseless included)."""
    from unitocom import client
    channels = client.choices().get("channel", [])
    if channel not in channels:
        raise UserError(f"--channel: unknown channel model {channel!r}; choose from {', '.join(channels)}")


def _cmd_fig3(args) -> int:
    require_channel(args.channel)
    require_at_least_one(args, ("steps", "val_every", "val_n", "batch_size", "threads", "workers"))
    for k in ("n_vqa", "t2i_n"):
        if getattr(args, k) < 0:
            raise UserError(f"--{k.replace('_', '-')} must be 0 or more")
    if args.train_only and args.skip_train:
        raise UserError("--train-only and --skip-train together do nothing")
    if not (args.n_vqa or args.t2i_n or args.train_only):
        raise UserError("nothing to measure: --n-vqa and --t2i-n are both 0")
    res = run(args, command_argv("fig3", args))
    if args.train_only:
        for n, path in res["trained"].items():
            print(f"s{n}: {path} ({res['steps_per_s'][n]} steps/s)")
        return 0
    print(summary(res))
    return 0
