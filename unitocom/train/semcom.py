"""Training and in-process evaluation of baseline 2, vanilla SemCom (`models.semcom`): three task-specific deep
JSCC systems trained end to end through the differentiable channel, `unitocom train semcom --task ...`.

Channel in the loop (`models.channel_torch`): Rayleigh block fading by default, one h per example and stream (VQA's
image and question streams fade independently), the SNR drawn per example uniformly from
`TokenizerConfig.snr_db_range` (-10..25 dB; both streams of a VQA example share the nominal SNR, as a request's
link settings do), MMSE equalisation with perfect CSI, the receiver given the per-symbol SINR.

Losses: VQA cross-entropy over the training set's answers plus AUX_WEIGHT x a scene-attribute loss on the
received image tokens (BCE over the colour-shape pairs present, cross-entropy over the object count; from the
CLEVR-layout scene records when they hold the synthetic vocabulary, else off); T2I the conditional VAE's negative
ELBO (Gaussian likelihood, variance `T2I_OBS_VAR`; evaluation draws the latent from the prior); ASR CTC over characters. AdamW (`train.scaffold.adamw`, decay on matrices only), linear warm-up then cosine
to 0.1 x lr, gradient norm clipped at 1. Resumable: `<run-dir>/state.safetensors` (model, optimiser, sampling
generator) every `--save-every` steps, `<run-dir>/log.jsonl`. At the end: the fp16 checkpoint
`checkpoints/semcom-<task>.safetensors` and its entry in `checkpoints/manifest-tasks.json` (command, seed, data
checksum, parameters, channel uses, wall time, validation figures).

`evaluate(task, model, data, snr_db, ...)` scores a model on a split in process: VQA answer accuracy (exact
match), ASR WER (`metrics.scores.wer`), T2I the scene checker's pair recall against the caption (as
`stages.mllm.run` scores t2i_pair_recall) and the PSNR to the caption's own scene.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unitocom.models import semcom as sc
from unitocom.models.channel_torch import TorchChannelSpec, transmit
from unitocom.train import scaffold

BPE_FILE = "text-bpe.json"
T2I_OBS_VAR = 0.01  # T2I: variance of the Gaussian likelihood per pixel value in [0, 1] (the tokenizers' obs_var)
AUX_WEIGHT = 0.5  # VQA: weight of the auxiliary scene-attribute loss on the received image tokens
DEFAULTS = {  # batch, lr, warm-up per task (sized for two shared CPU cores)
    "vqa": dict(batch_size=64, lr=2e-3, warmup=100),
    "t2i": dict(batch_size=32, lr=2e-3, warmup=100),
    "asr": dict(batch_size=32, lr=2e-3, warmup=200),
}


def _checkpoints() -> Path:
    from unitocom.schemes.learned import checkpoint_dir
    return checkpoint_dir()


def load_bpe(path: str | Path | None = None):
    from unitocom.models.text_tokenizer import load_bpe as _load
    return _load(path or _checkpoints() / BPE_FILE)


def pad_ids(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> ids int64 [B, L] (PAD_ID after each row) and mask bool [B, L]."""
    n = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), n), sc.PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, ids != sc.PAD_ID


def _bpe_ids(bpe, texts: list[str], max_tokens: int = 64) -> list[list[int]]:
    return [e.ids[:max_tokens] or [sc.PAD_ID + 1] for e in bpe.encode_batch(texts)]


# --- data -------------------------------------------------------------------------------------------------------

class VQAData:
    """CLEVR layout: images uint8 [N, 3, 32, 32], questions (image index, BPE ids, answer string)."""

    def __init__(self, data_dir, split: str, bpe, limit: int | None = None, size_px: int = 32):
        from unitocom.data.layouts import clevr_root, read_json
        from unitocom.train.data import load_images
        self.images = load_images(data_dir, split, size_px, limit)
        qs = read_json(clevr_root(data_dir) / "questions" / f"CLEVR_{split}_questions.json")["questions"]
        qs = [q for q in qs if q["image_index"] < len(self.images)]
        ids = _bpe_ids(bpe, [q["question"] for q in qs])
        self.items = [(q["image_index"], i, q["question"], q["answer"]) for q, i in zip(qs, ids)]
        self.scene = None  # [N, pairs + MAX_OBJECTS + 1]: colour-shape pairs present, object count one-hot
        try:
            from unitocom.data.layouts import load_clevr_scenes
            from unitocom.metrics.scene_checker import MAX_OBJECTS, scene_labels
            scenes = {s["image_index"]: s for s in load_clevr_scenes(data_dir, split)}
            rows = []
            for k in range(len(self.images)):
                pairs, count = scene_labels(scenes[k])
                rows.append(torch.cat([pairs, F.one_hot(torch.tensor(count), MAX_OBJECTS + 1).float()]))
            self.scene = torch.stack(rows)
        except (OSError, KeyError, ValueError):  # no scene records, or attributes outside the synthetic vocabulary
            self.scene = None

    def __len__(self) -> int:
        return len(self.items)

    def answers(self) -> list[str]:
        return sorted({a for *_, a in self.items})

    def batch(self, idx: list[int], answers: list[str]) -> dict:
        items = [self.items[i] for i in idx]
        ids, mask = pad_ids([it[1] for it in items])
        lookup = {a: k for k, a in enumerate(answers)}
        img = [it[0] for it in items]
        return {"images": self.images[img].float() / 255.0, "ids": ids, "mask": mask,
                "scene": None if self.scene is None else self.scene[img],
                "labels": torch.tensor([lookup.get(it[3], -100) for it in items]),
                "answers": [it[3] for it in items], "questions": [it[2] for it in items]}


def layout_of(images_u8: torch.Tensor, threshold: float = 30.0) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> foreground occupancy [N, 1, S/4, S/4] in [0, 1]: the share of each 4x4 cell whose
    colour differs (L1 over RGB > threshold) from the set's per-pixel median, the background (objects sit at
    random places, so the median of many scenes is the empty floor and its gradient)."""
    x = images_u8.float()
    bg = x[:: max(1, len(x) // 2000)].median(dim=0).values
    fg = ((x - bg).abs().sum(1, keepdim=True) > threshold).float()
    return F.avg_pool2d(fg, 4)


class T2IData:
    """COCO layout: images uint8 [N, 3, 32, 32] and captions (image index, BPE ids, caption)."""

    def __init__(self, data_dir, split: str, bpe, limit: int | None = None, size_px: int = 32):
        from PIL import Image

        from unitocom.data.layouts import coco_annotation_file, read_json
        data_dir = Path(data_dir)
        ann = read_json(coco_annotation_file(data_dir / "coco", split))
        files = {im["id"]: im["file_name"] for im in ann["images"]}
        order = sorted(files)[:limit]
        index = {image_id: i for i, image_id in enumerate(order)}
        out = np.empty((len(order), size_px, size_px, 3), np.uint8)
        for i, image_id in enumerate(order):
            with Image.open(data_dir / "coco" / f"{split}2017" / files[image_id]) as im:
                im = im.convert("RGB")
                if im.size != (size_px, size_px):
                    im = im.resize((size_px, size_px), Image.BICUBIC)
                out[i] = np.asarray(im)
        self.images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
        self.layout = layout_of(self.images)
        caps = [(index[a["image_id"]], a["caption"].strip()) for a in ann["annotations"] if a["image_id"] in index]
        ids = _bpe_ids(bpe, [c for _, c in caps])
        self.items = [(i, s, c) for (i, c), s in zip(caps, ids)]

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, idx: list[int]) -> dict:
        items = [self.items[i] for i in idx]
        ids, mask = pad_ids([it[1] for it in items])
        img = [it[0] for it in items]
        return {"images": self.images[img].float() / 255.0, "layout": self.layout[img], "ids": ids, "mask": mask,
                "captions": [it[2] for it in items]}


class ASRData:
    """LibriSpeech layout: per clip the standardised log-mel [chunks * 64, mels] (`semcom.asr_features`), its
    chunk count, the transcript and its CTC targets. db_mean / db_std: measured on this split's clips (unpadded
    frames) when not given; training stores them in the model."""

    def __init__(self, data_dir, split: str, frontend, limit: int | None = None,
                 db_mean: float | None = None, db_std: float | None = None):
        from unitocom.data.presets import SPEECH_SUBSETS
        from unitocom.train.data import read_wave
        root = Path(data_dir) / "LibriSpeech" / SPEECH_SUBSETS[split]
        clips = []
        for trans in sorted(root.rglob("*.trans.txt")):
            for line in trans.read_text().splitlines():
                if " " not in line:
                    continue
                utt, text = line.split(" ", 1)
                f = next((trans.parent / f"{utt}{e}" for e in (".flac", ".wav") if (trans.parent / f"{utt}{e}").exists()),
                         None)
                if f is not None:
                    clips.append((f, text.strip()))
        clips = clips[:limit]
        if not clips:
            raise FileNotFoundError(f"no speech under {root} (make it with `unitocom data make --preset tiny`)")
        waves = [read_wave(f, frontend.rate_hz) for f, _ in clips]
        if db_mean is None or db_std is None:
            allv = torch.cat([frontend.logmel(w).flatten() for w in waves])
            db_mean, db_std = float(allv.mean()), float(allv.std())
        self.db_mean, self.db_std = db_mean, db_std
        self.items = []
        for w, (_, text) in zip(waves, clips):
            mel, chunks = sc.asr_features(w, frontend, db_mean, db_std)
            self.items.append((mel, chunks, text, sc.ctc_targets(text)))

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, idx: list[int]) -> dict:
        items = [self.items[i] for i in idx]
        chunks = torch.tensor([it[1] for it in items])
        frames = int(chunks.max()) * sc.AUDIO_CHUNK_FRAMES
        mel = torch.zeros(len(items), frames, items[0][0].shape[1])
        for b, it in enumerate(items):
            mel[b, : it[0].shape[0]] = it[0]
        targets = [torch.tensor(it[3], dtype=torch.long) for it in items]
        return {"mel": mel, "chunks": chunks, "targets": targets, "transcripts": [it[2] for it in items]}


def frontend_for(cfg=None):
    from unitocom.config import PRESETS
    from unitocom.models.audio_tokenizer import MelFrontend
    p = cfg or PRESETS["tiny"]
    t = p.tokenizer
    return MelFrontend(p.audio_rate_hz, t.audio_n_fft, t.audio_hop, t.audio_mels)


def load_data(task: str, data_dir, split: str, bpe=None, limit: int | None = None, model=None):
    """The split's data for a task; ASR standardises with the model's statistics when a model is given."""
    if task == "vqa":
        return VQAData(data_dir, split, bpe or load_bpe(), limit)
    if task == "t2i":
        return T2IData(data_dir, split, bpe or load_bpe(), limit)
    if task == "asr":
        kw = {} if model is None else dict(db_mean=model.db_mean, db_std=model.db_std)
        return ASRData(data_dir, split, frontend_for(), limit, **kw)
    raise ValueError(f"unknown task {task!r}")


# --- one step through the channel --------------------------------------------------------------------------------

def through_channel(z: torch.Tensor, snr_db: torch.Tensor, spec: TorchChannelSpec,
                    gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Transmitted symbols [B, N] -> (MMSE-equalised symbols [B, N], per-symbol SINR dB [B, N])."""
    return transmit(z, snr_db, spec, gen)


def forward(task: str, model, batch: dict, snr_db: torch.Tensor, spec: TorchChannelSpec,
            gen: torch.Generator | None = None) -> dict:
    """Transmitter, channel, receiver for a batch: {'loss': scalar, 'out': the receiver's output}."""
    if task == "vqa":
        zi, zq = model.encode(batch["images"], batch["ids"], batch["mask"])
        yi, si = through_channel(zi, snr_db, spec, gen)
        yq, sq = through_channel(zq, snr_db, spec, gen)
        scene = batch.get("scene")
        if model.aux is not None and scene is not None and model.training:
            logits, aux = model.decode(yi, si, yq, sq, batch["mask"], aux=True)
            from unitocom.metrics.scene_checker import PAIRS
            p = len(PAIRS)
            aux_loss = (F.binary_cross_entropy_with_logits(aux[:, :p], scene[:, :p])
                        + F.cross_entropy(aux[:, p:], scene[:, p:].argmax(1)))
            loss = F.cross_entropy(logits, batch["labels"], ignore_index=-100)
            return {"loss": loss + AUX_WEIGHT * aux_loss, "answer_loss": loss, "out": logits}
        logits = model.decode(yi, si, yq, sq, batch["mask"])
        return {"loss": F.cross_entropy(logits, batch["labels"], ignore_index=-100), "out": logits}
    if task == "t2i":
        z = model.encode(batch["ids"], batch["mask"])
        y, s = through_channel(z, snr_db, spec, gen)
        x = batch["images"]
        if not model.training:  # generation: the layout latent from the prior
            img = model.decode(y, s, batch["mask"], generator=gen)
            return {"loss": F.mse_loss(img, x), "out": img}
        mu, logvar = model.infer(batch["layout"])
        eps = torch.randn(mu.shape, generator=gen)
        img = model.decode(y, s, batch["mask"], latent=mu + torch.exp(0.5 * logvar) * eps)
        rec = ((img - x) ** 2).flatten(1).sum(1) / (2.0 * T2I_OBS_VAR)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
        # the negative ELBO in nats per pixel value (so that the learning rate means what it does elsewhere)
        return {"loss": (rec + kl).mean() / x[0].numel(), "kl": kl.mean(), "out": img}
    if task == "asr":
        z = model.encode(batch["mel"], batch["chunks"])
        y, s = through_channel(z, snr_db, spec, gen)
        logits = model.decode(y, s, batch["chunks"])
        logp = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, C]
        targets = batch["targets"]
        loss = F.ctc_loss(logp, torch.cat(targets), batch["chunks"] * sc.AUDIO_TOKENS,
                          torch.tensor([len(t) for t in targets]), blank=0, reduction="mean", zero_infinity=True)
        return {"loss": loss, "out": logits}
    raise ValueError(f"unknown task {task!r}")


def channel_uses(task: str, model=None, data=None) -> dict:
    """Complex channel uses a request sends, per stream (fixed or per unit of input)."""
    if task == "vqa":
        return {"image": sc.IMAGE_SYMBOLS, "question_per_bpe_token": sc.USES}
    if task == "t2i":
        return {"caption_per_bpe_token": sc.USES}
    return {"audio_per_chunk": sc.AUDIO_TOKENS * sc.USES, "chunk_s": 1.024, "per_mel_frame": sc.USES // 2}


# --- evaluation ---------------------------------------------------------------------------------------------------

def _spread(n_total: int, n: int) -> list[int]:
    """n indices spread evenly over the split (all of them when n >= n_total)."""
    if n >= n_total:
        return list(range(n_total))
    return np.linspace(0, n_total - 1, n).round().astype(int).tolist()


@torch.no_grad()
def evaluate(task: str, model, data, snr_db: float, n: int = 300, channel: str = "rayleigh", seed: int = 0,
             batch: int = 100, checker=None) -> dict:
    """Score a model on `n` examples of a split (spread evenly over it) at one SNR over `channel`:
    vqa {'accuracy'}, asr {'wer'}, t2i {'pair_recall', 'psnr_db'}; plus 'n', 'snr_db', 'channel'."""
    from unitocom.metrics.scores import exact_match, wer
    model.eval()
    spec = TorchChannelSpec(model=channel)
    gen = torch.Generator().manual_seed(seed)
    idx = _spread(len(data), n)
    out: dict = {"n": len(idx), "snr_db": snr_db, "channel": channel}
    hits, refs, hyps, recalls, psnrs = [], [], [], [], []
    if task == "t2i" and checker is None:
        from unitocom.metrics.scene_checker import load_checker
        checker = load_checker(_checkpoints() / "scene-checker.safetensors")
    for i in range(0, len(idx), batch):
        part = idx[i: i + batch]
        b = data.batch(part, model.answers) if task == "vqa" else data.batch(part)
        res = forward(task, model, b, torch.full((len(part),), float(snr_db)), spec, gen)
        if task == "vqa":
            hits += [exact_match(p, t) for p, t in zip(model.answer(res["out"]), b["answers"])]
        elif task == "asr":
            refs += b["transcripts"]
            hyps += model.transcribe(res["out"], b["chunks"])
        else:
            from unitocom.metrics.scene_checker import pair_recall
            img = torch.round(res["out"].clamp(0, 1) * 255.0) / 255.0  # what the PNG would hold
            seen = checker.recognise(img)
            recalls += [r for cap, s in zip(b["captions"], seen) if (r := pair_recall(cap, s)) is not None]
            mse = ((img - b["images"]) ** 2).flatten(1).mean(1).clamp_min(1e-10)
            psnrs += (10 * torch.log10(1.0 / mse)).tolist()
    if task == "vqa":
        out["accuracy"] = float(np.mean(hits))
    elif task == "asr":
        out["wer"] = float(wer(refs, hyps))
        out["examples"] = [[r, h] for r, h in list(zip(refs, hyps))[:3]]
    else:
        out["pair_recall"] = float(np.mean(recalls)) if recalls else float("nan")
        out["psnr_db"] = float(np.mean(psnrs))
    return out


HEADLINE = {"vqa": "accuracy", "asr": "wer", "t2i": "pair_recall"}


def headline(task: str, res: dict) -> float:
    return res[HEADLINE[task]]


# --- the loop -----------------------------------------------------------------------------------------------------

@dataclass
class SemComOptions:
    task: str
    steps: int = 3000
    batch_size: int | None = None
    lr: float | None = None
    warmup: int | None = None
    weight_decay: float = 0.01
    seed: int = 0
    snr_db: tuple[float, float] | None = None  # default: TokenizerConfig.snr_db_range
    channel: str = "rayleigh"
    data_dir: str = "data/tiny"
    run_dir: str | None = None
    out: str | None = None
    val_every: int = 500
    save_every: int = 250
    val_n: int = 256
    limit: int | None = None  # examples per split (tests)
    threads: int = 1
    resume: bool = True
    progress: bool = True
    command: str = ""
    manifest: bool = True
    model_overrides: dict = field(default_factory=dict)
    init: str | None = None  # warm start from this checkpoint (a .safetensors path)


def _make_model(task: str, train_data, overrides: dict):
    if task == "vqa":
        from unitocom.metrics.scene_checker import MAX_OBJECTS, PAIRS
        aux = 0 if train_data.scene is None else len(PAIRS) + MAX_OBJECTS + 1
        return sc.SemComVQA(train_data.answers(), **({"aux_outputs": aux} | overrides))
    if task == "t2i":
        # pooled=False: the committed recipe (a 2500-step run with the pooled caption feature did no better:
        # pair recall 0.08 at 20 dB); `model_overrides={"pooled": True}` turns it on
        return sc.SemComT2I(**overrides)
    return sc.SemComASR(db_mean=train_data.db_mean, db_std=train_data.db_std, **overrides)


def train(opts: SemComOptions) -> dict:
    """Train one task's system; returns the checkpoint's manifest entry."""
    from unitocom.config import PRESETS
    if opts.task not in sc.TASKS:
        raise ValueError(f"task must be one of {sc.TASKS}, got {opts.task!r}")
    torch.set_num_threads(max(1, opts.threads))
    d = DEFAULTS[opts.task]
    batch_size, lr = opts.batch_size or d["batch_size"], opts.lr or d["lr"]
    warmup = d["warmup"] if opts.warmup is None else opts.warmup
    snr = tuple(opts.snr_db or PRESETS["tiny"].tokenizer.snr_db_range)
    name = f"semcom-{opts.task}"
    run_dir = Path(opts.run_dir or f"runs/{name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    out = Path(opts.out) if opts.out else _checkpoints() / f"{name}.safetensors"
    t0 = time.time()
    bpe = load_bpe() if opts.task in ("vqa", "t2i") else None
    train_data = load_data(opts.task, opts.data_dir, "train", bpe, opts.limit)
    val_data = load_data(opts.task, opts.data_dir, "val", bpe, opts.limit,
                         model=train_data if opts.task == "asr" else None)
    torch.manual_seed(opts.seed)
    model = _make_model(opts.task, train_data, opts.model_overrides)
    if opts.init:  # warm start: the weights of an earlier checkpoint of the same task and configuration
        init_task, init_model, _ = sc.load(opts.init)
        if init_task != opts.task or init_model.config != model.config:
            raise ValueError(f"{opts.init} is not a {opts.task} checkpoint of this configuration")
        model.load_state_dict(init_model.state_dict())
    opt = scaffold.adamw(model, lr, opts.weight_decay, split_decay=True)
    gen = torch.Generator().manual_seed(opts.seed)
    state = run_dir / "state.safetensors"
    start, elapsed = 0, 0.0
    if opts.resume and state.exists():
        meta = scaffold.state_meta(state)
        if meta.get("config") != json.dumps(model.config) or int(meta.get("steps", -1)) != opts.steps:
            raise ValueError(f"{state} is a run with another configuration or --steps; use --restart")
        start = scaffold.load_state(state, model, opt, {"gen": gen})
        elapsed = float(meta.get("train_s", 0.0))
    spec = TorchChannelSpec(model=opts.channel)
    log = scaffold.JsonlLog(run_dir / "log.jsonl", start)
    bar = scaffold.progress(opts.steps, start, desc=name, enabled=opts.progress)
    running, last_val, t_loop = None, {}, time.time()
    model.train()

    def save_state(step):
        scaffold.save_state(state, model, opt, step, {"gen": gen},
                            {"config": json.dumps(model.config), "steps": str(opts.steps),
                             "train_s": str(elapsed + time.time() - t_loop)})

    for step in range(start, opts.steps):
        idx = torch.randint(len(train_data), (batch_size,), generator=gen).tolist()
        b = train_data.batch(idx, model.answers) if opts.task == "vqa" else train_data.batch(idx)
        snr_db = torch.empty(batch_size).uniform_(*snr, generator=gen)
        scaffold.set_lr(opt, scaffold.warmup_cosine(step, opts.steps, lr, warmup, floor=0.1))
        loss = forward(opts.task, model, b, snr_db, spec, gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        done = step + 1
        if done % opts.val_every == 0 or done == opts.steps:
            key = HEADLINE[opts.task]
            last_val = {f"val_{key}_{s:g}db": headline(opts.task, evaluate(opts.task, model, val_data, s,
                                                                          opts.val_n, opts.channel))
                        for s in (0.0, 20.0)}
            model.train()
            row = {"step": done, "loss": round(running, 5), "time_s": round(elapsed + time.time() - t_loop, 1),
                   "lr": opt.param_groups[0]["lr"], **last_val}
            log.write(row)
            bar.write(json.dumps(row))
        elif done % 50 == 0:
            log.write({"step": done, "loss": round(running, 5), "time_s": round(elapsed + time.time() - t_loop, 1)})
        if done % opts.save_every == 0 or done == opts.steps:
            save_state(done)
    bar.close()
    log.close()
    wall_s = elapsed + time.time() - t_loop
    if not last_val:  # a finished run resumed: its last validation is in the log
        rows = [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln]
        last_val = {k: v for k, v in rows[-1].items() if k.startswith("val_")} if rows else {}
        wall_s = rows[-1].get("time_s", wall_s) if rows else wall_s
    model.eval()
    meta = {"command": opts.command, "task": opts.task, "baseline": "vanilla SemCom (letter section V, baseline 2)",
            "seed": opts.seed, "preset": "tiny", "parameters": sc.count_parameters(model),
            "channel_uses": channel_uses(opts.task), "validation": last_val,
            "train_config": {"steps": opts.steps, "batch": batch_size, "lr": lr, "warmup": warmup,
                             "weight_decay": opts.weight_decay, "snr_db": list(snr), "channel": opts.channel,
                             "fading": "block, one h per example and stream", "equalizer": "mmse",
                             "threads": opts.threads, "val_n": opts.val_n},
            "wall_s": round(wall_s, 1), "load_s": round(t_loop - t0, 1)}
    if opts.task in ("vqa", "t2i"):
        meta["links"] = {"bpe": BPE_FILE}
    if opts.init:
        meta["init"] = {"file": Path(opts.init).name, "sha256": _sha256(opts.init)}
    try:
        from unitocom.data.make import dataset_checksum
        meta["data_checksum"] = dataset_checksum(opts.data_dir)
    except (OSError, ValueError, KeyError):
        meta["data_checksum"] = None
    sc.save(model, opts.task, out, extra={k: meta[k] for k in ("command", "seed", "train_config", "channel_uses")}
            | {"bpe": BPE_FILE if opts.task in ("vqa", "t2i") else None})
    if opts.manifest:
        from unitocom.train.provenance import manifest_entry
        manifest_entry(out, meta)
    return meta


def _sha256(path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- CLI ------------------------------------------------------------------------------------------------------------

def _cmd(args) -> int:
    from unitocom.data.layouts import require_data
    from unitocom.train.provenance import recorded_command
    require_data(args.data)
    tasks = list(sc.TASKS) if args.task == "all" else [args.task]
    overrides = {"vqa": args.steps_vqa, "t2i": args.steps_t2i, "asr": args.steps_asr}
    for task in tasks:
        steps = overrides[task] or args.steps
        run_dir = args.run_dir if (args.run_dir and len(tasks) == 1) else (
            str(Path(args.run_dir) / f"semcom-{task}") if args.run_dir else None)
        out = args.out if (args.out and len(tasks) == 1) else (
            str(Path(args.out) / f"semcom-{task}.safetensors") if args.out else None)
        argv = ["train", "semcom", "--task", task, "--steps", str(steps), "--data", args.data, "--seed", str(args.seed),
                "--channel", args.channel]
        for flag, v in (("--batch-size", args.batch_size), ("--lr", args.lr), ("--init", args.init)):
            if v is not None:
                argv += [flag, str(v)]
        opts = SemComOptions(task=task, steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             channel=args.channel, data_dir=args.data, run_dir=run_dir, out=out,
                             val_every=args.val_every, save_every=args.save_every, val_n=args.val_n,
                             threads=args.threads, resume=not args.restart, progress=not args.quiet,
                             command=recorded_command(argv), init=args.init)
        try:
            meta = train(opts)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"checkpoint": f"semcom-{task}", "parameters": meta["parameters"],
                          "wall_s": meta["wall_s"], "validation": meta["validation"]}))
    return 0


def _cmd_eval(args) -> int:
    path = Path(args.checkpoint)
    if not path.suffix:
        path = _checkpoints() / f"{args.checkpoint}.safetensors"
    torch.set_num_threads(max(1, args.threads))
    task, model, _ = sc.load(path)
    data = load_data(task, args.data, args.split, model=model)
    rows = [evaluate(task, model, data, s, args.n, args.channel, args.seed) for s in args.snr_db]
    for r in rows:
        print(json.dumps(r))
    return 0


def add_train_command(sub) -> None:
    """Register `unitocom train semcom` (and `... semcom-eval`) on the `train` subparsers."""
    p = sub.add_parser(
        "semcom", help="baseline 2, vanilla SemCom: task-specific deep JSCC (VQA, T2I, ASR), no MLLM",
        description="Train the vanilla-SemCom baseline of the letter's section V: three task-specific deep JSCC "
                    "systems (semcom-vqa after MU-DeepSC, semcom-t2i after GenSemCom, semcom-asr after DeepSC-ST), "
                    "each end to end through the differentiable channel (Rayleigh block fading, one h per example "
                    "and stream, SNR drawn per example from -10..25 dB, MMSE equalisation, the receiver told the "
                    "SINR). Resumes from <run-dir>/state.safetensors; writes <run-dir>/log.jsonl, "
                    "checkpoints/semcom-<task>.safetensors and its entry in checkpoints/manifest-tasks.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", choices=[*sc.TASKS, "all"], required=True, help="which system; all: the three in turn")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps (per task)")
    p.add_argument("--steps-vqa", type=int, default=None, help="with --task all: steps of semcom-vqa (default --steps)")
    p.add_argument("--steps-t2i", type=int, default=None, help="with --task all: steps of semcom-t2i (default --steps)")
    p.add_argument("--steps-asr", type=int, default=None, help="with --task all: steps of semcom-asr (default --steps)")
    p.add_argument("--batch-size", type=int, default=None, help="default: vqa 64, t2i 32, asr 32")
    p.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate (default 2e-3)")
    p.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="warm start from a semcom checkpoint of the same task and configuration (.safetensors path)")
    p.add_argument("--channel", choices=["rayleigh", "awgn", "mixed"], default="rayleigh", help="training channel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="data/tiny", help="data set directory")
    p.add_argument("--run-dir", default=None, help="state and log (default runs/semcom-<task>; with --task all, "
                                                   "a folder holding one per task)")
    p.add_argument("--out", default=None, help="checkpoint path (default checkpoints/semcom-<task>.safetensors; "
                                               "with --task all, a folder)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--val-n", type=int, default=256, help="validation examples at 0 and 20 dB")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--restart", action="store_true", help="ignore a saved state in the run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)
    e = sub.add_parser(
        "semcom-eval", help="score a vanilla-SemCom checkpoint in process on a split at given SNRs",
        description="In-process evaluation (no services): VQA accuracy, ASR WER, T2I scene-checker pair recall "
                    "and PSNR, over Rayleigh block fading (or AWGN) with MMSE equalisation and perfect CSI. One JSON "
                    "line per SNR.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("checkpoint", help="semcom-vqa | semcom-t2i | semcom-asr, or a .safetensors path")
    e.add_argument("--snr-db", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    e.add_argument("--n", type=int, default=300, help="examples, spread over the split")
    e.add_argument("--split", default="val")
    e.add_argument("--channel", choices=["rayleigh", "awgn"], default="rayleigh")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--data", default="data/tiny")
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(func=_cmd_eval)
