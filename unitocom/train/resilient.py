"""`unitocom train resilient`: a link's resilient companion (issue 16), trained on top of the frozen link.

F_alpha, the posterior, T and R are copied and frozen, so the tokens on the air are exactly the base link's
(the MLLM trained on them reads them unchanged, and a transmitter can use either checkpoint). What trains:
- the de-tokenizer F_beta^-1 and a learned mask token, on received tokens with some replaced by the mask
  (`resilience.training_mask`: none, i.i.d. tokens, whole packets, or a budget keeping the most important);
- the importance head, on the leave-one-out distortion: for a few images per step, how much worse the picture
  gets when each token alone is masked (its rank is what the budget uses).

Image, audio and text links (an audio link's x is a standardised log-mel chunk, a text link's x the BPE ids of a
question, caption or transcript with its padding mask; the budget is offered for images only, but the head trains
alike). A text de-tokenizer trained this way reads a question with lost words as a masked language model would:
from the words around them. At the end: the quality on the validation split over Rayleigh at `eval_snr_db`
(images: PSNR; audio: log-mel SNR, the chunk's variance over the error's, in dB; text: the fraction of ids decoded
right, in %) versus the fraction of tokens lost (i.i.d.) and versus a budget, for the base link (lost tokens
read as R makes them from the zeros that arrive), the resilient one, and the budget's selection by importance
against a random selection; in the manifest entry and `<run_dir>/summary.json`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from unitocom.models import resilience as rz
from unitocom.models import token_link
from unitocom.models.channel_torch import SNR_DB_CLAMP, TorchChannelSpec, transmit
from unitocom.models.token_link import TokenLink
from unitocom.train import scaffold

FROZEN = ("tokenizer", "posterior", "modulator", "demodulator")


@dataclass
class ResilientOptions:
    base: str = "image-sigma-genib-s32"  # the frozen link, a name in the checkpoint directory
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    loo_images: int = 8  # images per step whose leave-one-out distortion trains the importance head
    snr_db: tuple[float, float] = (-10.0, 25.0)
    channel: str = "mixed"
    seed: int = 0
    data_dir: str = "data/tiny"
    run_dir: str | None = None
    out: str | None = None  # default: <checkpoints>/<base>-resilient.safetensors
    eval_snr_db: float = 10.0
    eval_count: int = 512
    text_random_frac: float = 0.25  # text links: share of random id strings in a batch (`TextBatches`)
    threads: int = 1
    progress: bool = True

    def command(self) -> str:
        a, b = self.snr_db
        return (f"unitocom train resilient --base {self.base} --steps {self.steps} --batch-size {self.batch_size} "
                f"--lr {self.lr:g} --snr-db={a:g}:{b:g} --channel {self.channel} --seed {self.seed}")


def resilient_name(base: str) -> str:
    return f"{base}-resilient"


def from_base(base: TokenLink) -> TokenLink:
    """A resilient TokenLink holding `base`'s weights, its F_alpha, posterior, T and R frozen."""
    model = TokenLink(dataclasses.replace(base.spec, resilient=True))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not (k == "mask_token" or k.startswith("importance_head.")) for k in missing):
        raise ValueError(f"base link does not fit: missing {missing}, unexpected {unexpected}")
    for name in FROZEN:
        getattr(model, name).requires_grad_(False)
    return model


def receive(m: TokenLink, mu: torch.Tensor, snr_db: torch.Tensor, channel: TorchChannelSpec,
            lost: torch.Tensor, gen: torch.Generator, mask: torch.Tensor | None = None) -> torch.Tensor:
    """T, the channel, and R as the base station runs them when tokens are lost: their symbols arrive as zeros
    at the bottom of the SINR range (what the service's receiver sees for a lost packet), then `fill_lost`.
    mu [B, S, d], lost [B, S] (text: mask [B, S], True on real tokens, power P over those) -> tokens [B, S, d]."""
    z = m.modulate(mu, snr_db, mask)
    z_hat, sinr = transmit(z, snr_db, channel, gen)
    gone = lost.repeat_interleave(m.spec.uses_per_token, 1)
    z_hat = torch.where(gone, torch.zeros_like(z_hat), z_hat)
    sinr = torch.where(gone, torch.full_like(sinr, SNR_DB_CLAMP[0]), sinr)
    return m.fill_lost(m.demodulate(z_hat, sinr), lost)


def distortion(m: TokenLink, x: torch.Tensor, t_hat: torch.Tensor, mask: torch.Tensor | None = None
               ) -> torch.Tensor:
    """What the de-tokenizer is trained to lower, per example [B]: the MSE of the picture or log-mel chunk, or
    for text the mean cross-entropy (nats) over the real ids."""
    out = m.detokenize(t_hat, mask)
    if mask is None:
        return F.mse_loss(out, x, reduction="none").flatten(1).mean(1)
    ce = F.cross_entropy(out.transpose(1, 2), x, reduction="none")
    return (ce * mask).sum(1) / mask.sum(1).clamp_min(1)


def leave_one_out(m: TokenLink, x: torch.Tensor, t_hat: torch.Tensor, mask: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """How much `distortion` grows when each token alone is replaced by the mask token: x [B, ...], received
    tokens [B, S, d] -> [B, S] (text padding: 0)."""
    b, s, _ = t_hat.shape
    full = distortion(m, x, t_hat, mask)
    eye = torch.eye(s, dtype=torch.bool)
    masked = m.fill_lost(t_hat[:, None].expand(b, s, s, -1).reshape(b * s, s, -1), eye.repeat(b, 1))
    rep = None if mask is None else mask.repeat_interleave(s, 0)
    per = distortion(m, x.repeat_interleave(s, 0), masked, rep).view(b, s) - full[:, None]
    return per if mask is None else per * mask


def psnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per image [B], pixels in [0, 1] (x_hat clamped as the service's PNG is)."""
    mse = ((x_hat.clamp(0, 1) - x) ** 2).mean((1, 2, 3)).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


def mel_snr_db(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per standardised log-mel chunk [B, frames, mels]: its variance over the error's, in dB."""
    err = ((x_hat - x) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(x.flatten(1).var(1).clamp_min(1e-10) / err)


def id_accuracy_pct(ids: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per text [B]: the share of its real ids that the de-tokenizer's logits [B, L, V] decode right, in %."""
    right = (logits.argmax(-1) == ids) & mask
    return 100.0 * right.sum(1) / mask.sum(1).clamp_min(1)


def quality(m: TokenLink, x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per example [B], higher is better: PSNR (dB), log-mel SNR (dB) or ids right (%)."""
    if m.spec.modality == "text":
        return id_accuracy_pct(x, x_hat, mask)
    return psnr_db(x, x_hat) if m.spec.modality == "image" else mel_snr_db(x, x_hat)


QUALITY = {"image": "psnr_db", "audio": "mel_snr_db", "text": "id_accuracy_pct"}


def batches(spec, data_dir: str, count: int, text_random_frac: float = 0.25):
    """(training batches, a fixed validation batch {"x"[, "mask"]}) for the link's modality, as it was trained."""
    from unitocom.train.data import AudioBatches, ImageBatches
    if spec.modality == "image":
        train = ImageBatches(data_dir, "train", spec.image_size_px)
        return train, ImageBatches(data_dir, "val", spec.image_size_px, limit=count).fixed(count)
    if spec.modality == "text":
        from unitocom.models.text_tokenizer import load_bpe
        from unitocom.schemes.learned import checkpoint_dir
        from unitocom.train.data import TextBatches, text_corpus
        bpe = load_bpe(checkpoint_dir() / spec.bpe)
        train = TextBatches(text_corpus(data_dir, "train"), bpe, spec.tokens, random_frac=text_random_frac)
        return train, TextBatches(text_corpus(data_dir, "val"), bpe, spec.tokens,
                                  random_frac=text_random_frac).fixed(count)
    from unitocom.models.audio_tokenizer import MelFrontend
    fe = MelFrontend(spec.audio_rate_hz, spec.n_fft, spec.hop, spec.mels)
    stats = dict(db_mean=spec.db_mean, db_std=spec.db_std)  # the base link's standardisation
    train = AudioBatches(data_dir, "train", fe, spec.chunk_frames, **stats)
    return train, AudioBatches(data_dir, "val", fe, spec.chunk_frames, limit=count, **stats).fixed(count)


def train(opts: ResilientOptions, log=print) -> dict:
    from unitocom.data.make import dataset_checksum
    from unitocom.schemes.learned import checkpoint_dir
    from unitocom.train.loop import update_manifest
    from unitocom.train.provenance import file_sha256

    torch.set_num_threads(opts.threads)
    base_path = checkpoint_dir() / f"{opts.base}.safetensors"
    if not base_path.exists():
        raise FileNotFoundError(f"base link {base_path} is missing (train it with `unitocom train tokenizer`)")
    base = token_link.load(base_path)
    name = resilient_name(opts.base)
    out = Path(opts.out or checkpoint_dir() / f"{name}.safetensors")
    run_dir = Path(opts.run_dir or f"runs/{name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    train_data, val = batches(base.spec, opts.data_dir, opts.eval_count, opts.text_random_frac)
    model = from_base(base)
    model.eval()  # frozen parts keep their inference behaviour; the trained ones have no dropout or batch norm
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=opts.lr, weight_decay=1e-4, betas=(0.9, 0.99))
    state_path = run_dir / "state.safetensors"
    step = scaffold.load_state(state_path, model, opt, {"rng": gen}) if state_path.exists() else 0
    if step:
        log(f"resumed {state_path} at step {step}")
    logf = scaffold.JsonlLog(run_dir / "log.jsonl", resume_step=step)
    channel = TorchChannelSpec(model=opts.channel)
    a, b = opts.snr_db
    s = model.spec.tokens
    log(f"{name}: {sum(p.numel() for p in trainable) / 1e6:.3f} M trainable parameters of "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f} M; {opts.steps} steps of {opts.batch_size}")
    bar = scaffold.progress(opts.steps, initial=step, desc=name, enabled=opts.progress)
    t0 = time.perf_counter()
    start = step
    while step < opts.steps:
        scaffold.set_lr(opt, scaffold.warmup_cosine(step, opts.steps, opts.lr, opts.warmup, floor=0.1))
        batch = train_data.sample(opts.batch_size, gen)
        x, mask = batch["x"], batch.get("mask")  # mask: text only, True on real ids
        n, s = x.shape[0], x.shape[1] if mask is not None else model.spec.tokens
        snr = a + (b - a) * torch.rand(n, generator=gen)
        with torch.no_grad():
            feats = model.features(x, mask)
            mu, _ = model.posterior(feats)
        scores = model.importance_head(feats)
        lost = rz.training_mask(n, s, gen, scores)
        if mask is not None:
            lost &= mask
        t_hat = receive(model, mu, snr, channel, lost, gen, mask)
        rec = distortion(model, x, t_hat, mask).mean()
        k = opts.loo_images
        mk = None if mask is None else mask[:k]
        with torch.no_grad():
            clean = receive(model, mu[:k], snr[:k], channel, torch.zeros(k, s, dtype=torch.bool), gen, mk)
            target = rz.standardize_rows(torch.log(leave_one_out(model, x[:k], clean, mk).clamp_min(0) + 1e-5))
        imp = F.mse_loss(rz.standardize_rows(scores[:k]), target)
        loss = rec + 0.01 * imp  # the head's loss is on another scale; it shares no weights with the de-tokenizer
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % 10 == 0 or step == opts.steps:
            rec_d = {"step": step, "lr": opt.param_groups[0]["lr"], "distortion": round(rec.item(), 6),
                     "importance_loss": round(imp.item(), 4), "lost_fraction": round(float(lost.float().mean()), 3),
                     "wall_s": round(time.perf_counter() - t0, 1)}
            logf.write(rec_d)
            bar.set_postfix(dist=f"{rec_d['distortion']:.4g}", imp=f"{rec_d['importance_loss']:.3f}")
        if step % 250 == 0 or step == opts.steps:
            scaffold.save_state(state_path, model, opt, step, {"rng": gen})
    bar.close()
    logf.close()
    wall = time.perf_counter() - t0
    figures = evaluate(base, model, val, opts.eval_snr_db, seed=1234)
    token_link.save(model, out, half=True)
    entry = {"name": name, "file": out.name, "modality": model.spec.modality, "objective": model.spec.objective,
             "tokens": s, "channel_uses": model.spec.channel_uses, "resilient_of": opts.base,
             "base_sha256": file_sha256(base_path), "command": opts.command(), "seed": opts.seed,
             "preset": model.spec.preset,
             "dataset": {"dir": opts.data_dir, "checksum": dataset_checksum(opts.data_dir, use_manifest=True)},
             "train": {**{k: v for k, v in dataclasses.asdict(opts).items() if k in (
                 "steps", "batch_size", "lr", "warmup", "loo_images", "snr_db", "channel")},
                 **({"text_random_frac": opts.text_random_frac} if model.spec.modality == "text" else {}),
                 "patterns": dict(rz.PATTERNS), "max_loss": rz.MAX_LOSS, "packet_sizes": list(rz.PACKET_SIZES),
                 "frozen": list(FROZEN), "wall_s_this_run": round(wall, 1), "steps_this_run": step - start},
             "config": dataclasses.asdict(model.spec),
             "validation": {"split": "val", "count": int(val["x"].shape[0]), **figures},
             "sha256": file_sha256(out), "bytes": out.stat().st_size}
    (run_dir / "summary.json").write_text(json.dumps(entry, indent=2) + "\n")
    update_manifest(out.parent / "manifest.json", entry)
    log(f"wrote {out} after {wall / 60:.1f} min")
    log(json.dumps(figures, indent=1))
    return entry


@torch.no_grad()
def evaluate(base: TokenLink, model: TokenLink, val: dict, snr_db: float, seed: int = 1234,
             rates=(0.0, 0.125, 0.25, 0.375, 0.5), budgets=(0.25, 0.5, 0.75, 1.0)) -> dict:
    """Mean `quality` (PSNR, log-mel SNR or ids right) over val {"x"[, "mask"]} through Rayleigh at snr_db:
    versus the i.i.d. token loss rate, base link and resilient link; versus the budget (fraction of tokens
    sent), importance-selected, random and the first tokens."""
    channel = TorchChannelSpec(model="rayleigh")
    x, mask = val["x"], val.get("mask")
    n = x.shape[0]
    s = x.shape[1] if mask is not None else model.spec.tokens
    real = torch.ones(n, s, dtype=torch.bool) if mask is None else mask
    snr = torch.full((n,), float(snr_db))
    mu, _ = model.tokenize(x, mask)

    def score(m, lost, draw):
        t = receive(m, mu, snr, channel, lost & real, torch.Generator().manual_seed(draw), mask)
        return round(float(quality(m, x, m.detokenize(t, mask), mask).mean()), 3)

    out = {"eval_snr_db": snr_db, "channel": "rayleigh", "psnr_vs_token_loss": {}, "psnr_vs_budget": {},
           "quality": QUALITY[model.spec.modality]}
    for r in rates:
        lost = rz.lost_iid(n, s, torch.full((n,), r), torch.Generator().manual_seed(seed + int(r * 1000)))
        out["psnr_vs_token_loss"][f"{r:g}"] = {"base": score(base, lost, seed), "resilient": score(model, lost, seed)}
    scores = model.importance_head(model.features(x, mask)).masked_fill(~real, -torch.inf)
    length = real.sum(1)
    for f in budgets:
        k = torch.clamp(torch.ceil(f * length), min=1).long()
        by_imp = rz.keep_top(scores, k)
        by_rand = rz.keep_top(torch.rand(n, s, generator=torch.Generator().manual_seed(seed)).masked_fill(
            ~real, -torch.inf), k)
        first = rz.keep_top(-torch.arange(s).float().expand(n, s), k)
        out["psnr_vs_budget"][f"{f:g}"] = {"importance": score(model, by_imp, seed),
                                           "random": score(model, by_rand, seed),
                                           "prefix": score(model, first, seed)}
    return out


def add_train_command(sub) -> None:
    import argparse
    from unitocom.link.snr import snr_interval_arg
    d = ResilientOptions()
    p = sub.add_parser(
        "resilient", help="a link's resilient companion: mask token, dropout-trained de-tokenizer, importance head",
        description="Train the resilient companion of an image, audio or text link (issue 16): the link's F_alpha, T and R are "
                    "copied and frozen (the same tokens on the air), its de-tokenizer and a learned mask token are "
                    "trained on received tokens with random token/packet loss and budgets, and an importance head "
                    "learns which tokens matter (the budget sends those). Writes checkpoints/<base>-resilient."
                    "safetensors and its manifest entry; resumes from <run-dir>/state.safetensors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default=d.base, help="the frozen image, audio or text link (a checkpoint name)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--snr-db", type=snr_interval_arg, default=d.snr_db, metavar="A:B",
                   help="training SNR range in dB (write --snr-db=-10:25)")
    p.add_argument("--channel", choices=["awgn", "rayleigh", "mixed"], default=d.channel)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--data", default=d.data_dir, help="data set (CLEVR layout)")
    p.add_argument("--run-dir", default=None, help="default runs/<base>-resilient")
    p.add_argument("--out", default=None, help="default checkpoints/<base>-resilient.safetensors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    import sys
    from unitocom.data.layouts import require_data
    require_data(args.data)
    opts = ResilientOptions(base=args.base, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            snr_db=tuple(args.snr_db), channel=args.channel, seed=args.seed, data_dir=args.data,
                            run_dir=args.run_dir, out=args.out, progress=not args.quiet)
    try:
        train(opts)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
