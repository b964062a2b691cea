"""Can a layout be drawn? The layout renderer (`unitocom.mllm.layout`) trained on the scene records and the image
tokenizer's means, then scored as Fig. 2 scores text-to-image: the test captions' (colour, shape) pairs that the
scene checker finds in the picture F^-1 draws from the rendered tokens.

    python scripts/t2i_layout_probe.py --data data/tiny --steps 4000 --mllm runs/layout/mllm/mllm.safetensors

Rows, on the first --n-test test captions (one a picture, as Fig. 2's T2I points), each a mean pair recall with
its bootstrap 95 % interval:
- `tokens`:  the picture's own clean tokens through F^-1 (what the tokenizer keeps: the ceiling of any generator
             of these tokens);
- `layout`:  the renderer fed the scene record's objects exactly (attributes and centres);
- `grid<G>`: the same with each centre moved to the middle of its cell of a G x G grid (--grids; 3: the thirds an
             `obj` listing names, "at the bottom left"): how finely a written layout must place its objects;
- `shuffled`: another caption's scene's layout (chance: a picture that ignores the caption);
- `written`: (with --mllm, an MLLM trained with the "lay" task) the layout that MLLM writes for the caption; a
             layout it cannot write readably counts 0. `written-NAME` for --mllm NAME=PATH; with several, `paired`
             gives each one's difference from the first, caption by caption, with its bootstrap 95 % interval.
No channel: this asks whether the renderer draws what a layout says, and whether the MLLM writes one that it can.
The renderer trains on the exact centres (--train-cells 0) and draws a written layout's cell centres.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import shlex
import sys
import time
from collections import Counter

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from unitocom import config, results  # noqa: E402
from unitocom.mllm import layout, slots  # noqa: E402
from unitocom.mllm.checkpoint import load_links  # noqa: E402
from unitocom.mllm.data import Standardizer, captioned_images, image_means  # noqa: E402
from unitocom.train import scaffold  # noqa: E402
from unitocom.train.data import load_images  # noqa: E402
from unitocom.train.provenance import file_sha256, git_state  # noqa: E402


def split_layouts(data: str, split: str, link, size_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(token means [N, S_v, d], layouts [N, K, INPUT_WIDTH]) of a split's scenes, in image-index order."""
    mu = image_means(link, load_images(data, split, size_px))
    t = slots.targets(data, split, len(mu))
    if t is None:
        raise SystemExit(f"error: {data} has no scene records for its {split} split")
    return mu, layout.layout_inputs(t)


def this_command(argv: list[str] | None) -> str:
    """The probe's command line as typed from the repository root (a results file's header)."""
    return shlex.join(["scripts/t2i_layout_probe.py", *(sys.argv[1:] if argv is None else argv)])


def cell_spread(cells: list[tuple[int, int]]) -> dict:
    """How spread the objects' cells are: their count, the distinct cells and the entropy of the cells' histogram
    in bits (a picture's positions drawn from few cells look alike, which FID sees)."""
    counts = Counter(cells)
    n = sum(counts.values())
    return {"objects": n, "distinct_cells": len(counts),
            "entropy_bits": round(-sum(c / n * math.log2(c / n) for c in counts.values()), 3) if n else 0.0}


def written_layouts(path: str, items: list[tuple[int, str]], recall, model, std, cfg, objective: str,
                    unmended: bool = False, top_p: float | None = None, seed: int = 0
                    ) -> tuple[dict[str, list[float | None]], dict]:
    """The MLLM at `path` writes each caption's layout, drawn by its own renderer (the base station's path) or else
    by the probe's `model`, its objects written on one cell moved apart first (`layout.apart`, the base station's
    path); -> ({"": pair recall per caption, a layout it cannot write readably 0; "-unmended": the same layouts
    drawn as written, with `unmended`}, what it wrote)."""
    from unitocom.metrics.scene_checker import caption_pairs
    from unitocom.mllm import tasks
    from unitocom.mllm.checkpoint import load_mllm
    mllm, mllm_std, _ = load_mllm(path)
    _, _, _, vocab, _ = load_links(cfg, None, objective)
    own = bool(mllm.cfg.layout_renderer)
    gen = torch.Generator().manual_seed(seed)  # top_p: the layouts sampled, the same draws on every run
    texts = []
    bar = scaffold.progress(len(items), desc="layouts")
    for k in range(0, len(items), 50):
        caps = [c for _, c in items[k:k + 50]]
        texts += tasks.write_layouts(mllm, vocab, caps, batched=True, top_p=top_p, generator=gen)
        bar.update(len(caps))
    bar.close()

    def drawn_recall(mend: bool) -> list[float | None]:
        if own:
            drawn = [None if x is None else mllm_std.inverse(x) for x in tasks.draw_written(mllm, texts, mend=mend)]
        else:
            with torch.no_grad():
                drawn = [None if r is None else std.inverse(model(r[None]))[0]
                         for r in (layout.read(x, mend=mend) for x in texts)]
        ok = [d is not None for d in drawn]
        got = recall(torch.stack([d if d is not None else drawn[ok.index(True)] for d in drawn])) if any(ok) else \
            [None if not caption_pairs(c) else 0.0 for _, c in items]
        return [g if o or g is None else 0.0 for g, o in zip(got, ok)]
    rows = {"": drawn_recall(True), **({"-unmended": drawn_recall(False)} if unmended else {})}
    readable = sum(layout.read(t) is not None for t in texts) / len(texts)
    objects = [layout.items(t) for t in texts]  # per layout: (size, colour, material, shape, column, row)
    named = []  # how many of the caption's pairs the layout names at all (what the MLLM writes, before drawing)
    for (_, cap), written in zip(items, objects):
        want = caption_pairs(cap)
        if want:
            named.append(len(want & {(c, sh) for _, c, _, sh, _, _ in written}) / len(want))
    lo, hi = results.mean_interval(named)
    spread = {"written": cell_spread([(c, r) for o in objects for *_, c, r in o]),
              "mended": cell_spread([cr for o in objects for cr in layout.apart([(x[0], x[4], x[5]) for x in o])])}
    print(f"{path}: cells as written {spread['written']}, mended {spread['mended']}")
    print(f"{path}: written layouts readable: {readable:.3f}; the caption's pairs named in them: "
          f"{sum(named) / len(named):.3f}")
    return rows, {"mllm": path, "mllm_sha256": file_sha256(path),
                  "renderer": "the MLLM's own" if own else "this run's", "readable": readable, "cells": spread,
                  "pairs_named": {"value": round(sum(named) / len(named), 4), "ci_low": round(lo, 4),
                                  "ci_high": round(hi, 4), "n": len(named)},
                  "examples": [{"caption": c, "layout": t} for (_, c), t in list(zip(items, texts))[:20]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--objective", default="sigma-genib", choices=["sigma-genib", "vae"])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--n-test", type=int, default=500, help="test captions scored (one a picture, Fig. 2's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default="runs/layout", help="the renderer is written here (renderer.safetensors)")
    ap.add_argument("--train-cells", type=int, default=0,
                    help="train on centres snapped to this grid, as a written layout gives them (0: exact; snapped to "
                         "8, the renderer draws a written layout worse: 0.875 against 0.937, it learns the blur of "
                         "objects off their cell's centre)")
    ap.add_argument("--grids", default="3,4,6,8", help="grid sizes the centres are snapped to, a row each")
    ap.add_argument("--reuse", action="store_true", help="score the renderer already in --run-dir, no training")
    ap.add_argument("--mllm", action="append", default=[], metavar="[NAME=]PATH",
                    help="also score the layouts this MLLM (trained with the lay task) writes for the test captions: "
                         "the row `written` (`written-NAME` when named; repeat to compare MLLMs on the same "
                         "captions, each against the first, paired)")
    ap.add_argument("--unmended", action="store_true",
                    help="also draw each MLLM's layouts as written, objects on one cell left there (`written-NAME-"
                         "unmended`; the base station moves them apart: `layout.apart`)")
    ap.add_argument("--top-p", type=float, default=None,
                    help="also draw each MLLM's layouts top-p sampled (`written-NAME-top-pP`; the base station's are "
                         "greedy): whether the cells spread as a scene's do, and what it costs in pairs")
    ap.add_argument("--out", default="results/t2i-layout-probe.json")
    args = ap.parse_args(argv)
    grids = [int(g) for g in args.grids.split(",") if g.strip()]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from unitocom.schemes import learned
    from unitocom.stages.mllm import scene_checker
    from unitocom.metrics.scene_checker import pair_recall
    cfg = config.load("tiny")
    link, _, _, _, paths = load_links(cfg, None, args.objective)
    size = cfg.preset.image_size_px
    t0 = time.time()
    train_mu, train_lay = split_layouts(args.data, "train", link, size)
    val_mu, val_lay = split_layouts(args.data, "val", link, size)
    test_mu, test_lay = split_layouts(args.data, "test", link, size)
    std = Standardizer.fit(train_mu)
    print(f"tokens and layouts in {time.time() - t0:.0f} s: train {len(train_mu)}, val {len(val_mu)}, "
          f"test {len(test_mu)}; tokens {tuple(train_mu.shape[1:])}")
    model = layout.LayoutRenderer(train_mu.shape[1], train_mu.shape[2], args.hidden, args.layers)
    run = pathlib.Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    path = run / "renderer.safetensors"
    if args.reuse:  # the renderer a run of this script trained, with its log
        model, std, meta = layout.load_renderer(path)
        log, train_s = meta["log"], meta["train_s"]
    else:
        if args.train_cells:  # the centres a written layout gives: the middle of their cell
            train_lay = layout.snapped(train_lay, args.train_cells)
            val_lay = layout.snapped(val_lay, args.train_cells)
        t1 = time.time()
        log = layout.train_renderer(model, train_lay, std.forward(train_mu), val_lay, std.forward(val_mu),
                                    args.steps, args.batch_size, args.lr, args.seed)
        train_s = round(time.time() - t1, 1)
        meta = {"command": this_command(argv), "data": args.data, "image_link": paths["image"],
                "image_link_sha256": file_sha256(paths["image"]), "train_cells": args.train_cells,
                "steps": args.steps, "train_s": train_s, "log": log}
        layout.save_renderer(model, std, path, meta)

    checker = scene_checker()
    mu_c, caps = captioned_images(args.data, "test", link, size)
    first: dict[int, str] = {}
    for i, cap in caps:
        first.setdefault(i, cap)
    items = list(first.items())[: args.n_test]
    ids = torch.tensor([i for i, _ in items])
    assert torch.allclose(mu_c[ids], test_mu[ids]), "COCO view and CLEVR scenes out of step"
    from unitocom.mllm.objects import placed_scenes
    placed = dict(placed_scenes(args.data, "test", len(test_mu)) or [])
    real_cells = cell_spread([(layout.cell(u), layout.cell(v)) for i, _ in items for u, v, _ in placed.get(i, [])])
    print(f"the captions' scenes' cells: {real_cells}")
    model.eval()

    def recall(mu: torch.Tensor) -> list[float | None]:
        """Per caption (None: a caption that names no pair)."""
        imgs = learned.tokens_to_images(link, learned.clean_tokens(link, mu))
        seen = checker.recognise(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0)
        return [pair_recall(cap, s) for (_, cap), s in zip(items, seen)]

    with torch.no_grad():
        rows = {"tokens": recall(test_mu[ids]),
                "layout": recall(std.inverse(model(test_lay[ids]))),
                **{f"grid{g}": recall(std.inverse(model(layout.snapped(test_lay[ids], g)))) for g in grids},
                "shuffled": recall(std.inverse(model(test_lay[ids.roll(1)])))}
    writers = {}
    for spec in args.mllm:  # each MLLM writes each caption's layout; one it cannot write readably draws nothing (0)
        name, _, mllm_path = spec.rpartition("=")
        row = f"written-{name}" if name else "written"
        drawn, writers[row] = written_layouts(mllm_path, items, recall, model, std, cfg, args.objective,
                                              unmended=args.unmended)
        rows.update({row + suffix: r for suffix, r in drawn.items()})
        if args.top_p is not None:  # the layouts sampled instead of greedy
            drawn, writers[row + f"-top-p{args.top_p:g}"] = written_layouts(
                mllm_path, items, recall, model, std, cfg, args.objective, top_p=args.top_p, seed=args.seed)
            rows[row + f"-top-p{args.top_p:g}"] = drawn[""]
    paired = {}

    def pair(row: str, base: str) -> None:  # caption by caption
        d = [b - a for a, b in zip(rows[base], rows[row]) if a is not None and b is not None]
        lo, hi = results.mean_interval(d)
        paired[f"{row} - {base}"] = {"value": round(sum(d) / len(d), 4), "ci_low": round(lo, 4),
                                     "ci_high": round(hi, 4), "n": len(d)}
        print(f"{row} - {base}: {sum(d) / len(d):+.3f} [{lo:+.3f}, {hi:+.3f}] (paired, n={len(d)})")
    sampled = f"-top-p{args.top_p:g}" if args.top_p is not None else "-top-p"
    for row in [r for r in writers if not r.endswith(sampled)][1:]:  # each against the first
        pair(row, next(iter(writers)))
    for row in [r for r in writers if not r.endswith(sampled)]:  # each on its own layouts:
        if args.unmended:  # the mend
            pair(row, row + "-unmended")
        if args.top_p is not None:  # sampling
            pair(row + sampled, row)
    table = {}
    for name, r in rows.items():
        r = [x for x in r if x is not None]
        lo, hi = results.mean_interval(r)
        table[name] = {"value": round(sum(r) / len(r), 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4),
                       "n": len(r)}
        print(f"{name:9s} pair recall {table[name]['value']:.3f} [{lo:.3f}, {hi:.3f}] (n={len(r)})")
    commit, dirty = git_state()
    out = {"header": {"command": this_command(argv), "git_commit": commit, "git_dirty": dirty,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data": args.data,
                      "image_link": paths["image"], "image_link_sha256": file_sha256(paths["image"]),
                      "config": {k: v for k, v in vars(args).items()}, "train_s": train_s,
                      "renderer": str(path), "renderer_sha256": file_sha256(path), "scene_cells": real_cells,
                      "renderer_trained": {k: v for k, v in meta.items() if k != "log"}},
           "log": log, "pair_recall": table, "writers": writers, "paired": paired}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
