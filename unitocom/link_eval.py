"""`unitocom evaluate-link`: reconstruction quality versus SNR over AWGN and Rayleigh for the learned schemes
(sigma-GenIB, GenIB, VAE tokenizers with their coding-modulation) and the traditional one, on a held-out split.

Every scheme goes through the same numpy channel (`link.channel.FadingChannel`, one seed per item and SNR) and
the same receiver code as the services: the learned ones through `schemes.learned` (batched), the traditional
one through `pipeline.run` (the services' path, in process). Metrics:
- image: PSNR in dB against the input at the preset size, and SSIM (`metrics.scores.ssim`, the `ssim` column); a
  JPEG the channel broke is scored against a mid-grey image (what a receiver without the picture would show), so
  the cliff shows.
- audio: log-mel distance in dB (RMS over the clip's log-mel spectrogram, floored 80 dB below its peak) between
  the input and what came back; a broken AMR-WB stream is scored as silence. Lower is better.
Channel uses (complex symbols per item) are reported for each scheme: the learned ones send far fewer.

`unitocom variance-collapse` prints and plots the variance-collapse diagnostic of the latent space: per dimension
the mean posterior variance E_x[sigma^2] and the activity Var_x(mu), the active-unit count (Var_x(mu) > 0.01,
Burda et al. 2016), and how many units' variance collapsed to ~0 (< 1e-3) or to the prior, for the VAE against
sigma-GenIB and GenIB checkpoints.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from unitocom.data.layouts import require_data
from unitocom.errors import CheckpointMissing, UserError
from unitocom.link.snr import snr_points_arg
from unitocom.metrics.scores import logmel_distance_db
from unitocom.models.objectives import OBJECTIVES, SCHEME_OBJECTIVE

# --schemes: a learned scheme's name (SCHEME_OBJECTIVE) or an objective's name (sigma-genib, genib, vae)
LEARNED = {**{o: o for o in OBJECTIVES}, **SCHEME_OBJECTIVE}
ACTIVE_THRESHOLD = 0.01
ZERO_VAR = 1e-3


def _checkpoint(modality: str, objective: str, tokens: int | None, cfg) -> str:
    if modality == "text":
        return f"text-{objective}"
    s = tokens or (cfg.preset.image_tokens if modality == "image" else cfg.preset.tokenizer.audio_tokens)
    return f"{modality}-{objective}-s{s}"


def require_checkpoints(names: list[str]) -> None:
    """CheckpointMissing naming every one of `names` that is not installed, before any work starts."""
    from unitocom.schemes.learned import checkpoint_dir
    d = checkpoint_dir()
    missing = [n for n in dict.fromkeys(names) if not (d / f"{n}.safetensors").is_file()]
    if missing:
        what = f"checkpoint {missing[0]} is" if len(missing) == 1 else f"checkpoints {', '.join(missing)} are"
        raise CheckpointMissing(f"{what} not installed in {d} (train with `unitocom train tokenizer ...`, or "
                                f"every checkpoint with `unitocom train all`)")


# --- items ------------------------------------------------------------------------------------------------------

def load_items(modality: str, data_dir: Path, split: str, count: int, cfg) -> list:
    """image: uint8 [S, S, 3] each; audio: (float32 wave, rate) each."""
    from unitocom.train import data as D
    if modality == "image":
        imgs = D.load_images(data_dir, split, cfg.preset.image_size_px, limit=count)
        return list(imgs.permute(0, 2, 3, 1).numpy())
    files = D.speech_files(data_dir, split)[:count]
    return [(D.read_wave(f, cfg.preset.audio_rate_hz).numpy(), cfg.preset.audio_rate_hz) for f in files]


def _channel_out(z: np.ndarray, channel: str, snr_db: float, seed) -> tuple:
    from unitocom.link.channel import ChannelSpec, FadingChannel
    out = FadingChannel(ChannelSpec(model=channel), snr_db, seed)(z)
    return out.y, out.h_est, out.noise_var, out.erased


# --- learned schemes --------------------------------------------------------------------------------------------

@torch.no_grad()
def eval_learned_images(name: str, images: list, channel: str, snr_db: float, seed: int) -> list[dict]:
    from unitocom.codecs import psnr_db
    from unitocom.schemes import learned
    m = learned.model(name)
    from unitocom.models.token_link import token_cosine
    m = learned.model(name)
    batch = np.stack(images)
    mu, _ = m.tokenize(torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0)
    # T(mu) as learned.images_to_symbols does it, from the mu kept for cos(t_hat, t) (one tokenizer pass)
    z = m.modulate(mu, torch.full((len(images),), float(snr_db))).numpy().astype(np.complex64)
    zs, qs = [], []
    for i in range(len(images)):
        y, h, n0, erased = _channel_out(z[i], channel, snr_db, (seed, i))
        zh, q = learned.equalize(y, h, n0, erased)
        zs.append(zh)
        qs.append(q)
    t_hat = learned.symbols_to_tokens(m, np.stack(zs), np.stack(qs))
    cos = token_cosine(mu, t_hat).tolist()  # one token space: is R's output the token that was sent?
    out = learned.tokens_to_images(m, t_hat)
    return [{"metric": psnr_db(images[i], out[i]), "decoded": True, "channel_uses": z.shape[1], "image": out[i],
             "token_cos": cos[i]} for i in range(len(images))]


@torch.no_grad()
def eval_learned_audio(name: str, clips: list, channel: str, snr_db: float, seed: int, fe) -> list[dict]:
    from unitocom.schemes import learned
    m = learned.model(name)
    rows = []
    for i, (wave, rate) in enumerate(clips):
        ref, _ = learned.fit_audio(wave, rate, m.spec.audio_rate_hz)
        chunks, samples = learned.audio_chunks(m, ref)
        mu, _ = m.tokenize(chunks)
        z = m.modulate(mu, torch.full((mu.shape[0],), float(snr_db))).numpy().astype(np.complex64).ravel()
        y, h, n0, erased = _channel_out(z, channel, snr_db, (seed, i))
        zh, q = learned.equalize(y, h, n0, erased)
        c = mu.shape[0]
        tokens = learned.symbols_to_tokens(m, zh.reshape(c, -1), q.reshape(c, -1))
        got = learned.chunks_to_wave(m, m.detokenize(tokens), samples)
        from unitocom.models.token_link import token_cosine
        rows.append({"metric": logmel_distance_db(ref, got, fe), "decoded": True, "channel_uses": len(z),
                     "token_cos": float(token_cosine(mu.reshape(1, -1), tokens.reshape(1, -1))[0])})
    return rows


# --- traditional ------------------------------------------------------------------------------------------------

def eval_traditional(modality: str, items: list, channel: str, snr_db: float, seed: int, cfg, fe=None) -> list[dict]:
    import soundfile as sf
    from PIL import Image

    from unitocom import client, pipeline
    from unitocom.codecs import psnr_db
    from unitocom.stages.request import from_wire
    rows = []
    for i, item in enumerate(items):
        if modality == "image":
            req = client.build_request(image=client.png_bytes(item), scheme="traditional", snr_db=snr_db,
                                       channel=channel, seed=seed * 100003 + i)
        else:
            wave, rate = item
            buf = io.BytesIO()
            sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
            req = client.build_request(audio=buf.getvalue(), scheme="traditional", snr_db=snr_db, channel=channel,
                                       seed=seed * 100003 + i)
        res = pipeline.run(from_wire(req), cfg)
        out = res.outputs[0]
        extra = {}
        if modality == "image":
            if out.decoded and out.image_png:
                got = np.asarray(Image.open(io.BytesIO(out.image_png)).convert("RGB"))
            else:  # a broken JPEG: the receiver has nothing better than mid-grey
                got = np.full_like(item, 128)
            metric, extra = psnr_db(item, got), {"image": got}
        else:
            got = None
            if out.decoded and out.audio_wav:
                from unitocom.data.loaders import resample
                w, r = sf.read(io.BytesIO(out.audio_wav), dtype="float32")
                got = resample(w, r, item[1]) if r != item[1] else w
            metric = logmel_distance_db(item[0], got, fe)
        rows.append({"metric": metric, "decoded": bool(out.decoded), "channel_uses": int(res.channel_uses), **extra})
    return rows


# --- does a reconstruction keep the scene? ----------------------------------------------------------------------

class SceneScore:
    """The scene checker (checkpoints/scene-checker.safetensors, trained on clean scenes) on reconstructions:
    micro F1 of the (colour, shape) pairs it recognises against the scene's truth, and its object-count accuracy.
    PSNR rewards blurry blobs in the right place; this asks whether the shapes and colours survived.
    None where the checker or the split's scene files are missing (real CLEVR at another size, say)."""

    def __init__(self, data_dir: Path, split: str, count: int):
        from unitocom.data.layouts import clevr_root, read_json
        from unitocom.metrics.scene_checker import load_checker, scene_labels
        from unitocom.schemes.learned import checkpoint_dir
        scenes = read_json(clevr_root(data_dir) / "scenes" / f"CLEVR_{split}_scenes.json")["scenes"]
        labels = [scene_labels(sc) for sc in sorted(scenes, key=lambda sc: sc["image_index"])[:count]]
        self.pairs = torch.stack([y for y, _ in labels])
        self.counts = torch.tensor([c for _, c in labels])
        self.checker = load_checker(checkpoint_dir() / "scene-checker.safetensors").eval()

    @classmethod
    def maybe(cls, data_dir: Path, split: str, count: int, log=print) -> "SceneScore | None":
        try:
            return cls(data_dir, split, count)
        except (OSError, ValueError, KeyError) as e:
            log(f"scene checker unavailable ({e}): no pair_f1 / count_acc columns")
            return None

    def __call__(self, images: list[np.ndarray]) -> dict[str, float]:
        from unitocom.metrics.scene_checker import evaluate_checker
        n = len(images)
        m = evaluate_checker(self.checker, torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2),
                             self.pairs[:n], self.counts[:n])
        return {"pair_f1": m["pair_f1"], "count_acc": m["count_accuracy"]}


# --- the sweep --------------------------------------------------------------------------------------------------

def run(modality: str, schemes: list[str], channels: list[str], snrs: list[float], data_dir: Path, split: str,
        count: int, traditional_count: int, tokens: list[int | None], seed: int, cfg, log=print) -> list[dict]:
    from unitocom.metrics.scores import ssim
    from unitocom.models.audio_tokenizer import MelFrontend
    t = cfg.preset.tokenizer
    fe = MelFrontend(cfg.preset.audio_rate_hz, t.audio_n_fft, t.audio_hop, t.audio_mels) if modality == "audio" else None
    items = load_items(modality, data_dir, split, max(count, traditional_count), cfg)
    metric = "psnr_db" if modality == "image" else "mel_distance_db"
    scene = SceneScore.maybe(data_dir, split, len(items), log) if modality == "image" else None
    if scene is not None:
        ref = scene(items)
        log(f"scene checker on the inputs themselves: pair F1 {ref['pair_f1']:.3f}, count {ref['count_acc']:.3f}")
    rows = []
    for scheme in schemes:
        variants = [None] if scheme == "traditional" else tokens
        for tok in variants:
            name = "traditional" if scheme == "traditional" else _checkpoint(modality, LEARNED[scheme], tok, cfg)
            use = items[: traditional_count if scheme == "traditional" else count]
            for ch in channels:
                for snr in snrs:
                    t0 = time.perf_counter()
                    if scheme == "traditional":
                        r = eval_traditional(modality, use, ch, snr, seed, cfg, fe)
                    elif modality == "image":
                        r = eval_learned_images(name, use, ch, snr, seed)
                    else:
                        r = eval_learned_audio(name, use, ch, snr, seed, fe)
                    vals = np.array([x["metric"] for x in r], np.float64)
                    row = {"modality": modality, "scheme": LEARNED.get(scheme, scheme),
                           "checkpoint": name, "tokens": "" if scheme == "traditional" else int(name.rsplit("-s", 1)[1]),
                           "channel": ch, "snr_db": snr, "items": len(r), "metric": metric,
                           "mean": float(vals.mean()), "std": float(vals.std()),
                           "decoded_frac": float(np.mean([x["decoded"] for x in r])),
                           "channel_uses": float(np.mean([x["channel_uses"] for x in r])),
                           "seconds": round(time.perf_counter() - t0, 2)}
                    # cos(t_hat, t) where the scheme has tokens; NaN keeps the CSV's columns the same for all rows
                    row["token_cos"] = float(np.mean([x["token_cos"] for x in r])) if "token_cos" in r[0] else math.nan
                    if modality == "image":
                        row["ssim"] = float(np.mean([ssim(a, x["image"]) for a, x in zip(use, r)]))
                    if scene is not None:
                        row.update(scene([x["image"] for x in r]))
                    rows.append(row)
                    log(f"{row['checkpoint']:24s} {ch:8s} {snr:6.1f} dB  {metric} {row['mean']:7.3f} "
                        f"(+-{row['std']:.2f}, n={len(r)})  decoded {row['decoded_frac']:.2f}  "
                        f"uses {row['channel_uses']:.0f}"
                        + (f"  cos(t_hat, t) {row['token_cos']:.3f}" if not math.isnan(row["token_cos"]) else "")
                        + (f"  SSIM {row['ssim']:.3f}" if "ssim" in row else "")
                        + (f"  pair F1 {row['pair_f1']:.3f}  count {row['count_acc']:.3f}" if scene else ""))
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot(rows: list[dict], path: Path, title: str = "") -> None:
    """One column per channel; a second row with the scene checker's pair F1 where the rows carry it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    channels = sorted({r["channel"] for r in rows}, key=["awgn", "rayleigh", "rician", "noiseless"].index)
    metric = rows[0]["metric"]
    panels = [("mean", {"psnr_db": "PSNR (dB)", "mel_distance_db": "log-mel distance (dB), lower is better"}[metric])]
    if "pair_f1" in rows[0]:
        panels.append(("pair_f1", "scene checker (colour, shape) pair F1"))
    fig, axes = plt.subplots(len(panels), len(channels), figsize=(5.5 * len(channels), 4.2 * len(panels)),
                             squeeze=False)
    for row_axes, (key_y, ylabel) in zip(axes, panels):
        for ax, ch in zip(row_axes, channels):
            for key in dict.fromkeys((r["checkpoint"], r["scheme"]) for r in rows if r["channel"] == ch):
                pts = sorted((r["snr_db"], r[key_y], r["channel_uses"]) for r in rows
                             if r["channel"] == ch and (r["checkpoint"], r["scheme"]) == key)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        ls="--" if key[1] == "traditional" else "-", label=f"{key[0]} ({pts[0][2]:.0f} uses)")
            ax.set_title(f"{ch.upper()}")
            ax.set_xlabel("SNR (dB)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    note = ("failed JPEG decodes scored against mid-grey" if metric == "psnr_db"
            else "failed AMR-WB decodes scored as silence")
    fig.suptitle(f"{title}  ({note})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- variance collapse ------------------------------------------------------------------------------------------

@torch.no_grad()
def latent_statistics(name: str, batch: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Per-dimension E_x[sigma^2] and Var_x(mu) over a batch of inputs, and the active-unit count."""
    from unitocom.schemes import learned
    m = learned.model(name)
    mu, logvar = m.tokenize(batch, mask)
    mu = mu.flatten(1)  # [B, S*d]: every token dimension is a latent unit
    if logvar is None:  # sigma-GenIB (sigma ~ N(0, C_sigma)) and GenIB (sigma^2 = C_sigma): E[sigma^2] = C_sigma
        post_var = torch.full((mu.shape[1],), float(m.spec.c_sigma))
    else:
        post_var = logvar.exp().flatten(1).mean(0)
    activity = mu.var(0)
    return {"name": name, "objective": m.spec.objective, "units": int(mu.shape[1]),
            "active_units": int((activity > ACTIVE_THRESHOLD).sum()),
            "posterior_var": post_var.numpy(), "activity": activity.numpy(),
            # the two ways a learned variance degenerates: to ~0 (the encoder turns deterministic, LatentLM's
            # "variance collapse") or to the prior (the unit carries nothing, "posterior collapse")
            "zero_var_units": int((post_var < ZERO_VAR).sum()),
            "prior_units": int(((post_var > 0.9) & (activity < ACTIVE_THRESHOLD)).sum())}


def plot_variance(stats: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, s in enumerate(stats):
        order = np.argsort(-s["activity"])
        ls = ["-", "--", ":", "-."][i % 4]  # fixed variances coincide: keep each line visible
        axes[0].semilogy(s["posterior_var"][order], ls=ls, label=f"{s['name']}", lw=1.2)
        axes[1].semilogy(s["activity"][order], ls=ls, label=f"{s['name']}: {s['active_units']}/{s['units']} active",
                         lw=1.2)
    axes[0].set_title("posterior variance E_x[sigma^2] per latent unit")
    axes[1].set_title("activity Var_x(mu) per latent unit")
    axes[1].axhline(ACTIVE_THRESHOLD, color="k", ls=":", lw=0.8)
    for ax in axes:
        ax.set_xlabel("latent unit (token x dimension), sorted by activity")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- CLI --------------------------------------------------------------------------------------------------------

def _evaluate(args) -> int:
    from unitocom import config
    cfg = config.load(args.preset)
    torch.set_num_threads(args.threads)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    bad = [s for s in schemes if s != "traditional" and s not in LEARNED]
    if bad:
        print(f"error: unknown scheme(s) {bad}; expected {sorted(LEARNED) + ['traditional']}", file=sys.stderr)
        return 2
    try:
        tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else [None]
    except ValueError:
        raise UserError(f"--tokens must be a comma list of token counts, got {args.tokens!r}") from None
    channels = [c.strip() for c in args.channels.split(",")]
    data_dir = require_data(args.data or f"data/{args.preset}")
    require_checkpoints([_checkpoint(args.modality, LEARNED[s], tok, cfg) for s in schemes if s != "traditional"
                         for tok in tokens])
    out = Path(args.out or f"out/eval-{args.modality}")
    rows = run(args.modality, schemes, channels, args.snr_db, data_dir, args.split, args.count, args.traditional_count,
               tokens, args.seed, cfg)
    write_csv(rows, out / f"{args.modality}.csv")
    plot(rows, out / f"{args.modality}.png",
         f"{args.modality} reconstruction, {args.split} split ({cfg.preset.name} preset)")
    print(f"wrote {out / f'{args.modality}.csv'} and {out / f'{args.modality}.png'}")
    return 0


def _variance(args) -> int:
    from unitocom import config
    from unitocom.train import data as D
    cfg = config.load(args.preset)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.checkpoints.split(",")]
    not_continuous = [n for n in names if n.split("-")[0] not in ("image", "audio")]
    if not_continuous:
        raise UserError(f"the diagnostic is for continuous tokens (image, audio), not {', '.join(not_continuous)}")
    require_checkpoints(names)
    data_dir = require_data(args.data or f"data/{args.preset}")
    stats = []
    for name in names:
        modality = name.split("-")[0]
        if modality == "image":
            batch, mask = D.ImageBatches(data_dir, args.split, cfg.preset.image_size_px, args.count).fixed(args.count)["x"], None
        else:
            from unitocom.schemes import learned
            m = learned.model(name)
            from unitocom.models.audio_tokenizer import MelFrontend
            fe = MelFrontend(m.spec.audio_rate_hz, m.spec.n_fft, m.spec.hop, m.spec.mels)
            batch, mask = D.AudioBatches(data_dir, args.split, fe, m.spec.chunk_frames, args.count, m.spec.db_mean,
                                         m.spec.db_std).fixed(args.count)["x"], None
        s = latent_statistics(name, batch, mask)
        stats.append(s)
        pv = s["posterior_var"]
        print(f"{name:24s} {s['objective']:11s} active {s['active_units']:4d}/{s['units']}  "
              f"E sigma^2 < {ZERO_VAR:g}: {s['zero_var_units']:4d}  at the prior: {s['prior_units']:4d}  "
              f"E sigma^2 median {np.median(pv):.3g} [{pv.min():.3g}, {pv.max():.3g}]  "
              f"Var(mu) median {np.median(s['activity']):.3g}  latent SNR E[Var(mu)]/E[sigma^2] "
              f"{10 * np.log10(s['activity'].mean() / pv.mean()):.1f} dB")
    out = Path(args.out or "out/variance-collapse.png")
    plot_variance(stats, out)
    csv_path = out.with_suffix(".csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["checkpoint", "objective", "unit", "posterior_var", "activity_var_mu", "active"])
        for s in stats:
            for i, (pv, a) in enumerate(zip(s["posterior_var"], s["activity"])):
                w.writerow([s["name"], s["objective"], i, f"{pv:.6g}", f"{a:.6g}", int(a > ACTIVE_THRESHOLD)])
    print(f"wrote {out} and {csv_path}")
    return 0


def add_subparser(subparsers) -> None:
    from unitocom.config import PRESETS
    p = subparsers.add_parser(
        "evaluate-link", help="reconstruction quality vs SNR for the learned and traditional schemes (CSV + PNG)",
        description=__doc__.split("\n\n")[0] + " Writes <out>/<modality>.csv and .png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--modality", choices=["image", "audio"], default="image")
    p.add_argument("--schemes", default="sigma-genib,vae,traditional",
                   help="comma list of sigma-genib (= unitocom), genib, vae, traditional")
    p.add_argument("--channels", default="awgn,rayleigh", help="comma list of awgn, rayleigh, rician, noiseless")
    p.add_argument("--snr-db", type=snr_points_arg, default="-10:25:5", help="A:B:STEP or A,B,C in dB (write --snr-db=-10:25:5)")
    p.add_argument("--tokens", default=None, help="comma list of token counts for the learned schemes (e.g. 16,32,64,128)")
    p.add_argument("--split", default="test")
    p.add_argument("--count", type=int, default=200, help="items per point for the learned schemes")
    p.add_argument("--traditional-count", type=int, default=40, help="items per point for the traditional scheme")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--data", default=None, help="data directory (default data/<preset>)")
    p.add_argument("--out", default=None, help="output directory (default out/eval-<modality>)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_evaluate)

    v = subparsers.add_parser(
        "variance-collapse", help="per-dimension posterior variance and active units: VAE vs sigma-GenIB",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--checkpoints", default="image-vae-s32,image-genib-s32,image-sigma-genib-s32")
    v.add_argument("--split", default="val")
    v.add_argument("--count", type=int, default=500)
    v.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    v.add_argument("--data", default=None)
    v.add_argument("--out", default=None, help="PNG path (default out/variance-collapse.png); a CSV goes beside it")
    v.add_argument("--threads", type=int, default=2)
    v.set_defaults(func=_variance)
