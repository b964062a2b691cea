"""Algorithm 1 as a training run: one modality's tokenizer, coding-modulation and de-tokenizer, trained jointly
with the channel in the loop, then exported as a small safetensors checkpoint with a manifest entry.

Per step: a batch; one SNR per example drawn uniformly in dB from [A, B] (`snr_sampling="batch"` draws one per
batch instead); the loss of eq. (12) or (13)-(14) through T, the channel and R; AdamW (matrices decay, vectors
do not) with linear warm-up and cosine decay to 10 % of lr; gradient clipping at 1. Every `val_every` steps:
validation figures at 0, 10, 20 dB AWGN. Every `save_every` steps: a resumable state (weights, AdamW moments,
step, RNG) in `<run_dir>/state.safetensors`. Every `log_every` steps a record in `<run_dir>/log.jsonl` (JSON
lines). At the end: validation over AWGN and Rayleigh, the fp16 checkpoint and its manifest entry (exact
command, config, seed, data checksum, figures). Optimizer, schedule, state file, log and progress bar are the
shared ones of `train.scaffold`.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unitocom import config
from unitocom.errors import UserError
from unitocom.models import token_link
from unitocom.models.channel_torch import TorchChannelSpec
from unitocom.models.token_link import LinkSpec, TokenLink
from unitocom.train import dist, scaffold, validate
from unitocom.train.provenance import file_sha256

CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "checkpoints"
BPE_FILE = "text-bpe.json"


@dataclass
class TrainOptions:
    modality: str
    objective: str
    tokens: int | None = None  # S_v / S_a (text: ignored, S_t is the BPE length)
    snr_db: tuple[float, float] | None = None  # default: the preset's tokenizer.snr_db_range
    channel: str = "awgn"
    steps: int = 2000
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    preset: str = "tiny"
    data_dir: str | None = None  # default data/<preset>
    run_dir: str | None = None  # default runs/<name>
    out: str | None = None  # default checkpoints/<name>.safetensors
    manifest: str | None = None  # default manifest.json next to `out`
    val_every: int = 250
    val_count: int = 256
    save_every: int = 250
    log_every: int = 10
    resume: bool = True
    threads: int = 2
    snr_sampling: str = "example"  # example | batch
    overrides: dict = field(default_factory=dict)  # LinkSpec fields: xi, lam, k_samples, c_sigma, obs_var, ...
    init: str | None = None  # warm start from this checkpoint (name in checkpoints/ or a path)
    warmup: int | None = None  # warm-up steps (default: the preset's)
    progress: bool = True
    # where and how it computes (`config.TrainCompute`): device (cuda: the model and its batches on the GPU, fp32
    # with TF32 matmuls; data stays on the CPU) and DataLoader workers; the MLLM-only fields are not used here
    compute: config.TrainCompute = config.TrainCompute()
    processes: int = 1  # torchrun's world size (set by `train`): the global batch is batch_size x processes

    @property
    def name(self) -> str:
        """The checkpoint's name, which carries the preset but for tiny (`config.preset_checkpoint`)."""
        from unitocom.config import preset_checkpoint
        if self.modality == "text":
            return preset_checkpoint(f"text-{self.objective}", self.preset)
        return preset_checkpoint(f"{self.modality}-{self.objective}-s{self.tokens}", self.preset)

    def command(self) -> str:
        """The one command that reproduces this run."""
        a, b = self.snr_db
        parts = ["unitocom train tokenizer", f"--modality {self.modality}", f"--objective {self.objective}"]
        if self.modality != "text":
            parts.append(f"--tokens {self.tokens}")
        parts += [f"--snr-db={a:g}:{b:g}", f"--channel {self.channel}", f"--steps {self.steps}",
                  f"--seed {self.seed}", f"--preset {self.preset}"]
        if self.batch_size is not None:
            parts.append(f"--batch-size {self.batch_size}")
        if self.lr is not None:
            parts.append(f"--lr {self.lr:g}")
        if self.init:
            parts.append(f"--init {self.init}")
        if self.warmup is not None:
            parts.append(f"--warmup {self.warmup}")
        if self.compute.device != "cpu":
            parts.append(f"--device {'cuda' if self.compute.cuda else self.compute.device}")
        if self.compute.workers:
            parts.append(f"--workers {self.compute.workers}")
        if self.snr_sampling != "example":
            parts.append(f"--snr-sampling {self.snr_sampling}")
        for k, v in sorted(self.overrides.items()):
            parts.append(f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}")
        if self.processes > 1:  # --batch-size is per process: the same global batch needs as many
            parts[0] = f"torchrun --nproc_per_node {self.processes} -m unitocom.cli train tokenizer"
        return " ".join(parts)


def adapt_threads(max_threads: int, current: int) -> int:
    """Threads for the next steps: all `max_threads` when the machine is otherwise idle, else 1. On a shared
    machine a second torch thread that has to wait for a core stalls every parallel region (measured here:
    0.4 steps/s with 2 threads against 0.8 with 1 while another process held a core)."""
    import os
    try:
        others = os.getloadavg()[0] - current
    except OSError:
        return max_threads
    want = max_threads if others < 0.7 else 1
    if want != current:
        torch.set_num_threads(want)
    return want


LR_FLOOR = 0.1  # the cosine ends at 10 % of lr


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of lr."""
    return scaffold.warmup_cosine(step, steps, lr, warmup, floor=LR_FLOOR)


def build_data(opts: TrainOptions, cfg: config.Config, data_dir: Path, out_dir: Path):
    """(train batches, validation batch dict, LinkSpec overrides the data decides: db stats, BPE file)."""
    from unitocom.train import data as D
    tcfg = cfg.preset.tokenizer
    if opts.modality == "image":
        train = D.ImageBatches(data_dir, "train", cfg.preset.image_size_px)
        val = D.ImageBatches(data_dir, "val", cfg.preset.image_size_px, limit=opts.val_count).fixed(opts.val_count)
        return train, val, {}
    if opts.modality == "audio":
        from unitocom.models.audio_tokenizer import MelFrontend
        fe = MelFrontend(cfg.preset.audio_rate_hz, tcfg.audio_n_fft, tcfg.audio_hop, tcfg.audio_mels)
        train = D.AudioBatches(data_dir, "train", fe, tcfg.audio_chunk_frames)
        val = D.AudioBatches(data_dir, "val", fe, tcfg.audio_chunk_frames, limit=opts.val_count,
                             db_mean=train.db_mean, db_std=train.db_std).fixed(opts.val_count)
        return train, val, {"db_mean": round(train.db_mean, 4), "db_std": round(train.db_std, 4)}
    from unitocom.models.text_tokenizer import load_bpe, train_bpe
    bpe_path = out_dir / BPE_FILE
    if bpe_path.exists():  # all text checkpoints share one BPE
        bpe = load_bpe(bpe_path)
    else:
        bpe = train_bpe(D.text_corpus(data_dir, "train"), tcfg.text_vocab)
        bpe_path.parent.mkdir(parents=True, exist_ok=True)
        bpe.save(str(bpe_path))
    train = D.TextBatches(D.text_corpus(data_dir, "train"), bpe, tcfg.text_max_tokens)
    val = D.TextBatches(D.text_corpus(data_dir, "val"), bpe, tcfg.text_max_tokens).fixed(opts.val_count)
    return train, val, {"text_vocab": bpe.get_vocab_size(), "bpe": BPE_FILE}


# --- resumable state --------------------------------------------------------------------------------------------

def _generators(gen: torch.Generator, model_gen: torch.Generator | None) -> dict[str, torch.Generator]:
    return {"rng": gen, **({"rng_model": model_gen} if model_gen is not None and model_gen is not gen else {})}


def save_state(path: Path, model: TokenLink, opt: torch.optim.Optimizer, step: int, gen: torch.Generator,
               model_gen: torch.Generator | None = None) -> None:
    """`scaffold.save_state` with the model's LinkSpec in the header (a state is only resumed by the same model)."""
    scaffold.save_state(path, model, opt, step, _generators(gen, model_gen), meta={"spec": model.spec.to_json()})


def load_state(path: Path, model: TokenLink, opt: torch.optim.Optimizer, gen: torch.Generator,
               model_gen: torch.Generator | None = None) -> int:
    if LinkSpec.from_json(scaffold.state_meta(path)["spec"]) != model.spec:
        raise ValueError(f"{path} was saved for a different model; delete it or use another --run-dir")
    return scaffold.load_state(path, model, opt, _generators(gen, model_gen))


def warm_start(model: TokenLink, src: TokenLink) -> str:
    """Copy every parameter of `src` into `model`; tensors whose token axis differs (the latent queries of the
    tokenizer, the token positions of the de-tokenizer: [1, S, W]) are resampled linearly along S, so a model
    with S tokens starts from one trained with S' tokens. Returns what was done."""
    import torch.nn.functional as F
    mine = model.state_dict()
    copied, resampled = 0, []
    for k, v in src.state_dict().items():
        if k not in mine:
            continue
        if mine[k].shape == v.shape:
            mine[k] = v.clone()
            copied += 1
        elif v.dim() == 3 and v.shape[0] == 1 and v.shape[2] == mine[k].shape[2]:
            mine[k] = F.interpolate(v.transpose(1, 2), size=mine[k].shape[1], mode="linear",
                                    align_corners=True).transpose(1, 2).contiguous()
            resampled.append(k)
    model.load_state_dict(mine)
    return f"{copied} tensors copied, {len(resampled)} resampled along the token axis ({', '.join(resampled)})"


# --- the run ----------------------------------------------------------------------------------------------------

class _Batches(torch.utils.data.IterableDataset):
    """DataLoader workers' batches (`TrainCompute.workers`): step k's global batch drawn from a generator seeded by
    dist.step_seed(seed, k), this rank's part kept; worker w of W makes steps start + w, start + w + W, ..."""

    def __init__(self, data, start: int, steps: int, seed: int, global_batch: int, d: dist.Dist):
        self.data, self.start, self.steps, self.seed = data, start, steps, seed
        self.global_batch, self.d = global_batch, d

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + w, self.steps, n):
            batch = self.data.sample(self.global_batch, torch.Generator().manual_seed(dist.step_seed(self.seed, step)))
            yield step, {k: dist.part(v, self.d) for k, v in batch.items()}


class _Loss(torch.nn.Module):
    """TokenLink.loss as a forward(): what DDP wraps."""

    def __init__(self, model: TokenLink):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.loss(*args)


def _as_is(item):
    return item


def _one_thread(_):
    torch.set_num_threads(1)


def train(opts: TrainOptions, log=print) -> dict:
    """Run Algorithm 1 for `opts.steps` steps (resuming if a state exists); export; return the manifest entry.

    Under torchrun (`train.dist`, DDP): `--batch-size` per process; every rank draws the global batch's examples
    and SNRs from the same generator and trains on its part; the latent and channel noise of a rank's part come
    from the rank's own generator (seeded by seed, rank and start step), so a run on W processes follows one
    process's with the global batch in distribution, not draw for draw (the MLLM's does, `mllm.train`). Rank 0
    alone logs, validates and writes; the other ranks return {}."""
    from unitocom.data.make import dataset_checksum

    d = dist.from_env()
    opts.compute = opts.compute.resolved(d.local_rank if d.on else None)
    opts.processes = d.world
    if not d.main:
        log = (lambda *a, **k: None)
    torch.set_num_threads(opts.threads)
    cfg = config.load(opts.preset)
    tcfg = cfg.preset.tokenizer
    if opts.snr_db is None:
        opts.snr_db = tuple(tcfg.snr_db_range)
    if opts.tokens is None and opts.modality != "text":
        opts.tokens = cfg.preset.image_tokens if opts.modality == "image" else tcfg.audio_tokens
    if opts.snr_sampling not in ("example", "batch"):
        raise ValueError(f"snr_sampling must be example or batch, got {opts.snr_sampling!r}")
    batch_size = opts.batch_size or tcfg.batch_size
    lr = opts.lr or tcfg.lr
    data_dir = Path(opts.data_dir or f"data/{opts.preset}")
    out = Path(opts.out or CHECKPOINT_DIR / f"{opts.name}.safetensors")
    run_dir = Path(opts.run_dir or f"runs/{opts.name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    device = torch.device(opts.compute.device)
    dist.init(d, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    # channel noise and latent draws come from a generator on the model's device (the same one on the CPU); under
    # torchrun each rank's own, so that the ranks' parts see independent noise (`gen` stays the same on all)
    model_gen = gen if device.type == "cpu" and not d.on else torch.Generator(device=device).manual_seed(opts.seed)

    t_data = time.perf_counter()
    with dist.main_first(d):  # rank 0 learns and writes a text BPE the others then read
        train_data, val_batch, data_fields = build_data(opts, cfg, data_dir, out.parent)
    log(f"data: {len(train_data)} training items from {data_dir} in {time.perf_counter() - t_data:.1f} s")
    spec = LinkSpec.from_config(cfg, opts.modality, opts.objective, opts.tokens, **{**data_fields, **opts.overrides})
    model = TokenLink(spec).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = scaffold.adamw(model, lr, tcfg.weight_decay, betas=(0.9, 0.99), split_decay=True)
    state_path = run_dir / "state.safetensors"
    step = 0
    init_sha256 = None  # the warm start's file by hash: a name or path may hold another file by the time it is read
    if opts.init:
        src = Path(opts.init) if opts.init.endswith(".safetensors") else out.parent / f"{opts.init}.safetensors"
        resuming = opts.resume and state_path.exists()
        if not src.exists() and not resuming:  # a name is --out's sibling (train all's folder), not in checkpoints/
            raise UserError(f"--init {opts.init}: {src} does not exist (a name is looked up beside --out, in "
                            f"{out.parent}; give a .safetensors path for a checkpoint elsewhere)")
        init_sha256 = file_sha256(src) if src.exists() else None
        if not resuming:
            log(f"warm start from {src}: " + warm_start(model, token_link.load(src).to(device)))
    if opts.resume and state_path.exists():
        step = load_state(state_path, model, opt, gen, None if d.on else model_gen)
        log(f"resumed {state_path} at step {step}" + (f" on {d.world} processes" if d.on else ""))
    if d.on:
        model_gen.manual_seed(opts.seed + 7919 * (d.rank + 1) + step)
    step_module = dist.wrap_ddp(_Loss(model), d, device)
    global_batch = dist.global_batch(batch_size, d)
    if opts.compute.workers:
        loader = iter(torch.utils.data.DataLoader(
            _Batches(train_data, step, opts.steps, opts.seed, global_batch, d), batch_size=None,
            num_workers=opts.compute.workers, worker_init_fn=_one_thread, collate_fn=_as_is))
    channel = TorchChannelSpec(model=opts.channel)
    log(f"{opts.name}: {params / 1e6:.3f} M parameters, {spec.channel_uses} channel uses per "
        f"{'token' if spec.modality == 'text' else ('image' if spec.modality == 'image' else 'audio chunk')}, "
        f"{opts.steps} steps of {batch_size}, SNR {opts.snr_db[0]:g}..{opts.snr_db[1]:g} dB over {opts.channel}")
    # a fresh run starts a fresh log; a resumed one drops what the interrupted run logged after its saved state
    logf = scaffold.JsonlLog(run_dir / "log.jsonl", resume_step=step) if d.main else None
    a, b = opts.snr_db
    t0 = time.perf_counter()
    start_step = step
    model.train()
    threads = opts.threads
    bar = scaffold.progress(opts.steps, initial=step, desc=opts.name, enabled=opts.progress and d.main)
    while step < opts.steps:
        scaffold.set_lr(opt, lr_at(step, opts.steps, lr, tcfg.warmup_steps if opts.warmup is None else opts.warmup))
        if opts.compute.workers:
            at, batch = next(loader)
            assert at == step, (at, step)
            n = global_batch
        else:
            batch = train_data.sample(global_batch, gen)
            n = batch["x"].shape[0]
        u = torch.rand(n if opts.snr_sampling == "example" else 1, generator=gen).expand(n)
        snr = (a + (b - a) * u).to(device)
        if d.on:
            snr = dist.part(snr, d)
            if not opts.compute.workers:
                batch = {k: dist.part(v, d) for k, v in batch.items()}
        mask = batch.get("mask")
        out_d = step_module(batch["x"].to(device), snr, channel, model_gen, None if mask is None else mask.to(device))
        opt.zero_grad(set_to_none=True)
        out_d["loss"].backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % 20 == 0:
            threads = adapt_threads(opts.threads, threads)
        if step % opts.log_every == 0 or step == opts.steps:
            values = dist.mean_over_ranks(out_d, d) if d.on else {k: float(v.detach()) for k, v in out_d.items()}
            if d.main:
                rec = {"step": step, "lr": opt.param_groups[0]["lr"], "grad_norm": float(gnorm), "threads": threads,
                       "wall_s": round(time.perf_counter() - t0, 2), **{k: round(v, 5) for k, v in values.items()}}
                logf.write(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4g}", kl=f"{rec['kl']:.3g}")
        if d.main and (step % opts.val_every == 0 or step == opts.steps):
            val = {f"awgn@{s:g}dB": validate.figures(model, val_batch, s, TorchChannelSpec()) for s in (0, 10, 20)}
            logf.write({"step": step, "val": val})
            bar.write(f"step {step}: " + "  ".join(f"{k} " + " ".join(f"{m}={v:.4g}" for m, v in fig.items())
                                                   for k, fig in val.items()))
        if step % opts.save_every == 0 or step == opts.steps:
            if d.main:  # the whole model and optimizer (DDP keeps them equal on every rank) and the data generator
                save_state(state_path, model, opt, step, gen, None if d.on else model_gen)
            dist.barrier(d)
    bar.close()
    if not d.main:
        dist.finish(d)
        return {}
    logf.close()
    wall = time.perf_counter() - t0
    model = model.cpu()
    final = validate.sweep(model, val_batch)
    token_link.save(model, out, half=True)
    entry = {
        "name": opts.name, "file": out.name, "modality": opts.modality, "objective": opts.objective,
        "tokens": spec.tokens, "channel_uses": spec.channel_uses, "parameters": params,
        "command": opts.command(), "seed": opts.seed, "preset": opts.preset,
        "dataset": {"dir": str(data_dir), "checksum": dataset_checksum(data_dir, use_manifest=True)},
        "train": {"steps": opts.steps, "batch_size": batch_size, "lr": lr, "init": opts.init,
                  **({"init_sha256": init_sha256} if init_sha256 else {}),
                  "warmup": tcfg.warmup_steps if opts.warmup is None else opts.warmup, "snr_db": list(opts.snr_db),
                  "snr_sampling": opts.snr_sampling, "channel": opts.channel,
                  "wall_s_this_run": round(wall, 1), "steps_this_run": step - start_step,
                  **({"processes": d.world, "global_batch": global_batch} if d.on else {}),
                  "machine": f"{platform.machine()}, torch {torch.__version__}, at most {opts.threads} threads"},
        "config": dataclasses.asdict(spec),
        "validation": {"split": "val", "count": int(val_batch["x"].shape[0]), "figures": final},
        "sha256": file_sha256(out), "bytes": out.stat().st_size,
    }
    (run_dir / "summary.json").write_text(json.dumps(entry, indent=2) + "\n")
    update_manifest(Path(opts.manifest) if opts.manifest else out.parent / "manifest.json", entry)
    log(f"wrote {out} ({entry['bytes'] / 1e6:.2f} MB) after {wall / 60:.1f} min; validation:")
    for k, fig in final.items():
        log(f"  {k:14s} " + "  ".join(f"{m}={v:.4g}" for m, v in fig.items()))
    dist.finish(d)
    return entry


def update_manifest(path: Path, entry: dict) -> None:
    manifest = json.loads(path.read_text()) if path.exists() else {"format": "unitocom-checkpoints/1", "checkpoints": {}}
    manifest["checkpoints"][entry["name"]] = entry
    manifest["checkpoints"] = dict(sorted(manifest["checkpoints"].items()))
    path.write_text(json.dumps(manifest, indent=2) + "\n")
