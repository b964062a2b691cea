#!/usr/bin/env python3
"""Is VQA's bottleneck the received tokens or the model that reads them? One plain classifier, four inputs.

The same small bidirectional Transformer (4 layers x 128, answer classification over the training answers,
family-balanced batches, AdamW with warm-up and cosine, the MLLM's SNR range over Rayleigh) is trained for the
same steps on four views of a CLEVR-style scene, each beside the question's BPE ids:

  tokens   the 32 received image tokens R(channel(T(t))) the MLLM reads, standardised per dimension, one
           linear projection each (the MLLM's reading, without its causal LM)
  decoded  the picture the base station's de-tokenizer draws from those same received tokens, F^-1(t_hat),
           through a 4-layer convolutional stem to 8 x 8 cells
  pixels   the clean picture (no channel) through the same stem: what a classifier of this size and budget
           reaches when nothing is lost
  scene    no picture at all: the scene record's objects, one cell each (one-hot size, colour, shape, material and
           the centre's image coordinates), perfect perception; what the reader alone reaches on a family

tokens well below decoded: the information is in the tokens and a linear reading of them is what loses it
(the MLLM needs a deeper reader of its tokens); decoded well below pixels: the link loses it; pixels well below
scene: finding the objects in a picture is what the reader has not learnt.

`--objects W` (tokens view) gives the reader a second job beside the questions: slots that read the scene's objects
left to right (attributes, presence, centre) from the same tokens, and each evaluation says how well they read;
`--read-slots` lets the questions read the slots' cells too.

A diagnostic for issue 12, not a model the services use; it writes results/vqa-probe.json: a header (command,
commit, checkpoint hashes, the recipe, each view's parameters) and a point per view, evaluation step and SNR (0 and
20 dB) with its accuracy and Wilson interval (each family's [correct, asked], and with --objects the slots' reading),
the layout of the other results files.

    .venv/bin/python scripts/vqa_probe.py --modes tokens,decoded,pixels --steps 1500
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom import config  # noqa: E402
from unitocom.mllm import objects  # noqa: E402
from unitocom.mllm.checkpoint import load_links  # noqa: E402
from unitocom.data.layouts import clevr_scenes_file  # noqa: E402
from unitocom.data.presets import data_preset  # noqa: E402
from unitocom.data.scenes import to_image_frac  # noqa: E402
from unitocom.data.questions import FAMILIES, FAMILY_INDEX, AnswerBalancer, questions_for_scene  # noqa: E402
from unitocom.mllm.data import TaskData  # noqa: E402
from unitocom.models.conv_tokenizer import grid_code  # noqa: E402
from unitocom.models.channel_torch import TorchChannelSpec  # noqa: E402
from unitocom.results import wilson  # noqa: E402
from unitocom.train.data import load_images  # noqa: E402
from unitocom.train.provenance import file_sha256, git_state, write_atomic  # noqa: E402

MODES = ("tokens", "decoded", "pixels", "scene")
# the results files' shared layout: a header, then one point per (view, evaluation step, SNR)
FORMAT = "unitocom-results/vqa-probe/2"
MAX_QUESTION = 40  # BPE ids; CLEVR-style questions here are shorter


class Probe(nn.Module):
    """[visual cells; question ids] -> a bidirectional Transformer -> the answer class, read at the question's
    last id."""

    def __init__(self, mode: str, vocab: int, answers: int, token_dim: int, hidden: int = 128,
                 grid_tokens: int = 0, objects: int = 0, read_slots: bool = False):
        super().__init__()
        self.mode = mode
        self.read_slots = read_slots  # the questions attend to the object slots' cells too
        if objects:  # --objects: one learned query cell per object slot, read by the same encoder
            self.queries = nn.Parameter(torch.randn(objects, hidden) * 0.02)
            self.attribute_heads = nn.ModuleList(nn.Linear(hidden, len(v)) for v in OBJECT_ATTRIBUTES.values())
            self.present_head = nn.Linear(hidden, 2)
            self.place_head = nn.Linear(hidden, 2)
        if mode == "tokens":
            self.visual = nn.Linear(token_dim, hidden)
        elif mode == "scene":  # the last feature marks a real object (the rest are padding)
            self.visual = nn.Linear(SCENE_FEATURES, hidden)
        else:  # 32 x 32 px -> 8 x 8 cells
            self.visual = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.GELU(),
                                        nn.Conv2d(64, hidden, 3, padding=1), nn.GELU(),
                                        nn.Conv2d(hidden, hidden, 4, stride=2, padding=1))
        self.pos = nn.Parameter(torch.randn(64 + MAX_QUESTION, hidden) * 0.02)
        if grid_tokens:  # --positions grid: the visual cells start as their grid's 2-D sine-cosine code
            with torch.no_grad():
                self.pos[:grid_tokens] = grid_code(grid_tokens, hidden)
        self.words = nn.Embedding(vocab, hidden)
        layer = nn.TransformerEncoderLayer(hidden, 4, 344, 0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, answers)

    def forward(self, view: torch.Tensor, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """view [B, S, d] tokens or objects, or [B, 3, H, W] pictures in [0, 1]; ids, real [B, L] -> logits
        [B, answers]."""
        if self.read_slots:  # [tokens; slots; question], the slots as `objects` reads them
            v = self._tokens_and_slots(view)
            w = self.words(ids) + self.pos[v.shape[1]: v.shape[1] + ids.shape[1]]
            pad = torch.cat([torch.zeros(len(v), v.shape[1], dtype=torch.bool), ~real], 1)
            h = self.norm(self.encoder(torch.cat([v, w], 1), src_key_padding_mask=pad))
            return self.out(h[torch.arange(len(v)), real.sum(1) + v.shape[1] - 1])
        if self.mode in ("tokens", "scene"):
            v = self.visual(view)
        else:
            v = self.visual(view * 2 - 1).flatten(2).transpose(1, 2)
        x = torch.cat([v, self.words(ids)], 1)
        x = x + self.pos[: x.shape[1]]
        absent = view[..., -1] < 0.5 if self.mode == "scene" else torch.zeros(len(x), v.shape[1], dtype=torch.bool)
        pad = torch.cat([absent, ~real], 1)
        h = self.norm(self.encoder(x, src_key_padding_mask=pad))
        return self.out(h[torch.arange(len(x)), real.sum(1) + v.shape[1] - 1])

    def objects(self, view: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """view [B, S, d] tokens -> the object slots' (attribute logits [B, K, values] per attribute, present
        logits [B, K, 2], centre (u, v) [B, K, 2] in [-1, 1]): the picture's objects left to right."""
        h = self.norm(self.encoder(self._tokens_and_slots(view)))[:, view.shape[1]:]
        return [head(h) for head in self.attribute_heads], self.present_head(h), self.place_head(h)

    def _tokens_and_slots(self, view: torch.Tensor) -> torch.Tensor:
        """view [B, S, d] tokens -> cells [B, S + K, hidden]: the tokens at their positions, then the K slot
        queries (which carry no position: each is its own learned cell)."""
        v = self.visual(view) + self.pos[: view.shape[1]]
        return torch.cat([v, self.queries.expand(len(v), -1, -1)], 1)


def batch(mode: str, data: TaskData, pixels: torch.Tensor | None, idx: list[int], snr_db: torch.Tensor,
          channel: TorchChannelSpec, gen: torch.Generator, answer_id: dict[str, int]):
    """The view of each question's scene, its question ids and mask, its answer class (-1: unseen answer)."""
    items = [data.questions[i] for i in idx]
    scenes = [i for i, _, _ in items]
    if mode == "pixels":
        view = pixels[scenes].float() / 255.0
    elif mode == "scene":
        view = data.scene_features[scenes]
    else:
        rx = data.image_link.through_channel(data.clevr_mu[scenes], snr_db, channel, gen)
        view = data.image_std.forward(rx) if mode == "tokens" else data.image_link.detokenize(rx).clamp(0, 1)
    q = [data.vocab.encode(text)[:MAX_QUESTION] for _, text, _ in items]
    ids = torch.zeros(len(q), max(map(len, q)), dtype=torch.long)
    real = torch.zeros(ids.shape, dtype=torch.bool)
    for b, row in enumerate(q):
        ids[b, : len(row)], real[b, : len(row)] = torch.tensor(row), True
    return view, ids, real, torch.tensor([answer_id.get(a, -1) for _, _, a in items])


@torch.no_grad()
def evaluate(model, mode, data, pixels, snr_db, channel, answer_id, n) -> dict:
    model.eval()
    gen = torch.Generator().manual_seed(5)  # the same channel draws for every mode and evaluation
    right = torch.zeros(n, dtype=torch.bool)
    for s in range(0, n, 250):
        idx = list(range(s, min(n, s + 250)))
        view, ids, real, y = batch(mode, data, pixels, idx, torch.full((len(idx),), snr_db), channel, gen, answer_id)
        right[s: s + len(idx)] = model(view, ids, real).argmax(1) == y
    model.train()
    correct = int(right.sum())
    lo, hi = wilson(correct, n)
    return {"value": correct / n, "ci_low": lo, "ci_high": hi, "by_family": family_counts(right, data.families[:n])}


def family_counts(right: torch.Tensor, families: list[int]) -> dict[str, list[int]]:
    """{family name: [correct, asked]} in family order; a set's own family numbers (real CLEVR has 90, a set
    without them -1) are named 'family N', not mistaken for this generator's families."""
    fam = torch.tensor(families)
    name = lambda f: FAMILIES[f] if 0 <= f < len(FAMILIES) else f"family {f}"  # noqa: E731
    return {name(f): [int(right[fam == f].sum()), int((fam == f).sum())] for f in sorted(set(families))}


_PRESET = data_preset("tiny")
OBJECT_ATTRIBUTES = {"size": _PRESET.sizes, "color": _PRESET.colors, "shape": _PRESET.shapes,
                     "material": _PRESET.materials}
SCENE_VALUES = [(a, v) for a, values in OBJECT_ATTRIBUTES.items() for v in values]
SCENE_FEATURES = len(SCENE_VALUES) + 3  # one-hots, (u, v) of the centre, real-object flag


def scene_records(root: str, split: str, n: int) -> list[dict]:
    """The first n scene records of a split: those TaskData read the token means of."""
    return json.loads(clevr_scenes_file(root, split).read_text())["scenes"][:n]


def scene_features(root: str, split: str, n: int) -> torch.Tensor:
    """[n scenes, max objects, SCENE_FEATURES]: each object's attributes one-hot, its centre's image coordinates
    (u right, v down, in [-1, 1]) and a flag that it is there; padding rows are zero."""
    scenes = scene_records(root, split, n)
    out = torch.zeros(n, max(len(s["objects"]) for s in scenes), SCENE_FEATURES)
    for i, scene in enumerate(scenes):
        for k, obj in enumerate(scene["objects"]):
            for a, value in enumerate(SCENE_VALUES):
                out[i, k, a] = float(obj[value[0]] == value[1])
            u, v, _ = to_image_frac(obj["3d_coords"])
            out[i, k, -3:] = torch.tensor([2 * u - 1, 2 * v - 1, 1.0])
    return out


def object_targets(root: str, split: str, n: int) -> dict[str, torch.Tensor]:
    """The first n scenes' objects left to right (by the centre's u; the generator keeps centres apart along x) in
    objects_max slots: {"attributes" [n, K, 4] value indices (-100 in empty slots), "present" [n, K] 0/1,
    "place" [n, K, 2] the centre's (u, v) in [-1, 1] (0 in empty slots)}."""
    k = _PRESET.objects_max
    attributes = torch.full((n, k, len(OBJECT_ATTRIBUTES)), -100, dtype=torch.long)
    present = torch.zeros(n, k, dtype=torch.long)
    place = torch.zeros(n, k, 2)
    for i, scene in enumerate(scene_records(root, split, n)):
        # the tiny preset's values and camera (to_image_frac): this generator's sets
        bad = [(a, o[a]) for o in scene["objects"] for a, values in OBJECT_ATTRIBUTES.items() if o[a] not in values]
        if bad or len(scene["objects"]) > k:
            raise ValueError(f"{root}: scene {i} of {split} is not of the tiny preset "
                             f"({bad or 'too many objects'}); --objects reads this generator's scenes")
        placed = sorted(((to_image_frac(o["3d_coords"])[:2], o) for o in scene["objects"]), key=lambda t: t[0][0])
        for j, ((u, v), obj) in enumerate(placed):
            attributes[i, j] = torch.tensor([values.index(obj[a]) for a, values in OBJECT_ATTRIBUTES.items()])
            present[i, j] = 1
            place[i, j] = torch.tensor([2 * u - 1, 2 * v - 1])
    return {"attributes": attributes, "present": present, "place": place}


def object_loss(model: "Probe", view: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """The slots' loss: cross-entropy of each attribute (real objects only) and of presence, plus the squared
    error of real objects' centres."""
    attributes, present, place = model.objects(view)
    loss = F.cross_entropy(present.flatten(0, 1), targets["present"].flatten())
    for a, logits in enumerate(attributes):
        loss = loss + F.cross_entropy(logits.flatten(0, 1), targets["attributes"][..., a].flatten(), ignore_index=-100)
    real = targets["present"].bool()
    return loss + ((place - targets["place"]) ** 2)[real].sum(-1).mean()


@torch.no_grad()
def evaluate_objects(model: "Probe", data: TaskData, snr_db: float, channel: TorchChannelSpec, n: int) -> dict:
    """How well the slots read the first n val scenes' objects from their received tokens: the share of scenes
    whose object count is right, each attribute's accuracy over real objects, and the centres' mean distance in
    picture widths."""
    model.eval()
    gen = torch.Generator().manual_seed(6)
    rx = data.image_link.through_channel(data.clevr_mu[:n], torch.full((n,), snr_db), channel, gen)
    attributes, present, place = model.objects(data.image_std.forward(rx))
    model.train()
    t = {k: v[:n] for k, v in data.object_targets.items()}
    real = t["present"].bool()
    out = {"count": float((present.argmax(-1).sum(1) == t["present"].sum(1)).float().mean())}
    for a, (name, logits) in enumerate(zip(OBJECT_ATTRIBUTES, attributes)):
        out[name] = float((logits.argmax(-1) == t["attributes"][..., a])[real].float().mean())
    out["centre_distance"] = float(((place - t["place"]) / 2).norm(dim=-1)[real].mean())
    return {**{k: round(v, 4) for k, v in out.items()}, "scenes": n}


def keep_families(data: TaskData, families: list[str]) -> None:
    """Only the questions of `families` in `data` (its family-balanced draws then choose among those)."""
    wanted = {FAMILY_INDEX[f] for f in families}
    kept = [i for i, f in enumerate(data.families) if f in wanted]
    data.questions = [data.questions[i] for i in kept]
    data.families = [data.families[i] for i in kept]
    data._by_family = None


def add_questions(data: TaskData, root: str, families: list[str], per_scene: int, seed: int) -> None:
    """`per_scene` more questions of `families` about every training scene, drawn as `data make` draws them (an
    answer balancer per family), not repeating a question the set already asks of that scene."""
    import numpy as np
    from tqdm import tqdm
    scenes = scene_records(root, "train", len(data.clevr_mu))
    asked = {(i, q) for i, q, _ in data.questions}
    balancer, rng = AnswerBalancer(tuple(families)), np.random.default_rng(seed)
    for scene in tqdm(scenes, desc="extra questions", unit="scene", file=sys.stderr):
        for q in questions_for_scene(scene, _PRESET, rng, balancer, per_scene):
            if (scene["image_index"], q["question"]) not in asked:
                data.questions.append((scene["image_index"], q["question"], q["answer"]))
                data.families.append(q["question_family_index"])
    data._by_family = None


WHERE_FAMILY = len(FAMILIES)  # the auxiliary family's index: none the data sets ask, so never scored
# the third of the picture across and down a centre (u, v) falls in: the MLLM's object listing says places so too
where_answer = objects.where


def add_where(data: TaskData, root: str, per_scene: int, seed: int) -> None:
    """`per_scene` questions "Where is the small red circle?" per training scene, about objects a description
    picks out alone, answered with the third of the picture across and down its centre is in: an auxiliary family
    (trained, never scored) that says where a described object is, the step every relation question builds on."""
    import numpy as np
    from unitocom.data.questions import noun_phrase, unique_filter
    scenes = scene_records(root, "train", len(data.clevr_mu))
    rng = np.random.default_rng(seed)
    for scene in scenes:
        objs = scene["objects"]
        for _ in range(per_scene):
            i = int(rng.integers(len(objs)))
            flt = unique_filter(rng, objs, i, _PRESET)
            if flt is None:
                continue
            u, v, _ = to_image_frac(objs[i]["3d_coords"])
            data.questions.append((scene["image_index"], f"Where is the {noun_phrase(flt)}?", where_answer(u, v)))
            data.families.append(WHERE_FAMILY)
    data._by_family = None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--modes", default="tokens,decoded,pixels", help="comma list of " + ", ".join(MODES))
    ap.add_argument("--steps", type=int, default=1500, help="training steps per mode")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (warm-up 100 steps, cosine to 0)")
    ap.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations")
    ap.add_argument("--n-val", type=int, default=1000, help="held-out (val) questions per evaluation")
    ap.add_argument("--snr-db", default="-5:25", help="training SNR range in dB, drawn per example (the MLLM's)")
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default="",
                    help="comma list of question families to train and score on (default: all), e.g. relate_yesno")
    ap.add_argument("--extra-per-scene", type=int, default=0, metavar="N",
                    help="draw N more questions of those families per training scene (answer-balanced, as `data "
                         "make` draws them; seed --seed + 1000) beside the data set's: a larger pool than its 5 per "
                         "scene, so that a single family is not learnt by heart")
    ap.add_argument("--where-per-scene", type=int, default=0, metavar="N",
                    help="train on N auxiliary questions per training scene as well, 'Where is the small red "
                         "circle?' -> 'top left' (thirds of the picture across and down), a family of its own in "
                         "the balanced draws and never scored: does knowing where a described object is teach "
                         "the relations?")
    ap.add_argument("--objects", type=float, default=0.0, metavar="W",
                    help="tokens view: train with weight W an auxiliary reading of the scene's objects as well, "
                         "one learned query cell per object slot (objects left to right: each attribute, presence "
                         "and centre), on the same received tokens and encoder; each evaluation reports how well "
                         "the slots read the val scenes (count, attributes, centre): can this reader find the "
                         "objects in the tokens, and does learning to help it answer?")
    ap.add_argument("--read-slots", action="store_true",
                    help="with --objects: the questions read the object slots' cells as well as the tokens, one "
                         "encoder pass over [tokens; slots; question] (the slots an object-level adapter between "
                         "the link and the reader)")
    ap.add_argument("--positions", choices=("noise", "grid"), default="noise",
                    help="how the visual cells' learned positions start: 0.02-scale noise, or (tokens view) the "
                         "2-D sine-cosine code of the token grid (the MLLM's --mllm-arch image_grid)")
    ap.add_argument("--out", default="results/vqa-probe.json")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes {args.modes!r}: a comma list of {', '.join(MODES)}")
    if min(args.steps, args.batch_size, args.eval_every, args.n_val) < 1:
        ap.error("--steps, --batch-size, --eval-every and --n-val must be at least 1")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if any(f not in FAMILY_INDEX for f in families):
        ap.error(f"--families {args.families!r}: names among {', '.join(FAMILIES)}")
    if args.where_per_scene < 0:
        ap.error("--where-per-scene N needs N >= 0")
    if args.objects < 0 or (args.objects and modes != ["tokens"]):
        ap.error("--objects W (W >= 0) trains the tokens view's object slots: give --modes tokens alone")
    if args.read_slots and not args.objects:
        ap.error("--read-slots reads the slots --objects W trains: give W > 0")
    if args.extra_per_scene < 0 or (args.extra_per_scene and not families):
        ap.error("--extra-per-scene N (N >= 0) draws questions of --families: name them")
    lo_db, _, hi_db = args.snr_db.partition(":")
    snr_range = (float(lo_db), float(hi_db or lo_db))
    torch.set_num_threads(1)
    from tqdm import tqdm

    cfg = config.load("tiny")
    image_link, _, _, vocab, paths = load_links(cfg, None, "sigma-genib")
    size = cfg.preset.image_size_px
    train = TaskData(args.data, "train", image_link, None, None, vocab, size)
    val = TaskData(args.data, "val", image_link, None, None, vocab, size)
    val.image_std = train.image_std
    # the clean pictures are read for the pixels view only (the token views start from TaskData's token means)
    pixels = {split: load_images(args.data, split, size) if "pixels" in modes else None for split in ("train", "val")}
    if "scene" in modes:
        for data, split in ((train, "train"), (val, "val")):
            data.scene_features = scene_features(args.data, split, len(data.clevr_mu))
    if args.objects:
        try:
            for data, split in ((train, "train"), (val, "val")):
                data.object_targets = object_targets(args.data, split, len(data.clevr_mu))
        except ValueError as e:
            ap.error(str(e))
    if families:
        keep_families(train, families)
        keep_families(val, families)
    if args.extra_per_scene:
        add_questions(train, args.data, families, args.extra_per_scene, args.seed + 1000)
    if args.where_per_scene:
        add_where(train, args.data, args.where_per_scene, args.seed + 2000)
    answers = sorted({a for _, _, a in train.questions})
    answer_id = {a: i for i, a in enumerate(answers)}
    n_val = min(args.n_val, len(val.questions))
    channel = TorchChannelSpec(model="rayleigh")
    commit, dirty = git_state(ROOT)
    header = {"format": FORMAT,
              "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "scripts/vqa_probe.py",
                                                           *(sys.argv[1:] if argv is None else argv)]),
              "git_commit": commit, "git_dirty": dirty,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "data": args.data, "split": "val", "families": families or "all",
              "extra_per_scene": args.extra_per_scene, "where_per_scene": args.where_per_scene,
              "objects_weight": args.objects, "read_slots": args.read_slots,
              "train_questions": len(train.questions),
              "positions": args.positions, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
              "train_snr_db": list(snr_range), "channel": "rayleigh", "n_val": n_val, "answers": len(answers),
              "links_sha256": {Path(p).name: file_sha256(Path(p)) for k, p in paths.items() if k in ("image", "bpe")},
              "views": {}}
    points: list[dict] = []
    for mode in modes:
        torch.manual_seed(args.seed)
        grid = image_link.spec.tokens if args.positions == "grid" and mode == "tokens" else 0
        model = Probe(mode, len(vocab), len(answers), image_link.spec.token_dim, grid_tokens=grid,
                      objects=_PRESET.objects_max if args.objects else 0, read_slots=args.read_slots)
        opt = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.01)
        gen = torch.Generator().manual_seed(args.seed)
        t0 = time.time()
        header["views"][mode] = {"parameters": sum(p.numel() for p in model.parameters())}
        bar = tqdm(range(1, args.steps + 1), desc=f"probe {mode}", unit="step", file=sys.stderr)
        for step in bar:
            scale = min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
            for g in opt.param_groups:
                g["lr"] = args.lr * scale
            idx = train.family_balanced(args.batch_size, gen)
            snr = torch.empty(args.batch_size).uniform_(*snr_range, generator=gen)
            view, ids, real, y = batch(mode, train, pixels["train"], idx, snr, channel, gen, answer_id)
            loss = F.cross_entropy(model(view, ids, real), y)
            if args.objects:  # the same received tokens, the scenes of the batch's questions
                scenes = [train.questions[i][0] for i in idx]
                loss = loss + args.objects * object_loss(
                    model, view, {k: v[scenes] for k, v in train.object_targets.items()})
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % args.eval_every == 0 or step == args.steps:
                at = {"view": mode, "step": step, "train_loss": round(loss.item(), 4),
                      "time_s": round(time.time() - t0, 1)}
                for snr_db in (0.0, 20.0):
                    points.append({**at, "snr_db": snr_db, "channel": "rayleigh", "n": n_val, "metric": "accuracy",
                                   **evaluate(model, mode, val, pixels["val"], snr_db, channel, answer_id, n_val)})
                    if args.objects:
                        points[-1]["objects"] = evaluate_objects(model, val, snr_db, channel,
                                                                 min(500, len(val.clevr_mu)))
                bar.write(f"{mode} step {step}: accuracy {points[-2]['value']:.3f} at 0 dB, "
                          f"{points[-1]['value']:.3f} at 20 dB"
                          + (f"; objects at 20 dB {points[-1]['objects']}" if args.objects else ""))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        # after each view: a kill keeps the views before it
        write_atomic(Path(args.out), json.dumps({"header": header, "points": points}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
