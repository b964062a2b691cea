#!/usr/bin/env python3
"""The README's result tables, written from results/*.json (never typed).

    scripts/results_tables.py            rewrite the tables between the README's marker comments
    scripts/results_tables.py --check    exit 1 if the README differs from what the files say

A block is the text between `<!-- results:fig2:vqa -->` and `<!-- /results:fig2:vqa -->` (likewise t2i, asr):
a markdown table per task score with one row per scheme, one column per SNR, cells "value [ci_low, ci_high]"
(95 %), the upper bound (the same MLLM on noiseless tokens) as a last row, and a line under the table stating n,
the interval and the file's commit. A README without a block's markers is left alone with a message naming them;
a task with no points leaves its block alone too. `unitocom loss-sweep` files (results/packet-loss.json,
results/budget.json) fill `<!-- results:packet-loss:vqa -->`, `...:reconstruct` and the same for budget.
`unitocom fig3` (results/fig3.json) fills `<!-- results:fig3 -->`: VQA accuracy per image token length and SNR,
the validation curve at a few steps, and the file's verdict. `unitocom ablate` (results/ablation.json) fills
`<!-- results:ablation -->`: VQA per differently trained MLLM, per question family, and paired differences.
`scripts/vqa_probe.py` (results/vqa-probe.json) fills `<!-- results:vqa-probe -->`: one classifier's VQA accuracy
on received tokens, on their de-tokenized picture and on the clean picture. `scripts/lr_probe.py`
(results/lr-probe.json) fills `<!-- results:lr-probe -->`: each probe run's validation at each step.
results/fig2.json, results/fig2-seed77.json and results/packet-loss.json together fill `<!-- results:targets -->`:
issue 12's targets against unitocom's points, each with its value, interval and verdict.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: this checkout's library, not another installed one
    sys.path.insert(0, str(ROOT))
from unitocom.results import wilson
from unitocom.targets import FAMILY_MARGIN, TARGETS, Target, target_point

TASKS = ("vqa", "t2i", "asr")
UPPER = "upper-bound"
UPPER_ROW = "upper bound (noiseless tokens)"
# (value key, interval prefix, caption) per task score
SCORES = {"vqa": [("value", "ci_", "VQA accuracy (exact match; Wilson 95 % interval)")],
          "t2i": [("value", "ci_", "T2I FID in scene-checker features (lower is better; FID +- 1.96 bootstrap "
                                   "standard deviations over caption/image pairs)"),
                  ("pair_recall", "pair_recall_ci_", "T2I pair recall (bootstrap 95 % interval)")],
          "asr": [("value", "ci_", "ASR word error rate (lower is better; bootstrap 95 % interval over "
                                   "utterances)")]}
UNIT = {"vqa": "questions", "t2i": "captions", "asr": "utterances"}
# The pair-recall scale on real scenes (task_eval.pair_recall_references): a right picture, and chance.
REFERENCE_ROWS = (("own", "real scene of the caption (checker's ceiling)"),
                  ("other", "real scene of another caption (chance)"))


PROBE_FORMAT = "unitocom-results/vqa-probe/"  # scripts/vqa_probe.py: a point per view, step and SNR
PROBE_VIEWS = {"tokens": "the 32 received tokens, one linear projection each",
               "decoded": "the de-tokenizer's picture of those tokens, F^-1(t_hat), conv stem",
               "pixels": "the clean picture (no channel), the same conv stem",
               "scene": "the scene record's objects (attributes one-hot, centre coordinates): perfect perception"}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name} -->", f"<!-- /results:{name} -->"


def load(results_dir: Path) -> dict[str, dict]:
    """{figure name: parsed JSON} for every results/*.json that holds points (fig2.json -> "fig2")."""
    out = {}
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"error: {p} is not JSON ({e})") from None
        if isinstance(d, dict) and isinstance(d.get("points"), list):
            out[p.stem] = d
    return out


def cell(p: dict | None, key: str, prefix: str, digits: int = 2) -> str:
    """"0.61 [0.54, 0.67]": the value and its 95 % interval, `digits` decimals."""
    if p is None or p.get(key) is None:
        return "–"
    lo, hi = p.get(f"{prefix}low"), p.get(f"{prefix}high")
    return f"{p[key]:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None
                                     else "")


def reference_rows(header: dict, columns: int, digits: int = 2) -> list[str]:
    """The pair-recall table's real-scene rows (the same at every SNR), when the file's header has them."""
    ref = header.get("t2i_pair_recall_reference")
    return [f"| {row} | " + " | ".join(cell(ref[name], "value", "ci_", digits) for _ in range(columns)) + " |"
            for name, row in REFERENCE_ROWS] if ref else []


def _snr_key(p: dict) -> tuple:
    return (p["channel"], float(p["snr_db"]))


def block(task: str, fig: dict, source: str = "results/fig2.json") -> str | None:
    """The markdown of one task's block, or None when the file has nothing for the task."""
    points = [p for p in fig.get("points", []) if p.get("task") == task]
    skipped = [s for s in fig.get("skipped", []) if s.get("task") == task]
    if not points and not skipped:
        return None
    curves = [p for p in points if p.get("scheme") != UPPER and p.get("snr_db") is not None]
    cols = sorted({_snr_key(p) for p in curves} | {_snr_key(s) for s in skipped if s.get("snr_db") is not None})
    channels = sorted({c for c, _ in cols})
    label = (lambda c: f"{c[1]:g} dB") if len(channels) <= 1 else (lambda c: f"{c[0]} {c[1]:g} dB")
    schemes = list(dict.fromkeys([p["scheme"] for p in curves]
                                 + [s["scheme"] for s in skipped if s.get("scheme") != UPPER]))
    at = {(p["scheme"], _snr_key(p)): p for p in curves}
    refused = {(s["scheme"], _snr_key(s)): s for s in skipped if s.get("snr_db") is not None}
    upper = next((p for p in points if p.get("scheme") == UPPER), None)
    out = []
    for key, prefix, caption in SCORES[task]:
        digits = 1 if (task, key) == ("t2i", "value") else 2  # FID: tens; the rest: rates
        if not any(p.get(key) is not None for p in points):
            continue
        head = f"{caption}, {', '.join(channels)} channel" if channels else caption
        out += [f"*{head}*", "", "| scheme | " + " | ".join(label(c) for c in cols) + " |",
                "|---|" + "---|" * len(cols)]
        for s in schemes:
            cells = []
            for c in cols:
                if (s, c) in at:
                    cells.append(cell(at[(s, c)], key, prefix, digits))
                elif (s, c) in refused:
                    cells.append(f"refused ({refused[(s, c)]['status']})")
                else:
                    cells.append("–")
            out.append(f"| {s} | " + " | ".join(cells) + " |")
        if upper is not None:
            out.append(f"| {UPPER_ROW} | " + " | ".join(cell(upper, key, prefix, digits) for _ in cols) + " |")
        if key == "pair_recall":
            out += reference_rows(fig.get("header", {}), len(cols), digits)
        out.append("")
    ns = sorted({p["n"] for p in points})
    h = fig.get("header", {})
    commit = (h.get("git_commit") or "unknown")[:10] + (" (dirty tree)" if h.get("git_dirty") else "")
    runs = len(h.get("resumed_from") or []) + 1  # a resumed sweep: the header is its last run's
    where = f"commit {commit}" if runs == 1 else f"the last of {runs} resumed runs: commit {commit}"
    out.append(f"n = {', '.join(map(str, ns)) or '–'} {UNIT[task]} per point; 95 % intervals. From "
               f"`{source}` ({where}, {h.get('date', 'date unknown')}): `{h.get('command', '?')}`."
               + (" Each earlier run's command, commit and checkpoint hashes are in the header's `resumed_from`."
                  if runs > 1 else ""))
    if upper is None:
        out.append("No upper bound in the file (the noiseless channel was not measured).")
    for s in skipped:
        where = f"{s['snr_db']:g} dB" if s.get("snr_db") is not None else s.get("channel", "")
        out.append(f"Refused: {s['scheme']} at {where}: {s['status']}: {' '.join(str(s.get('message', '')).split())}")
    return "\n".join(out).rstrip() + "\n"


LOSS_SCORES = {"vqa": [("value", "ci_", "VQA accuracy (exact match; Wilson 95 % interval)", 2)],
               "reconstruct": [("value", "ci_", "image PSNR in dB (bootstrap 95 % interval over scenes)", 1),
                               ("pair_f1", "pair_f1_ci_", "scene-checker pair F1 (bootstrap 95 % interval)", 2)]}
LOSS_UNIT = {"vqa": "questions", "reconstruct": "scenes"}


def loss_block(task: str, fig: dict, source: str) -> str | None:
    """One task's tables of a `unitocom loss-sweep` file: packet-loss (rows scheme x loss pattern, columns the
    loss rates) or budget (one row per point, with its channel uses)."""
    points = [p for p in fig.get("points", []) if p.get("task") == task]
    if not points:
        return None
    h = fig.get("header", {})
    sweep = h.get("sweep")
    out = []
    for key, prefix, caption, digits in LOSS_SCORES[task]:
        out += [f"*{caption}, Rayleigh {h.get('snr_db', 0):g} dB*", ""]
        if sweep == "packet-loss":
            rates = sorted({p["packet_loss"] for p in points})
            out += ["| scheme | losses | " + " | ".join(f"{100 * r:g} %" for r in rates) + " |",
                    "|---|---|" + "---|" * len(rates)]
            patterns = (False, True) if any(r > 0 for r in rates) else (False,)  # a file without loss: one row
            for scheme in dict.fromkeys(p["scheme"] for p in points):
                for bursty in patterns:
                    at = {p["packet_loss"]: p for p in points if p["scheme"] == scheme
                          and (p["packet_loss"] == 0 or bool(p["packet_burst"]) == bursty)}
                    label = (f"bursty (mean {h.get('burst', 0):g} packets)" if bursty
                             else "i.i.d." if len(patterns) > 1 else "none")
                    out.append(f"| {scheme} | {label} | " + " | ".join(cell(at.get(r), key, prefix, digits)
                                                                        for r in rates) + " |")
        else:
            out += ["| scheme | sent | channel uses per request | score |", "|---|---|---|---|"]
            for p in points:
                sent = (f"{p['token_budget']} of 32 image tokens" if p.get("token_budget") else p.get("settings") or "")
                out.append(f"| {p['scheme']} | {sent} | {p['channel_uses']:.0f} | {cell(p, key, prefix, digits)} |")
        out.append("")
    commit = (h.get("git_commit") or "unknown")[:10] + (" (dirty tree)" if h.get("git_dirty") else "")
    ns = sorted({p["n"] for p in points})
    out.append(f"n = {', '.join(map(str, ns))} {LOSS_UNIT[task]} per point; 95 % intervals. From `{source}` "
               f"(commit {commit}, {h.get('date', 'date unknown')}): `{h.get('command', '?')}`.")
    for s in fig.get("skipped", []):
        if s.get("task") == task:
            out.append(f"Refused: {s['scheme']} {s.get('link')}: {s['status']}: {' '.join(str(s.get('message', '')).split())}")
    return "\n".join(out).rstrip() + "\n"


def paired_block(fig: dict, source: str) -> str | None:
    """The paired differences of a packet-loss file (`comparisons`): one row per task, loss and pair."""
    rows = fig.get("comparisons") or []
    if not rows:
        return None
    h = fig.get("header", {})
    out = [f"*Paired differences (scheme minus reference, same examples and lost packets; bootstrap 95 % "
           f"interval; ** where it excludes 0), Rayleigh {h.get('snr_db', 0):g} dB*", "",
           "| task | loss | scheme - reference | accuracy or PSNR (dB) | pair F1 |", "|---|---|---|---|---|"]
    for r in rows:
        loss = f"{100 * r['packet_loss']:g} %" + (f", bursts of {r['packet_burst']:g}" if r["packet_burst"] else "")
        cells = []
        for field, digits in (("value", 3 if r["task"] == "vqa" else 2), ("pair_f1", 3)):
            c = r.get(field)
            cells.append("–" if c is None else f"{c['difference']:+.{digits}f} [{c['ci_low']:+.{digits}f}, "
                         f"{c['ci_high']:+.{digits}f}]" + (" **" if c["separates"] else ""))
        out.append(f"| {r['task']} | {loss} | {r['scheme']} - {r['against']} | {cells[0]} | {cells[1]} |")
    out += ["", f"From `{source}` (`comparisons`)."]
    return "\n".join(out) + "\n"


def spoken_block(fig: dict, source: str) -> str:
    """VQA with a spoken question against typed (issue 17): one row per scheme and question form."""
    lines = ["| scheme | question | questions | n | accuracy (Wilson 95 %) | majority-class chance |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p in fig["points"]:
        which = "the spoken set's, typed" if p.get("questions") == "spoken set" else \
            ("the spoken set" if p.get("question") == "spoken" else "all test questions")
        lines.append(f"| {p['scheme']} | {p.get('question', 'typed')} | {which} | {p['n']} | {cell(p, 'value', 'ci_')} | "
                     f"{p.get('chance', 0):.2f} |")
    snr = {(p["snr_db"], p["channel"]) for p in fig["points"]}
    where = ", ".join(f"{s:g} dB {c}" for s, c in sorted(snr))
    return "\n".join(lines) + f"\n\n{where}; from `{source}` (each row's command is in the file).\n"


def probe_block(fig: dict, source: str) -> str:
    """scripts/vqa_probe.py: one classifier, three views of the scene; accuracy at each evaluation step."""
    h, points = fig["header"], fig["points"]
    steps = sorted({p["step"] for p in points})
    at = {(p["view"], p["step"], float(p["snr_db"])): p for p in points}
    head = "| view | what the classifier reads | parameters | " + \
        " | ".join(f"step {s}: 0 / 20 dB" for s in steps) + " |"
    lines = [head, "|" + "---|" * (3 + len(steps))]
    for view, v in h["views"].items():
        cells = [f"{at[(view, s, 0.0)]['value']:.2f} / {at[(view, s, 20.0)]['value']:.2f}"
                 if (view, s, 0.0) in at and (view, s, 20.0) in at else "" for s in steps]
        lines.append(f"| {view} | {PROBE_VIEWS.get(view, '')} | {v['parameters'] / 1e6:.2f} M | " +
                     " | ".join(cells) + " |")
    last_step = {view: max(p["step"] for p in points if p["view"] == view) for view in {p["view"] for p in points}}
    final = "; ".join(f"{view} {cell(at.get((view, last_step[view], 20.0)), 'value', 'ci_')}"
                      for view in h["views"] if view in last_step)
    dirty = " (dirty tree)" if h.get("git_dirty") else ""
    scope = ""  # --families, --extra-per-scene, --positions (files before them trained on every family)
    if isinstance(h.get("families"), list):
        scope = f" Only {', '.join(f.replace('_', ' ') for f in h['families'])} questions, trained and scored"
        if h.get("extra_per_scene"):
            scope += (f"; {h['extra_per_scene']} more drawn per training scene beside the set's, "
                      f"{h['train_questions']} training questions in all")
        scope += "."
    if h.get("where_per_scene"):
        scope += (f" Beside them it trained on {h['where_per_scene']} auxiliary \"Where is the ...?\" questions per "
                  f"training scene (`--where-per-scene`; never scored), {h['train_questions']} training questions "
                  f"in all.")
    if h.get("objects_weight"):
        scope += (f" Beside the questions the reader learnt, with weight {h['objects_weight']:g}, to read the scene's "
                  f"objects left to right from the same tokens (`--objects`: one query cell per slot; each "
                  f"attribute, presence and centre)" + (", and the questions read those slots' cells as well as the "
                  "tokens (`--read-slots`)." if h.get("read_slots") else "."))
    if "scene" in h["views"]:
        scope += " The scene view reads no picture and no channel: its 0 and 20 dB are the same questions, read alike."
    if h.get("positions", "noise") != "noise":
        scope += f" Visual positions start as the token grid's code (`--positions {h['positions']}`)."
    return "\n".join(lines) + _probe_families(points) + _probe_objects(points) + (
        f"\n\nn = {h['n_val']} {h.get('split', 'val')} questions per cell, {h['channel']}, the same channel draws for "
        f"tokens and decoded; at the last step, 20 dB with Wilson 95 % intervals: {final}.{scope} {h['batch_size']} "
        f"questions a step (family-balanced), SNR drawn from {h['train_snr_db'][0]:g} to {h['train_snr_db'][1]:g} dB. "
        f"From `{source}` (commit {str(h.get('git_commit'))[:10]}{dirty}, {h.get('date')}): `{h['command']}`.\n")


def _probe_families(points: list[dict]) -> str:
    """Each family's accuracy at 20 dB per (view, step), where the points count families (files before that did
    not)."""
    counted = [p for p in points if float(p["snr_db"]) == 20.0 and p.get("by_family")]
    families = list(dict.fromkeys(f for p in counted for f in p["by_family"]))  # vqa_probe writes them in order
    if len(families) < 2:  # one family: the table above says it all
        return ""
    lines = ["", "", "*accuracy per question family at 20 dB (questions asked in the last column)*", "",
             "| family | " + " | ".join(f"{p['view']} step {p['step']}" for p in counted) + " | n |",
             "|" + "---|" * (len(counted) + 2)]
    for f in families:
        cells = [f"{p['by_family'][f][0] / p['by_family'][f][1]:.2f}" if p["by_family"].get(f, [0, 0])[1] else ""
                 for p in counted]
        asked = counted[-1]["by_family"].get(f, [0, 0])[1]
        lines.append(f"| {f.replace('_', ' ')} | " + " | ".join(cells) + f" | {asked} |")
    return "\n".join(lines)


def _probe_objects(points: list[dict]) -> str:
    """How well `--objects`' slots read the val scenes' objects at 20 dB per (view, step), where they were trained."""
    read = [p for p in points if float(p["snr_db"]) == 20.0 and p.get("objects")]
    if not read:
        return ""
    names = [n for n in read[0]["objects"] if n != "scenes"]  # the figures; "scenes" says how many were read
    lines = ["", "", f"*the object slots on {read[0]['objects'].get('scenes', 500)} val scenes at 20 dB: the share of "
             "scenes with the right object count, each attribute's accuracy over real objects, and the mean "
             "distance of the centres in picture widths*", "",
             "| step | " + " | ".join(n.replace("_", " ") for n in names) + " |", "|" + "---|" * (len(names) + 1)]
    for p in read:
        lines.append(f"| {p['step']} | " + " | ".join(f"{p['objects'][n]:.2f}" for n in names) + " |")
    return "\n".join(lines)


def listing_block(fig: dict, source: str) -> str:
    """scripts/listing_read.py: what an obj-trained MLLM's listings of received scenes get right, per MLLM and SNR."""
    h = fig["header"]
    fields = ("count", "found", "size", "color", "material", "shape", "place", "exact")
    lines = ["| MLLM | SNR (dB) | " + " | ".join(fields) + " |", "|" + "---|" * (len(fields) + 2)]
    for p in fig["points"]:
        lines.append(f"| {p['mllm']} | {p['snr_db']:g} | " + " | ".join(
            f"{p[f]['value']:.2f} [{p[f]['ci95'][0]:.2f}, {p[f]['ci95'][1]:.2f}]" for f in fields) + " |")
    dirty = " (dirty tree)" if h.get("git_dirty") else ""
    n = fig["points"][0]["n"] if fig["points"] else 0
    lines += ["", f"n = {n} {h['split']} scenes per point, {h['channel']}; count and exact: the share of scenes whose "
              "listing has as many items / is the scene record's word for word; found: the share of the scenes' "
              "objects (size, colour, material, shape) named anywhere in the listing; the others: the share of the "
              "scenes' objects whose item in the same position (left to right) has that value; bootstrap 95 % "
              f"intervals over scenes. From `{source}` (commit {str(h.get('git_commit'))[:10]}{dirty}, {h.get('date')}): "
              f"`{h['command']}`."]
    return "\n".join(lines)


def slots_reason_block(fig: dict, source: str) -> str:
    """scripts/slots_reason.py: each question's program run on the scene record and on the object slots' reading of
    the received scene, per SNR: accuracy overall (Wilson) and per family, and the share of programs that ran."""
    h, points = fig["header"], fig["points"]
    families = sorted({f for p in points for f in p["by_family"]})
    lines = ["| scene read by | SNR (dB) | accuracy | programs ran | " +
             " | ".join(f.replace("_", " ") for f in families) + " |", "|" + "---|" * (len(families) + 4)]
    for p in points:
        snr = "no channel" if p["snr_db"] is None else f"{p['snr_db']:g}"
        lines.append(f"| {p['reader']} | {snr} | {p['accuracy']:.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] | "
                     f"{p['programs_ran']:.2f} | " +
                     " | ".join(f"{p['by_family'][f]['accuracy']:.2f}" if f in p["by_family"] else "–"
                                for f in families) + " |")
    if points:
        lines.append("| chance (each family's most common training answer) | | "
                     f"{points[0]['chance']:.3f} | | " +
                     " | ".join(f"{points[0]['by_family'][f]['chance']:.2f}" if f in points[0]["by_family"] else "–"
                                for f in families) + " |")
    dirty = " (dirty tree)" if h.get("git_dirty") else ""
    n = points[0]["n"] if points else 0
    lines += ["", f"n = {n} {h['split']} questions of `{h['data']}` per row, {h['channel']}, each question's scene "
              "received on its own draw; a program that cannot run on the scene read (a `unique` that finds no "
              "object or several) is answered with its family's chance answer. Wilson 95 % intervals. From "
              f"`{source}` (commit {str(h.get('git_commit'))[:10]}{dirty}, {h.get('date')}; the slots of "
              f"`{h['mllm']['path']}`, sha256 {h['mllm']['sha256'][:8]}): `{h['command']}`."]
    return "\n".join(lines)


def lr_probe_block(fig: dict, source: str) -> str:
    """scripts/lr_probe.py: the first steps of the MLLM recipe per (width, peak learning rate), validated."""
    h = fig["header"]
    lines = ["| run | layers x width, parameters | peak lr | step | VQA 0 dB | VQA 20 dB | T2I diffusion (held out) | "
             "caption gain | ASR WER 20 dB | captioning loss | steps/s |", "|" + "---|" * 11]
    for p in sorted(fig["points"], key=lambda p: (list(h["runs"]).index(p["run"]) if p["run"] in h["runs"] else 99,
                                                 p["step"])):
        r = h["runs"].get(p["run"], {})
        num = lambda k, d=4: "" if p.get(k) is None else f"{p[k]:.{d}f}"  # noqa: E731
        lines.append(f"| {p['run']} | {r.get('layers')} x {r.get('hidden')}, {(r.get('parameters') or 0) / 1e6:.1f} M "
                     f"| {p['lr']:g} | {p['step']} | {cell(p.get('vqa_0db'), 'value', 'ci_')} | "
                     f"{cell(p.get('vqa_20db'), 'value', 'ci_')} | {num('t2i_diffusion')} | {num('t2i_caption_gain')} | "
                     f"{num('asr_wer_20db', 3)} | {num('cap_lm_20db', 3)} | {num('steps_per_s', 2)} |")
    dirty = " (dirty tree)" if h.get("git_dirty") else ""
    n = max((p.get("val_vqa_n") or 0 for p in fig["points"]), default=0)
    span = (f"the recipe's {h['steps']} steps, validated on the way" if h["stop_at"] >= h["steps"] else
            f"the first {h['stop_at']} of the recipe's {h['steps']} steps (`train mllm --stop-at`)")
    return "\n".join(lines) + (
        f"\n\nEach run is {span}; VQA "
        f"on {n} val questions over Rayleigh (Wilson 95 %), the rest one number each on fixed val items; one training "
        f"seed per run. From `{source}` (commit {str(h.get('git_commit'))[:10]}{dirty}, {h.get('date')}): "
        f"`{h['command']}`.\n")


FIG3_KEYS = {"tokens", "task", "snr_db", "channel", "n", "value", "ci_low", "ci_high"}


def fig3_block(fig: dict, source: str, columns: int = 5) -> str | None:
    """Fig. 3 at the task level (`unitocom fig3`): VQA accuracy vs SNR, one row per image token length; the
    validation accuracy at 20 dB at `columns` steps spread over training (the convergence panel's numbers); the
    file's verdict. None when the points are not fig3's."""
    points = [p for p in fig.get("points", []) if FIG3_KEYS <= set(p) and p["task"] == "vqa"]
    if not points:
        return None
    h = fig.get("header", {})
    lengths = sorted({p["tokens"] for p in points})
    cols = sorted({(p["channel"], float(p["snr_db"])) for p in points})
    at = {(p["tokens"], p["channel"], float(p["snr_db"])): p for p in points}
    chans = sorted({c for c, _ in cols})
    out = [f"*VQA accuracy (exact match; Wilson 95 % interval) per image token length, {', '.join(chans)} "
           f"channel*", "", "| image tokens | " + " | ".join(f"{s:g} dB" for _, s in cols) + " |",
           "|---|" + "---|" * len(cols)]
    for n in lengths:
        out.append(f"| {n} | " + " | ".join(cell(at.get((n, c, s)), "value", "ci_") for c, s in cols) + " |")
    t2i = [p for p in fig.get("points", []) if FIG3_KEYS <= set(p) and p["task"] == "t2i"]
    if t2i:
        t_cols = sorted({(p["channel"], float(p["snr_db"])) for p in t2i})
        t_at = {(p["tokens"], p["channel"], float(p["snr_db"])): p for p in t2i}
        out += ["", f"*T2I pair recall (bootstrap 95 % interval) per image token length, "
                    f"{', '.join(sorted({c for c, _ in t_cols}))} channel, n = "
                    f"{', '.join(map(str, sorted({p['n'] for p in t2i})))} captions*", "",
                "| image tokens | " + " | ".join(f"{s:g} dB" for _, s in t_cols) + " |", "|---|" + "---|" * len(t_cols)]
        for n in sorted({p["tokens"] for p in t2i}):
            out.append(f"| {n} | " + " | ".join(cell(t_at.get((n, c, s)), "value", "ci_") for c, s in t_cols) + " |")
        out += reference_rows(h, len(t_cols))
    curves = [c for c in fig.get("curves", []) if c.get("metric") == "val_vqa_acc_20db"]
    if curves:
        steps = sorted({c["step"] for c in curves})
        pick = sorted({steps[round(i * (len(steps) - 1) / max(1, columns - 1))] for i in range(columns)})
        conv = (fig.get("verdict") or {}).get("convergence", {})
        runs = h.get("runs", {})
        key = next((k for v in conv.values() for k in v if k.startswith("step_to_")), None)
        at_c = {(c["tokens"], c["step"]): c for c in curves}
        vn = sorted({c["n"] for c in curves if c.get("n")})
        out += ["", f"*Validation VQA accuracy at 20 dB against training step (convergence; "
                    f"{', '.join(map(str, vn)) or '?'} validation questions, Wilson 95 % interval)*", "",
                "| image tokens | " + " | ".join(f"step {s}" for s in pick)
                + (" | first step at 90 % of its best" if key else "") + " | training steps/s |",
                "|---|" + "---|" * (len(pick) + (1 if key else 0) + 1)]
        for n in lengths:
            row = [cell(at_c.get((n, s)), "value", "ci_") for s in pick]
            if key:
                reach = conv.get(str(n), {}).get(key)
                row.append("–" if reach is None else str(reach))
            sps = runs.get(str(n), {}).get("steps_per_s")
            row.append("–" if sps is None else f"{sps:.2f}")
            out.append(f"| {n} | " + " | ".join(row) + " |")
    budgets = {json.dumps(r.get("train_config"), sort_keys=True) for r in h.get("runs", {}).values()}
    tc = next(iter(h.get("runs", {}).values()), {}).get("train_config") or {}
    commit = (h.get("git_commit") or "unknown")[:10] + (" (dirty tree)" if h.get("git_dirty") else "")
    ns = sorted({p["n"] for p in points})
    out += ["", f"n = {', '.join(map(str, ns))} questions per point; 95 % intervals. "
                + (f"Equal budgets: {tc.get('steps')} steps of batch {tc.get('batch')} for every length. "
                   if h.get("equal_budget") and len(budgets) == 1 else
                   "**The runs were not trained with equal budgets** (see the file's header.runs). ")
                + f"From `{source}` (commit {commit}, {h.get('date', 'date unknown')}): `{h.get('command', '?')}`."]
    statement = (fig.get("verdict") or {}).get("statement")
    if statement:
        out += ["", f"Verdict written by `unitocom fig3`: {statement}"]
    return "\n".join(out) + "\n"


# Issue 12's targets (unitocom/targets.py) in two sets: each set's file for each kind a Target names in `files`.
TARGET_SETS = (("test split", {"fig2": "fig2", "vqa-families": "vqa-families", "reconstruct": "packet-loss",
                                "reconstruct-0db": "reconstruct-0db"}),
               ("fresh set (seed 77)", {"fig2": "fig2-seed77", "vqa-families": "vqa-families-seed77",
                                        "asr": "asr-seed77", "reconstruct": "reconstruct-seed77",
                                        "reconstruct-0db": "reconstruct-0db-seed77"}))
# `reproduce_results.sh text-links`: the same VQA points with the installed text links and with train all's retrained
# ones staged in checkpoints/next; one table of both, split by whether the question was read exactly
TEXT_LINK_FILES = ("text-links-installed", "text-links-next")
# `reproduce_results.sh text-prior`: the same points again, each set of links read with the staged language prior;
# one table of the four ways of reading, (links, reading) -> file
READING_FILES = {("installed", "argmax"): "text-links-installed", ("installed", "prior"): "text-prior-installed",
                 ("next", "argmax"): "text-links-next", ("next", "prior"): "text-prior-next"}
# `reproduce_results.sh text-copies`: the question sent twice over independent fades (link option text_copies),
# beside the same requests sent once
COPIES_FILES = {"installed links, argmax, once": "text-links-installed",
                "installed links, argmax, 2 copies": "text-copies-installed",
                "next links, prior, once": "text-prior-next", "next links, prior, 2 copies": "text-copies-next"}
# `reproduce_results.sh families`: per-family tables; then the same on the staged links read with the prior
# (text-prior-families), then with the question sent twice and three times (text-copies)
FAMILIES_FILES = ("vqa-families", "vqa-families-seed77", "vqa-families-prior", "vqa-families-prior-seed77",
                  "vqa-families-copies", "vqa-families-copies-seed77", "vqa-families-copies3",
                  "vqa-families-programs", "vqa-families-programs-seed77")


def _verdict(lo: float, hi: float, side: str, bound: float) -> str:
    """"met" when the whole 95 % interval is on the target's side, "missed" when none of it is, else "within noise"."""
    worst_ok, best_ok = (lo >= bound, hi >= bound) if side == "ge" else (hi <= bound, lo <= bound)
    return "met" if worst_ok else ("within noise" if best_ok else "missed")


def _overall(verdicts: list[str]) -> str:
    if not verdicts:
        return "–"
    return "missed" if "missed" in verdicts else ("met" if all(v == "met" for v in verdicts) else "within noise")


def _bound_cell(p: dict, t: Target) -> tuple[str, str] | None:
    if p.get(t.key) is None:
        return None
    v = _verdict(p[f"{t.prefix}low"], p[f"{t.prefix}high"], t.side, t.bound)
    short = (p[t.key] < t.bound) == (t.side == "ge")
    return (f"{cell(p, t.key, t.prefix, t.digits)}: {v}, "
            f"{abs(p[t.key] - t.bound):.{t.digits}f} {'short' if short else 'to spare'}"), v


def _fid_cell(p: dict, t: Target) -> tuple[str, str] | None:
    """FID against twice the file's own real-vs-real floor (FID is biased at small n: each set has its own)."""
    if p.get(t.key) is None or p.get("fid_real_vs_real") is None:
        return None
    bound = 2 * p["fid_real_vs_real"]
    v = _verdict(p[f"{t.prefix}low"], p[f"{t.prefix}high"], t.side, bound)
    return (f"{cell(p, t.key, t.prefix, t.digits)} against {bound:.1f}, "
            f"{p[t.key] / p['fid_real_vs_real']:.1f}x the floor: {v}"), v


def _family_interval(r: dict) -> tuple[float, float]:
    """A family's 95 % interval: its own, or for files written before by_family carried one, Wilson's from n and the
    accuracy (rounded to 3 digits: the count is exact below 1000 questions a family)."""
    return (r["ci_low"], r["ci_high"]) if "ci_low" in r else wilson(round(r["accuracy"] * r["n"]), r["n"])


def _family_rows(p: dict) -> list[tuple[str, dict, float, float, str]]:
    """(family, its record, interval low, high, verdict against chance + FAMILY_MARGIN) per family of a VQA point,
    the farthest below its floor first."""
    rows = []
    for f, r in (p.get("by_family") or {}).items():
        lo, hi = _family_interval(r)
        rows.append((f, r, lo, hi, _verdict(lo, hi, "ge", r["chance"] + FAMILY_MARGIN)))
    return sorted(rows, key=lambda row: row[1]["accuracy"] - row[1]["chance"])


def _families_cell(p: dict, t: Target) -> tuple[str, str] | None:
    rows = _family_rows(p)
    if not rows:
        return None

    def listed(verdict: str) -> list[str]:
        return [f"{f.replace('_', ' ')} {r['accuracy']:.2f} [{lo:.2f}, {hi:.2f}] (chance {r['chance']:.2f})"
                for f, r, lo, hi, v in rows if v == verdict]
    missed, noise = listed("missed"), listed("within noise")
    text = f"{len(rows) - len(missed) - len(noise)} of {len(rows)} families met"
    text += "".join(f"; {what}: " + ", ".join(names) for what, names in (("under it", missed),
                                                                         ("within noise", noise)) if names)
    return text, _overall([v for *_, v in rows])


CELLS = {"bound": _bound_cell, "fid": _fid_cell, "families": _families_cell}


def _row_name(t: Target, points: list[dict]) -> str:
    """The target's label; the family row's says how many questions each family's interval rests on."""
    if t.kind != "families":
        return t.label
    ns = [r["n"] for p in points for r in (p.get("by_family") or {}).values()]
    return t.label + " (Wilson 95 % intervals" + (f"; {min(ns)} to {max(ns)} questions a family" if ns else "") + ")"


def targets_block(figures: dict[str, dict], scheme: str = "unitocom") -> str | None:
    """Issue 12's targets against `scheme`'s points through the services: one row per target, one column per set
    (the test split: results/fig2.json and results/packet-loss.json; the fresh set: results/fig2-seed77.json), the
    value with its 95 % interval and a verdict; None without results/fig2.json."""
    if "fig2" not in figures:
        return None
    sets = [(label, files) for label, files in TARGET_SETS if files["fig2"] in figures]
    out = ["| target | " + " | ".join(label for label, _ in sets) + " | verdict |",
           "|---|" + "---|" * len(sets) + "---|"]
    for t in TARGETS:
        cells, verdicts, points = [], [], []
        for _, files in sets:
            found = (target_point(figures[files[f]], t.task, t.snr_db, scheme) for f in t.files
                     if files.get(f) in figures)
            p = next((q for q in found if q is not None), None)
            got = CELLS[t.kind](p, t) if p is not None else None
            if got is None:
                cells.append("–")
                continue
            points.append(p)
            cells.append(got[0])
            verdicts.append(got[1])
        out.append(f"| {_row_name(t, points)} | " + " | ".join(cells) + f" | {_overall(verdicts)} |")
    used = [n for _, files in sets for n in files.values() if n in figures]
    sources = "; ".join(f"`results/{n}.json` (commit {(figures[n]['header'].get('git_commit') or 'unknown')[:10]}, "
                        f"{figures[n]['header'].get('date', 'date unknown')})" for n in used)
    out += ["", (f"Scheme {scheme}, Rayleigh, through the running services; 95 % intervals. A target is met where "
                 "its whole interval is on the target's side, missed where none of it is, else within noise; the "
                 f"verdict column is the worst over the sets. From {sources}; each file's command is under its own "
                 "table.")]
    return "\n".join(out) + "\n"


def families_block(fig: dict, source: str, scheme: str = "unitocom") -> str | None:
    """Each question family of `scheme`'s VQA points: n, accuracy with its Wilson 95 % interval at each SNR, chance,
    and a verdict against its floor (majority-class chance + FAMILY_MARGIN) at the family target's SNR."""
    h = fig.get("header", {})
    points = sorted((p for p in fig.get("points", []) if p.get("task") == "vqa" and p.get("scheme") == scheme
                     and p.get("by_family")), key=lambda q: float(q["snr_db"]))
    target = next(t for t in TARGETS if t.kind == "families")
    judged = next((p for p in points if float(p["snr_db"]) == target.snr_db), None)
    if judged is None:
        return None
    snrs = [f"{float(p['snr_db']):g} dB" for p in points]
    out = [f"*VQA accuracy per question family, {scheme}, {judged.get('channel', '?')} channel, Wilson 95 % intervals: "
           + ", ".join(f"{cell(p, 'value', 'ci_', 2)} over {p['n']} questions at {s}" for p, s in zip(points, snrs))
           + f"; the verdict is at {target.snr_db:g} dB*", "",
           "| family | questions | " + " | ".join(snrs)
           + f" | majority-class chance | floor (chance + {FAMILY_MARGIN:.2f}) | verdict |",
           "|---|---|" + "---|" * len(points) + "---|---|---|"]
    def at(r: dict | None) -> str:
        return "–" if r is None else "{:.2f} [{:.2f}, {:.2f}]".format(r["accuracy"], *_family_interval(r))
    for f, r, lo, hi, v in _family_rows(judged):
        accs = [at(q["by_family"].get(f)) for q in points]
        out.append(f"| {f.replace('_', ' ')} | {r['n']} | " + " | ".join(accs)
                   + f" | {r['chance']:.2f} | {r['chance'] + FAMILY_MARGIN:.2f} | {v} |")
    commit = (h.get("git_commit") or "unknown")[:10]
    out += ["", f"From `{source}` (commit {commit}, {h.get('date', 'date unknown')}): `{h.get('command', '?')}`."]
    return "\n".join(out) + "\n"


def text_links_block(figures: dict[str, dict]) -> str | None:
    """VQA with each set of text links (TEXT_LINK_FILES): per scheme and SNR, the share of questions the base station
    read exactly, and the accuracy overall, on those read and on those misread (Wilson 95 %)."""
    have = [(name, figures[name]) for name in TEXT_LINK_FILES if name in figures]
    if not have:
        return None
    lines = [("| scheme | SNR (dB) | text links | n | questions read exactly | VQA accuracy | on those read | "
              "on those misread |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = []
    for name, fig in have:
        links = name.removeprefix("text-links-")
        for p in fig["points"]:
            q = p.get("question_read")
            if p.get("task") != "vqa" or not q:
                continue
            snr = float("inf") if p["snr_db"] is None else p["snr_db"]  # the upper bound: noiseless tokens
            rows.append(((p["scheme"] == "upper-bound", p["scheme"], snr, TEXT_LINK_FILES.index(name)), p, q, links))
    for _, p, q, links in sorted(rows, key=lambda r: r[0]):
        split = [cell(q[k], "accuracy", "ci_") for k in ("read", "misread")]
        snr = "noiseless" if p["snr_db"] is None else f"{p['snr_db']:g}"
        lines.append(f"| {p['scheme']} | {snr} | {links} | {p['n']} | {q['share']:.3f} | "
                     f"{cell(p, 'value', 'ci_')} | {split[0]} | {split[1]} |")
    channels = sorted({p["channel"] for _, p, _, _ in rows})
    sources = ", ".join(f"`results/{name}.json`" for name, _ in have)
    return "\n".join(lines) + f"\n\n{', '.join(channels)}; from {sources} (each file's command is in it).\n"


def reading_block(figures: dict[str, dict]) -> str | None:
    """VQA by how the base station reads the question (READING_FILES): per scheme and SNR, for each set of text
    links read by argmax and with the language prior, the share of questions read exactly and VQA (Wilson 95 %)."""
    have = {k: figures[f] for k, f in READING_FILES.items() if f in figures}
    if not any(r == "prior" for _, r in have):
        return None
    return _reading_table({f"{links} links, {r}": fig for (links, r), fig in have.items()},
                          [READING_FILES[k] for k in have])


def copies_block(figures: dict[str, dict]) -> str | None:
    """VQA with the question sent once and twice (COPIES_FILES): per scheme and SNR, for the installed links read by
    argmax and the staged ones read with the prior, the share of questions read exactly and VQA (Wilson 95 %)."""
    have = {k: figures[f] for k, f in COPIES_FILES.items() if f in figures}
    if not any("copies" in k for k in have):
        return None
    return _reading_table(have, [COPIES_FILES[k] for k in have])


def _reading_table(have: dict[str, dict], files: list[str]) -> str:
    """Columns of fig2 files on the same requests (label -> file): per scheme and SNR, the share of questions read
    exactly and VQA."""
    cols = list(have)
    lines = ["| scheme | SNR (dB) | " + " | ".join(f"{k}: read, VQA" for k in cols) + " |",
             "|" + " --- |" * (2 + len(cols))]
    at = {k: {(p["scheme"], p["snr_db"]): p for p in fig["points"] if p.get("task") == "vqa"}
          for k, fig in have.items()}
    keys = sorted({key for pts in at.values() for key in pts},
                  key=lambda k: (k[0] == "upper-bound", k[0], float("inf") if k[1] is None else k[1]))
    for scheme, snr in keys:
        cells = []
        for k in cols:
            p = at[k].get((scheme, snr))
            q = (p or {}).get("question_read")
            cells.append("–" if p is None else f"{q['share']:.2f}, {cell(p, 'value', 'ci_')}" if q
                         else cell(p, "value", "ci_"))
        lines.append(f"| {scheme} | {'noiseless' if snr is None else f'{snr:g}'} | " + " | ".join(cells) + " |")
    sources = ", ".join(f"`results/{f}.json`" for f in files)
    return ("\n".join(lines) + f"\n\nn = 1000 test questions per point, Rayleigh; the same requests (seed i for request "
            f"i) in every column. From {sources} (each file's command is in it).\n")


def _paired_words(reading: str) -> str:
    """question_fades.py's paired difference in words: "prior - argmax", "K copies - once"."""
    if reading == "prior - argmax":
        return "read with the prior minus without"
    k = reading.removesuffix(" copies - once")
    return f"with the question sent {k} times minus once" if k != reading else reading


def fades_block(fig: dict, source: str) -> str:
    """scripts/question_fades.py: per bin of the question's |h|^2, the share read exactly and VQA, per set of links."""
    links = list(dict.fromkeys(p["links"] for p in fig["points"]))
    bins = list(dict.fromkeys((p["gain_low"], p["gain_high"]) for p in fig["points"]))
    head = "| question's \\|h\\|^2 | questions | " + " | ".join(
        f"read exactly ({k}) | VQA ({k})" for k in links) + " |"
    lines = [head, "|" + " --- |" * (2 + 2 * len(links))]
    for lo, hi in bins:
        at = {p["links"]: p for p in fig["points"] if (p["gain_low"], p["gain_high"]) == (lo, hi)}
        n = next(iter(at.values()))["n"]
        cells = []
        for k in links:
            p = at.get(k)
            cells += ["–", "–"] if p is None else [
                f"{p['read']:.2f}", f"{p['accuracy']:.2f} [{p['accuracy_ci'][0]:.2f}, {p['accuracy_ci'][1]:.2f}]"]
        upper = "inf" if hi == float("inf") else f"{hi:g}"
        lines.append(f"| [{lo:g}, {upper}) | {n} | " + " | ".join(cells) + " |")
    h = fig["header"]
    snr = ", ".join(sorted({f"{p['snr_db']:g} dB {p['channel']}" for p in fig["points"]}))
    paired = "".join(f" VQA {_paired_words(d.get('reading', 'prior - argmax'))}, {d['links']} links, paired on the same "
                     f"{d['n']} requests: {d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] (bootstrap "
                     f"95 %; {d['changed']} answers changed)." for d in fig.get("paired", []))
    return "\n".join(lines) + (f"\n\n{snr}, unitocom, Wilson 95 % intervals.{paired} From `{source}` (commit "
                               f"{h.get('git_commit', '?')[:10]}): `{h.get('command', '?')}`.\n")


def _write(readme: str, name: str, text: str, notes: list[str], what: str) -> str:
    start, end = markers(name)
    m = re.search(re.escape(start) + r"\n?(.*?)" + re.escape(end), readme, flags=re.S)
    if m is None:
        notes.append(f"the README has no {start} ... {end} markers: the {what} is not written (put the two "
                     "comments where the table belongs)")
        return readme
    return readme[:m.start()] + f"{start}\n{text}{end}" + readme[m.end():]


def render(readme: str, figures: dict[str, dict]) -> tuple[str, list[str]]:
    """(the README with every block whose markers it has rewritten, messages about the blocks left alone)."""
    notes = []
    for fig_name, fig in sorted(figures.items()):
        fmt = str(fig.get("header", {}).get("format", ""))
        if fmt.startswith(PROBE_FORMAT):  # scripts/vqa_probe.py (issue 12)
            readme = _write(readme, fig_name, probe_block(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/listing-read/"):  # scripts/listing_read.py (issue 12)
            readme = _write(readme, fig_name, listing_block(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/question-fades/"):  # scripts/question_fades.py (issue 12)
            readme = _write(readme, fig_name, fades_block(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/slots-reason/"):  # scripts/slots_reason.py (issue 12)
            readme = _write(readme, fig_name, slots_reason_block(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/lr-probe/"):  # scripts/lr_probe.py (issue 12)
            readme = _write(readme, fig_name, lr_probe_block(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/loss-sweep/"):
            for task in LOSS_SCORES:
                text = loss_block(task, fig, f"results/{fig_name}.json")
                if text is not None:
                    readme = _write(readme, f"{fig_name}:{task}", text, notes,
                                    f"{task} table of results/{fig_name}.json")
            text = paired_block(fig, f"results/{fig_name}.json")
            if text is not None:
                readme = _write(readme, f"{fig_name}:paired", text, notes, f"paired table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/multiaccess/"):  # `unitocom access-sweep` (issue 17)
            if str(ROOT) not in sys.path:  # run as a script: this checkout's library, not another installed one
                sys.path.insert(0, str(ROOT))
            from unitocom.access_sweep import table
            readme = _write(readme, fig_name, table(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/ablation/"):  # `unitocom ablate` (issue 12)
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            from unitocom.ablation import table as ablation_table
            readme = _write(readme, fig_name, ablation_table(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/spoken-vqa/"):  # `unitocom eval --task vqa --spoken` (issue 17)
            readme = _write(readme, fig_name, spoken_block(fig, f"results/{fig_name}.json"), notes,
                            f"table of results/{fig_name}.json")
            continue
        if fmt.startswith("unitocom-results/fig3/"):  # `unitocom fig3` (issue 14)
            text = fig3_block(fig, f"results/{fig_name}.json")
            if text is None:
                notes.append(f"results/{fig_name}.json: no VQA points of fig3's shape in it; left alone")
            else:
                readme = _write(readme, fig_name, text, notes, f"table of results/{fig_name}.json")
            continue
        if fig_name in TEXT_LINK_FILES or fig_name in (*READING_FILES.values(), *COPIES_FILES.values()):  # below
            continue
        if fig_name in FAMILIES_FILES:  # a fig2 file of VQA alone at large n: its families, not its curve
            text = families_block(fig, f"results/{fig_name}.json")
            if text is not None:
                readme = _write(readme, fig_name, text, notes, f"family table of results/{fig_name}.json")
            continue
        if fig_name != "fig2" and not fmt.startswith("unitocom-results/fig2/"):
            notes.append(f"results/{fig_name}.json: no table writer for it here; left alone")
            continue
        for task in TASKS:
            text = block(task, fig, f"results/{fig_name}.json")
            if text is not None:
                readme = _write(readme, f"{fig_name}:{task}", text, notes, f"{task} table of results/{fig_name}.json")
    text = text_links_block(figures)
    if text is not None:
        readme = _write(readme, "text-links", text, notes, "table of the text links' VQA")
    text = reading_block(figures)
    if text is not None:
        readme = _write(readme, "text-prior", text, notes, "table of VQA by how the question is read")
    text = copies_block(figures)
    if text is not None:
        readme = _write(readme, "text-copies", text, notes, "table of VQA with the question sent twice")
    text = targets_block(figures)
    if text is not None:
        readme = _write(readme, "targets", text, notes, "table of issue 12's targets")
    return readme, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "results"), help="folder of the results' JSON files")
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README is out of date")
    args = ap.parse_args(argv)
    readme_path = Path(args.readme)
    figures = load(Path(args.results))
    if not figures:
        print(f"no results in {args.results} (make them with `unitocom fig2 --out {args.results}`); "
              "the README is left alone", file=sys.stderr)
        return 0
    old = readme_path.read_text()
    new, notes = render(old, figures)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if args.check:
        if new != old:
            print(f"{readme_path} is out of date with {args.results}: run scripts/results_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != old:
        readme_path.write_text(new)
        print(f"rewrote the result tables in {readme_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
