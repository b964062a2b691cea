"""`unitocom train mllm`: one multitask MLLM (VQA, text-to-image, ASR) trained on received tokens.

Each step takes one task in turn; inputs cross the frozen learned link at an SNR drawn per example (Rayleigh
block fading by default), so the model learns to read noisy tokens as the letter intends. Loss: eq. (16) on
text targets, eq. (19) on continuous targets. AdamW with linear warm-up and cosine decay to 0, a progress bar,
validation every `val_every` steps, each followed by a resumable state (`<out>/train_state.safetensors`) and a
record in `<out>/log.jsonl`: the shared pieces of `train.scaffold`. A run interrupted under the earlier state
format (`train_state.pt`) resumes from it.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from unitocom import config
from unitocom.mllm import sequences as seq
from unitocom.mllm.checkpoint import load_links, save_mllm
from unitocom.mllm.data import TaskData
from unitocom.mllm.model import MLLM, MLLMConfig
from unitocom.models.channel_torch import TorchChannelSpec
from unitocom.train import scaffold

@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 100
    snr_db: tuple[float, float] = (-5.0, 25.0)
    channel: str = "rayleigh"
    drop_caption: float = 0.1
    # Steps per task in each cycle: VQA grounds answers in the image tokens only after many examples.
    task_weights: tuple[tuple[str, int], ...] = (("vqa", 2), ("t2i", 1), ("asr", 1))
    diffusion_repeats: int = 2  # noise draws per continuous target per step (MAR uses 4; CPU budget here)
    balance_families: bool = True  # VQA batches draw question families evenly
    val_every: int = 500
    val_n: int = 256
    seed: int = 0
    threads: int = 1  # tiny models: more threads spin on a shared 2-core machine (100x slower seen)
    # Issue 16: each VQA / ASR example's received tokens lose some tokens (models.resilience.training_mask) that
    # the MLLM reads through its learned lost-token embedding; off (False) for the letter's MLLMs.
    token_dropout: bool = False
    init: str | None = None  # warm start from this MLLM checkpoint (a path); new parameters start fresh
    device: str = "cpu"  # cuda: the MLLM on the GPU under bf16 autocast (fp32 master weights); links stay on the CPU


STATE_FILE = "train_state.safetensors"
LEGACY_STATE_FILE = "train_state.pt"  # torch.save of {"model", "opt", "step"}, written before the scaffold


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0."""
    return scaffold.warmup_cosine(step, tc.steps, tc.lr, tc.warmup, floor=0.0)


def warm_start_state(path: str, model: MLLM) -> dict:
    """`model`'s state dict with every tensor the MLLM at `path` has (same shapes) copied in."""
    from unitocom.mllm.checkpoint import load_mllm
    src, _, _ = load_mllm(path)
    state = model.state_dict()
    theirs = src.state_dict()
    for k, v in theirs.items():
        if k in state and state[k].shape == v.shape:
            state[k] = v
    return state


def loss_of(model: MLLM, packed: seq.Packed, repeats: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    h, _ = model.hidden(packed.embeds, attention_mask=packed.mask)
    out = {}
    where = packed.lm_targets != seq.IGNORE
    if where.any():  # the LM head only where there is something to predict: most positions are prompt
        out["lm"] = F.cross_entropy(model.logits(h[where]), packed.lm_targets[where])
    if len(packed.diff_targets):
        cond = h[packed.diff_index[:, 0], packed.diff_index[:, 1]]
        out["diffusion"] = model.diffusion.loss(packed.diff_targets.repeat(repeats, 1), cond.repeat(repeats, 1), gen)
    out["loss"] = sum(out.values())
    return out


def train(data_dir: str, out_dir: str, preset: str = "tiny", links: dict[str, str] | None = None,
          tc: TrainConfig = TrainConfig(), limit: int | None = None, resume: bool = True,
          command: str = "", objective: str = "sigma-genib", image_tokens: int | None = None) -> dict:
    """Train (or resume) into `out_dir`; -> the meta saved with `<out_dir>/mllm.safetensors`. `image_tokens`: the
    S_v of the `image-<objective>-s<S_v>` link it reads (default: the preset's; `links["image"]` overrides)."""
    torch.set_num_threads(tc.threads)
    cfg = config.load(preset, image_tokens=image_tokens)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_link, audio_link, frontend, vocab, link_paths = load_links(cfg, links, objective)
    t0 = time.time()
    train_data = TaskData(data_dir, "train", image_link, audio_link, frontend, vocab, cfg.preset.image_size_px, limit)
    val_data = TaskData(data_dir, "val", image_link, audio_link, frontend, vocab, cfg.preset.image_size_px,
                        None if limit is None else max(64, limit // 8))
    val_data.image_std = train_data.image_std
    print(f"tokens ready in {time.time() - t0:.0f} s: train {train_data.counts()}, val {val_data.counts()}")
    mcfg = MLLMConfig.from_preset(cfg.preset, vocab=len(vocab))
    if tc.token_dropout:
        mcfg = dataclasses.replace(mcfg, lost_token=True)
    train_data.token_dropout = tc.token_dropout  # validation reads whole sequences: the zero-loss quality
    torch.manual_seed(tc.seed)
    device = torch.device(tc.device)
    model = MLLM(mcfg)
    if tc.init:
        model.load_state_dict(warm_start_state(tc.init, model), strict=True)
    model = model.to(device)
    opt = scaffold.adamw(model, tc.lr, tc.weight_decay)
    channel = TorchChannelSpec(model=tc.channel)
    ckpt, log_path = out / "mllm.safetensors", out / "log.jsonl"
    start = 0
    state_path = out / STATE_FILE
    found = scaffold.latest_state(state_path, out / LEGACY_STATE_FILE) if resume else None
    if found is not None:
        start = scaffold.load_state(found, model, opt, device=device)
        print(f"resumed {found} at step {start}")
    log = scaffold.JsonlLog(log_path, resume_step=start)
    # the generators start afresh from seed + step on resume (they are not part of the state)
    gen = torch.Generator().manual_seed(tc.seed + start)
    # the diffusion loss draws on the model's device (the same generator on the CPU)
    dgen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(tc.seed + start)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    tasks = [t for t, w in tc.task_weights for _ in range(w) if train_data.counts()[t] > 0]
    model.train()
    bar = scaffold.progress(tc.steps, initial=start, desc="mllm")
    running: dict[str, float] = {}
    metrics, wall_s = None, None
    seg_t0, seg_start = time.time(), start  # training throughput between validations (validation not counted)
    for step in range(start, tc.steps):
        task = tasks[step % len(tasks)]
        n = train_data.counts()[task]
        if task == "vqa" and tc.balance_families:
            idx = train_data.family_balanced(tc.batch, gen)
        else:
            idx = torch.randint(n, (tc.batch,), generator=gen).tolist()
        snr = torch.empty(tc.batch).uniform_(*tc.snr_db, generator=gen)
        packed = seq.pack(model, train_data.examples(task, idx, snr, channel, gen, tc.drop_caption))
        with autocast:
            losses = loss_of(model, packed, tc.diffusion_repeats, dgen)
        scaffold.set_lr(opt, lr_at(step, tc))
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for k, v in losses.items():
            key = f"{task}_{k}"
            v = v.item()
            running[key] = 0.9 * running.get(key, v) + 0.1 * v
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items() if k.endswith("_loss")})
        if (step + 1) % tc.val_every == 0 or step + 1 == tc.steps:
            steps_per_s = (step + 1 - seg_start) / max(time.time() - seg_t0, 1e-9)
            metrics = validate(model, val_data, tc, channel)
            row = {"step": step + 1, "time_s": time.time() - t0, **{k: round(v, 4) for k, v in running.items()},
                   "steps_per_s": round(steps_per_s, 4), **metrics}
            log.write(row)
            bar.write(json.dumps(row))
            scaffold.save_state(state_path, model, opt, step + 1)
            model.train()
            seg_t0, seg_start = time.time(), step + 1
    bar.close()
    log.close()
    if metrics is None:  # resumed a run that had already finished: its last validation is in the log
        last = json.loads(log_path.read_text().splitlines()[-1])
        metrics, wall_s = {k: v for k, v in last.items() if k.startswith("val_")}, last["time_s"]
    from unitocom.data.make import dataset_checksum
    meta = {"command": command, "train_config": dataclasses.asdict(tc), "preset": preset, "objective": objective,
            "image_tokens": int(image_link.spec.tokens),
            "links": {k: Path(v).name for k, v in link_paths.items()}, "seed": tc.seed,
            "data_checksum": dataset_checksum(data_dir), "parameters": sum(p.numel() for p in model.parameters()),
            "wall_s": round(wall_s if wall_s is not None else time.time() - t0, 1), "validation": metrics}
    save_mllm(model.cpu(), train_data.image_std, ckpt, meta)
    return meta


@torch.no_grad()
def validate(model: MLLM, data: TaskData, tc: TrainConfig, channel: TorchChannelSpec) -> dict[str, float]:
    """VQA exact match at 20 and 0 dB (on val_vqa_n questions), ASR WER at 20 dB, T2I diffusion loss: quick
    numbers to watch training by."""
    from unitocom.mllm import tasks
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    out = {}
    n = min(tc.val_n, data.counts()["vqa"])
    # (SNR dB, fraction of image tokens lost i.i.d.): a model trained with token dropout is also watched with a
    # quarter of its image tokens lost
    points = [(20.0, 0.0), (0.0, 0.0)] + ([(20.0, 0.25)] if model.cfg.lost_token else [])
    for snr_db, loss in (points if n else []):
        idx = list(range(n))
        items = [data.questions[i] for i in idx]
        rx = [ex[1].value for ex in data.examples("vqa", idx, torch.full((n,), snr_db), channel, gen)]
        if loss:
            from unitocom.models import resilience as rz
            rx = [rz.with_nan_rows(t, rz.lost_iid(1, t.shape[0], torch.tensor([loss]), gen)[0]) for t in rx]
        answers = tasks.answer(model, data.vocab, rx, [q for _, q, _ in items])
        key = f"val_vqa_acc_{snr_db:g}db" + (f"_loss{loss:g}" if loss else "")
        out[key] = sum(seq.normalize(a) == seq.normalize(t) for a, (_, _, t) in zip(answers, items)) / n
    if n:
        out["val_vqa_n"] = n
    n = min(tc.val_n // 4, data.counts()["asr"])
    if n:
        import jiwer
        idx = list(range(n))
        rx = data.examples("asr", idx, torch.full((n,), 20.0), channel, gen)
        hyps = tasks.transcribe(model, data.vocab, [ex[1].value for ex in rx])
        refs = [seq.normalize(data.speech[i][1]) for i in idx]
        out["val_asr_wer_20db"] = float(jiwer.wer(refs, [h or "<empty>" for h in hyps]))
    n = min(tc.val_n, data.counts()["t2i"])
    if n:
        packed = seq.pack(model, data.examples("t2i", list(range(n)), torch.zeros(n), channel, gen))
        dev = next(model.parameters()).device
        dgen = gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(1234)
        out["val_t2i_diffusion"] = float(loss_of(model, packed, 4, dgen)["diffusion"])
    return out
