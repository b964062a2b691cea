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
from unitocom.mllm import sequences as seq, token_cache
from unitocom.mllm.checkpoint import load_links, save_mllm
from unitocom.mllm.data import Standardizer, TaskData
from unitocom.mllm.model import MLLM, MLLMConfig
from unitocom.models.channel_torch import TorchChannelSpec
from unitocom.train import dist, scaffold

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
    # Issue 15: the backbone (and the text tokenizer) from a local Hugging Face Llama directory (config.json,
    # model.safetensors, tokenizer.json): the MLLM takes the backbone's sizes and vocabulary, its own special
    # tokens appended (`MLLM.with_local_backbone`). None: a backbone of the preset's sizes, from scratch.
    init_backbone: str | None = None
    # Where and how it computes: device (cuda: the MLLM on the GPU under bf16 autocast, fp32 master weights; the
    # frozen links stay on the CPU), activation checkpointing, fused AdamW, DataLoader workers, FSDP (torchrun).
    compute: config.TrainCompute = config.TrainCompute()
    # Issue 17: VQA with a spoken question ("svqa" in task_weights) reads the spoken questions of this folder
    # (`unitocom data spoken-questions`); None: no spoken questions (the task is left out of the mix).
    spoken_questions: str | None = None
    log_every: int = 0  # >0: every so many steps, a {"step", "task", "loss", ...} record in log.jsonl of each task's
    # latest step since the last ones (rank 0)
    # MLLM architecture other than the preset's ((field of MLLMConfig, value), ...: hidden, layers, heads,
    # intermediate, head_width, head_depth, projector_depth, question_first), for ablations; (): the preset's.
    # The checkpoint's config records it.
    arch: tuple[tuple[str, int | bool], ...] = ()
    # Issue 12: a task's loss times this on its steps ((task, scale), ...; others 1). Each step is one task's and
    # AdamW's second moments are shared: the LM tasks' backbone gradients (norm ~0.3) set the step size that
    # text-to-image's (~0.04) gets, so T2I trains the backbone at a fraction of the learning rate. Scaling its loss
    # evens the gradients; the parameters T2I alone uses (the diffusion head) are unaffected (AdamW is
    # scale-invariant).
    loss_scale: tuple[tuple[str, float], ...] = ()
    # Issue 12: >0, the weight of the object slots' loss (`mllm.slots`) added on VQA steps: the MLLM gets a slot
    # head that reads each received scene's objects from the hidden states over its image tokens. 0: no slots.
    object_slots: float = 0.0
    # Issue 12: >0, this share of the VQA questions is read through the objective's installed text link
    # (text-<objective>) at the example's SNR and channel, as the base station reads a typed question, instead of
    # clean: the MLLM learns to answer garbled questions (`TaskData.received_questions`). 0: clean questions.
    received_questions: float = 0.0
    # Issue 12: True, the MLLM attends both ways over each prompt (`MLLMConfig.prefix_attention`), warm start or not.
    prefix_attention: bool = False
    # Issue 12: >0, layers of a bidirectional image encoder in front of the backbone (`MLLMConfig.image_encoder`);
    # a warm start from an MLLM without one gets a fresh one that starts as no change. 0: the checkpoint's or none.
    image_encoder: int = 0
    # Issue 12: the object slots' reading of each received scene as tokens (`MLLMConfig.object_tokens`)
    object_tokens: bool = False
    # Issue 12: the order the lay task lists a scene's objects in (`layout.ordered`): left-to-right or caption
    layout_order: str = "left-to-right"


STATE_FILE = "train_state.safetensors"
LEGACY_STATE_FILE = "train_state.pt"  # torch.save of {"model", "opt", "step"}, written before the scaffold


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0."""
    return scaffold.warmup_cosine(step, tc.steps, tc.lr, tc.warmup, floor=0.0)


def warm_start_state(path: str, model: MLLM) -> dict:
    """`model`'s state dict with every tensor the MLLM at `path` has copied in; the model's own new parameters
    (a resilient fine-tune's lost-token embeddings) keep their fresh values. A tensor of another shape is an error:
    skipping it would start that part of the model afresh without a word (a wide MLLM's fine-tune built at the
    preset's width once trained from scratch this way)."""
    from unitocom.mllm.checkpoint import load_mllm
    src, _, _ = load_mllm(path)
    state = model.state_dict()
    theirs = src.state_dict()
    clash = [f"{k} {tuple(v.shape)} -> {tuple(state[k].shape)}" for k, v in theirs.items()
             if k in state and state[k].shape != v.shape]
    if clash:
        raise ValueError(f"--init {path}: {len(clash)} of its tensors have another shape in this run's model "
                         f"({', '.join(clash[:3])}{', ...' if len(clash) > 3 else ''})")
    state.update({k: v for k, v in theirs.items() if k in state})
    return state


def loss_of(model: MLLM, packed: seq.Packed, repeats: int, gen: torch.Generator,
            d: dist.Dist = dist.SINGLE, slot_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The step's losses on a packed batch. Under torchrun (`d.on`) the batch is this rank's part of the global
    one: each term is this part's sum over the global count, times the world size, so that DDP's mean of the
    ranks' gradients is the gradient of the global batch's mean, and the diffusion noise is drawn for the global
    batch (`DiffusionHead.loss`'s part): the same loss as one process with the global batch, to rounding.
    slot_weight > 0: the object slots' loss (`mllm.slots`) on the batch's scenes that carry slot targets, times it."""
    h, _ = model.hidden(packed.embeds, attention_mask=packed.mask, prefix=packed.prefix)
    out = {}
    where = packed.lm_targets != seq.IGNORE
    slot_loss = None  # [M] per scene
    if slot_weight and packed.object_targets is not None:
        from unitocom.mllm import slots
        hs = (packed.object_features if packed.object_features is not None else
              torch.stack([h[b, p: p + n] for b, p, n in packed.object_index.tolist()]))
        slot_loss = slots.loss_per_example(model.slots(hs), packed.object_targets)
    if not d.on:
        if slot_loss is not None:
            out["slots"] = slot_weight * slot_loss.mean()
        if where.any():  # the LM head only where there is something to predict: most positions are prompt
            out["lm"] = F.cross_entropy(model.logits(h[where]), packed.lm_targets[where])
        if len(packed.diff_targets):
            cond = h[packed.diff_index[:, 0], packed.diff_index[:, 1]]
            out["diffusion"] = model.diffusion.loss(packed.diff_targets.repeat(repeats, 1), cond.repeat(repeats, 1),
                                                    gen)
        out["loss"] = sum(out.values())
        return out
    counts = dist.gather_counts([int(where.sum()), len(packed.diff_targets),
                                 0 if slot_loss is None else len(slot_loss)], d, h.device)
    lm_total, diff_total, slot_total = (int(v) for v in counts.sum(0))
    if slot_total:  # every rank's part of a VQA step carries its scenes' targets
        out["slots"] = slot_weight * slot_loss.sum() * (d.world / slot_total)
    if lm_total:
        lm = F.cross_entropy(model.logits(h[where]), packed.lm_targets[where], reduction="sum")
        out["lm"] = lm * (d.world / lm_total)
    if diff_total:
        offset = int(counts[:d.rank, 1].sum())
        cond = h[packed.diff_index[:, 0], packed.diff_index[:, 1]]
        part = (offset, len(packed.diff_targets), diff_total, repeats)
        out["diffusion"] = model.diffusion.loss(packed.diff_targets.repeat(repeats, 1), cond.repeat(repeats, 1),
                                                gen, part=part) * d.world
    out["loss"] = sum(out.values())
    return out


class Objective(torch.nn.Module):
    """A training step's forward, packing included, as one module: what DDP and FSDP wrap (they act on forward())."""

    def __init__(self, model: MLLM, repeats: int, d: dist.Dist, slot_weight: float = 0.0):
        super().__init__()
        self.model, self.repeats, self.d, self.slot_weight = model, repeats, d, slot_weight

    def forward(self, rows: list[list[seq.Segment]], gen: torch.Generator) -> dict[str, torch.Tensor]:
        return loss_of(self.model, seq.pack(self.model, rows), self.repeats, gen, self.d, self.slot_weight)


def draw_batch(data: TaskData, task: str, step_batch: int, tc: TrainConfig, gen: torch.Generator,
               channel: TorchChannelSpec) -> list[list[seq.Segment]]:
    """One step's global batch of `task`, every draw from `gen` (indices, SNRs, channel noise, caption drops)."""
    n = data.counts()[task]
    if task in ("vqa", "svqa") and tc.balance_families:
        idx = data.family_balanced(step_batch, gen, task)
    else:
        idx = torch.randint(n, (step_batch,), generator=gen).tolist()
    snr = torch.empty(step_batch).uniform_(*tc.snr_db, generator=gen)
    return data.examples(task, idx, snr, channel, gen, tc.drop_caption)


class _Batches(torch.utils.data.IterableDataset):
    """Steps start..steps-1 as (step, task, this rank's part of the global batch), batch k drawn from its own
    generator seeded by dist.step_seed(seed, k): worker w of W makes steps start + w, start + w + W, ..., and the
    DataLoader hands them back in step order."""

    def __init__(self, data, tasks, start, tc, global_batch, channel, d):
        self.data, self.tasks, self.start, self.tc = data, tasks, start, tc
        self.global_batch, self.channel, self.d = global_batch, channel, d

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + w, self.tc.steps, n):
            task = self.tasks[step % len(self.tasks)]
            gen = torch.Generator().manual_seed(dist.step_seed(self.tc.seed, step))
            rows = draw_batch(self.data, task, self.global_batch, self.tc, gen, self.channel)
            yield step, task, dist.part(rows, self.d)


def _as_is(item):
    return item


def _worker_init(_):
    torch.set_num_threads(1)


def activation_checkpointing(compute: config.TrainCompute, preset: config.ModelPreset) -> bool:
    """On when asked, or (not asked) when the preset wants it and the run is on CUDA."""
    if compute.activation_checkpointing is not None:
        return compute.activation_checkpointing
    return compute.cuda and preset.mllm_activation_checkpointing


def enable_activation_checkpointing(model: MLLM) -> None:
    """Each decoder layer's activations recomputed in the backward pass (non-reentrant torch.utils.checkpoint,
    which composes with DDP and FSDP2). transformers 5 calls it activation_checkpointing_enable."""
    bb = model.backbone
    enable = getattr(bb, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        bb.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_model(mcfg: MLLMConfig, tc: TrainConfig) -> MLLM:
    """The MLLM to train: from the HF backbone (--init-backbone), warm started (--init), or fresh."""
    if tc.init_backbone:
        model = MLLM.with_local_backbone(mcfg, tc.init_backbone)
    else:
        model = MLLM(mcfg)
    if tc.init:
        model.load_state_dict(warm_start_state(tc.init, model), strict=True)
    return model


def set_input_stats(model: MLLM, data: TaskData) -> None:
    """The statistics an MLLM with standardized_inputs reads received tokens with: the image's are those of
    the text-to-image targets (one token space for both directions), the audio's those of the training clips."""
    model.set_input_stats("image", data.image_std.mean, data.image_std.std)
    if data.speech:
        audio = Standardizer.fit(torch.cat([mu for mu, _ in data.speech]))
        model.set_input_stats("audio", audio.mean, audio.std)


def backbone_vocab(path: str | Path, links: dict[str, str] | None) -> dict[str, str]:
    """The links with the text tokenizer replaced by the backbone directory's tokenizer.json."""
    tok = Path(path) / "tokenizer.json"
    if not tok.is_file():
        raise FileNotFoundError(f"{tok} is missing: --init-backbone needs the backbone's tokenizer.json (the MLLM "
                                "keeps the backbone's vocabulary)")
    return {**(links or {}), "bpe": str(tok)}


def train(data_dir: str, out_dir: str, preset: str = "tiny", links: dict[str, str] | None = None,
          tc: TrainConfig = TrainConfig(), limit: int | None = None, resume: bool = True,
          command: str = "", objective: str = "sigma-genib", image_tokens: int | None = None,
          stop_at: int | None = None) -> dict:
    """Train (or resume) into `out_dir`; -> the meta saved with `<out_dir>/mllm.safetensors`. `image_tokens`: the
    S_v of the `image-<objective>-s<S_v>` link it reads (default: the preset's; `links["image"]` overrides).

    `stop_at`: train only up to that step of the `tc.steps` schedule (the learning rate is the full schedule's),
    validate there, save the run state and return {} without writing a checkpoint; a later call resumes from it.
    For learning-rate probes (the early steps of the real run) and runs split across sessions.

    Under torchrun (`train.dist`): `tc.batch` per rank, every rank draws the global batch and trains on its part,
    DDP (or FSDP with `tc.compute.fsdp`) averages the gradients; rank 0 alone validates, logs and writes; the
    other ranks return {}."""
    d = dist.from_env()
    compute = tc.compute.resolved(d.local_rank if d.on else None)
    tc = dataclasses.replace(tc, compute=compute)
    device = torch.device(compute.device)
    dist.init(d, device)
    say = print if d.main else (lambda *a, **k: None)
    torch.set_num_threads(tc.threads)
    cfg = config.load(preset, image_tokens=image_tokens)
    out = Path(out_dir)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    cached = token_cache.is_cache(data_dir)
    if cached:  # the tokenizers its means were made with, unless given (then they must be the same files)
        links = {**token_cache.links_of(data_dir, objective), **(links or {})}
    if tc.init_backbone:
        links = backbone_vocab(tc.init_backbone, links)
    image_link, audio_link, frontend, vocab, link_paths = load_links(cfg, links, objective)
    if cached:
        token_cache.check_links(data_dir, objective, link_paths)
    if tc.init_backbone:
        from unitocom.mllm.model import hf_config
        vocab = seq.Vocab(vocab.bpe, base=max(vocab.base, hf_config(tc.init_backbone).vocab_size), bare=True)
    t0 = time.time()
    sq = tc.spoken_questions
    train_data, val_data = load_splits(data_dir, objective, image_link, audio_link, frontend, vocab,
                                       cfg.preset.image_size_px, limit, sq)
    say(f"tokens ready in {time.time() - t0:.0f} s: train {train_data.counts()}, val {val_data.counts()}")
    mcfg = MLLMConfig.from_preset(cfg.preset, vocab=len(vocab))
    if tc.init:
        # a warm start continues the architecture it was trained with (a fine-tune of a wide MLLM is wide)
        from unitocom.mllm.checkpoint import mllm_config
        mcfg = dataclasses.replace(mllm_config(tc.init), vocab=len(vocab))
    elif tc.init_backbone:
        from unitocom.mllm.model import config_from_hf
        mcfg = config_from_hf(tc.init_backbone, mcfg, len(vocab))
    if tc.arch:
        mcfg = dataclasses.replace(mcfg, **dict(tc.arch))
    if tc.token_dropout:
        mcfg = dataclasses.replace(mcfg, lost_token=True)
    if tc.prefix_attention:
        mcfg = dataclasses.replace(mcfg, prefix_attention=True)
    if tc.image_encoder:
        if mcfg.image_encoder and mcfg.image_encoder != tc.image_encoder:
            raise ValueError(f"--image-encoder {tc.image_encoder}: the warm start has an image encoder of "
                             f"{mcfg.image_encoder} layers")
        mcfg = dataclasses.replace(mcfg, image_encoder=tc.image_encoder)
    if tc.object_slots:
        attach_slot_targets(data_dir, train_data, val_data, cached)
        if not mcfg.object_slots:  # a warm start from an MLLM without slots: its slot head starts fresh
            from unitocom.mllm import slots
            mcfg = dataclasses.replace(mcfg, object_slots=slots.SLOTS)
    if tc.object_tokens:
        if not mcfg.image_encoder:
            raise ValueError("--object-tokens: the MLLM has no image encoder to read the objects from "
                             "(--image-encoder N)")
        mcfg = dataclasses.replace(mcfg, object_tokens=True)
    if "prog" in dict(tc.task_weights):
        if not (mcfg.image_encoder and mcfg.object_slots):
            raise ValueError("--task-weights prog: VQA is then answered by running the written program on the object "
                             "slots' reading; the MLLM needs an image encoder and object slots (--image-encoder N "
                             "--object-slots W, or --init an MLLM that has them)")
        mcfg = dataclasses.replace(mcfg, answer_by_program=True)
    train_data.question_first = val_data.question_first = mcfg.question_first
    train_data.layout_order = val_data.layout_order = tc.layout_order
    train_data.token_dropout = tc.token_dropout  # validation reads whole sequences: the zero-loss quality
    if tc.received_questions:  # validation keeps clean questions, comparable with every other run's
        from unitocom.config import checkpoint_dir
        from unitocom.models import token_link
        path = checkpoint_dir() / f"text-{objective}.safetensors"
        train_data.text_link, train_data.received_questions = token_link.load(path).eval(), tc.received_questions
        say(f"VQA questions: {tc.received_questions:.0%} read through {path.name} at the example's SNR")
    torch.manual_seed(tc.seed)
    model = build_model(mcfg, tc)
    if mcfg.standardized_inputs and not tc.init:  # a warm start keeps the statistics it was trained with
        set_input_stats(model, train_data)
    if tc.init_backbone:
        say(f"backbone from {tc.init_backbone}: {mcfg.layers} x {mcfg.hidden}, vocabulary {vocab.base} ids of "
            f"{link_paths['bpe']} + {len(seq.SPECIALS)} specials")
    model = model.to(device)
    if activation_checkpointing(compute, cfg.preset):
        enable_activation_checkpointing(model)
    channel = TorchChannelSpec(model=tc.channel)
    ckpt, log_path = out / "mllm.safetensors", out / "log.jsonl"
    start = 0
    state_path = out / STATE_FILE
    found = scaffold.latest_state(state_path, out / LEGACY_STATE_FILE) if resume else None
    fused = compute.fused_adamw and compute.cuda
    sharded = compute.fsdp and d.on
    if compute.fsdp and not d.on:
        say("--fsdp: a single process, nothing to shard (the model trains unsharded)")
    objective_fn = Objective(model, tc.diffusion_repeats, d, tc.object_slots)
    replica = None
    if sharded:
        opt_state = None
        if found is not None:
            if found.suffix == ".pt":
                raise ValueError(f"{found}: an earlier state format; resume it without --fsdp first")
            start, model_state, opt_state, _ = scaffold.read_state(found)
            model.load_state_dict(model_state)
        step_module = shard(objective_fn, model, compute)
        opt = scaffold.adamw(model, tc.lr, tc.weight_decay, fused=fused)
        if opt_state is not None:
            dist.load_sharded_opt_state(opt, list(model.parameters()), opt_state)
        if d.main:  # rank 0 validates and exports an unsharded copy (gathered at each validation)
            replica = MLLM(mcfg).to(device)
    else:
        opt = scaffold.adamw(model, tc.lr, tc.weight_decay, fused=fused)
        if found is not None:
            start = scaffold.load_state(found, model, opt, device=device)
        step_module = dist.wrap_ddp(objective_fn, d, device)
    if found is not None:
        say(f"resumed {found} at step {start}" + (f" on {d.world} processes" if d.on else ""))
    log = scaffold.JsonlLog(log_path, resume_step=start) if d.main else None
    # the generators start afresh from seed + step on resume (they are not part of the state)
    gen = torch.Generator().manual_seed(tc.seed + start)
    # the diffusion loss draws on the model's device (the same generator on the CPU, unless workers draw batches)
    dgen = gen if device.type == "cpu" and not compute.workers else \
        torch.Generator(device=device).manual_seed(tc.seed + start)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=compute.autocast_bf16)
    tasks = [t for t, w in tc.task_weights for _ in range(w) if train_data.counts()[t] > 0]
    for t in dict(tc.task_weights):
        if not train_data.counts()[t]:  # said, not silently dropped: obj from a cache made before it, svqa unspoken
            say(f"--task-weights: {t} has no training examples in {data_dir}; the cycle leaves it out")
    scale = dict(tc.loss_scale)
    global_batch = dist.global_batch(tc.batch, d)
    if compute.workers:
        loader = iter(torch.utils.data.DataLoader(
            _Batches(train_data, tasks, start, tc, global_batch, channel, d), batch_size=None,
            num_workers=compute.workers, worker_init_fn=_worker_init, collate_fn=_as_is,
            persistent_workers=False, prefetch_factor=2))
    model.train()
    bar = scaffold.progress(tc.steps, initial=start, desc="mllm", enabled=d.main)
    running: dict[str, float] = {}
    pending: dict[str, dict] = {}  # per task, its latest step's losses not yet in log.jsonl
    metrics, wall_s = None, None
    seg_t0, seg_start = time.time(), start  # training throughput between validations (validation not counted)
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)
    for step in range(start, end):
        if compute.workers:
            at, task, rows = next(loader)
            assert at == step, (at, step)
        else:
            task = tasks[step % len(tasks)]
            rows = dist.part(draw_batch(train_data, task, global_batch, tc, gen, channel), d)
        with autocast:
            losses = step_module(rows, dgen)
        scaffold.set_lr(opt, lr_at(step, tc))
        opt.zero_grad(set_to_none=True)
        (losses["loss"] * scale.get(task, 1.0)).backward()  # the logged losses stay unscaled
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        values = dist.mean_over_ranks(losses, d) if d.on else {k: v.item() for k, v in losses.items()}
        for k, v in values.items():
            key = f"{task}_{k}"
            running[key] = 0.9 * running.get(key, v) + 0.1 * v
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items() if k.endswith("_loss")})
        pending[task] = {"step": step + 1, "task": task, **{k: round(v, 7) for k, v in values.items()}}
        if d.main and tc.log_every and (step + 1) % tc.log_every == 0:
            # each task's latest step since the last record: with a cycle of 5 tasks and records every 50 steps,
            # the record's own step alone would always be the same task's
            for r in sorted(pending.values(), key=lambda r: r["step"]):
                log.write(r)
            pending.clear()
        if (step + 1) % tc.val_every == 0 or step + 1 == end:
            steps_per_s = (step + 1 - seg_start) / max(time.time() - seg_t0, 1e-9)
            if sharded:  # every rank takes part in gathering the shards; rank 0 validates the whole copy
                model_state, opt_state = dist.gather_full(model, opt)
            if d.main:
                if sharded:
                    replica.load_state_dict(model_state)
                metrics = validate(replica if sharded else model, val_data, tc, channel)
                row = {"step": step + 1, "time_s": time.time() - t0,
                       **{k: round(v, 4) for k, v in running.items()}, "steps_per_s": round(steps_per_s, 4),
                       **({"processes": d.world} if d.on else {}), **metrics}
                # the row before the state: a kill between the two leaves a row that the resume (from the state
                # before) drops, never a state whose validation is missing from the log
                log.write(row)
                if sharded:
                    scaffold.save_state_dicts(state_path, model_state, opt_state, step + 1)
                else:
                    scaffold.save_state(state_path, model, opt, step + 1)
                bar.write(json.dumps(row))
            dist.barrier(d)
            model.train()
            seg_t0, seg_start = time.time(), step + 1
    bar.close()
    if not d.main:
        dist.finish(d)
        return {}
    log.close()
    if end < tc.steps:  # stopped early on purpose: the run state is the result, not a checkpoint
        say(f"stopped at step {max(start, end)} of {tc.steps}: the run state is in {state_path}; run again "
            "without --stop-at to go on")
        dist.finish(d)
        return {}
    if metrics is None:  # resumed a run that had already finished: its last validation is in the log
        metrics, wall_s = final_validation(log_path, start)  # the state's step (tc.steps, or past it)
    final = replica if sharded else model
    if sharded and replica is not None and start >= tc.steps:  # nothing trained here: the state is the result
        replica.load_state_dict(scaffold.read_state(found)[1])
    train_config = dataclasses.asdict(tc)
    cache_meta = token_cache.read_meta(data_dir) if cached else None
    meta = {"command": command, "train_config": train_config, "preset": preset, "objective": objective,
            "image_tokens": int(image_link.spec.tokens),
            "links": {k: Path(v).name for k, v in link_paths.items()}, "seed": tc.seed,
            "data_checksum": cache_meta["data_checksum"] if cached else _checksum(data_dir),
            "parameters": sum(p.numel() for p in final.parameters()),
            "wall_s": round(wall_s if wall_s is not None else time.time() - t0, 1), "validation": metrics}
    if cached:  # what it read in place of the data set (int8 means: their quantization noise)
        meta["token_cache"] = {"values": cache_meta.get("values", "float32"),
                               **{k: v for k, v in cache_meta["objectives"][objective].items() if k == "sqnr_db"}}
    if tc.spoken_questions:
        from unitocom.data.spoken import folder_checksum
        # of the splits it read (a test split added later leaves this as it was)
        meta["spoken_questions_checksum"] = folder_checksum(tc.spoken_questions, ("train", "val"))
    if d.on:
        meta["processes"] = d.world
    if tc.init_backbone:
        import shutil
        shutil.copyfile(link_paths["bpe"], out / TOKENIZER_FILE)
        meta["text_tokenizer"] = {"file": TOKENIZER_FILE, "base": vocab.base, "bare": True}
        meta["backbone"] = str(Path(tc.init_backbone).resolve())
    save_mllm(final.cpu(), train_data.image_std, ckpt, meta)
    dist.finish(d)
    return meta


def load_splits(data_dir: str, objective: str, image_link, audio_link, frontend, vocab: seq.Vocab,
                image_size_px: int, limit: int | None = None, spoken_dir: str | None = None
                ) -> tuple[TaskData, TaskData]:
    """`data_dir`'s train and val splits as the MLLM reads them, from the data set or its token cache
    (`token_cache.is_cache`). Under `limit`, val keeps max(64, limit // 8) examples; val standardises T2I's targets
    with train's statistics. `spoken_dir`: the spoken questions' folder, which a cache does not keep."""
    val_limit = None if limit is None else max(64, limit // 8)
    if token_cache.is_cache(data_dir):
        if spoken_dir:
            raise ValueError(f"{data_dir} is a token cache, which keeps no spoken questions: train --spoken on the "
                             "data set itself")
        train_data = token_cache.load_split(data_dir, objective, "train", image_link, audio_link, vocab, limit)
        val_data = token_cache.load_split(data_dir, objective, "val", image_link, audio_link, vocab, val_limit)
    else:
        train_data = TaskData(data_dir, "train", image_link, audio_link, frontend, vocab, image_size_px, limit,
                              spoken_dir=spoken_dir)
        val_data = TaskData(data_dir, "val", image_link, audio_link, frontend, vocab, image_size_px, val_limit,
                            spoken_dir=spoken_dir)
    val_data.image_std = train_data.image_std
    return train_data, val_data


def attach_slot_targets(data_dir: str, train_data: TaskData, val_data: TaskData, cached: bool,
                        option: str = "--object-slots") -> None:
    """The object slots' targets of both splits, from the data set's scene records (`mllm.slots.targets`) or the
    token cache made from them; a training split without them is refused (the slots would have nothing to learn).
    `option`: what the refusal names as needing them."""
    from unitocom.mllm import slots
    if cached:
        train_data.slot_targets = getattr(train_data, "cached_slot_targets", None)
        val_data.slot_targets = getattr(val_data, "cached_slot_targets", None)
        if train_data.slot_targets is None:
            raise ValueError(f"{option}: the token cache {data_dir} keeps no object-slot targets (made before "
                             "them, or its scenes are not the tiny preset's); make it again with `unitocom train "
                             "token-cache`")
        return
    train_data.slot_targets = slots.targets(data_dir, "train", len(train_data.clevr_mu))
    if train_data.slot_targets is None:
        raise ValueError(f"{option}: {data_dir} has no scene records for its train split "
                         "(CLEVR_train_scenes.json)")
    val_data.slot_targets = slots.targets(data_dir, "val", len(val_data.clevr_mu))


@torch.no_grad()
def slot_reading(model: MLLM, data: TaskData, n: int, channel: TorchChannelSpec) -> dict[str, float]:
    """How well the slot head reads the first n val scenes' objects at 20 dB (`mllm.slots.reading`), as
    val_slots_<figure>_20db: what the auxiliary task is learning."""
    from unitocom.mllm import slots
    gen = torch.Generator().manual_seed(1357)
    rx = data._received_scenes(data.clevr_mu[:n], torch.full((n,), 20.0), channel, gen)
    if model.cfg.image_encoder:  # the slots read the image encoder's features
        hs = model.image_features(rx.to(next(model.parameters())))
    else:
        rows = [seq.vqa(data.vocab, t, "", None, model.cfg.question_first) for t in rx]  # the scene alone
        packed = seq.pack(model, rows)
        h, _ = model.hidden(packed.embeds, prefix=packed.prefix)
        p = sum(len(s.value) for s in rows[0][:1])  # the image follows the first text segment in either order
        hs = h[:, p: p + rx.shape[1]]
    res = slots.reading(model.slots(hs), data.slot_targets[:n].to(hs.device))
    return {f"val_slots_{k}_20db": round(v, 4) for k, v in res.items()}


def _checksum(data_dir: str) -> str:
    from unitocom.data.make import dataset_checksum  # here: it brings the data set's tools (a token cache needs none)
    return dataset_checksum(data_dir)


def final_validation(log_path: Path, steps: int) -> tuple[dict, float]:
    """(the validation figures, the wall time) that a finished run's log records at its last step; the per-step
    records of --log-every carry no validation and are passed over."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    last = next((r for r in reversed(rows) if any(k.startswith("val_") for k in r)), None)
    if last is None or last["step"] != steps:
        raise RuntimeError(f"{log_path}: the run's state is at step {steps} but its log's last validation is at "
                           f"{None if last is None else last['step']}; delete the run's train_state and log to "
                           "retrain it")
    return {k: v for k, v in last.items() if k.startswith("val_")}, last["time_s"]


TOKENIZER_FILE = "mllm.tokenizer.json"  # an MLLM on a backbone's vocabulary: its tokenizer, beside it


def shard(step_module: Objective, model: MLLM, compute: config.TrainCompute) -> torch.nn.Module:
    """FSDP2 (`fully_shard`) over the ranks: each decoder layer its own unit (gathered for its forward and
    backward, then freed), the rest (embedding, LM head, projections, diffusion head) the root's. On CUDA with
    bf16 the gathered parameters are bf16, gradients reduced in fp32. Runs on the CPU with gloo too (tested in
    miniature; torch 2.13)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    kw = {}
    if compute.autocast_bf16:
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.backbone.layers:
        fully_shard(layer, **kw)
    return fully_shard(step_module, **kw)


@torch.no_grad()
def validate(model: MLLM, data: TaskData, tc: TrainConfig, channel: TorchChannelSpec) -> dict[str, float]:
    """VQA exact match at 20 and 0 dB (on val_vqa_n questions), ASR WER at 20 dB, T2I diffusion loss, and the
    captioning loss where captioning is trained: quick numbers to watch training by."""
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
        rx = [next(s.value for s in ex if s.kind == "image")
              for ex in data.examples("vqa", idx, torch.full((n,), snr_db), channel, gen)]
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
    # spoken questions last: the draws from `gen` above stay those of the MLLMs validated before issue 17
    n = min(tc.val_n, data.counts().get("svqa", 0))
    for snr_db in ((20.0, 0.0) if n else ()):
        idx = list(range(n))
        exs = data.examples("svqa", idx, torch.full((n,), snr_db), channel, gen)
        answers = tasks.answer_spoken(model, data.vocab, [ex[1].value for ex in exs], [ex[3].value for ex in exs])
        out[f"val_svqa_acc_{snr_db:g}db"] = sum(seq.normalize(a) == seq.normalize(data.spoken[i][3])
                                                for a, i in zip(answers, idx)) / n
    if n:
        out["val_svqa_n"] = n
    out.update(caption_gain(model, data, min(tc.val_n, data.counts()["t2i"])))
    if tc.object_slots and data.slot_targets is not None and getattr(model, "slots", None) is not None:
        out.update(slot_reading(model, data, min(tc.val_n, len(data.slot_targets)), channel))
    for task in ("cap", "obj", "prog", "lay"):
        if task in dict(tc.task_weights):
            out.update(auxiliary_loss(model, data, task, min(tc.val_n, data.counts()[task]), channel))
    return out


def auxiliary_loss(model: MLLM, data: TaskData, task: str, n: int, channel: TorchChannelSpec) -> dict[str, float]:
    """An auxiliary task's (cap, obj) LM loss in nats per target token on its first n val examples, scenes received
    at 20 dB, with its own draws: what it is learning. Captions do not reach 0 (the templates' word order is
    random); an object listing is determined by the scene, so a model that reads every object does."""
    if not n:
        return {}
    gen = torch.Generator().manual_seed(2468)
    packed = seq.pack(model, data.examples(task, list(range(n)), torch.full((n,), 20.0), channel, gen))
    with torch.no_grad():
        return {f"val_{task}_lm_20db": float(loss_of(model, packed, 1, gen)["lm"])}


def caption_gain(model: MLLM, data: TaskData, n: int) -> dict[str, float]:
    """How much the caption tells the diffusion head: the T2I diffusion loss on n val images with each image's
    own (first) caption and with the next image's, under the same noise draws (a paired difference). A gain near
    0 means the model draws from the token context alone and ignores what was asked for."""
    first: dict[int, str] = {}
    for image, caption in data.captions:  # one caption per image: the other caption is another image's
        if len(first) < n:
            first.setdefault(image, caption)
    images = list(first)
    if len(images) < 2:
        return {}
    dev = next(model.parameters()).device
    losses = {}
    for name, shift in (("own", 0), ("other", 1)):
        packed = seq.pack(model, [seq.t2i(data.vocab, first[images[(k + shift) % len(images)]],
                                          data.image_std.forward(data.coco_mu[image]))
                                  for k, image in enumerate(images)])
        gen = torch.Generator(device=dev).manual_seed(4321)
        with torch.no_grad():
            losses[name] = float(loss_of(model, packed, 4, gen)["diffusion"])
    return {"val_t2i_diffusion_own_caption": losses["own"], "val_t2i_diffusion_other_caption": losses["other"],
            "val_t2i_caption_gain": losses["other"] - losses["own"]}
