"""`unitocom train mllm`: the base-station MLLM (the scene checker is trained by `unitocom.metrics.cli`)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from unitocom.link.snr import snr_interval_arg


# cap: captioning; obj: the scene's objects left to right (`mllm.objects`); prog: the question's program
# (`data.programs`), which the MLLM then answers by: auxiliary tasks (issue 12)
TASKS = ("vqa", "svqa", "t2i", "asr", "cap", "obj", "prog", "lay")


def _per_task(text: str, value_of, expected: str) -> list[tuple[str, object]]:
    """"vqa=2,t2i=1" -> [("vqa", value_of("2")), ...]: each TASK named once and one of TASKS, each value what
    value_of makes of it (None: refused, with `expected` in the message)."""
    out: list[tuple[str, object]] = []
    for part in text.split(","):
        name, eq, value = part.strip().partition("=")
        v = value_of(value.strip()) if eq else None
        if name not in TASKS or v is None:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: expected {expected}")
        if name in dict(out):
            raise argparse.ArgumentTypeError(f"{name} named twice")
        out.append((name, v))
    return out


def task_weights_arg(text: str) -> tuple[tuple[str, int], ...]:
    """"vqa=2,t2i=1" -> (("vqa", 2), ("t2i", 1)): whole steps per task in each training cycle."""
    out = [(n, w) for n, w in _per_task(text, lambda v: int(v) if v.isdigit() else None,
                                        f"TASK=STEPS with TASK one of {', '.join(TASKS)} and STEPS a whole number")
           if w > 0]
    if not out:
        raise argparse.ArgumentTypeError("every task has weight 0: nothing to train")
    return tuple(out)


def loss_scale_arg(text: str) -> tuple[tuple[str, float], ...]:
    """"t2i=8" -> (("t2i", 8.0),): a positive multiplier of each named task's loss on its steps."""
    def positive(v: str) -> float | None:
        try:
            x = float(v)
        except ValueError:
            return None
        return x if 0 < x < float("inf") else None
    return tuple(_per_task(text, positive, f"TASK=SCALE with TASK one of {', '.join(TASKS)} and SCALE a positive "
                                           "number"))


ARCH = ("hidden", "layers", "heads", "intermediate", "head_width", "head_depth", "projector_depth", "question_first",
        "standardized_inputs", "image_grid", "image_grid_scale", "prefix_attention", "image_encoder")
FLAGS = ("question_first", "standardized_inputs", "prefix_attention")  # 0 or 1
FLOATS = ("image_grid_scale",)  # a positive number


def arch_arg(text: str) -> tuple[tuple[str, int | bool], ...]:
    """"hidden=256,heads=8" -> (("hidden", 256), ("heads", 8)): MLLM architecture other than the preset's, each
    value typed as MLLMConfig's field (FLAGS as bools)."""
    out: dict[str, int | bool] = {}
    for part in text.split(","):
        name, eq, value = part.strip().partition("=")
        value = value.strip()
        if name in FLOATS:
            try:
                ok = 0 < float(value) < float("inf")
            except ValueError:
                ok = False
        else:
            ok = value.isdigit() and (int(value) in (0, 1) if name in FLAGS else int(value) >= 1)
        if not eq or name not in ARCH or not ok:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: expected NAME=N with NAME one of {', '.join(ARCH)}, N at least 1 "
                f"({', '.join(FLAGS)}: 0 or 1; {', '.join(FLOATS)}: a positive number)")
        if name in out:
            raise argparse.ArgumentTypeError(f"{name} named twice")
        out[name] = float(value) if name in FLOATS else bool(int(value)) if name in FLAGS else int(value)
    return tuple(out.items())


def add_train_command(sub) -> None:
    from unitocom.config import PRESETS
    m = sub.add_parser("mllm", help="the base-station MLLM: VQA, text-to-image and ASR on received tokens",
                       description="Train one multitask MLLM on tokens that crossed the frozen learned link at "
                                   "SNRs drawn per example (Rayleigh by default). Resumes from <run-dir>; writes "
                                   "<run-dir>/log.jsonl and checkpoints/mllm-<objective>.safetensors with its "
                                   "entry in checkpoints/manifest-tasks.json (mllm-<objective>-s<N>.safetensors "
                                   "with --image-tokens N other than the preset's).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    m.add_argument("--objective", default="sigma-genib", choices=["sigma-genib", "vae", "genib"],
                   help="which tokenizers' tokens it reads (one MLLM per scheme)")
    m.add_argument("--image-tokens", type=int, default=None, metavar="N",
                   help="image tokens S_v per picture: reads the image-<objective>-sN tokenizer (default: the "
                        "preset's, 32); Fig. 3 compares 16, 32, 64 and 128 (`unitocom fig3`)")
    m.add_argument("--data", default="data/tiny",
                   help="the data set (`unitocom data make`), or a token cache of it (`unitocom train token-cache`: "
                        "its token means and text, for a machine without the data set; its tokenizers are used)")
    m.add_argument("--steps", type=int, default=3000)
    m.add_argument("--batch-size", type=int, default=64,
                   help="examples per step per process: under torchrun the global batch is this times the number "
                        "of processes, each drawing the whole and training on its own part")
    m.add_argument("--lr", type=float, default=2e-3)
    m.add_argument("--snr-db", type=snr_interval_arg, default="-5:25", help="training SNR range A:B in dB (write --snr-db=-5:25)")
    m.add_argument("--channel", default="rayleigh", choices=["awgn", "rayleigh"])
    m.add_argument("--val-every", type=int, default=500)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--run-dir", default=None, help="default runs/mllm-<objective> (runs/mllm-<objective>-s<N> with "
                                                   "--image-tokens N other than the preset's)")
    m.add_argument("--no-install", action="store_true", help="leave the result in the run dir only")
    from unitocom.train.dist import add_compute_flags
    add_compute_flags(m, mllm=True)
    m.add_argument("--init-backbone", default=None, metavar="DIR",
                   help="start the backbone from a local Hugging Face Llama directory (config.json, "
                        "model.safetensors, tokenizer.json; nothing is downloaded): the MLLM takes its sizes and its "
                        "tokenizer and vocabulary, with the MLLM's special tokens appended to the embedding")
    m.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch intra-op threads of the training loop on the CPU: 1 for the tiny width (more spin on a "
                        "shared 2-core machine); a wider MLLM (--mllm-arch hidden=256) on otherwise idle cores gains "
                        "from 2")
    m.add_argument("--log-every", type=int, default=0, metavar="N",
                   help="also log the losses every N steps in <run-dir>/log.jsonl: each task's latest step since the "
                        "last records (0: validations only)")
    m.add_argument("--stop-at", type=int, default=None, metavar="N",
                   help="train only to step N of the --steps schedule (its learning rates are the full run's), "
                        "validate, save the run state in <run-dir> and exit without a checkpoint; the same command "
                        "without it resumes there. For learning-rate probes and runs split across sessions")
    m.add_argument("--resilient", action="store_true",
                   help="issue 16: train with token and packet dropout and a learned lost-token embedding, warm "
                        "started from the installed mllm-<objective> (or --init); installs mllm-<objective>-resilient")
    m.add_argument("--spoken", action="store_true",
                   help="issue 17: add VQA with a spoken question (image + the question's speech tokens -> answer) "
                        "to the mix (steps per cycle: VQA 2, spoken VQA 2, T2I 1, ASR 1), warm started from the "
                        "installed mllm-<objective> (or --init); installs mllm-<objective>-spoken, which the base "
                        "station serves for a VQA request whose question is audio")
    m.add_argument("--spoken-questions", default=None, metavar="DIR",
                   help="with --spoken: the spoken questions (`unitocom data spoken-questions`); default "
                        "<data>/spoken_questions, made there first (about 2 min) when missing")
    m.add_argument("--init", default=None, metavar="PATH", help="warm start from this MLLM checkpoint")
    m.add_argument("--task-weights", type=task_weights_arg, default=None, metavar="T=W,...",
                   help="steps per task in each cycle, e.g. vqa=1 for a VQA-only ablation (tasks: vqa, t2i, asr, "
                        "svqa with --spoken, cap: captioning the received scene, obj: listing its objects left to "
                        "right with their places, prog: writing the question's program, which VQA is then answered "
                        "by, run on the object slots' reading (needs the image encoder and --object-slots): "
                        "auxiliary tasks; a task left out is not trained, still validated); default vqa=2,t2i=1,asr=1 "
                        "(with --spoken vqa=2,svqa=2,t2i=1,asr=1)")
    m.add_argument("--loss-scale", type=loss_scale_arg, default=None, metavar="T=S,...",
                   help="multiply a task's loss on its steps, e.g. t2i=8: AdamW's step sizes are shared by the tasks "
                        "and the LM tasks' backbone gradients are about 8 times text-to-image's, so T2I otherwise "
                        "trains the backbone at a fraction of the learning rate (default: 1 for every task)")
    m.add_argument("--mllm-arch", type=arch_arg, default=None, metavar="NAME=N,...",
                   help="MLLM architecture other than the preset's, for ablations (`unitocom ablate`), e.g. "
                        "hidden=256,heads=8,intermediate=688 or projector_depth=2 (LLaVA-1.5's MLP projection) or "
                        "question_first=1 (VQA reads the question before the image) or standardized_inputs=1 "
                        "(received tokens standardised per dimension, as T2I's) or image_grid=32 (the image positions "
                        "start as the 2-D sine-cosine code of the 32 tokens' grid, times image_grid_scale=S, default "
                        "1); names: " + ", ".join(ARCH) +
                        "; hidden must divide by heads. The checkpoint records it and the base station builds what "
                        "it records")
    m.add_argument("--layout-order", default="left-to-right", choices=["left-to-right", "caption"],
                   help="the lay task's order of a scene's objects: left to right, or those the caption names first "
                        "in its order (`mllm.layout.ordered`)")
    m.add_argument("--object-slots", type=float, default=0.0, metavar="W",
                   help="add, with weight W, the object slots' loss on VQA steps: a training head reads each received "
                        "scene's objects (size, colour, shape, material, centre; left to right) from the hidden "
                        "states over its image tokens, so that the backbone learns to find them (`mllm.slots`; needs "
                        "the data set's scene records, not a token cache). The base station never runs the head; "
                        "0: none")
    m.add_argument("--prefix-attention", action="store_true",
                   help="train a prefix LM: each prompt's positions (a VQA scene and its question, the speech to "
                        "transcribe, the caption to draw) attend to each other both ways, what is predicted stays "
                        "causal (`MLLMConfig.prefix_attention`). It changes no tensor, so it also turns a warm start "
                        "(--init) into one; the checkpoint records it and the base station attends the same way")
    m.add_argument("--image-encoder", type=int, default=0, metavar="N",
                   help="put N bidirectional layers in front of the backbone over each received image's tokens "
                        "(`MLLMConfig.image_encoder`, an MLLM's vision encoder); with --object-slots the slots read "
                        "its features. A warm start (--init) gets a fresh one that starts as no change; the "
                        "checkpoint records it and the base station runs it. 0: the checkpoint's (none by default)")
    m.add_argument("--object-tokens", action="store_true",
                   help="give the backbone the object slots' reading of each received scene as tokens, one per "
                        "slot (attribute and presence probabilities, centre) after the scene's image tokens "
                        "(`MLLMConfig.object_tokens`); needs the image encoder and --object-slots (the slot head "
                        "runs at the base station then). A warm start gets the tokens' projection fresh")
    m.add_argument("--received-questions", type=float, default=0.0, metavar="P",
                   help="read this share (0..1) of the VQA questions through the objective's text link "
                        "(text-<objective>) at the example's SNR and channel, as the base station reads a typed "
                        "question, instead of clean, so that the MLLM learns to answer garbled ones; 0: clean")
    m.add_argument("--head-steps", type=int, default=0, metavar="N",
                   help="then train the diffusion head alone for N more steps on the frozen model's cached hidden "
                        "states (`train mllm-head`; VQA and ASR unchanged); 0: none")
    m.set_defaults(func=_cmd_mllm)

    h = sub.add_parser("mllm-head", help="train an MLLM's diffusion head further on its frozen backbone (T2I only)",
                       description="Text-to-image's second phase: the backbone's hidden states for every training "
                                   "picture and caption (and each picture with an empty caption, for guidance) "
                                   "are computed once, and the diffusion head alone is trained on them. The "
                                   "backbone, embeddings and LM head are untouched: VQA and ASR answers stay those "
                                   "of the MLLM it starts from. Resumes from <run-dir>; installs over the MLLM "
                                   "and records the step in its manifest entry (`head_command`).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    h.add_argument("--objective", default="sigma-genib", choices=["sigma-genib", "vae", "genib"],
                   help="which installed MLLM (mllm-<objective>) and tokenizers")
    h.add_argument("--mllm", default=None, metavar="PATH",
                   help="another MLLM checkpoint, trained over again in place (its own objective's tokenizers); "
                        "default: the installed mllm-<objective>")
    h.add_argument("--data", default="data/tiny", help="the data set the MLLM was trained on, or its token cache")
    h.add_argument("--steps", type=int, default=8000, help="head steps (the run's cosine schedule)")
    h.add_argument("--batch-size", type=int, default=2048, help="(hidden state, token) rows per step")
    h.add_argument("--lr", type=float, default=5e-4, help="peak learning rate, warm-up then cosine to 0")
    h.add_argument("--val-every", type=int, default=1000, help="held-out diffusion loss and a resumable state every N steps")
    h.add_argument("--images", type=int, default=None, metavar="N", help="the first N training pictures only")
    h.add_argument("--seed", type=int, default=0, help="draws of rows and noise")
    h.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch intra-op threads on the CPU (the cached states' forward pass and the head's steps)")
    h.add_argument("--run-dir", default=None, help="default runs/mllm-<objective>-head")
    h.add_argument("--no-install", action="store_true", help="leave the result in the run dir only")
    h.set_defaults(func=_cmd_mllm_head)

    e = sub.add_parser("image-encoder", help="pretrain an image encoder for an MLLM on the object slots alone "
                                             "(the program MLLM's first stage)",
                       description="A few bidirectional layers over each received scene's tokens (the MLLM's "
                                   "image encoder) and the object slots learn to read its objects (size, colour, "
                                   "shape, material, centre) from the tokens the MLLM receives over its own image "
                                   "link, at an SNR drawn per scene; the MLLM itself is frozen and the encoder's "
                                   "output projection stays zero, so the result answers as the MLLM did until "
                                   "`train mllm --init <run-dir>/mllm.safetensors --object-slots 1` connects it "
                                   "(BLIP-2's and LLaVA's two stages). Resumes from <run-dir>.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--objective", default="sigma-genib", choices=["sigma-genib", "vae", "genib"],
                   help="whose installed MLLM (mllm-<objective>), when --init is not given")
    e.add_argument("--init", default=None, metavar="PATH",
                   help="the MLLM to add the encoder to (its own image link is read); default: the installed "
                        "mllm-<objective>")
    e.add_argument("--data", default="data/tiny", help="a data set with scene records, or its token cache")
    e.add_argument("--layers", type=int, default=2, help="the encoder's bidirectional layers")
    e.add_argument("--steps", type=int, default=6000)
    e.add_argument("--batch-size", type=int, default=64, help="scenes a step")
    e.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warm-up 100 steps, cosine to 0)")
    e.add_argument("--snr-db", type=snr_interval_arg, default=(-5.0, 25.0), metavar="A:B",
                   help="training SNR range in dB, drawn per scene; write --snr-db=-5:25 when A is negative")
    e.add_argument("--channel", default="rayleigh", choices=["awgn", "rayleigh"])
    e.add_argument("--eval-every", type=int, default=1000, help="the slots' val reading and a resumable state")
    e.add_argument("--n-val", type=int, default=500, help="val scenes each reading is scored on")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=1, metavar="N", help="torch intra-op threads on the CPU")
    e.add_argument("--device", default="cpu", help="cpu or cuda")
    e.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after this step with a resumable state (the schedule stays --steps'); no checkpoint")
    e.add_argument("--run-dir", default=None, help="default runs/image-encoder-<objective>; the result is "
                                                   "<run-dir>/mllm.safetensors")
    e.set_defaults(func=_cmd_image_encoder)

    r = sub.add_parser("layout-renderer", help="teach an MLLM to draw a caption from the layout it writes (T2I "
                                               "through a written layout)",
                       description="A layout renderer (`mllm.layout`: a scene's objects and their cells -> the image "
                                   "tokens, in the MLLM's own standardised token space) learns by regression on the "
                                   "data set's scene records (exact centres; a written layout gives its cells') "
                                   "and the MLLM's image link's means of the same pictures; the result is the MLLM "
                                   "with the renderer inside, which draws each caption from the layout it writes (an "
                                   "MLLM trained with the lay task) and falls back to its diffusion head where the "
                                   "layout does not read. Nothing else of the MLLM changes.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--objective", default="sigma-genib", choices=["sigma-genib", "vae", "genib"],
                   help="whose installed MLLM (mllm-<objective>), when --init is not given")
    r.add_argument("--init", default=None, metavar="PATH",
                   help="the MLLM to add the renderer to (its own image link is read); default: the installed "
                        "mllm-<objective>")
    r.add_argument("--data", default="data/tiny", help="a data set with scene records, or its token cache")
    r.add_argument("--steps", type=int, default=4000)
    r.add_argument("--batch-size", type=int, default=64, help="scenes a step")
    r.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warm-up, cosine to 0)")
    r.add_argument("--hidden", type=int, default=128, help="the renderer's width")
    r.add_argument("--layers", type=int, default=3, help="the renderer's cross-attention layers")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1, metavar="N", help="torch intra-op threads on the CPU")
    r.add_argument("--device", default="cpu", help="cpu or cuda")
    r.add_argument("--run-dir", default=None, help="default runs/layout-renderer-<objective>; the result is "
                                                   "<run-dir>/mllm.safetensors")
    r.set_defaults(func=_cmd_layout_renderer)

    c = sub.add_parser("token-cache", help="the MLLMs' training data as token means and text, for a machine "
                                           "without the data set",
                       description="Pass a data set's train and val splits through each objective's installed "
                                   "tokenizers once and write what `train mllm` reads of them (token means, "
                                   "questions, captions, transcripts) with copies of those tokenizers, into OUT. "
                                   "`train mllm --data OUT` (and `train all --speech-data OUT`) then train without "
                                   "the pictures, the speech or their decoders, and record the data set's checksum. "
                                   "Spoken questions are not cached.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--data", default="data/tiny-speech96", help="the data set (`unitocom data make`)")
    c.add_argument("--out", required=True, help="the cache folder (written over)")
    c.add_argument("--objectives", nargs="+", default=["sigma-genib", "vae"], choices=["sigma-genib", "vae", "genib"],
                   help="whose tokenizers (the installed image-<objective>-s32, audio-<objective>-s32)")
    c.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    c.add_argument("--values", default="float32", choices=["float32", "int8"],
                   help="float32: the means exactly (a run reads what it would from the data set); int8: a quarter "
                        "of the size, one scale per token, quantization noise about 40 dB under the means (recorded "
                        "per split), far under the channel noise training adds")
    c.add_argument("--threads", type=int, default=2, metavar="N", help="torch threads of the tokenizers' pass")
    c.set_defaults(func=_cmd_token_cache)


def _scene_splits(data: str, src_path: Path, meta: dict, command: str, val_use: str):
    """What `train layout-renderer` and `train image-encoder` read: the MLLM's own image link (tokens of another
    objective's link would be noise to it; a token cache's copy when `data` is one) and `data`'s train and val splits
    with their scenes' slot targets, both splits required. -> (objective, image link, link paths, train, val)."""
    from unitocom import config
    from unitocom.errors import UserError
    from unitocom.mllm import token_cache
    from unitocom.mllm.checkpoint import load_links
    from unitocom.mllm.train import attach_slot_targets, load_splits
    cfg = config.load("tiny")
    objective = meta.get("objective") or "sigma-genib"
    cached = token_cache.is_cache(data)  # a GPU machine's copy: the means the cache's tokenizers made
    image_link, _, _, vocab, paths = load_links(cfg, token_cache.links_of(data, objective) if cached else None,
                                                objective)
    want = (meta.get("links") or {}).get("image")
    if want and Path(paths["image"]).name != want:
        raise UserError(f"--init {src_path} reads the image link {want}; the {objective} one here is "
                        f"{Path(paths['image']).name}")
    if cached:
        token_cache.check_links(data, objective, paths)
    train_data, val_data = load_splits(data, objective, image_link, None, None, vocab, cfg.preset.image_size_px)
    try:
        attach_slot_targets(data, train_data, val_data, cached, option=command)
    except ValueError as e:
        raise UserError(str(e)) from None
    if val_data.slot_targets is None:
        raise UserError(f"--data {data}: no scene records for its val split{val_use} (CLEVR_val_scenes.json)")
    return objective, image_link, paths, train_data, val_data


def _cmd_layout_renderer(args) -> int:
    import torch

    from unitocom.data.layouts import require_data
    from unitocom.errors import UserError
    from unitocom.mllm import layout
    from unitocom.mllm.checkpoint import load_mllm, mllm_path, save_mllm
    from unitocom.train.provenance import file_sha256, git_state, recorded_command
    require_data(args.data)
    src_path = Path(args.init) if args.init else mllm_path(args.objective)
    if not src_path.is_file():
        raise UserError(f"{src_path}: no such MLLM checkpoint (train it first with `unitocom train mllm`)")
    if min(args.steps, args.batch_size, args.hidden, args.layers, args.threads) < 1:
        raise UserError("--steps, --batch-size, --hidden, --layers and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    src, std, meta = load_mllm(str(src_path))
    if src.cfg.layout_renderer:
        raise UserError(f"--init {src_path} has a layout renderer already")
    objective, image_link, paths, train_data, val_data = _scene_splits(
        args.data, src_path, meta, "train layout-renderer", "")  # the scene records are what it learns to draw
    # the exact centres: trained on the cells' centres it draws the written layouts worse (0.875 against 0.937 of the
    # pairs; results/t2i-layout-probe.json), as it learns the blur of every object off its cell's centre
    lay = {name: layout.layout_inputs(d.slot_targets) for name, d in (("train", train_data), ("val", val_data))}
    torch.manual_seed(args.seed)
    renderer = layout.LayoutRenderer(image_link.spec.tokens, train_data.clevr_mu.shape[-1], args.hidden, args.layers)
    t0 = time.time()
    log = layout.train_renderer(renderer, lay["train"], std.forward(train_data.clevr_mu), lay["val"],
                                std.forward(val_data.clevr_mu), args.steps, args.batch_size, args.lr, args.seed,
                                device=args.device)
    run = Path(args.run_dir or f"runs/layout-renderer-{objective}")
    run.mkdir(parents=True, exist_ok=True)
    out = run / "mllm.safetensors"
    commit, dirty = git_state()
    meta = {**meta, "layout_renderer_training": {
        "command": recorded_command(), "git_commit": commit, "git_dirty": dirty, "source": str(src_path),
        "source_sha256": file_sha256(src_path), "data": args.data, "steps": args.steps,
        "batch": args.batch_size, "lr": args.lr, "seed": args.seed, "wall_s": round(time.time() - t0, 1),
        "log": log}}
    save_mllm(src.with_layout_renderer(renderer.cpu()), std, out, meta)
    print(f"wrote {out}: the MLLM with a {args.layers}-layer layout renderer; val MSE {log[-1]['val_mse']} "
          "(standardised tokens)")
    return 0


def _cmd_image_encoder(args) -> int:
    import dataclasses

    import torch

    from unitocom.data.layouts import require_data
    from unitocom.errors import UserError
    from unitocom.mllm import encoder_train
    from unitocom.mllm.checkpoint import load_mllm, mllm_path, save_mllm
    from unitocom.train.provenance import file_sha256, git_state, recorded_command
    require_data(args.data)
    src_path = Path(args.init) if args.init else mllm_path(args.objective)
    if not src_path.is_file():
        raise UserError(f"{src_path}: no such MLLM checkpoint (train it first with `unitocom train mllm`)")
    if min(args.layers, args.steps, args.batch_size, args.eval_every, args.n_val, args.threads) < 1:
        raise UserError("--layers, --steps, --batch-size, --eval-every, --n-val and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the fresh encoder's initial weights
    src, std, meta = load_mllm(str(src_path))
    if src.cfg.image_encoder:
        raise UserError(f"--init {src_path} has an image encoder already")
    model = encoder_train.with_encoder(src, args.layers)  # its fresh weights drawn first, before any data is read
    objective, image_link, paths, train_data, val_data = _scene_splits(
        args.data, src_path, meta, "train image-encoder", ", which the slots' reading is scored on")
    targets = {"train": train_data.slot_targets, "val": val_data.slot_targets}
    ec = encoder_train.EncoderConfig(layers=args.layers, steps=args.steps, batch=args.batch_size, lr=args.lr,
                                     snr_db=tuple(args.snr_db), channel=args.channel, eval_every=args.eval_every,
                                     n_val=args.n_val, seed=args.seed, threads=args.threads, device=args.device)
    run = Path(args.run_dir or f"runs/image-encoder-{objective}")
    print(f"objective {objective}: image link {paths['image']}; run dir {run}")
    t0 = time.time()
    rows = encoder_train.pretrain(model, train_data, val_data, targets, ec, run, stop_at=args.stop_at)
    if args.stop_at and args.stop_at < args.steps:
        print(f"stopped at step {args.stop_at} of {args.steps}; the same command without --stop-at resumes it")
        return 0
    out = run / "mllm.safetensors"
    commit, dirty = git_state()
    meta = {**meta, "image_encoder_pretraining": {
        "command": recorded_command(), "git_commit": commit, "git_dirty": dirty, "source": str(src_path),
        "source_sha256": file_sha256(src_path), "config": dataclasses.asdict(ec), "data": args.data,
        "wall_s": round(time.time() - t0, 1), "log": rows}}
    save_mllm(model.cpu(), std, out, meta)
    print(f"wrote {out}: {src.cfg.layers} x {src.cfg.hidden} MLLM + a {ec.layers}-layer image encoder; val reading "
          f"at 20 dB: {json.dumps(rows[-1]['20db'])}")
    return 0


def _cmd_token_cache(args) -> int:
    import torch

    from unitocom.data.layouts import require_data
    from unitocom.mllm import token_cache
    require_data(args.data)
    torch.set_num_threads(args.threads)
    meta = token_cache.make(args.data, args.out, args.objectives, args.preset, values=args.values)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"token cache of {args.data} ({', '.join(meta['objectives'])}) in {args.out}: {size / 2**20:.1f} MiB")
    return 0


def _cmd_mllm(args) -> int:
    import shutil

    from unitocom.config import PRESETS
    from unitocom.data.layouts import require_data
    from unitocom.errors import UserError
    from unitocom.mllm.checkpoint import mllm_path
    from unitocom.mllm.train import TrainConfig, train
    from unitocom.train.dist import compute_from_args, from_env
    from unitocom.train.provenance import manifest_entry, recorded_command
    if not 0.0 <= args.received_questions <= 1.0:  # the options first: no data set needed to be told
        raise UserError(f"--received-questions {args.received_questions}: a share in 0..1")
    require_data(args.data)
    preset_tokens = PRESETS[args.preset].image_tokens
    if args.image_tokens is not None and args.image_tokens < 1:
        raise UserError(f"--image-tokens must be at least 1, got {args.image_tokens}")
    own = None if args.image_tokens in (None, preset_tokens) else args.image_tokens  # None: the preset's S_v
    if args.spoken and args.resilient:
        raise UserError("--spoken and --resilient: one variant per run (train the spoken MLLM from the letter's)")
    if args.task_weights and "svqa" in dict(args.task_weights) and not args.spoken:
        raise UserError("--task-weights svqa=...: spoken VQA is trained with --spoken only")
    if args.mllm_arch:
        if args.init_backbone or args.resilient or args.spoken or args.init:
            raise UserError("--mllm-arch: a model trained from scratch only (--init-backbone, --init, --resilient "
                            "and --spoken take the architecture of the model they start from)")
        sizes = {**{"hidden": PRESETS[args.preset].mllm_hidden, "heads": PRESETS[args.preset].mllm_heads},
                 **dict(args.mllm_arch)}
        if sizes["hidden"] % sizes["heads"]:
            raise UserError(f"--mllm-arch: hidden {sizes['hidden']} does not divide by heads {sizes['heads']}")
        grid = dict(args.mllm_arch).get("image_grid")
        if grid is not None and grid != (own or preset_tokens):
            raise UserError(f"--mllm-arch image_grid={grid}: the grid is the image link's, "
                            f"{own or preset_tokens} tokens")
        if "image_grid_scale" in dict(args.mllm_arch) and grid is None:
            raise UserError("--mllm-arch image_grid_scale: scales the grid code of image_grid=N; name both")
    if args.object_slots < 0 or args.object_slots != args.object_slots:
        raise UserError(f"--object-slots {args.object_slots}: a weight >= 0")
    if args.image_encoder < 0:
        raise UserError(f"--image-encoder {args.image_encoder}: a number of layers >= 0")
    if args.object_tokens and not (args.object_slots and (args.image_encoder or args.init)):
        raise UserError("--object-tokens reads the object slots of the image encoder: give --object-slots W and "
                        "--image-encoder N (or --init an MLLM that has an image encoder)")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: at least 1")
    if args.stop_at is not None and args.stop_at < 1:
        raise UserError(f"--stop-at {args.stop_at}: a step of the schedule, 1 to --steps")
    if args.spoken_questions and not args.spoken:
        raise UserError("--spoken-questions is read with --spoken only")
    from unitocom.mllm import token_cache
    if args.spoken and token_cache.is_cache(args.data):
        raise UserError(f"--spoken --data {args.data}: a token cache keeps no spoken questions; give the data set")
    spoken_dir = None
    if args.spoken:
        from unitocom.data.spoken import default_dir, make_spoken_questions
        spoken_dir = Path(args.spoken_questions) if args.spoken_questions else default_dir(args.data)
        if not (spoken_dir / "questions_train.json").is_file():
            if args.spoken_questions:
                raise UserError(f"--spoken-questions {spoken_dir}: no questions_train.json there (make it with "
                                f"`unitocom data spoken-questions --data {args.data} --out {spoken_dir}`)")
            print(f"making the spoken questions in {spoken_dir} (unitocom data spoken-questions, defaults)")
            from unitocom.data.make import dataset_checksum
            make_spoken_questions(args.data, spoken_dir, base_checksum=dataset_checksum(args.data, use_manifest=True))
    init = args.init or (str(mllm_path(args.objective, own, args.preset)) if args.resilient or args.spoken else None)
    tc = TrainConfig(steps=args.steps, batch=args.batch_size, lr=args.lr, snr_db=args.snr_db, channel=args.channel,
                     val_every=args.val_every, seed=args.seed, token_dropout=args.resilient,
                     init=init, spoken_questions=str(spoken_dir) if spoken_dir else None,
                     **({"task_weights": args.task_weights} if args.task_weights else
                        {"task_weights": (("vqa", 2), ("svqa", 2), ("t2i", 1), ("asr", 1))} if args.spoken else {}),
                     init_backbone=args.init_backbone, compute=compute_from_args(args), log_every=args.log_every,
                     threads=args.threads, arch=args.mllm_arch or (), loss_scale=args.loss_scale or (),
                     object_slots=args.object_slots, received_questions=args.received_questions,
                     prefix_attention=args.prefix_attention, image_encoder=args.image_encoder,
                     object_tokens=args.object_tokens, layout_order=args.layout_order)
    if tc.init and not Path(tc.init).exists():
        raise UserError(f"--init {tc.init}: no such MLLM checkpoint (train it first with `unitocom train mllm`)")
    if tc.init_backbone and not (Path(tc.init_backbone) / "config.json").is_file():
        raise UserError(f"--init-backbone {tc.init_backbone}: no config.json there (a local Hugging Face directory "
                        "with config.json, model.safetensors and tokenizer.json)")
    suffix = "-resilient" if args.resilient else "-spoken" if args.spoken else ""
    run = Path(args.run_dir or (f"runs/mllm-{args.objective}{suffix}" if own is None else
                                f"runs/mllm-{args.objective}-s{own}{suffix}"))
    try:
        meta = train(args.data, str(run), args.preset, objective=args.objective, tc=tc, command=recorded_command(),
                     image_tokens=own, stop_at=args.stop_at)
    except ValueError as e:  # an option the run refuses (no CUDA for --device cuda, a state of another format)
        raise UserError(str(e)) from e
    if not from_env().main or not meta:  # rank 0 alone installs and reports; --stop-at leaves no checkpoint
        return 0
    if args.head_steps:
        from unitocom.mllm.head_train import HeadConfig
        meta = head_phase(run / "mllm.safetensors", args.objective, args.data, run / "head",
                          HeadConfig(steps=args.head_steps, seed=args.seed, threads=args.threads,
                                     device=compute_from_args(args).resolved().device), head_command=None)
    if not args.no_install:
        dst = mllm_path(args.objective, own, args.preset, resilient=args.resilient, spoken=args.spoken)
        shutil.copyfile(run / "mllm.safetensors", dst)
        if meta.get("text_tokenizer"):  # a backbone's vocabulary: its tokenizer travels with the MLLM
            tok = dst.with_suffix(".tokenizer.json")
            shutil.copyfile(run / meta["text_tokenizer"]["file"], tok)
        manifest_entry(dst, meta)
        print(f"installed {dst}")
    print(json.dumps(meta["validation"]))
    return 0


def head_phase(path: Path, objective: str, data: str, run_dir: Path, hc, head_command: str | None,
               images: int | None = None, links: dict[str, str] | None = None) -> dict:
    """Train the diffusion head of the MLLM at `path` (`head_train`) and write it back there; -> its new meta:
    `validation` gains val_t2i_diffusion_head (the new head's held-out loss), `head` records the phase (and
    `head_command` the command, when the phase ran as its own). The tokenizers are those of the objective the
    checkpoint says it was trained on (`objective` where it does not say)."""
    from unitocom import config
    from unitocom.mllm import head_train
    from unitocom.mllm.checkpoint import load_links, load_mllm, save_mllm
    from unitocom.mllm.data import CaptionData
    import torch
    torch.set_num_threads(hc.threads)  # the cached states' forward pass too, not only the head's steps
    model, std, meta = load_mllm(path)
    objective = meta.get("objective") or objective
    cfg = config.load(meta.get("preset", "tiny"), image_tokens=int(meta.get("image_tokens") or 0) or None)
    from unitocom.mllm import token_cache
    cached = token_cache.is_cache(data)
    if cached:  # the links its means were made with (the ones the MLLM was trained on)
        links = {**token_cache.links_of(data, objective), **(links or {})}
    link, _, frontend, vocab, paths = load_links(cfg, links, objective)  # default: the installed ones it was trained on
    size = cfg.preset.image_size_px
    # the captioned pictures alone: the head reads nothing of VQA or ASR
    if cached:
        token_cache.check_links(data, objective, paths)
        train_data = token_cache.load_captions(data, objective, "train", vocab, images)
        val_data = token_cache.load_captions(data, objective, "val", vocab, hc.val_images)
    else:
        train_data = CaptionData.load(data, "train", link, vocab, size, images)
        val_data = CaptionData.load(data, "val", link, vocab, size, hc.val_images)
    t0 = time.time()
    # the cached states' forward pass where the head trains: on one CPU thread, 60000 captions of the 4 x 256 MLLM
    # take about ten minutes, which a GPU run must not spend
    model.to(hc.device)
    rows = head_train.features(model, train_data, std, head_train.rows_of(train_data))
    val_rows = head_train.features(model, val_data, std, head_train.rows_of(val_data, first_only=True))
    model.cpu()
    print(f"hidden states of {len(rows[0])} training and {len(val_rows[0])} val image tokens in "
          f"{time.time() - t0:.0f} s")
    result = head_train.train_head(model, rows, val_rows, hc, run_dir)
    meta = {**meta, "head": result, "validation": {**meta.get("validation", {}),
                                                   "val_t2i_diffusion_head": result["head_val_t2i_diffusion_after"]}}
    if head_command:
        meta["head_command"] = head_command
    save_mllm(model, std, path, meta)
    return meta


def _cmd_mllm_head(args) -> int:
    import shutil

    from unitocom.data.layouts import require_data
    from unitocom.errors import UserError
    from unitocom.mllm.checkpoint import mllm_path
    from unitocom.mllm.head_train import HeadConfig
    from unitocom.train.provenance import manifest_entry, recorded_command
    require_data(args.data)
    src = Path(args.mllm) if args.mllm else mllm_path(args.objective)
    if not src.is_file():
        raise UserError(f"{src}: no such MLLM checkpoint (train it first with `unitocom train mllm`)")
    if args.steps < 1 or args.batch_size < 1 or args.threads < 1:
        raise UserError("--steps, --batch-size and --threads must be at least 1")
    run = Path(args.run_dir or f"runs/mllm-{args.objective}-head")
    run.mkdir(parents=True, exist_ok=True)
    work = run / "mllm.safetensors"
    if not (run / "head_state.safetensors").exists():  # a fresh phase starts from the MLLM given
        shutil.copyfile(src, work)
    hc = HeadConfig(steps=args.steps, batch=args.batch_size, lr=args.lr, val_every=args.val_every, seed=args.seed,
                    threads=args.threads)
    meta = head_phase(work, args.objective, args.data, run, hc, head_command=recorded_command(), images=args.images)
    if not args.no_install:
        dst = mllm_path(args.objective) if not args.mllm else src
        shutil.copyfile(work, dst)
        before = _manifest_entry_of(dst)  # what the manifest said of the MLLM (its history, corrected figures)
        manifest_entry(dst, {**meta, **before, "head": meta["head"], "head_command": meta["head_command"],
                             "validation": {**before.get("validation", meta["validation"]),
                                            "val_t2i_diffusion_head": meta["head"]["head_val_t2i_diffusion_after"]}})
        print(f"installed {dst}")
    print(json.dumps({k: v for k, v in meta["head"].items() if k != "head_config"}))
    return 0


def _manifest_entry_of(path: Path) -> dict:
    """The manifest's entry for `path` without the file's size and hash: the head phase rewrites the entry and
    keeps what the manifest says beyond the file's own meta (a `history`, a corrected wall time)."""
    from unitocom.train.provenance import MANIFEST
    manifest = path.parent / MANIFEST
    entry = json.loads(manifest.read_text()).get(path.stem, {}) if manifest.exists() else {}
    return {k: v for k, v in entry.items() if k not in ("file", "sha256", "bytes")}
