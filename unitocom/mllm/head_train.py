"""The diffusion head trained further on a frozen MLLM: text-to-image's second phase (issue 12).

In the multitask run the head sees a quarter of the steps (T2I is one task of four per cycle), two noise draws per
token and batches of 64 pictures: it ends undertrained. A small MLP trained to read the next token from the
backbone's hidden state h comes closer to it than the head's own draw from zero noise does
(`scripts/t2i_diagnose.py MLLM --probe-steps 3000`: `mse_probe_mlp` against `mse_head_mean`): h holds more than
the head takes from it.

With the backbone frozen, h does not change, so it is computed once for every training picture and caption (and
for each picture with an empty caption, the unconditional rows classifier-free guidance needs) and the head is
trained on (h, token) rows alone: thousands of rows per step at the cost of the head's MLP, with no pass through
the backbone. The LM head, the embeddings and the backbone are untouched, so VQA and ASR answers stay exactly
those of the MLLM it started from; only generated pictures change.

Resumable (`<run>/head_state.safetensors` at each validation; exactly on the CPU, where one generator
draws rows and noise), a progress bar, `<run>/head_log.jsonl`.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from unitocom.mllm import sequences as seq
from unitocom.mllm.data import CaptionData, Standardizer, TaskData
from unitocom.mllm.model import MLLM
from unitocom.train import scaffold

STATE_FILE = "head_state.safetensors"
LOG_FILE = "head_log.jsonl"


@dataclass(frozen=True)
class HeadConfig:
    steps: int = 8000
    batch: int = 2048  # (h, token) rows per step: one row is one image token of one picture
    lr: float = 5e-4
    warmup: int = 100
    weight_decay: float = 0.0
    val_every: int = 1000
    val_images: int = 300  # val pictures (first caption each, and their unconditional rows) for the loss
    seed: int = 0
    threads: int = 1
    device: str = "cpu"  # cuda: the head and the cached rows on the GPU (the noise then drawn there)


@torch.no_grad()
def hidden_rows(model: MLLM, vocab, captions: list[str], tokens: torch.Tensor,
                batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(h [N * S_v, hidden], token [N * S_v, d]): the backbone's state before each image token of caption i's
    picture, teacher forced on its standardised tokens [N, S_v, d] as in training, and that token (fp32)."""
    hs, cs = [], []
    was = model.training
    model.eval()
    for k in range(0, len(captions), batch):
        packed = seq.pack(model, [seq.t2i(vocab, c, t) for c, t in zip(captions[k:k + batch], tokens[k:k + batch])])
        h, _ = model.hidden(packed.embeds, attention_mask=packed.mask, prefix=packed.prefix)
        hs.append(h[packed.diff_index[:, 0], packed.diff_index[:, 1]])
        cs.append(packed.diff_targets)
    model.train(was)
    return torch.cat(hs), torch.cat(cs)


@torch.no_grad()
def features(model: MLLM, data: CaptionData | TaskData, std: Standardizer, captions: list[tuple[int, str]],
             batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """`hidden_rows` for (image index, caption) pairs of `data`'s pictures, in fp16 to halve the cache (the head
    computes in fp32)."""
    hs, cs = [], []
    for k in range(0, len(captions), batch):
        part = captions[k:k + batch]
        h, c = hidden_rows(model, data.vocab, [c for _, c in part], std.forward(data.coco_mu[[i for i, _ in part]]),
                           batch)
        hs.append(h.half())
        cs.append(c.half())
    return torch.cat(hs), torch.cat(cs)


def rows_of(data: CaptionData | TaskData, first_only: bool = False, limit: int | None = None) -> list[tuple[int, str]]:
    """Every (image, caption) pair of `data` (or each image's first), then each image once with the empty
    caption (the unconditional rows: the run's drop_caption of 0.1 made a tenth of its T2I rows unconditional,
    one row per picture here is a sixth with five captions a picture)."""
    pairs: list[tuple[int, str]] = []
    seen: set[int] = set()
    for image, caption in data.captions:
        if limit is not None and image >= limit:
            continue
        if first_only and image in seen:
            continue
        seen.add(image)
        pairs.append((image, caption))
    return pairs + [(i, "") for i in sorted(seen)]


@torch.no_grad()
def mean_loss(head, h: torch.Tensor, c: torch.Tensor, seed: int = 1234, batch: int = 4096) -> float:
    """The eq. (19) loss over fixed rows, with fixed noise draws: comparable across steps and heads."""
    gen = torch.Generator(device=c.device).manual_seed(seed)
    total = 0.0
    for k in range(0, len(c), batch):
        total += float(head.loss(c[k:k + batch].float(), h[k:k + batch].float(), gen)) * len(c[k:k + batch])
    return total / len(c)


def train_head(model: MLLM, train_rows: tuple[torch.Tensor, torch.Tensor], val_rows: tuple[torch.Tensor, torch.Tensor],
               hc: HeadConfig, run_dir: str | Path, progress: bool = True) -> dict:
    """Train model.diffusion on cached rows; -> {"head_val_t2i_diffusion_before", "..._after", "head_steps",
    "head_wall_s"}. Resumes from <run_dir>/head_state.safetensors."""
    torch.set_num_threads(hc.threads)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    dev = torch.device(hc.device)
    head = model.diffusion.to(dev)
    h, c = (t.to(dev) for t in train_rows)
    val_rows = tuple(t.to(dev) for t in val_rows)
    before = mean_loss(head, *val_rows)
    opt = scaffold.adamw(head, hc.lr, hc.weight_decay)
    gen = torch.Generator().manual_seed(hc.seed)  # the rows drawn
    noise = gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(hc.seed + 1)
    start = 0
    state = scaffold.latest_state(run / STATE_FILE)
    if state is not None:  # the generator is part of the state: a resumed run draws what an unbroken one would
        start = scaffold.load_state(state, head, opt, generators={"rows": gen})
        before = json.loads((run / LOG_FILE).read_text().splitlines()[0])["val_t2i_diffusion"]
    log = scaffold.JsonlLog(run / LOG_FILE, resume_step=start)
    if start == 0:
        log.write({"step": 0, "val_t2i_diffusion": round(before, 6)})
    bar = scaffold.progress(hc.steps, initial=start, desc="diffusion head", enabled=progress)
    t0, running, after = time.time(), None, None
    head.train()
    for step in range(start, hc.steps):
        idx = torch.randint(len(c), (hc.batch,), generator=gen).to(dev)
        loss = head.loss(c[idx].float(), h[idx].float(), noise)
        scaffold.set_lr(opt, scaffold.warmup_cosine(step, hc.steps, hc.lr, hc.warmup, floor=0.0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        v = float(loss.detach())
        running = v if running is None else 0.98 * running + 0.02 * v
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % hc.val_every == 0 or step + 1 == hc.steps:
            head.eval()
            after = mean_loss(head, *val_rows)
            head.train()
            scaffold.save_state(run / STATE_FILE, head, opt, step + 1, generators={"rows": gen})
            row = {"step": step + 1, "time_s": round(time.time() - t0, 1), "loss": round(running, 6),
                   "val_t2i_diffusion": round(after, 6)}
            log.write(row)
            bar.write(json.dumps(row))
    bar.close()
    log.close()
    head.eval()
    if after is None:  # resumed a finished run
        after = mean_loss(head, *val_rows)
    model.diffusion = head.cpu()
    return {"head_val_t2i_diffusion_before": before, "head_val_t2i_diffusion_after": after, "head_steps": hc.steps,
            "head_wall_s": round(time.time() - t0, 1), "head_config": dataclasses.asdict(hc)}
