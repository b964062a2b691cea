"""`unitocom fig2`: the letter's Fig. 2 as files, in one command, through the running services.

    unitocom fig2 --tasks vqa,t2i,asr --schemes unitocom,vae,semcom,traditional --snr-db 0:20:5 \\
        --channel rayleigh --n-vqa 500 --n-asr 150 --n-t2i 500 --out results --target 127.0.0.1:50051

writes
  results/fig2.json  a header (the command, the git commit and whether the tree was dirty, the date, the sha256 of
                     every checkpoint in the directory the services read) and `points`: one per (task, scheme,
                     SNR) with n, the metric, its value and 95 % interval (`unitocom.results`), and the task's
                     extras (VQA: majority-class chance; T2I: pair recall with its interval, the real-vs-real FID
                     floor); `skipped`: the points the services refused (status and message); with t2i, the
                     header's t2i_pair_recall_reference: the checker's pair recall on real scenes of the
                     same captions (the ceiling) and of other captions (chance);
  results/fig2.csv   the same points, one row each (skipped ones with their status);
  results/fig2.png   one panel per task score (VQA accuracy, T2I FID, T2I pair recall, ASR WER) against SNR, one
                     line per scheme with the intervals as error bars, and the upper bound dashed.

The upper bound is the letter's "same MLLM on clean, noiseless tokens": scheme unitocom over the channel model
`noiseless` (no fading, no noise), once per task; it is recorded with "scheme": "upper-bound", "snr_db": null.
`--no-upper-bound` leaves it out. The JSON is rewritten after every point, so `--resume` continues an interrupted
sweep: points already in results/fig2.json with the same (task, scheme, SNR, channel, n) are kept, not re-sent
(refused ones are tried again), as long as no checkpoint they were measured with has changed (new ones, say a
newly trained scheme's, may have been added). Two changes re-measure only the points that read them: an MLLM's
diffusion head alone (its T2I points) and a text link or the language prior (text-*.safetensors: the VQA and T2I
points of every scheme that sends typed text through a learned link, the upper bound included). The points kept
are saved with every point measured, so a resumed sweep stopped part way loses none of them. `--name NAME` writes
NAME.json/.csv/.png instead (the same figure off another data set, say a freshly drawn one: `--data
data/tiny-seed77 --name fig2-seed77`).
`scripts/results_tables.py` turns the JSON into the README's tables (`<!-- results:NAME:vqa -->` and so on).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import re
import shlex
import sys
from pathlib import Path

from unitocom.errors import UserError, require_at_least_one
from unitocom.link.snr import snr_points_arg
from unitocom.train.provenance import command_argv, file_sha256, git_state, tensors_sha256, write_atomic

TASKS = ("vqa", "t2i", "asr")
UPPER = "upper-bound"
NOISELESS = "noiseless"
UPPER_LABEL = "upper bound (noiseless tokens)"
FORMAT = "unitocom-results/fig2/1"
ROOT = Path(__file__).resolve().parents[1]
CSV_FIELDS = ["task", "scheme", "channel", "snr_db", "n", "metric", "value", "ci_low", "ci_high", "chance",
              "pair_recall", "pair_recall_ci_low", "pair_recall_ci_high", "fid_real_vs_real", "skipped", "status",
              "message"]
# A refusal is a point's own matter (its scheme's checkpoints are missing, it does not serve this task): recorded
# and the sweep goes on. UNAVAILABLE means the services are gone: the sweep stops (--resume continues it).
FATAL = ("UNAVAILABLE",)


# ---- provenance ---------------------------------------------------------------------------------------------

def checkpoint_files(directory: Path) -> list[Path]:
    """Every checkpoint file (weights, tokenizer tables) in `directory`, in name order; the manifests and README are
    descriptions, not inputs, and are left out."""
    return [p for p in sorted(Path(directory).glob("*"))
            if p.is_file() and p.suffix in (".safetensors", ".json", ".pt", ".bin") and not p.name.startswith("manifest")]


def checkpoint_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every checkpoint file in `directory` (checkpoint_files)."""
    return {p.name: file_sha256(p) for p in checkpoint_files(directory)}


# Files beside the checkpoints that change how every typed text is read once they are there (the language prior,
# `schemes.learned.text_prior`): a point measured before one was added is out of date, unlike a new scheme's weights
TEXT_READERS = ("text-prior.safetensors",)
# The tasks that send typed text (a question, a caption), and the schemes that send it through no learned text link
# (traditional: UTF-8 + LDPC; semcom: its own encoders, from the BPE): a text link or the prior changed or added
# leaves their points, and every ASR point, as they were.
TEXT_TASKS = frozenset({"vqa", "t2i"})
TEXT_LINK_FREE_SCHEMES = frozenset({"traditional", "semcom"})
# Schemes whose text-to-image reads no MLLM (semcom draws with its own receiver, schemes.semcom.CHECKPOINT): their
# T2I points survive a change of an MLLM's diffusion head.
MLLM_FREE_SCHEMES = frozenset({"semcom"})
HEAD_PREFIX = "diffusion."  # an MLLM's diffusion head: the only weights text-to-image reads and VQA / ASR do not


def without_head_hashes(directory: Path) -> dict[str, str]:
    """For each MLLM in `directory`, the sha256 of its weights other than the diffusion head's: unchanged by
    `train mllm-head`, so the VQA and ASR points measured with it stay valid when only the head is retrained."""
    return {p.name: tensors_sha256(p, HEAD_PREFIX) for p in sorted(Path(directory).glob("mllm-*.safetensors"))}


def make_header(argv: list[str], settings: dict, checkpoints_dir: Path) -> dict:
    """A results file's header: the command, the commit, every checkpoint's sha256 and the settings; with a "data"
    setting also `data_sha256`, the checksum `data make` recorded for that set (None for a set it did not make):
    a path names a folder, which a later `data make` may have drawn again."""
    from unitocom.data.make import recorded_checksum
    commit, dirty = git_state(ROOT)
    data = {"data_sha256": recorded_checksum(settings["data"])} if "data" in settings else {}
    return {"format": FORMAT, "command": "unitocom " + " ".join(shlex.quote(a) for a in argv),
            "git_commit": commit, "git_dirty": dirty,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "checkpoints_dir": str(checkpoints_dir), "checkpoints_sha256": checkpoint_hashes(checkpoints_dir),
            "mllm_sha256_without_diffusion_head": without_head_hashes(checkpoints_dir), **settings, **data}


DEFAULT_DATA = "data/tiny"  # the data set of `fig2` and `loss-sweep` without --data


def header_data(header: dict) -> str:
    """The data set a results header names; for a file written before headers named it, its command's --data or
    the default."""
    if "data" in header:
        return header["data"]
    words = shlex.split(header.get("command", ""))
    return words[words.index("--data") + 1] if "--data" in words[:-1] else DEFAULT_DATA


def same_data(old_header: dict, header: dict) -> bool:
    """Whether two headers name the same data set: the same path, and the same recorded checksum where both
    headers have one (files written before headers kept it do not)."""
    if header_data(old_header) != header_data(header):
        return False
    if "data_sha256" in old_header and "data_sha256" in header:
        return old_header["data_sha256"] == header["data_sha256"]
    return True


def _head_only(old_header: dict, header: dict, name: str) -> bool:
    """True when checkpoint `name` is an MLLM whose weights other than the diffusion head are those the old results
    were measured with (both headers record them): only its text-to-image points are out of date."""
    old, now = old_header.get("mllm_sha256_without_diffusion_head", {}), header["mllm_sha256_without_diffusion_head"]
    return name in old and now.get(name) == old[name]


def is_text_reader(name: str) -> bool:
    """A file that typed text alone is read through: a learned text link (text-<objective>[-resilient]) or the
    language prior. Not text-bpe.json: the BPE is every text model's vocabulary, semcom's and the MLLMs' too."""
    return name.startswith("text-") and name.endswith(".safetensors")


def stale(p: dict, head_changed: bool, text_changed: bool) -> bool:
    """Whether a kept point reads something that changed: an MLLM's diffusion head (every MLLM-drawn picture) or
    a text link or the prior (every question and caption sent through a learned text link, the upper bound's
    too: it is unitocom over the noiseless channel)."""
    return ((head_changed and p["task"] == "t2i" and p["scheme"] not in MLLM_FREE_SCHEMES)
            or (text_changed and p["task"] in TEXT_TASKS and p["scheme"] not in TEXT_LINK_FREE_SCHEMES))


# ---- the files ----------------------------------------------------------------------------------------------

def point_key(p: dict) -> tuple:
    """What identifies a point for --resume: (task, scheme, SNR, channel, n asked for)."""
    snr = p.get("snr_db")
    return (p["task"], p["scheme"], None if snr is None else round(float(snr), 6), p["channel"],
            int(p.get("n_requested", p.get("n"))))


def write_json(path: Path, header: dict, points: list[dict], skipped: list[dict]) -> None:
    write_atomic(Path(path), json.dumps({"header": header, "points": points, "skipped": skipped}, indent=2) + "\n")


def write_csv(path: Path, points: list[dict], skipped: list[dict]) -> None:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for p in points:
        w.writerow({**p, "skipped": False})
    for s in skipped:
        w.writerow({**s, "skipped": True})
    write_atomic(Path(path), buf.getvalue())


PANELS = [  # (task, value key, interval key prefix, y label)
    ("vqa", "value", "ci_", "VQA accuracy"),
    ("t2i", "value", "ci_", "T2I FID (scene-checker features)"),
    ("t2i", "pair_recall", "pair_recall_ci_", "T2I pair recall"),
    ("asr", "value", "ci_", "ASR WER"),
]


def _yerr(points: list[dict], key: str, prefix: str) -> list[list[float]]:
    """Error-bar lengths below and above each value (0 where an interval is missing or, as FID's bootstrap
    can be, wholly on one side of the value)."""
    lo = [max(0.0, p[key] - p[f"{prefix}low"]) if p.get(f"{prefix}low") is not None else 0.0 for p in points]
    hi = [max(0.0, p[f"{prefix}high"] - p[key]) if p.get(f"{prefix}high") is not None else 0.0 for p in points]
    return [lo, hi]


def plot(path: Path, points: list[dict], recall_reference: dict | None = None) -> None:
    """`recall_reference` (task_eval.pair_recall_references) draws the pair-recall panel's chance level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [pn for pn in PANELS if any(p["task"] == pn[0] and p.get(pn[1]) is not None for p in points)]
    if not panels:
        return
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (task, key, prefix, label) in zip(axes.flat, panels):
        pts = [p for p in points if p["task"] == task and p.get(key) is not None]
        curves = [p for p in pts if p["scheme"] != UPPER]
        channels = sorted({p["channel"] for p in curves})
        for scheme in dict.fromkeys(p["scheme"] for p in curves):
            for ch in channels:
                line = sorted((p for p in curves if p["scheme"] == scheme and p["channel"] == ch),
                              key=lambda p: p["snr_db"])
                if line:
                    ax.errorbar([p["snr_db"] for p in line], [p[key] for p in line], yerr=_yerr(line, key, prefix),
                                marker="o", capsize=3, label=scheme if len(channels) == 1 else f"{scheme} ({ch})")
        for p in (p for p in pts if p["scheme"] == UPPER):
            ax.axhline(p[key], color="black", ls="--", lw=1.2, label=UPPER_LABEL)
            if p.get(f"{prefix}low") is not None:
                ax.axhspan(p[f"{prefix}low"], p[f"{prefix}high"], color="black", alpha=0.08, lw=0)
        if task == "vqa" and key == "value" and curves and curves[0].get("chance") is not None:
            ax.axhline(curves[0]["chance"], color="grey", ls=":", label="majority-class chance")
        if key == "pair_recall" and recall_reference:
            ax.axhline(recall_reference["other"]["value"], color="grey", ls=":",
                       label="chance (real scene of another caption)")
        ax.set_xlabel(f"SNR (dB), {', '.join(channels)}" if channels else "SNR (dB)")
        ax.set_ylabel(label)
        ns = sorted({p["n"] for p in pts})
        ax.set_title(f"{label} (n={','.join(map(str, ns))}, 95 % CI)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---- the sweep ----------------------------------------------------------------------------------------------

def plan(tasks: list[str], schemes: list[str], snrs: list[float], channel: str, ns: dict[str, int],
         upper_bound: bool) -> list[dict]:
    """Every point to measure: per task, each scheme at each SNR, then the upper bound."""
    out = []
    for t in tasks:
        out += [{"task": t, "scheme": s, "snr_db": float(snr), "channel": channel, "n_requested": ns[t]}
                for s in schemes for snr in snrs]
        if upper_bound:
            out.append({"task": t, "scheme": UPPER, "snr_db": None, "channel": NOISELESS, "n_requested": ns[t]})
    return out


def _noiseless_available() -> bool:
    from unitocom import client
    return NOISELESS in client.choices().get("channel", [])


def measure(spec: dict, args, send_snr_db: float) -> dict:
    """One point through the services (the upper bound is sent as unitocom over `noiseless`)."""
    from unitocom.task_eval import evaluate
    upper = spec["scheme"] == UPPER
    row = evaluate(spec["task"], "unitocom" if upper else spec["scheme"],
                   send_snr_db if upper else spec["snr_db"], spec["channel"], spec["n_requested"], args.data,
                   args.target, args.split, seed=args.seed, progress=not args.quiet, timeout_s=args.timeout_s,
                   workers=max(1, args.workers), n_resamples=args.resamples, fid_resamples=args.fid_resamples,
                   link={"text_copies": args.text_copies} if args.text_copies > 1 else None)
    row["n_requested"] = spec["n_requested"]
    if upper:
        row.update(scheme=UPPER, snr_db=None, sent_as={"scheme": "unitocom", "channel": NOISELESS,
                                                       "snr_db": send_snr_db})
    return row


def run(args, argv: list[str]) -> dict:
    from unitocom import client
    from unitocom.schemes.learned import checkpoint_dir
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise UserError(f"--tasks: unknown task(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TASKS)}")
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    if not schemes:
        raise UserError("--schemes: name at least one scheme")
    ns = {"vqa": args.n_vqa, "t2i": args.n_t2i, "asr": args.n_asr}
    from unitocom.stages.request import MAX_TEXT_COPIES
    if not 0 <= args.text_copies <= MAX_TEXT_COPIES:
        raise UserError(f"--text-copies: {args.text_copies} is not in 0..{MAX_TEXT_COPIES} (0 or 1: each text once)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = getattr(args, "name", None) or "fig2"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"--name {name!r}: a file stem (letters, digits, '.', '_', '-')")
    paths = {k: out / f"{name}.{k}" for k in ("json", "csv", "png")}
    settings = {"target": args.target, "data": str(args.data), "split": args.split, "seed": args.seed,
                "resamples": args.resamples, "fid_resamples": args.fid_resamples, "workers": args.workers,
                **({"text_copies": args.text_copies} if args.text_copies > 1 else {})}
    header = make_header(argv, settings, checkpoint_dir())
    if "t2i" in tasks:  # the scale a pair recall sits on, from real scenes: no services needed
        from unitocom.task_eval import pair_recall_references
        header["t2i_pair_recall_reference"] = pair_recall_references(Path(args.data), args.split, args.n_t2i,
                                                                     args.resamples, args.seed)

    kept: dict[tuple, dict] = {}
    if args.resume and paths["json"].exists():
        old = json.loads(paths["json"].read_text())
        oh = old.get("header", {})
        # Checkpoints added since (a new scheme's) leave the earlier points valid; one changed or removed does not.
        now = header["checkpoints_sha256"]
        changed = sorted(f for f, h in oh.get("checkpoints_sha256", {}).items() if now.get(f) != h)
        # A file that every typed question and caption is read through changes those points when it is added
        added = sorted(f for f in TEXT_READERS if f in now and f not in oh.get("checkpoints_sha256", {}))
        heads = [f for f in changed if f in now and _head_only(oh, header, f)]
        texts = [f for f in changed + added if f in now and is_text_reader(f)]
        others = [f for f in changed if f not in heads and f not in texts]
        if others:
            raise UserError(f"--resume: {paths['json']} was measured with other checkpoints than those in "
                            f"{header['checkpoints_dir']} now ({', '.join(others)} changed or gone); move it away "
                            "or run without --resume")
        if not same_data(oh, header):
            raise UserError(f"--resume: {paths['json']} was measured on data {header_data(oh)!r} (sha256 "
                            f"{str(oh.get('data_sha256'))[:12]}), this run reads {header.get('data')!r} (sha256 "
                            f"{str(header.get('data_sha256'))[:12]}); move it away or run without --resume")
        for k in ("split", "seed", "text_copies"):
            if oh.get(k) != header.get(k):
                raise UserError(f"--resume: {paths['json']} was measured with {k}={oh.get(k)!r}, this run asks for "
                                f"{header.get(k)!r}; move it away or run without --resume")
        kept = {point_key(p): p for p in old.get("points", []) if not stale(p, bool(heads), bool(texts))}
        if heads:  # VQA and ASR read the same weights as before; every MLLM-drawn picture is drawn again
            header["t2i_remeasured_after_head_change"] = heads
            print(f"resuming: only the diffusion head of {', '.join(heads)} changed: the text-to-image points "
                  "are measured again", file=sys.stderr)
        if texts:  # the typed text of VQA and T2I is read otherwise; ASR, traditional and semcom read none of it
            header["remeasured_after_text_change"] = texts
            print(f"resuming: {', '.join(texts)} changed or added: the VQA and T2I points of the schemes that send "
                  "typed text through a learned link are measured again", file=sys.stderr)
        header["resumed_from"] = [*oh.pop("resumed_from", []), oh]
        print(f"resuming: {len(kept)} point(s) kept from {paths['json']}", file=sys.stderr)

    todo = plan(tasks, schemes, args.snr_db, args.channel, ns, not args.no_upper_bound)
    planned = {point_key(s) for s in todo}
    points = [p for k, p in kept.items() if k not in planned]  # measured earlier, outside this grid: kept
    if points:
        print(f"keeping {len(points)} earlier point(s) outside this command's grid", file=sys.stderr)
    skipped: list[dict] = []
    noiseless = _noiseless_available()
    fresh = 0

    # kept points of this grid not reached yet: saved with the rest, so that a resumed run stopped part way loses none
    ahead = {k: p for k, p in kept.items() if k in planned}

    def save():
        write_json(paths["json"], header, points + list(ahead.values()), skipped)
        write_csv(paths["csv"], points + list(ahead.values()), skipped)

    for i, spec in enumerate(todo, 1):
        key = point_key(spec)
        what = (f"[{i}/{len(todo)}] {spec['task']} {spec['scheme']} "
                + (f"{spec['snr_db']:g} dB {spec['channel']}" if spec["snr_db"] is not None else spec["channel"])
                + f" n={spec['n_requested']}")
        if key in kept:
            points.append(ahead.pop(key))
            print(f"{what}: kept from the earlier run", file=sys.stderr)
            continue
        if spec["scheme"] == UPPER and not noiseless:
            skipped.append({**spec, "status": "NOT_AVAILABLE",
                            "message": "this checkout has no channel model 'noiseless' (unitocom.options.Channel)"})
            print(f"{what}: skipped, no 'noiseless' channel model here", file=sys.stderr)
            save()
            continue
        print(what, file=sys.stderr)
        try:
            row = measure(spec, args, max(args.snr_db))
        except client.RpcError as e:
            status, message = client.error_status(e)
            if status in FATAL:
                save()
                raise
            skipped.append({**spec, "status": status, "message": message})
            print(f"  skipped: {status}: {message}", file=sys.stderr)
        except (UserError, RuntimeError) as e:  # a scorer that cannot run here (no scene checker, no image back)
            skipped.append({**spec, "status": type(e).__name__, "message": " ".join(str(e).split())})
            print(f"  skipped: {e}", file=sys.stderr)
        else:
            points.append(row)
            fresh += 1
        save()
    save()
    plot(paths["png"], points, header.get("t2i_pair_recall_reference"))
    return {"header": header, "points": points, "skipped": skipped, "fresh": fresh, "paths": paths}


def summary(res: dict) -> str:
    lines = [f"fig2: {len(res['points'])} point(s) ({res['fresh']} measured now), {len(res['skipped'])} skipped"]
    for p in res["points"]:
        at = f"{p['snr_db']:g} dB" if p.get("snr_db") is not None else "any SNR"
        lo, hi = p.get("ci_low"), p.get("ci_high")
        ci = f" [{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else ""
        lines.append(f"  {p['task']:4s} {p['scheme']:12s} {at:>8s} {p['channel']:9s} n={p['n']:<4d} "
                     f"{p['metric']} {p['value']:.4g}{ci}")
    for s in res["skipped"]:
        at = f"{s['snr_db']:g} dB" if s.get("snr_db") is not None else "any SNR"
        lines.append(f"  {s['task']:4s} {s['scheme']:12s} {at:>8s} {s['channel']:9s} skipped: {s['status']}: "
                     f"{s['message'][:160]}")
    lines += [f"  wrote {p}" for p in res["paths"].values() if p.exists()]
    return "\n".join(lines)


def add_subparser(sub) -> None:
    p = sub.add_parser("fig2", help="Fig. 2 through the running services: results/fig2.{json,csv,png} with "
                       "95 %% intervals and the noiseless upper bound", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="vqa,t2i,asr", help="comma list of vqa, t2i, asr")
    p.add_argument("--schemes", default="unitocom,vae,semcom,traditional")
    p.add_argument("--snr-db", type=snr_points_arg, default="0:20:5", help="A:B:STEP or a comma list (dB)")
    p.add_argument("--channel", default="rayleigh", help="awgn | rayleigh | rician")
    p.add_argument("--n-vqa", type=int, default=500, help="questions per VQA point")
    p.add_argument("--n-asr", type=int, default=150, help="utterances per ASR point")
    p.add_argument("--n-t2i", type=int, default=500, help="captions per T2I point")
    p.add_argument("--out", default="results", help="folder for fig2.json, fig2.csv, fig2.png")
    p.add_argument("--name", default="fig2", help="the files' stem: NAME.json, NAME.csv, NAME.png (e.g. fig2-seed77 "
                                                  "for the same figure on a freshly drawn data set)")
    p.add_argument("--data", default=DEFAULT_DATA, help="data set root (unitocom data make --preset tiny)")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0, help="request i carries seed + i; also the bootstrap's seed")
    p.add_argument("--target", default="127.0.0.1:50051", help="the transmitter (start with `unitocom up`)")
    p.add_argument("--workers", type=int, default=2, help="requests in flight at a time")
    p.add_argument("--timeout-s", type=float, default=300.0, help="per request")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for WER and pair recall")
    p.add_argument("--fid-resamples", type=int, default=200, help="bootstrap resamples for FID (costlier)")
    p.add_argument("--no-upper-bound", action="store_true",
                   help="leave out the upper bound (unitocom over the noiseless channel)")
    p.add_argument("--resume", action="store_true",
                   help="keep the points already in OUT/fig2.json with the same task, scheme, SNR, channel and n; "
                        "refused when a checkpoint they read has changed, except an MLLM's diffusion head alone "
                        "(`train mllm-head`: the MLLM-drawn T2I points are measured again, the rest kept) and a "
                        "text link or the language prior (text-*.safetensors: the VQA and T2I points of schemes "
                        "with a learned text link are measured again; ASR, traditional and semcom kept)")
    p.add_argument("--text-copies", type=int, default=0, metavar="K",
                   help="send each question and caption K times over independent fades, combined by MRC at the base "
                        "station (the link option text_copies; 0 or 1: once, as the letter's Fig. 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fig2)


def _cmd_fig2(args) -> int:
    from unitocom import client
    require_at_least_one(args, ("n_vqa", "n_asr", "n_t2i", "resamples", "fid_resamples", "workers"))
    try:
        res = run(args, command_argv("fig2", args))
    except client.RpcError as e:
        print("error: {}: {} (the points measured so far are saved; rerun with --resume)".format(
            *client.error_status(e)), file=sys.stderr)
        return 1
    print(summary(res))
    return 0
