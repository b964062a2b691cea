"""`unitocom access-sweep`: users sharing the channel (issue 17), measured through the running services.

    unitocom access-sweep --snr-db 20 --groups 40 --out results
    unitocom access-sweep --task vqa --snr-db 20 --groups 300 --out results
    unitocom access-sweep --task asr --data data/tiny-seed77-speech --groups 150 --out results

K users (K in --users, default 1,2,4) each send a held-out scene (task reconstruct, scheme unitocom: 32 image
tokens, 256 channel uses per picture), with --task vqa a held-out scene and a question about it (the image's
256 uses and the question's text tokens), or with --task asr a held-out utterance (the learned speech link's
tokens), over Rayleigh block fading at one SNR, served three ways:
  sequential   the same K users one after another: K single-user requests, each with the channel to itself
  orthogonal   one request; each user in its own resource block of one frame at power P (K x 256 uses)
  superposed   one request; all users in the same 256 uses at power shares 4^-k (6 dB apart, the default),
               y = sum_k h_k sqrt(p_k) z_k + n, successive interference cancellation at the base station
               (R's tokens re-modulated by T and subtracted, strongest received user first)
The same groups of scenes (and request seeds) for every way of serving a K.

Per point (reconstruct): each user's image PSNR (mean over groups, user k = the k-th power share), all users' mean
PSNR, the offered token rate K x 32 / channel uses, the delivered token rate (tokens of the users whose picture
reached --psnr-target dB, per channel use), the latency of serving the whole group (one request, or the K
sequential ones), with 95 % bootstrap intervals over groups (a group's users share a request and its channel draws,
so groups, not users, are the independent examples).

Per point (vqa): each user's accuracy (scored by the base station against the user's own answer, user_labels;
Wilson 95 % interval over its questions), all users' mean accuracy, correct answers per 1000 channel uses and the
latency (bootstrap over groups); the header holds the majority-class chance of the questions asked.

Per point (asr): each user's corpus WER over its utterances (the base station's transcript against the user's own,
user_labels), all users' WER, correct words (reference words less edits) per 1000 channel uses and the latency,
bootstrapped over groups.

Writes results/multiaccess.json (vqa, asr: multiaccess-<task>.json; header: the command, commit and checkpoint hashes;
every group's scores), .csv and .png beside it.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from unitocom.errors import UserError

FORMAT = "unitocom-results/multiaccess/1"
MODES = ("sequential", "orthogonal", "superposed")
TASKS = ("reconstruct", "vqa", "asr")
METRIC = {"reconstruct": "psnr_db", "vqa": "exact_match", "asr": "wer"}  # each user's score, as the services report it
TOKENS_PER_USER = 32  # the tiny preset's image tokens (the point records what the services reported)
CSV_FIELDS = ["users", "mode", "user", "n_groups", "channel_uses", "metric", "value", "ci_low", "ci_high"]


def scenes(data_dir: Path, split: str, count: int) -> list[bytes]:
    from unitocom.data.layouts import clevr_root, read_json
    root = clevr_root(data_dir)
    items = sorted(read_json(root / "scenes" / f"CLEVR_{split}_scenes.json")["scenes"], key=lambda s: s["image_index"])
    if len(items) < count:
        raise UserError(f"{data_dir} has {len(items)} {split} scenes; the sweep needs {count} (fewer --groups)")
    return [(root / "images" / split / s["image_filename"]).read_bytes() for s in items[:count]]


def questions(data_dir: Path, split: str, count: int) -> tuple[list[dict], float]:
    """count VQA questions spread over the split (`unitocom eval`'s draw), each as one user's payloads and label
    (image, question, answer), and the majority-class chance on them."""
    from unitocom.data.layouts import clevr_root
    from unitocom.task_eval import clevr_png, vqa_items
    items, guess = vqa_items(data_dir, split, count)
    if len(items) < count:
        raise UserError(f"{data_dir} has {len(items)} {split} questions; the sweep needs {count} (fewer --groups)")
    root = clevr_root(data_dir)
    users = [{"image": clevr_png(root / "images" / split / q["image_filename"]), "question": q["question"],
              "answer": q["answer"]} for q in items]
    return users, float(np.mean([g == q["answer"] for g, q in zip(guess, items)]))


def utterances(data_dir: Path, split: str, count: int) -> list[dict]:
    """count utterances of the split's speech, each as one user's payload and label (audio, transcript)."""
    from unitocom.task_eval import speech_items
    items = speech_items(data_dir, split, count)
    if len(items) < count:
        raise UserError(f"{data_dir} has {len(items)} {split} utterances; the sweep needs {count} (fewer --groups, "
                        "or a larger draw: data/tiny-seed77-speech has 600)")
    return [{"audio": path.read_bytes(), "transcript": text} for path, text in items]


def measure_group(c, mode: str, users: list, snr_db: float, seed: int, timeout_s: float,
                  task: str = "reconstruct") -> dict:
    """One group of K users served one way -> each user's score (PSNR, or VQA's exact match, under the metric's
    name), powers, SINRs, channel uses, wall time. `users[k]`: user k's payloads and label (a picture's bytes
    alone for reconstruct)."""
    from unitocom import client
    metric = METRIC[task]
    link = dict(scheme="unitocom", task=task, snr_db=snr_db, channel="rayleigh")
    users = [u if isinstance(u, dict) else {"image": u} for u in users]
    k = len(users)
    t0 = time.perf_counter()
    if mode == "sequential":
        rs = [c.send(client.build_request(**given, seed=seed * 16 + u, **link), timeout_s=timeout_s)
              for u, given in enumerate(users)]
        wall = time.perf_counter() - t0
        missing = [r.request_id for r in rs if metric not in r.quality]
        if missing:
            raise RuntimeError(f"request {missing[0]} came back without {metric}")
        return _with_words({metric: [r.quality[metric] for r in rs], "power": [1.0] * k,
                            "sinr_db": [None] * k, "residual_db": [None] * k,
                            "channel_uses": sum(r.channel_uses for r in rs), "latency_s": wall},
                           users, [r.output_text for r in rs], task)
    r = c.send(client.build_users_request(users, access=mode, seed=seed, **link), timeout_s=timeout_s)
    wall = time.perf_counter() - t0
    us = sorted(r.users, key=lambda u: u.user)
    missing = [u.user for u in us if metric not in u.quality]
    if missing:  # every user is labelled: a user without a score is a service fault, not a zero
        raise RuntimeError(f"request {r.request_id}: user {missing[0]} came back without {metric}")
    return _with_words({metric: [u.quality[metric] for u in us], "power": [u.power for u in us],
                        "sinr_db": [u.sinr_db for u in us],
                        "residual_db": [u.residual_db if mode == "superposed" else None for u in us],
                        "channel_uses": r.channel_uses, "latency_s": wall}, users, [u.output_text for u in us], task)


def _with_words(group: dict, users: list[dict], transcripts: list[str], task: str) -> dict:
    """asr: each user's edits and reference words (`task_eval.wer_counts`, the services' normalisation), so that a
    user's WER over the groups is a corpus WER."""
    if task == "asr":
        from unitocom.task_eval import wer_counts
        group["edits"], group["words"] = wer_counts([u["transcript"] for u in users], transcripts)
    return group


def _user_row(groups: list[dict], u: int, score: str, value: float, interval: tuple[float, float]) -> dict:
    """User u's entry of a point: its power, its score with its interval, and the link's view of it (mean SINR its
    decoder was given, mean SIC residual) over the groups that report them."""
    sinr = [g["sinr_db"][u] for g in groups if g["sinr_db"][u] is not None]
    res = [g["residual_db"][u] for g in groups if g["residual_db"][u] is not None]
    return {"user": u, "power": groups[0]["power"][u], score: value, "ci_low": interval[0], "ci_high": interval[1],
            "sinr_db": float(np.mean(sinr)) if sinr else None, "residual_db": float(np.mean(res)) if res else None}


def summarise_asr(k: int, mode: str, groups: list[dict], seed: int) -> dict:
    """An ASR point: each user's corpus WER over its utterances, all users' WER, correct words (reference words less
    edits, at least 0) per 1000 channel uses and the latency, with 95 % bootstrap intervals over groups."""
    from unitocom import results as ci
    edits = np.array([g["edits"] for g in groups], float)  # [n, K]
    words = np.array([g["words"] for g in groups], float)
    uses = np.array([g["channel_uses"] for g in groups], float)
    lat = np.array([g["latency_s"] for g in groups], float)
    goodput = np.clip(words - edits, 0, None).sum(1) * 1000.0 / uses
    row = {"users": k, "mode": mode, "n_groups": len(groups), "channel_uses": float(uses.mean())}
    lo, hi = ci.wer_interval(edits.sum(1), words.sum(1), 1000, seed)
    row["wer"] = {"value": float(edits.sum() / words.sum()), "ci_low": lo, "ci_high": hi}
    for name, values in (("correct_words_per_1000_uses", goodput), ("latency_s", lat)):
        lo, hi = ci.mean_interval(values, 1000, seed)
        row[name] = {"value": float(np.mean(values)), "ci_low": lo, "ci_high": hi}
    row["per_user"] = [_user_row(groups, u, "wer", float(edits[:, u].sum() / words[:, u].sum()),
                                 ci.wer_interval(edits[:, u], words[:, u], 1000, seed)) for u in range(k)]
    row["per_group"] = {"edits": [[int(v) for v in g["edits"]] for g in groups],
                        "words": [[int(v) for v in g["words"]] for g in groups],
                        "latency_s": [round(g["latency_s"], 4) for g in groups]}
    return row


def summarise(k: int, mode: str, groups: list[dict], psnr_target: float, seed: int) -> dict:
    from unitocom import results as ci
    psnr = np.array([g["psnr_db"] for g in groups], float)  # [n, K]
    uses = np.array([g["channel_uses"] for g in groups], float)
    lat = np.array([g["latency_s"] for g in groups], float)
    tokens = k * TOKENS_PER_USER
    delivered = (psnr >= psnr_target).sum(1) * TOKENS_PER_USER / uses  # per group
    row = {"users": k, "mode": mode, "n_groups": len(groups), "channel_uses": float(uses.mean()),
           "tokens": tokens, "offered_tokens_per_use": float(tokens / uses.mean()), "psnr_target_db": psnr_target}
    for name, values, fn in (("psnr_db", psnr, lambda a: float(np.mean(a))),
                             ("delivered_tokens_per_use", delivered, lambda a: float(np.mean(a))),
                             ("latency_s", lat, lambda a: float(np.mean(a)))):
        lo, hi = ci.bootstrap(fn, [values], 1000, seed)
        row[name] = {"value": fn(values), "ci_low": lo, "ci_high": hi}
    row["per_user"] = [_user_row(groups, u, "psnr_db", float(psnr[:, u].mean()),
                                 ci.mean_interval(psnr[:, u], 1000, seed)) for u in range(k)]
    row["per_group"] = {"psnr_db": [[round(v, 3) for v in g["psnr_db"]] for g in groups],
                        "latency_s": [round(g["latency_s"], 4) for g in groups]}
    return row


def summarise_vqa(k: int, mode: str, groups: list[dict], seed: int) -> dict:
    """A VQA point: each user's accuracy with its Wilson interval (one question per group), the users' mean
    accuracy, correct answers per 1000 channel uses and the latency, bootstrapped over groups."""
    from unitocom import results as ci
    correct = np.array([g["exact_match"] for g in groups], float)  # [n, K]
    uses = np.array([g["channel_uses"] for g in groups], float)
    lat = np.array([g["latency_s"] for g in groups], float)
    goodput = correct.sum(1) * 1000.0 / uses  # per group
    row = {"users": k, "mode": mode, "n_groups": len(groups), "channel_uses": float(uses.mean())}
    for name, values in (("accuracy", correct), ("correct_per_1000_uses", goodput), ("latency_s", lat)):
        lo, hi = ci.mean_interval(values, 1000, seed)
        row[name] = {"value": float(np.mean(values)), "ci_low": lo, "ci_high": hi}
    row["per_user"] = [_user_row(groups, u, "accuracy", float(correct[:, u].mean()),
                                 ci.wilson(int(correct[:, u].sum()), len(groups))) for u in range(k)]  # 0/1 each
    row["per_group"] = {"exact_match": [[int(v) for v in g["exact_match"]] for g in groups],
                        "latency_s": [round(g["latency_s"], 4) for g in groups]}
    return row


def plot(path: Path, points: list[dict], snr_db: float, task: str = "reconstruct") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = {"sequential": "tab:gray", "orthogonal": "tab:blue", "superposed": "tab:red"}
    if task == "vqa":
        panels = [("accuracy", "VQA accuracy per user"), ("correct_per_1000_uses",
                  "correct answers per 1000 uses (all users)"),
                  ("latency_s", "latency of serving the group (s)")]
    elif task == "asr":
        panels = [("wer", "word error rate (each user, all users)"), ("correct_words_per_1000_uses",
                  "correct words per 1000 uses (all users)"), ("latency_s", "latency of serving the group (s)")]
    else:
        panels = [("psnr_db", "mean image PSNR per user (dB)"), ("delivered_tokens_per_use",
                  "delivered tokens per channel use (sum over users)"),
                  ("latency_s", "latency of serving the group (s)")]
    for ax, (field, label) in zip(axes, panels):
        for mode in MODES:
            s = sorted([p for p in points if p["mode"] == mode], key=lambda p: p["users"])
            if not s:
                continue
            x = [p["users"] + {"sequential": -0.08, "orthogonal": 0.0, "superposed": 0.08}[mode] for p in s]
            y = [p[field]["value"] for p in s]
            err = [[v - p[field]["ci_low"] for v, p in zip(y, s)], [p[field]["ci_high"] - v for v, p in zip(y, s)]]
            ax.errorbar(x, y, yerr=err, color=colours[mode], marker="o", capsize=3, label=mode)
            if field in ("psnr_db", "accuracy", "wer"):
                for p, xx in zip(s, x):
                    ax.scatter([xx] * len(p["per_user"]), [u[field] for u in p["per_user"]],
                               color=colours[mode], marker="_", s=80, alpha=0.6)
            if field == "delivered_tokens_per_use":
                ax.plot(x, [p["offered_tokens_per_use"] for p in s], color=colours[mode], ls=":", alpha=0.6)
        ax.set_xlabel("users K")
        ax.set_xticks(sorted({p["users"] for p in points}))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    what = ("each user" if task != "reconstruct" else "each user; dotted: offered tokens per use")
    fig.suptitle(f"Users sharing the channel: unitocom {task}, Rayleigh {snr_db:g} dB, 95 % intervals over "
                 f"groups (dashes: {what})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(fig: dict, source: str) -> str:
    """The README's table of a multiaccess file (scripts/results_tables.py, `<!-- results:multiaccess -->`)."""
    h = fig.get("header", {})
    pts = fig.get("points", [])
    if h.get("task") in ("vqa", "asr"):
        return _task_table(h, pts, source)
    out = [f"*Users sharing the channel: unitocom, reconstruct, Rayleigh {h.get('snr_db', 0):g} dB; 95 % bootstrap "
           "intervals over groups*", "",
           "| K | served | channel uses | each user's PSNR (dB), strongest share first | mean PSNR (dB) | "
           f"tokens per use, offered | delivered (PSNR >= {h.get('psnr_target_db', 0):g} dB) | latency (ms) |",
           "|---|---|---|---|---|---|---|---|"]

    def c(d, digits, scale=1.0):
        v, lo, hi = (scale * d[k] for k in ("value", "ci_low", "ci_high"))
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    for p in sorted(pts, key=lambda p: (p["users"], MODES.index(p["mode"]))):
        users = " / ".join(f"{u['psnr_db']:.1f}" + (f" (p={u['power']:.2f})" if p["mode"] == "superposed" else "")
                           for u in p["per_user"])
        out.append(f"| {p['users']} | {p['mode']} | {p['channel_uses']:.0f} | {users} | {c(p['psnr_db'], 1)} | "
                   f"{p['offered_tokens_per_use']:.3f} | {c(p['delivered_tokens_per_use'], 3)} | "
                   f"{c(p['latency_s'], 0, 1000.0)} |")
    commit = (h.get("git_commit") or "unknown")[:10] + (" (dirty tree)" if h.get("git_dirty") else "")
    ns = sorted({p["n_groups"] for p in pts})
    out += ["", f"n = {', '.join(map(str, ns))} groups of K users per point. From `{source}` (commit {commit}, "
                f"{h.get('date', 'date unknown')}): `{h.get('command', '?')}`."]
    return "\n".join(out) + "\n"


def _task_table(h: dict, pts: list[dict], source: str) -> str:
    if h.get("task") == "vqa":
        out = [(f"*Users sharing the channel: unitocom, VQA, Rayleigh {h.get('snr_db', 0):g} dB; each user's "
                "accuracy with its Wilson 95 % interval, the rest bootstrapped over groups; majority-class chance "
                f"{h.get('chance', float('nan')):.2f}*"), "",
               ("| K | served | channel uses | each user's accuracy, strongest share first | mean accuracy | "
                "correct answers per 1000 uses | latency (ms) |"),
               "|---|---|---|---|---|---|---|"]
        score, goodput, one = "accuracy", "correct_per_1000_uses", "one question per user"
    else:
        out = [(f"*Users sharing the channel: unitocom, ASR, Rayleigh {h.get('snr_db', 0):g} dB; word error rates "
                "over each user's utterances and over all users', 95 % bootstrap intervals over groups*"), "",
               ("| K | served | channel uses | each user's WER, strongest share first | WER, all users | "
                "correct words per 1000 uses | latency (ms) |"),
               "|---|---|---|---|---|---|---|"]
        score, goodput, one = "wer", "correct_words_per_1000_uses", "one utterance per user"

    def c(d, digits, scale=1.0):
        v, lo, hi = (scale * d[k] for k in ("value", "ci_low", "ci_high"))
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    for p in sorted(pts, key=lambda p: (p["users"], MODES.index(p["mode"]))):
        users = " / ".join(f"{u[score]:.2f} [{u['ci_low']:.2f}, {u['ci_high']:.2f}]"
                           + (f" (p={u['power']:.2f})" if p["mode"] == "superposed" else "") for u in p["per_user"])
        out.append(f"| {p['users']} | {p['mode']} | {p['channel_uses']:.0f} | {users} | {c(p[score], 2)} | "
                   f"{c(p[goodput], 2)} | {c(p['latency_s'], 0, 1000.0)} |")
    commit = (h.get("git_commit") or "unknown")[:10] + (" (dirty tree)" if h.get("git_dirty") else "")
    ns = sorted({p["n_groups"] for p in pts})
    out += ["", (f"n = {', '.join(map(str, ns))} groups of K users per point, {one}. From "
                 f"`{source}` (commit {commit}, {h.get('date', 'date unknown')}): `{h.get('command', '?')}`.")]
    return "\n".join(out) + "\n"


def run(args, argv: list[str]) -> dict:
    from unitocom import client
    from unitocom.fig2 import make_header
    from unitocom.schemes.learned import checkpoint_dir
    from unitocom.task_eval import gather
    from unitocom.train.provenance import write_atomic
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = args.task
    stem = out / ("multiaccess" if task == "reconstruct" else f"multiaccess-{task}")
    ks = [int(k) for k in args.users.split(",")]
    settings = {"sweep": "multiaccess", "scheme": "unitocom", "task": args.task, "snr_db": args.snr_db,
                "channel": "rayleigh", "users": ks, "groups": args.groups, "data": str(args.data),
                "split": args.split, "seed": args.seed, "user_powers": "default (4^-k shares)"}
    if task == "vqa":
        users, settings["chance"] = questions(Path(args.data), args.split, args.groups * max(ks))
    elif task == "asr":
        users = utterances(Path(args.data), args.split, args.groups * max(ks))
    else:
        users, settings["psnr_target_db"] = scenes(Path(args.data), args.split, args.groups * max(ks)), args.psnr_target
    header = make_header(argv, settings, checkpoint_dir())
    header["format"] = FORMAT
    points = []
    shown = {"vqa": ("accuracy", "correct_per_1000_uses"), "asr": ("wer", "correct_words_per_1000_uses"),
             "reconstruct": ("psnr_db", "delivered_tokens_per_use")}[task]
    with client.Client(args.target) as c:
        for k in ks:
            for mode in MODES:
                def one(g, k=k, mode=mode):
                    return measure_group(c, mode, users[g * k:(g + 1) * k], args.snr_db, args.seed + g,
                                         args.timeout, args.task)
                groups = gather(one, args.groups, args.workers, f"K={k} {mode}", not args.quiet)
                row = (summarise_vqa(k, mode, groups, args.seed) if task == "vqa"
                       else summarise_asr(k, mode, groups, args.seed) if task == "asr"
                       else summarise(k, mode, groups, args.psnr_target, args.seed))
                points.append(row)
                write_atomic(stem.with_suffix(".json"), json.dumps({"header": header, "points": points},
                                                                   indent=2) + "\n")
                print(json.dumps({key: row[key] for key in ("users", "mode", "channel_uses", *shown, "latency_s")}),
                      flush=True)
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for p in points:
            base = {"users": p["users"], "mode": p["mode"], "n_groups": p["n_groups"],
                    "channel_uses": p["channel_uses"]}
            for metric in (*shown, "latency_s"):
                w.writerow({**base, "user": "all", "metric": metric, **p[metric]})
            if task == "reconstruct":
                w.writerow({**base, "user": "all", "metric": "offered_tokens_per_use",
                            "value": p["offered_tokens_per_use"]})
            for u in p["per_user"]:
                w.writerow({**base, "user": u["user"], "metric": shown[0], "value": u[shown[0]],
                            "ci_low": u["ci_low"], "ci_high": u["ci_high"]})
    plot(stem.with_suffix(".png"), points, args.snr_db, args.task)
    return {"header": header, "points": points}


def add_subparser(sub) -> None:
    p = sub.add_parser("access-sweep", help="users sharing the channel (issue 17): per-user quality and token sum "
                       "rate versus K, orthogonal and superposed against sequential, through the running services",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=TASKS, default="reconstruct",
                   help="what each user sends and is scored on: a scene (PSNR at the device), a scene and a "
                        "question, or an utterance (the base station's answer or transcript against the user's own "
                        "label); vqa and asr write multiaccess-<task>.*")
    p.add_argument("--users", default="1,2,4", help="comma list of K (at most 8)")
    p.add_argument("--snr-db", type=float, default=20.0, help="Es/N0 in dB over Rayleigh block fading")
    p.add_argument("--groups", type=int, default=40, help="groups of K users per point")
    p.add_argument("--psnr-target", type=float, default=25.0,
                   help="reconstruct: a user's tokens count as delivered when its picture reaches this PSNR (dB)")
    p.add_argument("--data", default="data/tiny")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1,
                   help="groups in flight (1: the latencies are those of an otherwise idle system)")
    p.add_argument("--timeout", type=float, default=120.0, help="deadline per request (s)")
    p.add_argument("--target", default="127.0.0.1:50051", help="the transmitter (start with `unitocom up`)")
    p.add_argument("--out", default="results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from unitocom import client
    from unitocom.data.layouts import require_data
    from unitocom.link.multiaccess import MAX_USERS
    from unitocom.train.provenance import command_argv
    require_data(args.data)
    try:
        ks = [int(k) for k in args.users.split(",")]
    except ValueError:
        raise UserError(f"--users: {args.users!r} is not a comma list of integers") from None
    if not ks or any(not 1 <= k <= MAX_USERS for k in ks):
        raise UserError(f"--users: each K must be in 1..{MAX_USERS}, got {args.users}")
    if args.groups < 2:
        raise UserError("--groups: at least 2 (the intervals resample groups)")
    try:
        run(args, command_argv("access-sweep", args))
    except client.RpcError as e:
        print("error: {}: {}".format(*client.error_status(e)), file=sys.stderr)
        return 1
    return 0
