"""Pretrain an MLLM's image encoder on the object slots alone, before the MLLM reads it (`train image-encoder`).

`train mllm --image-encoder 2 --object-slots 1` grows the encoder inside a fine-tune, from scratch at the fine-tune's
learning rate and on its VQA steps only: after 1000 steps its slots read colour at 0.56 and shape at 0.48, where
the probe's reader, taught the objects on every step at 1e-3, read 0.99 and 0.95. This is the two-stage recipe of
BLIP-2 and LLaVA (train what reads the picture, then connect it to the language model): the MLLM's image
projection and positions stay frozen, the encoder and the slot head learn to read each received scene's objects
(size, colour, shape, material, centre; left to right) from the same received tokens the MLLM gets (its own
objective's image link, over the channel at an SNR drawn per scene), and the result is written as that MLLM with
the encoder added. Its encoder's output projection is still zero, so it answers exactly as the MLLM it came from;
`train mllm --init OUT --object-slots 1` then connects it (the program MLLM's fine-tune, `train all`).

Resumable: <run-dir>/encoder_state.safetensors at each evaluation (the draws' generator with it).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from unitocom.mllm import slots
from unitocom.mllm.model import MLLM

STATE_FILE = "encoder_state.safetensors"
WARMUP = 100  # steps of linear warm-up before the cosine


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    layers: int = 2  # the encoder's bidirectional layers
    steps: int = 6000
    batch: int = 64  # scenes a step
    lr: float = 1e-3  # peak, warm-up then cosine to 0
    snr_db: tuple[float, float] = (-5.0, 25.0)  # drawn per scene (the MLLM's training range)
    channel: str = "rayleigh"
    eval_every: int = 1000
    n_val: int = 500  # val scenes each reading is scored on
    seed: int = 0
    threads: int = 1
    device: str = "cpu"


def with_encoder(src: MLLM, layers: int) -> MLLM:
    """`src` with a fresh image encoder of `layers` layers and a slot head; every tensor of `src` copied."""
    cfg = dataclasses.replace(src.cfg, image_encoder=layers, object_slots=src.cfg.object_slots or slots.SLOTS)
    model = MLLM(cfg)
    state = model.state_dict()
    state.update(src.state_dict())
    model.load_state_dict(state)
    return model


def trainable(model: MLLM) -> list[torch.nn.Parameter]:
    """The encoder's layers and the slot head; the rest (the MLLM, and the encoder's output projection, which
    stays zero so that the MLLM is unchanged) is frozen."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.image_encoder.layers.parameters(), *model.image_encoder.norm.parameters(),
              *model.slots.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def lr_factor(step: int, steps: int) -> float:
    """The rate's multiplier at 0-based `step`: a WARMUP-step ramp times a cosine over all the steps (the
    schedule the first pretrained encoder was trained with, torch's LambdaLR of it, kept exactly)."""
    return min(1.0, (step + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * step / steps))


@torch.no_grad()
def reading(model: MLLM, data, targets: torch.Tensor, n: int, snr_db: float, channel) -> dict[str, float]:
    """What the slots read of the first `n` scenes of `data` received at `snr_db` (fixed draws): accuracy per
    attribute and the count (`slots.reading`)."""
    gen = torch.Generator().manual_seed(1357)
    n = min(n, len(data.clevr_mu))  # a small split: all of it
    dev = next(model.parameters()).device
    rx = data._received_scenes(data.clevr_mu[:n], torch.full((n,), snr_db), channel, gen).to(dev)
    return slots.reading(model.slots(model.image_features(rx)), targets[:n].to(dev))


def pretrain(model: MLLM, train, val, targets: dict[str, torch.Tensor], ec: EncoderConfig, run_dir: str | Path,
             progress: bool = True, stop_at: int | None = None) -> list[dict]:
    """Train `model`'s encoder and slots (`trainable`) on `train`'s received scenes against `targets["train"]`
    (`slots.targets`); evaluate on `val` every ec.eval_every steps at 20 and 0 dB. Returns the evaluation rows.
    stop_at: leave after that step with its state saved (a budgeted run), to resume with the same config."""
    from unitocom.models.channel_torch import TorchChannelSpec
    from unitocom.train import scaffold
    torch.set_num_threads(ec.threads)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    dev = torch.device(ec.device)
    model.to(dev)
    params = trainable(model)
    opt = torch.optim.AdamW(params, lr=ec.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(ec.seed)  # the scenes, SNRs and channel draws
    channel = TorchChannelSpec(model=ec.channel)
    start, log_path = 0, run / "encoder_log.jsonl"
    state = scaffold.latest_state(run / STATE_FILE)
    if state is not None:  # the generator is part of the state: a resumed run draws what an unbroken one would
        start = scaffold.load_state(state, model, opt, generators={"draws": gen}, device=dev)
    rows = [json.loads(ln) for ln in log_path.read_text().splitlines()] if start and log_path.exists() else []
    rows = [r for r in rows if r["step"] <= start]
    lo, hi = ec.snr_db
    target = targets["train"]
    bar = scaffold.progress(ec.steps, initial=start, desc="image encoder", enabled=progress)
    t0 = time.time()
    model.train()
    last = min(ec.steps, stop_at or ec.steps)
    for step in range(start + 1, last + 1):
        idx = torch.randint(len(train.clevr_mu), (ec.batch,), generator=gen)
        snr = lo + (hi - lo) * torch.rand(ec.batch, generator=gen)
        with torch.no_grad():
            rx = train._received_scenes(train.clevr_mu[idx], snr, channel, gen).to(dev)
        loss = slots.loss_per_example(model.slots(model.image_features(rx)), target[idx].to(dev)).mean()
        scaffold.set_lr(opt, ec.lr * lr_factor(step - 1, ec.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % ec.eval_every == 0 or step == last:
            model.eval()
            row = {"step": step, "loss": round(loss.item(), 4), "wall_s": round(time.time() - t0, 1)}
            for db in (20.0, 0.0):
                row[f"{db:g}db"] = {k: round(v, 4) for k, v in
                                    reading(model, val, targets["val"], ec.n_val, db, channel).items()}
            rows.append(row)
            scaffold.save_state(run / STATE_FILE, model, opt, step, generators={"draws": gen})
            log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            bar.write(json.dumps(row))
            model.train()
    bar.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return rows
