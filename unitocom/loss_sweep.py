"""`unitocom loss-sweep`: token packets and token budgets (issue 16), measured through the running services.

    unitocom loss-sweep --sweep packet-loss --snr-db 20 --n-vqa 200 --n-images 100 --out results
    unitocom loss-sweep --sweep budget      --snr-db 20 --n-vqa 200 --n-images 100 --out results

packet-loss: VQA accuracy and image reconstruction (PSNR, scene-checker pair F1) versus the fraction of packets
lost, i.i.d. and in bursts (Gilbert, mean burst `--burst` packets), at one SNR over Rayleigh, for
  unitocom            the letter's models: a lost token is read as R makes it from the zeros that arrive;
  unitocom-resilient  the same tokens on the air, read by the models trained with token dropout (mask token);
  unitocom-aggregated unitocom-resilient with packets planned so that important tokens and neighbours are spread
                      over them (`resilience.aggregate`, against sequential packing in grid order);
  traditional         JPEG / UTF-8 + LDPC + 16-QAM, one code block per packet (a lost block fails its CRC).
Every stream of a request loses packets (the VQA question's too). Tokens per packet: the service default (4).

budget: the same scores versus the channel uses per image: unitocom-resilient sending the K most important of its
32 image tokens (K = 8, 16, 24, 32), beside the traditional scheme at its fewest channel uses (coarser JPEG,
64-QAM, a higher code rate), which cannot go below about 1,100 channel uses for a 32x32 scene.

Writes results/<name>.json (`--name`, default the sweep's; header: the command, commit, checkpoint hashes;
points with n, value and 95 % intervals: Wilson for accuracy, bootstrap over examples for PSNR and pair F1, and
every example's score; packet-loss also `comparisons`: paired differences between the learned variants at each
loss, with bootstrap intervals over the same examples), <name>.csv and <name>.png. `--schemes` and `--loss-rates`
measure part of the grid, e.g. unitocom without packet loss at another SNR (issue 12's image targets at 0 dB).
`--resume` keeps the points already measured with the same settings, on the same data and with the very same
checkpoints.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from unitocom.errors import UserError
from unitocom.fig2 import DEFAULT_DATA

FORMAT = "unitocom-results/loss-sweep/1"
SCHEMES = {"unitocom": {"scheme": "unitocom"},
           "unitocom-resilient": {"scheme": "unitocom", "variant": "resilient"},
           "unitocom-aggregated": {"scheme": "unitocom", "variant": "resilient", "packing": "aggregated"},
           "traditional": {"scheme": "traditional"}}
LOSS_RATES = (0.0, 0.1, 0.25, 0.5)
BUDGETS = (8, 16, 24, 32)
# The traditional scheme's fewest channel uses: (jpeg_quality, modulation, code_rate).
TRADITIONAL_LOW = ((10, "qam64", 0.9), (30, "qam64", 0.75), (75, "qam16", 0.5))
CSV_FIELDS = ["sweep", "task", "scheme", "packet_loss", "packet_burst", "token_budget", "settings", "n",
              "channel_uses", "metric", "value", "ci_low", "ci_high", "pair_f1", "pair_f1_ci_low", "pair_f1_ci_high"]


def plan(sweep: str, burst: float, tasks: list[str], schemes: list[str] | None = None,
         loss_rates: tuple[float, ...] = LOSS_RATES) -> list[dict]:
    """The points of a sweep: {"task", "scheme", "link": extra request options}; `schemes` (None: all) keeps
    those schemes' points, `loss_rates` are the packet-loss sweep's fractions lost."""
    pts = []
    for task in tasks:
        if sweep == "packet-loss":
            for name in SCHEMES:
                for rate in loss_rates:
                    for b in ((0.0,) if rate == 0 else (0.0, burst)):
                        pts.append({"task": task, "scheme": name, "packet_loss": rate, "packet_burst": b,
                                    "link": {**SCHEMES[name], "packet_loss": rate, "packet_burst": b}})
        elif sweep == "budget":
            for k in BUDGETS:
                pts.append({"task": task, "scheme": "unitocom-resilient", "token_budget": k,
                            "link": {**SCHEMES["unitocom-resilient"], "token_budget": k if k < 32 else 0}})
            pts.append({"task": task, "scheme": "unitocom", "token_budget": 32, "link": dict(SCHEMES["unitocom"])})
            for q, mod, rate in TRADITIONAL_LOW:
                pts.append({"task": task, "scheme": "traditional", "settings": f"jpeg q{q}, {mod}, rate {rate:g}",
                            "link": {"scheme": "traditional", "jpeg_quality": q, "modulation": mod, "code_rate": rate}})
        else:
            raise UserError(f"unknown sweep {sweep!r}; expected packet-loss or budget")
    return [p for p in pts if schemes is None or p["scheme"] in schemes]


def key(p: dict) -> str:
    return json.dumps({"task": p["task"], "scheme": p["scheme"], "link": p["link"]}, sort_keys=True)


class Scorer:
    """The held-out material and the scene checker, loaded once."""

    def __init__(self, data_dir: Path, split: str, n_vqa: int, n_images: int):
        from unitocom.data.layouts import clevr_root, read_json
        from unitocom.stages.mllm import scene_checker
        from unitocom.task_eval import vqa_items
        self.root = clevr_root(data_dir)
        self.split = split
        self.questions, _ = vqa_items(data_dir, split, n_vqa)
        scenes = sorted(read_json(self.root / "scenes" / f"CLEVR_{split}_scenes.json")["scenes"],
                        key=lambda s: s["image_index"])
        step = max(1, len(scenes) // max(1, n_images))
        self.scenes = scenes[::step][:n_images]
        self.checker = scene_checker()
        if self.checker is None:
            raise UserError("pair F1 needs checkpoints/scene-checker.safetensors (`unitocom train checker`)")

    def image(self, filename: str) -> bytes:
        return (self.root / "images" / self.split / filename).read_bytes()

    def image_scores(self, png: bytes | None, scene: dict) -> tuple[float, float]:
        """(PSNR dB, pair F1) of a received picture against the scene; a picture that did not arrive is read as
        mid-grey (what the MLLM is given in its place), an exact copy as 60 dB (a mean needs a finite number)."""
        import torch
        from PIL import Image

        from unitocom.codecs import psnr_db
        ref = np.asarray(Image.open(io.BytesIO(self.image(scene["image_filename"]))).convert("RGB"))
        img = (np.array(Image.open(io.BytesIO(png)).convert("RGB")) if png
               else np.full_like(ref, 128))
        if img.shape != ref.shape:
            img = np.array(Image.fromarray(img).resize(ref.shape[1::-1]))
        truth = {(o["color"], o["shape"]) for o in scene["objects"]}
        seen = self.checker.recognise(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0)[0]
        tp = len(truth & seen)
        f1 = 2 * tp / max(1, len(truth) + len(seen))
        return min(float(psnr_db(ref, img)), 60.0), f1


def measure(point: dict, scorer: Scorer, target: str, snr_db: float, seed: int, workers: int,
            timeout_s: float = 120.0, progress: bool = True) -> dict:
    from unitocom import client
    from unitocom import results as ci
    from unitocom.task_eval import gather
    link = dict(point["link"])
    row = {k: point.get(k) for k in ("task", "scheme", "packet_loss", "packet_burst", "token_budget", "settings")}
    row.update(link=link, snr_db=snr_db, channel="rayleigh")
    desc = f"{point['task']} {point['scheme']} " + " ".join(f"{k}={v}" for k, v in link.items() if k != "scheme")
    with client.Client(target) as c:
        def send(i: int, **kw):
            return c.send(client.build_request(snr_db=snr_db, channel="rayleigh", seed=seed + i, **link, **kw),
                          timeout_s=timeout_s)
        if point["task"] == "vqa":
            items = scorer.questions

            def one(i):
                q = items[i]
                r = send(i, task="vqa", image=scorer.image(q["image_filename"]), question=q["question"],
                         answer=q["answer"])
                return r.quality["exact_match"], r.channel_uses
            got = gather(one, len(items), workers, desc, progress)
            correct = [g[0] for g in got]
            lo, hi = ci.wilson(int(round(sum(correct))), len(correct))
            row.update(n=len(correct), metric="accuracy", value=float(np.mean(correct)), ci_low=lo, ci_high=hi,
                       channel_uses=float(np.mean([g[1] for g in got])), per_example={"value": correct})
        else:
            scenes = scorer.scenes

            def one(i):
                s = scenes[i]
                r = send(i, task="reconstruct", image=scorer.image(s["image_filename"]))
                png = next((o.image_png for o in r.outputs if o.image_png and o.decoded), None)
                return (*scorer.image_scores(png, s), r.channel_uses)
            got = gather(one, len(scenes), workers, desc, progress)
            psnr, f1 = [g[0] for g in got], [g[1] for g in got]
            lo, hi = ci.mean_interval(psnr, 1000, seed)
            flo, fhi = ci.mean_interval(f1, 1000, seed)
            row.update(n=len(got), metric="psnr_db", value=float(np.mean(psnr)), ci_low=lo, ci_high=hi,
                       pair_f1=float(np.mean(f1)), pair_f1_ci_low=flo, pair_f1_ci_high=fhi,
                       channel_uses=float(np.mean([g[2] for g in got])),
                       per_example={"value": [round(v, 4) for v in psnr], "pair_f1": [round(v, 4) for v in f1]})
    return row


# Paired comparisons (same questions or scenes, same seeds: the same channel draws and the same lost packets):
# (scheme, against). The difference of their means with a bootstrap interval over examples separates far
# sooner than two unpaired intervals do.
PAIRS = (("unitocom-resilient", "unitocom"), ("unitocom-aggregated", "unitocom-resilient"),
         ("unitocom-aggregated", "unitocom"))


def comparisons(points: list[dict], seed: int = 0) -> list[dict]:
    """For every loss condition (task, loss rate, burst) and every pair of PAIRS measured there: the mean
    difference (scheme - against) of each score, and its 95 % bootstrap interval over the paired examples."""
    from unitocom import results as ci
    at = {(p["task"], p.get("packet_loss"), p.get("packet_burst"), p["scheme"]): p for p in points
          if "per_example" in p}
    out = []
    for (task, loss, burst, scheme), p in sorted(at.items(), key=lambda kv: str(kv[0])):
        for a, b in PAIRS:
            q = at.get((task, loss, burst, b))
            if scheme != a or q is None or q["n"] != p["n"]:
                continue
            row = {"task": task, "packet_loss": loss, "packet_burst": burst, "scheme": a, "against": b, "n": p["n"]}
            for field in p["per_example"]:
                d = np.asarray(p["per_example"][field], float) - np.asarray(q["per_example"][field], float)
                lo, hi = ci.mean_interval(d, 1000, seed)
                row[field] = {"difference": float(d.mean()), "ci_low": lo, "ci_high": hi,
                              "separates": bool(lo > 0 or hi < 0)}
            out.append(row)
    return out


def plot(path: Path, sweep: str, points: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    panels = [("vqa", "value", "VQA accuracy"), ("reconstruct", "value", "image PSNR (dB)"),
              ("reconstruct", "pair_f1", "scene-checker pair F1")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = {"unitocom": "tab:blue", "unitocom-resilient": "tab:green", "unitocom-aggregated": "tab:purple",
               "traditional": "tab:red"}
    for ax, (task, field, label) in zip(axes, panels):
        pts = [p for p in points if p["task"] == task]
        lo_key, hi_key = ("ci_low", "ci_high") if field == "value" else (f"{field}_ci_low", f"{field}_ci_high")
        if sweep == "packet-loss":
            for scheme in SCHEMES:
                for bursty, ls in ((False, "-"), (True, "--")):
                    s = sorted([p for p in pts if p["scheme"] == scheme and (p["packet_loss"] == 0 or
                                bool(p["packet_burst"]) == bursty)], key=lambda p: p["packet_loss"])
                    if not s:
                        continue
                    x = [100 * p["packet_loss"] for p in s]
                    y = [p[field] for p in s]
                    err = [[v - p[lo_key] for v, p in zip(y, s)], [p[hi_key] - v for v, p in zip(y, s)]]
                    ax.errorbar(x, y, yerr=err, color=colours[scheme], ls=ls, marker="o", capsize=3,
                                label=f"{scheme}, {'bursty' if bursty else 'i.i.d.'}")
            ax.set_xlabel("packets lost (%)")
        else:
            for scheme in colours:
                s = sorted([p for p in pts if p["scheme"] == scheme], key=lambda p: p["channel_uses"])
                if not s:
                    continue
                y = [p[field] for p in s]
                err = [[v - p[lo_key] for v, p in zip(y, s)], [p[hi_key] - v for v, p in zip(y, s)]]
                ax.errorbar([p["channel_uses"] for p in s], y, yerr=err, color=colours[scheme], marker="o",
                            capsize=3, ls="-" if len(s) > 1 else "none", label=scheme)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: minor labels collide
            ax.set_xlabel("channel uses per request (log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    # the legend on the first panel that has curves (a sweep of reconstruction alone leaves VQA's empty)
    next((ax for ax in axes if ax.get_legend_handles_labels()[0]), axes[0]).legend(fontsize=7)
    snr = points[0]["snr_db"] if points else ""
    fig.suptitle(f"{'Packet loss' if sweep == 'packet-loss' else 'Token budget'}: Rayleigh, {snr:g} dB, 95 % intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args, argv: list[str]) -> dict:
    from unitocom.fig2 import (TEXT_LINK_FREE_SCHEMES, TEXT_TASKS, header_data, is_text_reader, make_header,
                               same_data)
    from unitocom.schemes.learned import checkpoint_dir
    from unitocom.train.provenance import write_atomic
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (args.name or args.sweep)
    tasks = args.tasks.split(",")
    schemes, loss_rates = _schemes(args.schemes), _loss_rates(args.loss_rates)
    header = make_header(argv, {"sweep": args.sweep, "data": str(args.data), "snr_db": args.snr_db,
                                "channel": "rayleigh", "n_vqa": args.n_vqa, "n_images": args.n_images,
                                "burst": args.burst, "split": args.split, "seed": args.seed}, checkpoint_dir())
    header["format"] = FORMAT
    old = {}
    if args.resume and stem.with_suffix(".json").exists():
        prev = json.loads(stem.with_suffix(".json").read_text())
        oh = prev["header"]
        # Only the very same checkpoints keep the earlier points: one changed or removed changes what was measured,
        # and so can one added (a resilient companion added for one modality changes what the resilient variant
        # reads: text-sigma-genib-resilient changed every resilient VQA point).
        now, then = header["checkpoints_sha256"], oh["checkpoints_sha256"]
        differ = sorted(f for f in set(now) | set(then) if now.get(f) != then.get(f))
        # except text links and the prior, changed or added: they are read by the questions sent through a learned
        # text link alone (fig2's rule), so the reconstructions and the traditional scheme's points stand
        texts = bool(differ) and all(f in now and is_text_reader(f) for f in differ)
        if differ and not texts:
            print(f"--resume: checkpoints differ from those of {stem.with_suffix('.json')} ({', '.join(differ)}): "
                  "every point is measured again", file=sys.stderr)
        elif not same_data(oh, header):  # another set, or one drawn again at the same path
            print(f"--resume: {stem.with_suffix('.json')} was measured on data {header_data(oh)!r} (sha256 "
                  f"{str(oh.get('data_sha256'))[:12]}), not {header['data']!r} (sha256 "
                  f"{str(header['data_sha256'])[:12]}): every point is measured again", file=sys.stderr)
        else:
            old = {key(p): p for p in prev["points"]
                   if p["n"] == (args.n_vqa if p["task"] == "vqa" else args.n_images) and p["snr_db"] == args.snr_db
                   and not (texts and p["task"] in TEXT_TASKS and p["scheme"] not in TEXT_LINK_FREE_SCHEMES)}
            if texts:
                header["remeasured_after_text_change"] = differ
                print(f"--resume: {', '.join(differ)} changed or added: the VQA points sent through a learned text "
                      "link are measured again", file=sys.stderr)
            header["resumed_from"] = [*oh.pop("resumed_from", []), oh]
    from unitocom import client
    scorer = Scorer(Path(args.data), args.split, args.n_vqa, args.n_images)
    points, skipped = [], []
    for p in plan(args.sweep, args.burst, tasks, schemes, loss_rates):
        try:
            row = old.get(key(p)) or measure(p, scorer, args.target, args.snr_db, args.seed, args.workers,
                                             progress=not args.quiet)
        except client.RpcError as e:  # this point's refusal (a checkpoint not installed): recorded, go on
            status, message = client.error_status(e)
            if status == "UNAVAILABLE":
                raise
            skipped.append({"task": p["task"], "scheme": p["scheme"], "link": p["link"], "status": status,
                            "message": message})
            print(f"skipped {p['task']} {p['scheme']} {p['link']}: {status}: {message}", file=sys.stderr)
            continue
        points.append(row)
        old.pop(key(p), None)
        # the kept points not reached yet too: a run stopped part way loses none of them
        res = {"header": header, "points": points + list(old.values()), "skipped": skipped}
        write_atomic(stem.with_suffix(".json"), json.dumps(res, indent=2) + "\n")
        print(json.dumps({k: row[k] for k in ("task", "scheme", "link", "n", "value", "ci_low", "ci_high",
                                              "channel_uses")}), flush=True)
    write_atomic(stem.with_suffix(".json"), json.dumps({"header": header, "points": points, "skipped": skipped},
                                                       indent=2) + "\n")
    if args.sweep == "packet-loss":
        res = {"header": header, "points": points, "skipped": skipped, "comparisons": comparisons(points, args.seed)}
        write_atomic(stem.with_suffix(".json"), json.dumps(res, indent=2) + "\n")
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows({**p, "sweep": args.sweep} for p in points)
    plot(stem.with_suffix(".png"), args.sweep, points)
    return json.loads(stem.with_suffix(".json").read_text())


def add_subparser(sub) -> None:
    p = sub.add_parser("loss-sweep", help="token packets and token budgets (issue 16): quality versus packet "
                       "loss or channel uses, through the running services, into results/",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", required=True, choices=["packet-loss", "budget"])
    p.add_argument("--tasks", default="vqa,reconstruct", help="comma list of vqa, reconstruct")
    p.add_argument("--snr-db", type=float, default=20.0, help="Es/N0 in dB over Rayleigh block fading")
    p.add_argument("--burst", type=float, default=3.0, help="mean burst (packets) of the bursty points")
    p.add_argument("--n-vqa", type=int, default=200, help="questions per VQA point")
    p.add_argument("--n-images", type=int, default=100, help="scenes per reconstruction point")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=4, help="requests in flight (the score does not depend on it)")
    p.add_argument("--target", default="127.0.0.1:50051", help="the transmitter (start with `unitocom up`)")
    p.add_argument("--schemes", default=None,
                   help=f"comma list of the schemes to measure (default: all of them: {', '.join(SCHEMES)})")
    p.add_argument("--loss-rates", default=None,
                   help="packet-loss: comma list of the fractions of packets lost (default: "
                        f"{','.join(f'{r:g}' for r in LOSS_RATES)}; 0 alone is the scheme without packet loss)")
    p.add_argument("--out", default="results")
    p.add_argument("--name", default=None,
                   help="the files' stem: NAME.json, .csv, .png (default: the sweep's name, e.g. packet-loss)")
    p.add_argument("--resume", action="store_true", help="keep points already in <out>/<name>.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd)


def _schemes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = sorted(set(names) - set(SCHEMES))
    if bad or not names:
        raise UserError(f"--schemes: unknown {bad or 'empty list'}; expected a comma list of {', '.join(SCHEMES)}")
    return names


def _loss_rates(text: str | None) -> tuple[float, ...]:
    if text is None:
        return LOSS_RATES
    try:
        rates = tuple(float(r) for r in text.split(","))
    except ValueError:
        raise UserError(f"--loss-rates: {text!r} is not a comma list of numbers") from None
    if not rates or any(not 0 <= r < 1 for r in rates):  # NaN fails both comparisons
        raise UserError(f"--loss-rates: each fraction lost must be in [0, 1), got {text!r}")
    return rates


def _cmd(args) -> int:
    from unitocom import client
    from unitocom.data.layouts import require_data
    from unitocom.train.provenance import command_argv
    require_data(args.data)
    bad = set(args.tasks.split(",")) - {"vqa", "reconstruct"}
    if bad:
        raise UserError(f"--tasks: unknown {sorted(bad)}; expected vqa, reconstruct")
    _schemes(args.schemes)  # bad input fails before the data and the services are touched
    _loss_rates(args.loss_rates)
    if args.sweep == "budget" and args.loss_rates is not None:
        raise UserError("--loss-rates belongs to --sweep packet-loss (the budget sweep loses no packets)")
    try:
        run(args, command_argv("loss-sweep", args))
    except client.RpcError as e:
        print("error: {}: {}".format(*client.error_status(e)), file=sys.stderr)
        return 1
    return 0
