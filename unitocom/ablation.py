"""`unitocom ablate`: MLLMs trained differently, scored on the same VQA questions (or ASR utterances, `--task asr`)
through the same pipeline.

    unitocom ablate --mllm shipped=checkpoints/mllm-sigma-genib.safetensors \\
        --mllm vqa-only=runs/ablation/vqa-only --mllm vqa-only-wide=runs/ablation/vqa-only-wide \\
        --reference shipped,vqa-only --snr-db 0,20 --channel rayleigh --n-vqa 1000 --out results

Issue 12 asks where a target is missed by how much and what would reach it (model size, steps). This answers it
with measurements: each named MLLM (a checkpoint, or a run dir holding mllm.safetensors; train the variants
with `unitocom train mllm --task-weights ... --mllm-arch ... --no-install --run-dir ...`) answers the same test
questions IN PROCESS through `unitocom.pipeline.run` (the cores the services call, without gRPC; fig3's path):
the transmitter's sigma-GenIB link (the VAE link for an MLLM trained on VAE tokens), the channel at each SNR
with request i's seed = seed + i, and the base station reading the received tokens with that MLLM. Every MLLM
therefore sees the very same questions and channel draws, so the differences are paired (compare MLLMs of one
link with each other: `--reference shipped,vae-shipped` or `vae-shipped:vae-new`).

It writes
  OUT/ablation.json  a header (command, commit, date, data, split, seed; per MLLM its file's sha256, sizes,
                     parameters, task mix, steps, batch, training wall time and validation figures), `points`
                     (one per MLLM and SNR: accuracy with its Wilson 95 % interval, the majority-class chance on
                     the same questions, accuracy per question family, and the 0/1 outcome per question) and
                     `paired` (each MLLM minus each reference on the same questions: bootstrap 95 % interval);
  OUT/ablation.csv   the points, one row each;
  OUT/ablation.png   accuracy per MLLM and SNR with its interval, and per question family at the highest SNR.
`scripts/results_tables.py` writes the README's `<!-- results:ablation -->` block from the JSON (`table`).

With --task asr the points are word error rates over the same test utterances (bootstrap 95 % interval over
utterances, per sentence kind, each point's transcripts kept) and the paired differences are WER differences
with a paired bootstrap over utterances; e.g. MLLMs trained with more training speech (`data make --train-clips
--train-speakers`, whose test speech is byte for byte the same) against one trained on the preset's.

With --task t2i each MLLM draws a picture for the same test captions (those naming a (colour, shape) pair) and
the scene checker scores it: the points are mean pair recall (bootstrap 95 % interval over captions, per number
of pairs the caption names, each caption's recall kept), the paired differences are per caption, and the header
carries the recall's scale (`t2i_pair_recall_reference`: the caption's own scene, and another caption's scene,
i.e. chance). T2I reads the diffusion head: give a multitask run its head phase (`train mllm --head-steps`).

Run dirs do not outlive a checkout: with --resume, an MLLM whose file is gone is carried from OUT/<name>.json
(its recorded description and sha256, and where its points were measured) when the file names it under the same
path and holds each of its points, so new MLLMs join a table without retraining the old ones. NAME=sha256:PREFIX
carries the MLLM of that hash under NAME, whatever name measured it: when a shipped MLLM is replaced, its points
stay in the table under a new name while `shipped=checkpoints/...` scores its successor. A file given under a new
name whose sha256 an earlier run measured under another (the replaced MLLM taken back out of git as
`previous=...`) keeps those points the same way (the header's `renamed`).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import functools
import io
import json
import shlex
import sys
from pathlib import Path

from unitocom.errors import UserError, require_at_least_one
from unitocom.link.snr import snr_points_arg
from unitocom.train.provenance import command_argv, file_sha256, git_state, write_atomic

FORMAT = "unitocom-results/ablation/1"
ROOT = Path(__file__).resolve().parents[1]
OBJECTIVE = "sigma-genib"  # the letter's link (fig3.SCHEME "unitocom" sends with it)
# the scheme that sends each MLLM's tokens: its objective's link (genib has no scheme of its own to send with)
SCHEME_OF = {"sigma-genib": "unitocom", "vae": "vae"}
SIZE_FIELDS = ("hidden", "layers", "heads", "intermediate", "head_width", "head_depth", "projector_depth",
               "question_first", "standardized_inputs", "image_grid", "image_grid_scale",
               "prefix_attention", "image_encoder", "object_tokens", "answer_by_program")
CSV_FIELDS = ["mllm", "task", "snr_db", "channel", "n", "metric", "value", "ci_low", "ci_high", "chance"]


SHA = "sha256:"  # NAME=sha256:PREFIX names a measured MLLM by its file's hash instead of a path


def named_mllm(text: str) -> tuple[str, Path]:
    """"NAME=PATH" -> (NAME, the checkpoint): PATH is an MLLM checkpoint or a run dir with mllm.safetensors, or
    sha256:PREFIX (at least 8 hex digits), an MLLM the results file holds points of (--resume)."""
    name, eq, path = text.partition("=")
    if not eq or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH (an MLLM checkpoint or a run dir)")
    if path.strip().startswith(SHA):
        digits = path.strip()[len(SHA):].lower()
        if len(digits) < 8 or any(c not in "0123456789abcdef" for c in digits):
            raise argparse.ArgumentTypeError(f"{text!r}: sha256: takes at least 8 hex digits of the file's hash")
        return name.strip(), Path(SHA + digits)
    p = Path(path.strip())
    # a run dir, even one that is gone (--resume may carry its points)
    return name.strip(), p / "mllm.safetensors" if p.is_dir() or p.suffix != ".safetensors" else p


def describe(path: Path, sha256: str | None = None) -> dict:
    """What an MLLM checkpoint says of itself (without building it): sizes, parameters, training recipe. sha256:
    the file's, when the caller has it already (it reads the whole file)."""
    from unitocom.train.scaffold import state_meta
    meta = state_meta(path)  # the safetensors header alone
    cfg, info = json.loads(meta.get("config", "{}")), json.loads(meta.get("meta", "{}"))
    tc = info.get("train_config") or {}
    parameters, slot_head = info.get("parameters"), 0
    # a training head the base station never runs, counted apart (`mllm.slots`), unless it makes object tokens or
    # reads the scenes that written programs run on
    if cfg.get("object_slots") and not (cfg.get("object_tokens") or cfg.get("answer_by_program")):
        from unitocom.mllm.slots import ObjectSlots
        slot_head = sum(p.numel() for p in ObjectSlots(cfg["hidden"], cfg["object_slots"]).parameters())
        parameters = parameters - slot_head if parameters is not None else None
    return {"path": str(path), "sha256": sha256 or file_sha256(path), "parameters": parameters,
            "slot_head_parameters": slot_head, "object_slots": tc.get("object_slots") or 0,
            "received_questions": tc.get("received_questions") or 0,
            "sizes": {k: cfg.get(k) for k in SIZE_FIELDS}, "objective": info.get("objective"),
            "image_tokens": info.get("image_tokens"),
            "task_weights": tc.get("task_weights"), "loss_scale": tc.get("loss_scale") or [],
            "steps": tc.get("steps"), "batch": tc.get("batch"),
            "train_wall_s": info.get("wall_s"), "validation": info.get("validation"),
            "links": info.get("links") or {},
            "command": info.get("command"), "head_command": info.get("head_command"),
            "head_steps": (info.get("head") or {}).get("head_steps")}


def point(name: str, tokens: int, snr_db: float, channel: str, correct: list[float], items: list[dict],
          guess: list[str]) -> dict:
    """One (MLLM, SNR) point: fig3's accuracy point (Wilson interval, 0/1 per question), with the chance and the
    per-family accuracy on these questions."""
    from unitocom.fig3 import accuracy_point
    from unitocom.task_eval import vqa_by_family
    return {"mllm": name, **accuracy_point(tokens, snr_db, channel, correct),
            "chance": sum(g == q["answer"] for g, q in zip(guess, items)) / len(items),
            "by_family": vqa_by_family(items, correct, guess)}


def asr_point(name: str, tokens: int, snr_db: float, channel: str, references: list[str], transcripts: list[str],
              speakers: list[str] | None = None, n_resamples: int = 1000, seed: int = 0) -> dict:
    """One (MLLM, SNR) ASR point: corpus WER with its bootstrap interval over utterances, the WER per sentence
    kind (and per speaker, given each utterance's), and per utterance its edits, reference words and transcript
    (request i = seed + i: pairs)."""
    from unitocom.data.speech import sentence_kind
    from unitocom.results import ratio_of_sums, wer_interval
    from unitocom.task_eval import wer_counts
    edits, words = wer_counts(references, transcripts)
    lo, hi = wer_interval(edits, words, n_resamples, seed)

    def grouped(keys: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for key, e, w in zip(keys, edits, words):
            g = out.setdefault(key, {"n": 0, "edits": 0, "words": 0})
            g["n"], g["edits"], g["words"] = g["n"] + 1, g["edits"] + e, g["words"] + w
        for g in out.values():
            g["wer"] = g["edits"] / g["words"]
        return dict(sorted(out.items()))
    return {"mllm": name, "tokens": int(tokens), "task": "asr", "snr_db": float(snr_db), "channel": channel,
            "n": len(edits), "metric": "wer", "value": ratio_of_sums(edits, words), "ci_low": lo, "ci_high": hi,
            "by_kind": grouped([sentence_kind(r) for r in references]),
            **({"by_speaker": grouped(speakers)} if speakers is not None else {}),
            "edits": edits, "words": words, "transcripts": transcripts}


def t2i_point(name: str, tokens: int, snr_db: float, channel: str, captions: list[str], recalls: list[float],
              seed: int = 0) -> dict:
    """One (MLLM, SNR) T2I point: fig3's recall point (bootstrap interval over captions), the mean recall per
    number of (colour, shape) pairs the caption names, and each caption's recall (request i = seed + i: pairs)."""
    from unitocom.fig3 import recall_point
    from unitocom.metrics.scene_checker import caption_pairs
    by: dict[str, dict] = {}
    for c, r in zip(captions, recalls):
        g = by.setdefault(str(len(caption_pairs(c))), {"n": 0, "sum": 0.0})
        g["n"], g["sum"] = g["n"] + 1, g["sum"] + r
    by_pairs = {k: {"n": g["n"], "recall": g["sum"] / g["n"]} for k, g in sorted(by.items(), key=lambda kv: int(kv[0]))}
    return {"mllm": name, **recall_point(tokens, snr_db, channel, recalls, seed), "by_pairs": by_pairs,
            "recalls": [float(r) for r in recalls]}


def paired(points: list[dict], references: list[str], n_resamples: int = 2000, seed: int = 0,
           compared: dict[str, list[str]] | None = None) -> list[dict]:
    """Each MLLM minus each of `references` (not itself; only the names in compared[reference] where it has an
    entry) at each SNR, on the same questions (utterances): the difference of accuracy (WER) with a paired
    bootstrap interval, resampling questions (utterances)."""
    import numpy as np

    from unitocom.results import bootstrap, mean_interval
    out = []
    for reference in references:
        ref = {(p["snr_db"], p["channel"]): p for p in points if p["mllm"] == reference}
        for p in points:
            if reference in (compared or {}) and p["mllm"] not in compared[reference]:
                continue
            r = ref.get((p["snr_db"], p["channel"]))
            # one entry per question (utterance, caption)
            per_item = {"asr": "edits", "t2i": "recalls"}.get(p.get("task"), "correct")
            if p["mllm"] == reference or r is None or len(r.get(per_item, ())) != len(p[per_item]):
                continue
            if p.get("task") == "asr":
                e, e_ref, w = (np.asarray(x, dtype=float) for x in (p["edits"], r["edits"], p["words"]))
                diff = lambda a, b, n: float((a.sum() - b.sum()) / n.sum())  # noqa: E731  WER - WER of the reference
                d, (lo, hi) = diff(e, e_ref, w), bootstrap(diff, [e, e_ref, w], n_resamples, seed)
            elif p.get("task") == "t2i":
                dv = np.asarray(p["recalls"], dtype=float) - np.asarray(r["recalls"], dtype=float)
                d, (lo, hi) = float(dv.mean()), mean_interval(dv, n_resamples, seed)
            else:
                dv = np.array([int(a) - int(b) for a, b in zip(p["correct"], r["correct"])], dtype=float)
                d, (lo, hi) = float(dv.mean()), mean_interval(dv, n_resamples, seed)
            out.append({"mllm": p["mllm"], "reference": reference, "snr_db": p["snr_db"], "channel": p["channel"],
                        "n": len(p[per_item]), "difference": d, "ci_low": lo, "ci_high": hi,
                        "separates": bool(lo > 0 or hi < 0)})
    return out


def write_csv(path: Path, points: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(points)
    write_atomic(path, buf.getvalue())


def plot(path: Path, points: list[dict], recall_reference: dict | None = None) -> None:
    """(a) each MLLM's score per SNR with its interval, (b) per question family (sentence kind, named pairs) at the
    highest SNR. recall_reference: a T2I run's scale (header's `t2i_pair_recall_reference`), drawn as lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    names = list(dict.fromkeys(p["mllm"] for p in points))
    snrs = sorted({p["snr_db"] for p in points})
    at = {(p["mllm"], p["snr_db"]): p for p in points}
    task = points[0].get("task", "vqa")
    asr = task == "asr"
    groups, score, ylabel, what, part = {
        "asr": ("by_kind", "wer", "ASR word error rate (bootstrap 95 %; lower is better)", "ASR",
                "WER per sentence kind"),
        "t2i": ("by_pairs", "recall", "T2I pair recall (bootstrap 95 %)", "T2I",
                "pair recall by (colour, shape) pairs named"),
    }.get(task, ("by_family", "accuracy", "VQA accuracy (Wilson 95 %)", "VQA", "per question family"))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 2.2]})
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        ps = [at.get((name, s)) for s in snrs]
        x = np.arange(len(snrs)) + i * width
        v = [p["value"] if p else np.nan for p in ps]
        err = [[p["value"] - p["ci_low"] if p else 0 for p in ps], [p["ci_high"] - p["value"] if p else 0 for p in ps]]
        a.bar(x, v, width, yerr=err, capsize=3, label=name)
    if task == "vqa":
        a.axhline(np.mean([p["chance"] for p in points]), color="grey", ls=":", label="majority-class chance")
    for key, label, ls in (("own", "caption's own scene", "--"), ("other", "another caption's scene (chance)", ":")):
        if recall_reference and recall_reference.get(key):
            a.axhline(recall_reference[key]["value"], color="grey", ls=ls, label=label)
    a.set_xticks(np.arange(len(snrs)) + 0.4 - width / 2, [f"{s:g} dB" for s in snrs])
    a.set_ylabel(ylabel)
    a.set_ylim(0, max(1.0, max(p["ci_high"] for p in points)) if asr else 1)
    a.legend(fontsize=8)
    a.set_title(f"(a) {what}, {points[0]['channel']}")
    top = snrs[-1]
    families = sorted({f for p in points for f in p[groups]}, key=lambda f: (len(f), f) if task == "t2i" else f)
    for i, name in enumerate(names):
        p = at.get((name, top))
        if p:
            b.bar(np.arange(len(families)) + i * width, [p[groups].get(f, {}).get(score, np.nan)
                                                         for f in families], width, label=name)
    p0 = at.get((names[0], top))
    if p0 and task == "vqa":
        b.scatter(np.arange(len(families)) + 0.4 - width / 2,
                  [p0["by_family"].get(f, {}).get("chance", np.nan) for f in families], color="k", marker="_",
                  s=200, label="chance", zorder=3)
    b.set_xticks(np.arange(len(families)) + 0.4 - width / 2, families, rotation=35, ha="right", fontsize=8)
    b.set_ylim(0, 1)
    b.set_title(f"(b) {part} at {top:g} dB")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def task_steps(r: dict, task: str = "vqa") -> int | None:
    """The steps of a run that were `task`'s (each cycle runs its tasks' weights in turn)."""
    weights = dict(r.get("task_weights") or [])
    if not weights or r.get("steps") is None:
        return None
    return round(r["steps"] * weights.get(task, 0) / sum(weights.values()))


def _recipe(r: dict) -> str:
    mix = ", ".join(f"{t} {w}" for t, w in (r.get("task_weights") or [])) or "?"
    mix += "".join(f", {t} loss x{v:g}" for t, v in r.get("loss_scale") or [])  # `train mllm --loss-scale`
    if r.get("object_slots"):  # `train mllm --object-slots W`
        mix += f", object slots x{r['object_slots']:g}"
    if r.get("received_questions"):  # `train mllm --received-questions P`
        mix += f", {r['received_questions']:.0%} of VQA questions received"
    s = r.get("sizes") or {}
    proj = f", MLP projector ({s['projector_depth']} layers)" if (s.get("projector_depth") or 1) > 1 else ""
    proj += ", question before image" if s.get("question_first") else ""
    proj += ", prefix attention" if s.get("prefix_attention") else ""
    proj += f", image encoder ({s['image_encoder']} layers)" if s.get("image_encoder") else ""
    proj += ", object tokens" if s.get("object_tokens") else ""
    proj += ", answers by program" if s.get("answer_by_program") else ""
    proj += ", standardised inputs" if s.get("standardized_inputs") else ""
    if s.get("image_grid"):
        proj += f", grid positions x{s.get('image_grid_scale') or 1:g}"
    init = _command_option(r, "--init")  # a warm start: its steps come on top of the checkpoint's
    after = f" after {Path(init).name}" if init else ""
    return (f"{s.get('layers')} x {s.get('hidden')}{proj}, {(r.get('parameters') or 0) / 1e6:.1f} M | {mix} | "
            f"{r.get('steps')} x {r.get('batch')}{after} ({task_steps(r)} VQA)")


def _command_option(r: dict, option: str) -> str | None:
    """The value of `option` in a run's recorded command (None when it was not given)."""
    argv = shlex.split(r.get("command") or "")
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(option + "="):
            return a.split("=", 1)[1]
    return None


def _training_data(r: dict) -> str:
    """The --data a run was trained on (the preset's data/tiny when its command does not say)."""
    return _command_option(r, "--data") or "data/tiny"


def _value_cells(at: dict, name: str, snrs: list[float], digits: int) -> list[str]:
    """One table row's cells: each SNR's value with its interval, "–" where the point is missing."""
    f = lambda x: f"{x:.{digits}f}"  # noqa: E731
    return ["–" if (p := at.get((name, s))) is None else f"{f(p['value'])} [{f(p['ci_low'])}, {f(p['ci_high'])}]"
            for s in snrs]


def _paired_block(fig: dict, snrs: list[float], caption: str) -> list[str]:
    """The paired-differences table under `caption` (each MLLM minus each reference, one row per pair; a pair's
    mirror image is left out); [] when the file has none."""
    if not fig.get("paired"):
        return []
    h = fig["header"]
    by = {(d["mllm"], d["reference"], d["snr_db"]): d for d in fig["paired"]}
    rows: list[str] = []
    shown: set[frozenset] = set()
    for reference in h["references"]:
        for name in h["mllms"]:
            if not any((name, reference, s) in by for s in snrs) or {name, reference} in shown:
                continue  # no such pair, or its mirror image is already a row
            shown.add(frozenset((name, reference)))
            cells = [(lambda d: "–" if d is None else f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, "
                      f"{d['ci_high']:+.3f}]{' **' if d['separates'] else ''}")(by.get((name, reference, s)))
                     for s in snrs]
            rows.append(f"| {name} - {reference} | " + " | ".join(cells) + " |")
    return ["", caption, "", "| difference | " + " | ".join(f"{s:g} dB" for s in snrs) + " |",
            "|---|" + "---|" * len(snrs)] + rows


def recorded_run(header: dict, name: str) -> dict:
    """The run that measured `name`'s points in a results header: the one it carried them from, or its own."""
    return (header.get("carried") or {}).get(name) or {k: header.get(k) for k in ("git_commit", "git_dirty",
                                                                                  "date", "command")}


def _source_line(fig: dict, source: str, what: str) -> str:
    h, points = fig["header"], fig["points"]
    n = max(p["n"] for p in points)
    line = (f"n = {n} {h['split']} {what} per point, {points[0]['channel']}; 95 % intervals. From `{source}` "
            f"(commit {h['git_commit'][:10]}{' (dirty tree)' if h.get('git_dirty') else ''}, {h['date']}): "
            f"`{h['command']}`.")
    runs: dict[str, list[str]] = {}
    for name, r in (h.get("carried") or {}).items():
        runs.setdefault(f"commit {(r.get('git_commit') or '?')[:10]}, {r.get('date')}", []).append(
            name + (f" (measured as {r['measured_as']})" if r.get("measured_as") else ""))
    line += "".join(f" {', '.join(names)}: kept by `--resume` from the run of {when} (checkpoint not here)."
                    for when, names in runs.items())
    return line + "".join(f" {name}: the file measured as {r['measured_as']} by the run of commit "
                          f"{(r.get('git_commit') or '?')[:10]}, {r.get('date')}; its points kept by `--resume`."
                          for name, r in (h.get("renamed") or {}).items())


def _breakdown(fig: dict, at: dict, top: float, field: str, score: str, digits: int, counted: str, caption: str,
               key=None, label=str) -> list[str]:
    """A per-group table at the highest SNR (sentence kind, speaker, pairs named): one row per MLLM of each
    group's `score` in its point's `field`, then the group sizes of the first MLLM's point; [] without groups."""
    groups = sorted({g for p in fig["points"] for g in p.get(field, {})}, key=key)
    if not groups:
        return []
    lines = ["", caption, "", "| MLLM | " + " | ".join(label(g) for g in groups) + " |", "|---|" + "---|" * len(groups)]
    firsts = [p for n in fig["header"]["mllms"] if (p := at.get((n, top))) and p.get(field)]
    for p in firsts:
        lines.append(f"| {p['mllm']} | " + " | ".join(f"{p[field].get(g, {}).get(score, float('nan')):.{digits}f}"
                                                     for g in groups) + " |")
    if firsts:
        lines.append(f"| {counted} | " + " | ".join(str(firsts[0][field].get(g, {}).get("n", 0)) for g in groups)
                     + " |")
    return lines


def asr_table(fig: dict, source: str) -> str:
    """The README block of an ASR ablation: WER per MLLM and SNR with its recipe and training data, WER per
    sentence kind at the highest SNR, and the paired differences (negative: fewer errors than the reference)."""
    h, points = fig["header"], fig["points"]
    snrs = sorted({p["snr_db"] for p in points})
    at = {(p["mllm"], p["snr_db"]): p for p in points}
    lines = ["| MLLM | layers x width, parameters | steps per cycle | steps x batch | trained on | "
             + " | ".join(f"{s:g} dB" for s in snrs) + " |", "|---|---|---|---|---|" + "---|" * len(snrs)]
    for name, r in h["mllms"].items():
        cells = _value_cells(at, name, snrs, 3)
        recipe = _recipe(r).rsplit(" (", 1)[0]  # the VQA-step count means nothing here
        lines.append(f"| {name} | {recipe} | `{_training_data(r)}` | " + " | ".join(cells) + " |")
    top = snrs[-1]
    lines += _breakdown(fig, at, top, "by_kind", "wer", 3, "utterances",
                        f"*word error rate per sentence kind at {top:g} dB (utterances of each kind in the last row)*")
    lines += _breakdown(fig, at, top, "by_speaker", "wer", 3, "utterances",
                        f"*word error rate per test speaker at {top:g} dB (utterances in the last row; voices in the "
                        "data set's LibriSpeech/SPEAKERS.TXT)*")
    lines += _paired_block(fig, snrs, "*paired differences of WER (same utterances and channel draws; bootstrap "
                                      "95 % interval over utterances; ** where it excludes 0; negative: fewer "
                                      "errors)*")
    lines += ["", _source_line(fig, source, "utterances")]
    return "\n".join(lines) + "\n"


def t2i_table(fig: dict, source: str) -> str:
    """The README block of a T2I ablation: pair recall per MLLM and SNR with its recipe (T2I steps, head phase),
    the recall's scale (the caption's own scene; another caption's scene), recall by the number of pairs a caption
    names at the highest SNR, and the paired differences."""
    h, points = fig["header"], fig["points"]
    snrs = sorted({p["snr_db"] for p in points})
    at = {(p["mllm"], p["snr_db"]): p for p in points}
    lines = ["| MLLM | layers x width, parameters | steps per cycle | steps x batch (of them T2I) | head phase | "
             + " | ".join(f"{s:g} dB" for s in snrs) + " |", "|---|---|---|---|---|" + "---|" * len(snrs)]
    for name, r in h["mllms"].items():
        recipe = _recipe(r).rsplit(" (", 1)[0] + f" ({task_steps(r, 't2i')} T2I)"
        head = f"{r['head_steps']} steps" if r.get("head_steps") else "none"
        lines.append(f"| {name} | {recipe} | {head} | " + " | ".join(_value_cells(at, name, snrs, 2)) + " |")
    ref = h.get("t2i_pair_recall_reference") or {}
    for key, label in (("own", "the caption's own scene"), ("other", "another caption's scene (chance)")):
        if ref.get(key):
            v = ref[key]
            lines.append(f"| {label} | | | | | " + " | ".join(
                f"{v['value']:.2f} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]" for _ in snrs) + " |")
    top = snrs[-1]
    lines += _breakdown(fig, at, top, "by_pairs", "recall", 2, "captions",
                        f"*pair recall by the number of (colour, shape) pairs the caption names, at {top:g} dB "
                        "(captions in the last row)*", key=int, label=lambda k: f"{k} pair{'' if k == '1' else 's'}")
    lines += _paired_block(fig, snrs, "*paired differences of pair recall (same captions and channel draws; "
                                      "bootstrap 95 % interval over captions; ** where it excludes 0)*")
    lines += ["", _source_line(fig, source, "captions naming a (colour, shape) pair")]
    return "\n".join(lines) + "\n"


def table(fig: dict, source: str) -> str:
    """The README block: accuracy per MLLM and SNR, its recipe, and the paired differences to the references
    (an ASR or T2I ablation's block: `asr_table`, `t2i_table`)."""
    if fig["header"].get("task") == "asr":
        return asr_table(fig, source)
    if fig["header"].get("task") == "t2i":
        return t2i_table(fig, source)
    h, points = fig["header"], fig["points"]
    snrs = sorted({p["snr_db"] for p in points})
    at = {(p["mllm"], p["snr_db"]): p for p in points}
    lines = ["| MLLM | layers x width, parameters | steps per cycle | steps x batch (of them VQA) | "
             + " | ".join(f"{s:g} dB" for s in snrs) + " |", "|---|---|---|---|" + "---|" * len(snrs)]
    for name, r in h["mllms"].items():
        cells = _value_cells(at, name, snrs, 2)
        lines.append(f"| {name} | {_recipe(r)} | " + " | ".join(cells) + " |")
    chance = {s: p["chance"] for (_, s), p in at.items()}
    lines.append("| majority-class chance | | | | " + " | ".join(f"{chance[s]:.2f}" for s in snrs) + " |")
    top = snrs[-1]
    families = sorted({f for p in points for f in p["by_family"]})
    lines += ["", f"*per question family at {top:g} dB (accuracy; chance in the last row)*", "",
              "| MLLM | " + " | ".join(f.replace("_", " ") for f in families) + " |",
              "|---|" + "---|" * len(families)]
    for name in h["mllms"]:
        p = at.get((name, top))
        if p:
            lines.append(f"| {name} | " + " | ".join(f"{p['by_family'].get(f, {}).get('accuracy', float('nan')):.2f}"
                                                    for f in families) + " |")
    p = next((at[(n, top)] for n in h["mllms"] if (n, top) in at), None)
    if p:
        lines.append("| chance | " + " | ".join(f"{p['by_family'].get(f, {}).get('chance', float('nan')):.2f}"
                                                for f in families) + " |")
    lines += _paired_block(fig, snrs, "*paired differences (same questions and channel draws; bootstrap 95 % "
                                      "interval; ** where it excludes 0)*")
    lines += ["", _source_line(fig, source, "questions")]
    return "\n".join(lines) + "\n"


def run(args, argv: list[str]) -> dict:
    import torch

    from unitocom.data.layouts import require_data
    from unitocom.fig3 import eval_config, measure_asr, measure_t2i, measure_vqa
    from unitocom.schemes.learned import checkpoint_dir
    from unitocom.task_eval import speech_items, vqa_items
    torch.set_num_threads(max(1, args.threads))
    data_dir = require_data(args.data)
    names = [n for n, _ in args.mllm]
    if len(set(names)) != len(names):
        raise UserError(f"--mllm: a name given twice ({', '.join(names)})")
    out = Path(args.out)
    paths = {k: out / f"{args.name}.{k}" for k in ("json", "csv", "png")}
    old = json.loads(paths["json"].read_text()) if args.resume and paths["json"].exists() else {}
    # --resume needs no checkpoint for points it keeps: an MLLM whose file is gone (run dirs do not outlive a
    # checkout) is carried from the results file under the same path, with the sha256 recorded when measured
    recorded = old.get("header", {}).get("mllms", {})
    # NAME=sha256:PREFIX: the MLLM of that hash, whatever name measured it (a shipped MLLM that was replaced keeps
    # its points under a new name while the old name scores its successor)
    measured_as: dict[str, str] = {}
    sha = functools.cache(file_sha256)  # each file read once (a checkpoint is megabytes; paper ones gigabytes)
    for n, p in args.mllm:
        if str(p).startswith(SHA):
            hits = sorted({m for m, r in recorded.items() if str(r.get("sha256", "")).startswith(str(p)[len(SHA):])})
            if len(hits) != 1:
                raise UserError(f"--mllm {n}={p}: " + (f"{', '.join(hits)} in {paths['json']} all match; give more "
                                                        "digits" if hits else
                                                        f"no MLLM of that hash in {paths['json']}"
                                                        + ("" if args.resume else " (it is read with --resume)")))
            measured_as[n] = hits[0]
        elif args.resume and p.is_file() and recorded and recorded.get(n, {}).get("sha256") != (h := sha(p)):
            # the same file measured before under another name: a replaced shipped MLLM, extracted from git and
            # given as previous=FILE, keeps the points it has as `shipped`
            hits = sorted(m for m, r in recorded.items() if r.get("sha256") == h)
            if hits:
                measured_as[n] = hits[0]
    carried = {n: recorded[measured_as.get(n, n)] for n, p in args.mllm if not p.is_file() and
               (n in measured_as or recorded.get(n, {}).get("path") == str(p))}
    missing = [f"{n}={p}" for n, p in args.mllm if not p.is_file() and n not in carried]
    if missing:
        raise UserError(f"--mllm: no MLLM checkpoint at {', '.join(missing)}"
                        + ("" if args.resume else " (with --resume, one measured before is kept from the results file)"))
    # "REF" subtracts REF from every other MLLM; "REF:A+B" from A and B only
    entries = [e.strip().partition(":") for e in (args.reference or names[0]).split(",") if e.strip()]
    references = [r.strip() for r, _, _ in entries]
    compared = {r.strip(): [a.strip() for a in only.split("+")] for r, colon, only in entries if colon}
    unknown = [r for r in references + [a for v in compared.values() for a in v] if r not in names]
    if unknown or not references:
        raise UserError(f"--reference {args.reference}: {', '.join(unknown) or 'no name'} is not one of the --mllm "
                        f"names ({', '.join(names)})")
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    mllms = {n: carried[n] if n in carried else describe(p, sha(p)) for n, p in args.mllm}
    other = [f"{n} ({r['objective']})" for n, r in mllms.items() if (r["objective"] or OBJECTIVE) not in SCHEME_OF]
    if other:
        raise UserError(f"--mllm: {', '.join(other)} read tokens no scheme sends; this compares MLLMs on the "
                        f"{' or '.join(SCHEME_OF)} link")
    schemes = {n: SCHEME_OF[r["objective"] or OBJECTIVE] for n, r in mllms.items()}
    commit, dirty = git_state(ROOT)
    ck = checkpoint_dir()
    # the links the MLLMs were trained on (the base station reads them), and the transmitter's text links
    links = sorted({ck / f for r in mllms.values() for f in r["links"].values()}
                   | {ck / f"text-{r['objective'] or OBJECTIVE}.safetensors" for r in mllms.values()})
    header = {"format": FORMAT, "command": "unitocom " + " ".join(shlex.quote(a) for a in argv),
              "git_commit": commit, "git_dirty": dirty,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "task": args.task, "data": str(args.data), "split": args.split, "seed": args.seed,
              "channel": args.channel,
              "references": references, "compared": compared, "mllms": mllms, "schemes": schemes,
              # where a carried MLLM's points were measured (the run that measured them, or the one it carried)
              "carried": {n: dict(recorded_run(old.get("header", {}), measured_as.get(n, n)),
                                  **({"measured_as": measured_as[n]} if measured_as.get(n, n) != n else {}))
                          for n in sorted(carried)},
              # a present file whose points were measured under another name (kept with --resume)
              "renamed": {**{n: r for n, r in (old.get("header", {}).get("renamed") or {}).items()
                             if n in mllms and n not in carried
                             and recorded.get(n, {}).get("sha256") == mllms[n]["sha256"]},
                          **{n: dict(recorded_run(old.get("header", {}), a), measured_as=a)
                             for n, a in sorted(measured_as.items()) if n not in carried}},
              "links_sha256": {p.name: file_sha256(p) for p in links if p.exists()}}
    if args.task == "asr":
        speech = speech_items(data_dir, args.split, args.n_asr)
        n_items, what = len(speech), "utterances"
    elif args.task == "t2i":
        captions = t2i_captions(data_dir, args.split, args.n_t2i)
        n_items, what = len(captions), "captions naming a (colour, shape) pair"
        from unitocom.task_eval import pair_recall_references  # the recall's scale: a right picture, chance
        header["t2i_pair_recall_reference"] = pair_recall_references(data_dir, args.split, len(captions),
                                                                     seed=args.seed)
    else:
        items, guess = vqa_items(data_dir, args.split, args.n_vqa)  # guess: each family's majority answer
        n_items, what = len(items), "questions"
    if not n_items:
        raise UserError(f"no {what} in the {args.split} split of {data_dir}")
    kept = {}
    if old:
        oh = old.get("header", {})
        same = all(oh.get(k, "vqa" if k == "task" else None) == header[k] for k in ("task", "data", "split", "seed"))
        for p in old.get("points", []) if same else []:
            r = oh.get("mllms", {}).get(p["mllm"], {})
            names = [p["mllm"]] * (p["mllm"] not in measured_as) + [m for m, a in measured_as.items()
                                                                    if a == p["mllm"]]
            for n in names:
                if n in mllms and r.get("sha256") == mllms[n]["sha256"] and p["n"] == n_items:
                    kept[(n, p["snr_db"], p["channel"])] = dict(p, mllm=n)
        log(f"resuming: {len(kept)} point(s) of {paths['json']} measured with the same MLLM files and questions")
    short = [f"{n} at {snr:g} dB" for n in carried for snr in args.snr_db if (n, float(snr), args.channel) not in kept]
    if short:
        raise UserError(f"--mllm: no checkpoint here for {', '.join(sorted(carried))}, and {paths['json']} holds no "
                        f"point of {', '.join(short)} on these {n_items} {what}")
    if carried:
        log(f"carried from {paths['json']} (checkpoint not here): {', '.join(sorted(carried))}")
    points: list[dict] = []

    def save():
        write_atomic(paths["json"], json.dumps({"header": header, "points": points,
                                                "paired": paired(points, references, compared=compared)}, indent=2) + "\n")
        write_csv(paths["csv"], points)

    for name, path in args.mllm:
        tokens = mllms[name]["image_tokens"] or 32
        cfg = eval_config(args, tokens, path)
        for snr in args.snr_db:
            key = (name, float(snr), args.channel)
            if key in kept:
                points.append(kept[key])
                continue
            desc = f"{args.task} {name} {snr:g} dB {args.channel}"
            if args.task == "asr":
                transcripts = measure_asr(cfg, speech, snr, args.channel, args.seed, desc, args.quiet, args.workers,
                                          scheme=schemes[name])
                # LibriSpeech names a clip SPEAKER-CHAPTER-UTTERANCE
                p = asr_point(name, tokens, snr, args.channel, [t for _, t in speech], transcripts,
                              [f.name.split("-", 1)[0] for f, _ in speech])
            elif args.task == "t2i":
                recalls = measure_t2i(cfg, captions, snr, args.channel, args.seed, desc, args.quiet, args.workers,
                                      scheme=schemes[name])
                if len(recalls) != len(captions):  # every caption names a pair: a missing recall is a fault
                    raise UserError(f"{desc}: {len(captions) - len(recalls)} of {len(captions)} pictures came back "
                                    "without a pair recall (is checkpoints/scene-checker.safetensors there?)")
                p = t2i_point(name, tokens, snr, args.channel, captions, recalls, args.seed)
            else:
                correct = measure_vqa(cfg, items, data_dir, args.split, snr, args.channel, args.seed, desc,
                                      args.quiet, args.workers, scheme=schemes[name])
                p = point(name, tokens, snr, args.channel, correct, items, guess)
            points.append(p)
            log(f"  {desc}: {p['metric']} {p['value']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}] n={p['n']}")
            save()
    save()
    plot(paths["png"], points, header.get("t2i_pair_recall_reference"))
    return {"header": header, "points": points, "paired": paired(points, references, compared=compared), "paths": paths}


def t2i_captions(data_dir: Path, split: str, n: int) -> list[str]:
    """The first n captions of `split` that name a (colour, shape) pair (fig3's choice); refuses without the
    scene checker, which scores them."""
    from unitocom.errors import CheckpointMissing
    from unitocom.metrics.scene_checker import caption_pairs
    from unitocom.stages.mllm import scene_checker
    from unitocom.task_eval import caption_items
    if scene_checker() is None:
        raise CheckpointMissing("--task t2i: the pair recall needs checkpoints/scene-checker.safetensors (train it "
                                "with `unitocom train checker`)")
    return [c for c, _ in caption_items(data_dir, split, 4 * n) if caption_pairs(c)][:n]


def add_subparser(sub) -> None:
    p = sub.add_parser("ablate", help="VQA (ASR, T2I) of differently trained MLLMs on the same questions and "
                       "channel draws (capacity, task mix, steps, data) -> results/ablation.{json,csv,png}",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mllm", type=named_mllm, action="append", required=True, metavar="NAME=PATH",
                   help="an MLLM to score (a checkpoint, or a run dir with mllm.safetensors); repeat for each; each "
                        "reads its own link (sigma-GenIB or VAE) at its image token count. PATH sha256:PREFIX (with "
                        "--resume): the MLLM of that hash in the results file, its points kept under NAME")
    p.add_argument("--reference", default=None, metavar="NAME[:A+B][,...]",
                   help="the MLLM(s) the paired differences subtract, each from every other (default: the first); "
                        "NAME:A+B subtracts NAME from A and B only")
    p.add_argument("--snr-db", type=snr_points_arg, default="0,20", help="A:B:STEP or a comma list (dB)")
    p.add_argument("--channel", default="rayleigh", help="awgn | rayleigh | rician | noiseless")
    p.add_argument("--task", choices=["vqa", "asr", "t2i"], default="vqa",
                   help="vqa: exact-match accuracy on questions; asr: word error rate on utterances; t2i: the scene "
                        "checker's pair recall on pictures drawn for captions")
    p.add_argument("--n-vqa", type=int, default=1000, help="test questions per (MLLM, SNR) point (--task vqa)")
    p.add_argument("--n-asr", type=int, default=150, help="test utterances per (MLLM, SNR) point (--task asr)")
    p.add_argument("--n-t2i", type=int, default=300,
                   help="test captions per (MLLM, SNR) point (--task t2i; about 0.4 s each with 16 workers on a CPU)")
    p.add_argument("--data", default="data/tiny")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0, help="request i carries seed + i (its channel draw)")
    p.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    p.add_argument("--device", default="cpu", help="cpu, or cuda (the base station's MLLM)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--workers", type=int, default=8,
                   help="requests in flight (the base station's dynamic batching answers them together)")
    p.add_argument("--out", default="results")
    p.add_argument("--name", default="ablation", help="file stem under OUT")
    p.add_argument("--resume", action="store_true",
                   help="keep the points of OUT/<name>.json measured with the same MLLM files and questions; an "
                        "MLLM whose file is gone is carried from there when its path and every point are")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    p.set_defaults(func=_cmd_ablate)


def _cmd_ablate(args) -> int:
    from unitocom.fig3 import require_channel
    require_channel(args.channel)
    require_at_least_one(args, ("n_vqa", "n_asr", "n_t2i", "threads", "workers"))
    res = run(args, command_argv("ablate", args))
    print(table({"header": res["header"], "points": res["points"], "paired": res["paired"]},
                str(res["paths"]["json"])))
    print("\n".join(f"wrote {p}" for p in res["paths"].values() if p.exists()))
    return 0
