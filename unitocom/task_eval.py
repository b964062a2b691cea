"""`unitocom eval`: the letter's task scores on the held-out split, computed through the running services.

    unitocom eval --task vqa --scheme unitocom --snr-db 10 --channel rayleigh --n 200 --json
    unitocom eval sweep --task vqa --schemes unitocom,vae,traditional --snr-db 0:20:5 --csv fig2a.csv --plot fig2a.png

    unitocom eval --task vqa --spoken --n 300    # the question as speech (issue 17; data spoken-questions)

VQA: exact-match accuracy, with the majority-class chance (per question family, from the training split) as
the floor. ASR: word error rate (jiwer). T2I: FID between generated and real held-out scenes in the scene
checker's feature space, and the share of the caption's (colour, shape) pairs the checker finds.
Every request carries its ground truth as a label, so the services' Prometheus metrics see the same scores.
"""
from __future__ import annotations

import io
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from unitocom.data.layouts import clevr_root, coco_annotation_file, librispeech_root, read_json, require_data
from unitocom.data.presets import SPEECH_SUBSETS
from unitocom.errors import CheckpointMissing, DataMissing, UserError
from unitocom.link.snr import snr_points_arg

METRIC = {"vqa": "accuracy", "asr": "wer", "t2i": "fid"}
# Link options of `unitocom send` that `eval` passes on to every request (issue 16's packets, budget, variant;
# issue 17's capture: every request of the evaluation recorded at the channel).
LINK_OPTIONS = ("packet_loss", "packet_burst", "tokens_per_packet", "variant", "token_budget", "packing", "capture",
                "text_copies")


def vqa_items(data_dir: Path, split: str, n: int) -> tuple[list[dict], list[str]]:
    """n questions spread over the split's images, and the majority-class guess for each (its family's most
    common training answer): the chance floor on exactly those questions."""
    qs = read_json(clevr_root(data_dir) / "questions" / f"CLEVR_{split}_questions.json")["questions"]
    if qs and "answer" not in qs[0]:
        raise UserError(f"the {split} questions of {data_dir} carry no answers (real CLEVR ships none for test); "
                        "score another split (--split val)")
    step = max(1, len(qs) // max(1, n))
    items = qs[::step][:n]
    return items, majority_guess(data_dir, items)


def spoken_vqa_items(data_dir: Path, spoken_dir: Path, split: str, n: int) -> tuple[list[dict], list[str]]:
    """vqa_items for spoken questions (`data spoken-questions`): n of the split's spoken questions, spread over
    them, each with its image_filename, and the majority-class guess of its family."""
    from unitocom.data.spoken import load
    try:
        qs = load(spoken_dir, split)
    except FileNotFoundError as e:
        raise DataMissing(str(e)) from None
    step = max(1, len(qs) // max(1, n))
    items = [dict(q, image_filename=f"CLEVR_{split}_{q['image_index']:06d}.png") for q in qs[::step][:n]]
    return items, majority_guess(data_dir, items)


def majority_guess(data_dir: Path, items: list[dict]) -> list[str]:
    """Each question's family's most common training answer: the chance floor on exactly these questions."""
    train = read_json(clevr_root(data_dir) / "questions" / "CLEVR_train_questions.json")["questions"]
    by_family: dict[int, Counter] = {}
    for q in train:
        by_family.setdefault(q["question_family_index"], Counter())[q["answer"]] += 1
    overall = Counter(q["answer"] for q in train).most_common(1)[0][0]
    return [by_family.get(q["question_family_index"], Counter({overall: 1})).most_common(1)[0][0] for q in items]


def vqa_by_family(items: list[dict], correct: list[float], guess: list[str]) -> dict[str, dict]:
    """Accuracy (with its Wilson 95 % interval) and chance per question family (names as in the CLEVR-style
    generator where it has them)."""
    from unitocom.data.questions import FAMILIES
    from unitocom.results import wilson
    out: dict[str, dict] = {}
    for q, c, g in zip(items, correct, guess):
        i = q["question_family_index"]
        name = FAMILIES[i] if 0 <= i < len(FAMILIES) else str(i)
        f = out.setdefault(name, {"n": 0, "accuracy": 0.0, "chance": 0.0})
        f["n"] += 1
        f["accuracy"] += c
        f["chance"] += float(g == q["answer"])
    for f in out.values():
        lo, hi = wilson(round(f["accuracy"]), f["n"])
        f["accuracy"], f["chance"] = round(f["accuracy"] / f["n"], 3), round(f["chance"] / f["n"], 3)
        f["ci_low"], f["ci_high"] = round(lo, 3), round(hi, 3)
    return out


def question_read(result, question: str) -> bool | None:
    """Whether the base station read the typed question exactly as it was sent (its text output, whitespace at the
    ends aside); None where no question text came back (a spoken question, SemCom's answer from features)."""
    from unitocom.client import output_texts
    texts = output_texts(result)
    return texts[0].strip() == question.strip() if texts else None


def by_question_read(correct: list[float], read: list[bool | None]) -> dict | None:
    """VQA accuracy split by whether the question arrived exactly (`question_read`): the share read exactly, and
    the accuracy (Wilson 95 %) on the questions read exactly and on those misread. It separates what the question's
    link costs from what the image's and the MLLM's do. None when no question came back as text."""
    from unitocom.results import wilson
    pairs = [(c, r) for c, r in zip(correct, read) if r is not None]
    if not pairs:
        return None
    out: dict = {"n": len(pairs), "share": sum(r for _, r in pairs) / len(pairs)}
    for name, want in (("read", True), ("misread", False)):
        cs = [c for c, r in pairs if r is want]
        lo, hi = wilson(round(sum(cs)), len(cs)) if cs else (None, None)
        out[name] = {"n": len(cs), "accuracy": float(np.mean(cs)) if cs else None, "ci_low": lo, "ci_high": hi}
    return out


def speech_items(data_dir: Path, split: str, n: int) -> list[tuple[Path, str]]:
    root = librispeech_root(data_dir, SPEECH_SUBSETS[split])
    out = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt, text = line.split(" ", 1)
            f = next((trans.parent / f"{utt}{e}" for e in (".flac", ".wav") if (trans.parent / f"{utt}{e}").exists()), None)
            if f is not None:
                out.append((f, text))
    return out[:n]


def caption_items(data_dir: Path, split: str, n: int) -> list[tuple[str, Path]]:
    path = coco_annotation_file(Path(data_dir) / "coco", split)
    if not path.is_file():
        raise DataMissing(f"no COCO-style captions at {path}")
    ann = read_json(path)
    files = {im["id"]: im["file_name"] for im in ann["images"]}
    seen, out = set(), []
    for a in ann["annotations"]:  # one caption per image: FID compares image sets
        if a["image_id"] not in seen:
            seen.add(a["image_id"])
            out.append((a["caption"], Path(data_dir) / "coco" / f"{split}2017" / files[a["image_id"]]))
    return out[:n]


def pair_recall_references(data_dir: Path, split: str, n: int, n_resamples: int = 1000, seed: int = 0) -> dict | None:
    """What the scene checker's pair recall reads on real scenes, the scale a generated picture's recall sits on:
    `own` scores each caption against its own scene (a picture that is right: the checker's ceiling), `other`
    against the next caption's scene (a plausible picture that ignores the caption: chance). Each {value, ci_low,
    ci_high} over the same first n captions the T2I points use; None without the checker."""
    import torch
    from PIL import Image

    from unitocom import results as ci
    from unitocom.metrics.scene_checker import pair_recall
    from unitocom.stages.mllm import scene_checker
    checker = scene_checker()
    items = caption_items(data_dir, split, n)
    if checker is None or len(items) < 2:
        return None
    x = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for _, f in items]))
    with torch.no_grad():
        seen = [s for k in range(0, len(items), 256)
                for s in checker.recognise(x[k:k + 256].permute(0, 3, 1, 2).float() / 255.0)]
    out: dict = {"n": len(items), "split": split}
    for name, shift in (("own", 0), ("other", 1)):
        recall = [r for i, (cap, _) in enumerate(items)
                  if (r := pair_recall(cap, seen[(i + shift) % len(items)])) is not None]
        lo, hi = ci.mean_interval(recall, n_resamples, seed)
        out[name] = {"value": float(np.mean(recall)), "ci_low": lo, "ci_high": hi}
    return out


def _nonempty(items: list, what: str, data_dir: Path, split: str) -> None:
    if not items:
        raise UserError(f"no {what} in the {split} split of {data_dir}")


def wer_counts(references: list[str], hypotheses: list[str]) -> tuple[list[int], list[int]]:
    """Per-utterance (edits, reference words), counted as `unitocom.metrics.scores.wer` counts them (same
    normalisation; an empty hypothesis is all deletions): their sums' ratio is the corpus WER."""
    import jiwer

    from unitocom.mllm.sequences import normalize
    edits, words = [], []
    for r, h in zip(references, hypotheses):
        r, h = normalize(r), normalize(h)
        n = len(r.split())
        if not h:
            edits.append(n)
        else:
            o = jiwer.process_words(r, h)
            edits.append(o.substitutions + o.deletions + o.insertions)
        words.append(n)
    return edits, words


def gather(fn, count: int, workers: int = 1, desc: str = "", progress: bool = True) -> list:
    """[fn(0), ..., fn(count - 1)] computed on `workers` threads, in index order whatever the completion order.
    The first failure cancels the calls not yet started and is raised."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from tqdm import tqdm
    if workers <= 1:
        return [fn(i) for i in tqdm(range(count), desc=desc, disable=not progress)]
    out: list = [None] * count
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(total=count, desc=desc, disable=not progress) as bar:
        futures = {pool.submit(fn, i): i for i in range(count)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    for g in pending:
                        g.cancel()
                    raise f.exception()
                out[futures[f]] = f.result()
                bar.update(1)
    return out


def clevr_png(path) -> bytes:
    """A CLEVR picture as the models were trained to see it. The loaders squash CLEVR's 480x320 renders to a square
    (`data.loaders.read_pixels`: a question may be about an object at the edge, which a crop would cut off), while
    a transmitter centre-crops any picture that is not square (the photo convention, `schemes.learned.fit_image`).
    So a non-square render is squashed here, to a square of its longer side, and the transmitter only resizes it;
    a square one (the tiny data set's) is sent as stored, byte for byte."""
    from PIL import Image

    from unitocom.data.loaders import read_pixels
    raw = path.read_bytes()
    try:
        with Image.open(io.BytesIO(raw)) as im:
            w, h = im.size
    except (OSError, ValueError):  # not a picture Pillow reads: sent as stored, the transmitter's status says why
        return raw
    if w == h:
        return raw
    buf = io.BytesIO()
    Image.fromarray(read_pixels(path, max(w, h))).save(buf, format="PNG")
    return buf.getvalue()


def evaluate(task: str, scheme: str, snr_db: float, channel: str, n: int, data_dir: str, target: str,
             split: str = "test", seed: int = 0, progress: bool = True, timeout_s: float = 120.0,
             inception_weights: str | None = None, workers: int = 1, n_resamples: int = 1000,
             fid_resamples: int = 200, link: dict | None = None, spoken: str | Path | None = None,
             typed: bool = False) -> dict:
    """One point of Fig. 2: `n` labelled requests through the services -> the task's score and its 95 % interval
    (`ci_low`, `ci_high`: Wilson for VQA accuracy, bootstrap over examples for WER, FID and the pair recall;
    see `unitocom.results`). `workers` requests are in flight at a time; request i always carries seed + i,
    so the score does not depend on the order in which they complete. `link`: more request options (LINK_OPTIONS),
    recorded in the row. `spoken` (vqa): the spoken-questions folder; each question is sent as its audio clip
    (issue 17) instead of its text, and the row says `"question": "spoken"`; with `typed` too, the same questions
    are sent as text (`"question": "typed"`, `"questions": "spoken set"`): the like-for-like typed baseline."""
    from unitocom import client
    from unitocom import results as ci
    data_dir = require_data(data_dir)
    link = {k: v for k, v in (link or {}).items() if v not in (None, 0, 0.0)}
    if spoken is not None and task != "vqa":
        raise UserError(f"--spoken is a vqa option (the question as speech); task {task} has no question")
    row = {"task": task, "scheme": scheme, "snr_db": snr_db, "channel": channel, "n": 0,
           "metric": METRIC[task], "value": None, "ci_low": None, "ci_high": None, **({"link": link} if link else {})}
    if task == "vqa":
        row["question"] = "spoken" if spoken is not None and not typed else "typed"
        if spoken is not None and typed:
            row["questions"] = "spoken set"
    desc = f"{task} {row.get('question', '')} {scheme} {channel} {snr_db:g} dB"
    with client.Client(target) as c:
        def send(i: int, **kw):
            return c.send(client.build_request(task=task, scheme=scheme, snr_db=snr_db, channel=channel,
                                               seed=seed + i, **link, **kw), timeout_s=timeout_s)

        if task == "vqa":
            if spoken is not None:
                items, guess = spoken_vqa_items(data_dir, Path(spoken), split, n)
            else:
                items, guess = vqa_items(data_dir, split, n)
            _nonempty(items, "questions", data_dir, split)

            def one(i: int) -> float:
                q = items[i]
                png = clevr_png(clevr_root(data_dir) / "images" / split / q["image_filename"])
                if spoken is not None and not typed:
                    ask = {"audio": (Path(spoken) / q["file"]).read_bytes()}
                else:
                    ask = {"question": q["question"]}
                r = send(i, image=png, answer=q["answer"], **ask)
                return r.quality["exact_match"], question_read(r, q["question"]) if "question" in ask else None
            got = gather(one, len(items), workers, desc, progress)
            correct = [c for c, _ in got]
            lo, hi = ci.wilson(int(round(sum(correct))), len(items))
            row.update(n=len(items), value=float(np.mean(correct)), ci_low=lo, ci_high=hi,
                       chance=float(np.mean([g == q["answer"] for g, q in zip(guess, items)])),
                       by_family=vqa_by_family(items, correct, guess))
            split = by_question_read(correct, [read for _, read in got])
            if split:
                row["question_read"] = split
        elif task == "asr":
            from unitocom.metrics.scores import wer
            items = speech_items(data_dir, split, n)
            _nonempty(items, "utterances", data_dir, split)
            refs = [text for _, text in items]
            hyps = gather(lambda i: send(i, audio=items[i][0].read_bytes(), transcript=items[i][1]).output_text,
                          len(items), workers, desc, progress)
            edits, words = wer_counts(refs, hyps)
            lo, hi = ci.wer_interval(edits, words, n_resamples, seed)
            row.update(n=len(items), value=wer(refs, hyps), ci_low=lo, ci_high=hi,
                       examples=[{"reference": a, "transcript": b} for a, b in list(zip(refs, hyps))[:3]])
        elif task == "t2i":
            import torch
            from PIL import Image

            from unitocom.metrics.scores import fid
            from unitocom.stages.mllm import scene_checker
            items = caption_items(data_dir, split, n)
            _nonempty(items, "captions", data_dir, split)
            checker = scene_checker()
            if checker is None:
                raise CheckpointMissing("FID needs checkpoints/scene-checker.safetensors (train it with "
                                        "`unitocom train checker`)")

            def one(i: int):
                cap, f = items[i]
                r = send(i, text=cap)
                # a t2i request sends no image, so the picture in the result is the one the base station drew
                out = [o for o in r.outputs if o.image_png]
                if not out:
                    raise RuntimeError(f"t2i via {scheme}: the services answered caption {i} without a generated "
                                       "image")
                img = np.asarray(Image.open(io.BytesIO(out[0].image_png)).convert("RGB"))
                ref = np.asarray(Image.open(f).convert("RGB").resize(img.shape[1::-1]))
                return img, ref, r.quality.get("t2i_pair_recall")
            got = gather(one, len(items), workers, desc, progress)
            fake, real = [g[0] for g in got], [g[1] for g in got]
            recall = [g[2] for g in got if g[2] is not None]
            as_t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
            # The floor for this n: two disjoint sets of real scenes (another split) are this far apart.
            other = [np.asarray(Image.open(f).convert("RGB").resize(fake[0].shape[1::-1]))
                     for _, f in caption_items(data_dir, "val" if split != "val" else "train", len(items))]
            with torch.no_grad():  # the checker's features once; the bootstrap resamples them (FID's own input)
                feats = lambda xs: np.concatenate([checker(as_t(xs[k:k + 64])).double().numpy()  # noqa: E731
                                                   for k in range(0, len(xs), 64)])
                f_real, f_fake = feats(real), feats(fake)
            lo, hi = ci.fid_interval(f_real, f_fake, fid_resamples, seed) if len(items) > 1 else (None, None)
            row.update(n=len(items), value=fid(as_t(real), as_t(fake), checker), ci_low=lo, ci_high=hi,
                       fid_real_vs_real=fid(as_t(real), as_t(other), checker),
                       pair_recall=float(np.mean(recall)) if recall else None,
                       pair_recall_ci_low=None, pair_recall_ci_high=None)
            if recall:
                row["pair_recall_ci_low"], row["pair_recall_ci_high"] = ci.mean_interval(recall, n_resamples, seed)
            if inception_weights:
                from unitocom.metrics.scores import fid_inception
                row["fid_inception"] = fid_inception(as_t(real), as_t(fake), inception_weights)
        else:
            raise ValueError(f"unknown task {task!r}; expected vqa, asr or t2i")
    return row


def sweep(task: str, schemes: list[str], snrs: list[float], channel: str, n: int, data_dir: str, target: str,
          csv_path: str | None, plot_path: str | None, split: str = "test") -> list[dict]:
    rows = [evaluate(task, s, snr, channel, n, data_dir, target, split) for s in schemes for snr in snrs]
    if csv_path:
        import csv
        keys = ["task", "scheme", "channel", "snr_db", "n", "metric", "value", "ci_low", "ci_high", "chance"]
        with open(csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    if plot_path:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in schemes:
            pts = [(r["snr_db"], r["value"]) for r in rows if r["scheme"] == s]
            ax.plot(*zip(*pts), marker="o", label=s)
        if task == "vqa":
            ax.axhline(rows[0]["chance"], color="grey", ls="--", label="majority-class chance")
        ax.set_xlabel(f"SNR (dB), {channel}")
        ax.set_ylabel({"vqa": "VQA accuracy", "asr": "WER", "t2i": "FID (scene-checker features)"}[task])
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot_path, dpi=120)
    return rows


def add_subparser(sub) -> None:
    p = sub.add_parser("eval", help="task scores (VQA accuracy, WER, FID) through the running services",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=["vqa", "asr", "t2i"])
    p.add_argument("--scheme", default="unitocom", help="unitocom | vae | traditional")
    p.add_argument("--snr-db", type=float, default=20.0, help="Es/N0 in dB (write negative values as --snr-db=-5)")
    p.add_argument("--channel", default="rayleigh", help="awgn | rayleigh | rician")
    p.add_argument("--n", type=int, default=200, help="held-out examples")
    p.add_argument("--data", default="data/tiny", help="data set root (unitocom data make --preset tiny)")
    p.add_argument("--split", default="test")
    p.add_argument("--target", default="127.0.0.1:50051", help="the transmitter (start with `unitocom up`)")
    p.add_argument("--inception-weights", default=None,
                   help="t2i: also FID in Inception-v3 features from this local weights file (needs torch-fidelity)")
    p.add_argument("--workers", type=int, default=1, help="requests in flight at a time (the services serve in "
                   "parallel); the score does not depend on it")
    p.add_argument("--spoken", action="store_true",
                   help="vqa: send each question as speech (the audio clip of `unitocom data spoken-questions`) "
                        "instead of text; the base station reads it with mllm-<objective>-spoken (issue 17)")
    p.add_argument("--spoken-questions", default=None, metavar="DIR",
                   help="with --spoken: the spoken questions (default <data>/spoken_questions)")
    p.add_argument("--typed", action="store_true",
                   help="with --spoken: send the same questions as text (the typed baseline on exactly the spoken "
                        "set's questions)")
    p.add_argument("--json", action="store_true")
    from unitocom.options import add_flags
    add_flags(p, LINK_OPTIONS)  # as on `unitocom send`: token packets, budget, the resilient models
    p.set_defaults(func=_cmd_eval)
    s = sub.add_parser("eval-sweep", help="Fig. 2: a task's score versus SNR for several schemes, CSV and PNG "
                       "(versus packet loss or a token budget: `unitocom loss-sweep`)")
    s.add_argument("--task", required=True, choices=["vqa", "asr", "t2i"])
    s.add_argument("--schemes", default="unitocom,vae,traditional")
    s.add_argument("--snr-db", type=snr_points_arg, default="0:20:5", help="A:B:STEP or a comma list (dB)")
    s.add_argument("--channel", default="rayleigh")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--data", default="data/tiny", help="data set root (unitocom data make --preset tiny)")
    s.add_argument("--split", default="test")
    s.add_argument("--target", default="127.0.0.1:50051")
    s.add_argument("--csv", default=None)
    s.add_argument("--plot", default=None)
    s.set_defaults(func=_cmd_sweep)


def _through_services(fn, *a, **kw):
    """fn(*a, **kw), or None after one `error:` line when the services fail a call or a scorer cannot run."""
    from unitocom import client
    try:
        return fn(*a, **kw)
    except client.RpcError as e:
        print("error: {}: {}".format(*client.error_status(e)), file=sys.stderr)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
    return None


def _cmd_eval(args) -> int:
    if (args.spoken_questions or args.typed) and not args.spoken:
        raise UserError("--spoken-questions and --typed are read with --spoken only")
    spoken = None
    if args.spoken:
        from unitocom.data.spoken import default_dir
        spoken = args.spoken_questions or str(default_dir(args.data))
    row = _through_services(evaluate, args.task, args.scheme, args.snr_db, args.channel, args.n, args.data,
                            args.target, args.split, inception_weights=args.inception_weights,
                            workers=max(1, args.workers), link={k: getattr(args, k) for k in LINK_OPTIONS},
                            spoken=spoken, typed=args.typed)
    if row is None:
        return 1
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        extra = f" (majority-class chance {row['chance']:.3f})" if "chance" in row else ""
        if row.get("pair_recall") is not None:
            extra += f", pair recall {row['pair_recall']:.3f}{_interval(row, 'pair_recall_')}"
        what = {"spoken": " (spoken questions)"}.get(row.get("question"), "")
        what += " (the spoken set's questions, typed)" if row.get("questions") == "spoken set" else ""
        print(f"{row['task']}{what} via {row['scheme']} at {row['snr_db']:g} dB over {row['channel']}, n={row['n']}: "
              f"{row['metric']} = {row['value']:.4g}{_interval(row)}{extra}")
        for name, f in sorted(row.get("by_family", {}).items()):
            print(f"  {name:18s} n={f['n']:3d}  accuracy {f['accuracy']:.3f}{_interval(f)}  chance {f['chance']:.3f}")
    return 0


def _interval(row: dict, prefix: str = "") -> str:
    lo, hi = row.get(f"{prefix}ci_low"), row.get(f"{prefix}ci_high")
    return "" if lo is None or hi is None else f" [95 % CI {lo:.4g}, {hi:.4g}]"


def _cmd_sweep(args) -> int:
    rows = _through_services(sweep, args.task, args.schemes.split(","), args.snr_db, args.channel, args.n, args.data,
                             args.target, args.csv, args.plot, args.split)
    if rows is None:
        return 1
    for r in rows:
        print(json.dumps(r))
    return 0
