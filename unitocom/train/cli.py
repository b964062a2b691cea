"""`unitocom train ...`: Algorithm 1 (`tokenizer`) and `all` from here; `mllm` (unitocom.mllm.cli) and `checker`
(unitocom.metrics.cli) are registered beside them by the modules that own them."""
from __future__ import annotations

import argparse
import sys

from unitocom.link.snr import snr_interval_arg


def _tokenizer(args) -> int:
    from unitocom.data.layouts import require_data
    from unitocom.train.dist import compute_from_args
    from unitocom.train.loop import TrainOptions, train
    require_data(args.data or f"data/{args.preset}")
    overrides = {k: getattr(args, k) for k in ("xi", "lam", "k_samples", "c_sigma", "obs_var", "uses_per_token",
                                                   "consistency", "image_arch")
                 if getattr(args, k) is not None}
    opts = TrainOptions(
        modality=args.modality, objective=args.objective, tokens=args.tokens, snr_db=args.snr_db,
        channel=args.channel, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        preset=args.preset, data_dir=args.data, run_dir=args.run_dir, out=args.out, val_every=args.val_every,
        save_every=args.save_every, resume=not args.restart, threads=args.threads, snr_sampling=args.snr_sampling,
        overrides=overrides, progress=not args.quiet, init=args.init, warmup=args.warmup,
        compute=compute_from_args(args))
    try:
        train(opts)
    except ValueError as e:  # an option the loop refuses; a missing file goes to the CLI's handler (exit 2)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def add_subparser(subparsers) -> argparse.ArgumentParser:
    from unitocom.config import PRESETS
    p = subparsers.add_parser("train", help="train the learned parts: tokenizers with their coding-modulation, the MLLM, the "
                                                "scene checker, or all of them in order")
    sub = p.add_subparsers(dest="train_command", metavar="{tokenizer,mllm,mllm-head,image-encoder,token-cache,checker,semcom,semcom-eval,resilient,text-prior,all}")
    sub.required = True
    t = sub.add_parser(
        "tokenizer", help="Algorithm 1: tokenizer + adaptive coding-modulation + de-tokenizer, channel in the loop",
        description="Train one modality's tokenizer, adaptive coding-modulation and de-tokenizer jointly through a "
                    "differentiable channel (Algorithm 1 of the letter), with the sigma-GenIB, GenIB or VAE "
                    "objective. Resumes from <run-dir>/state.safetensors; writes <run-dir>/log.jsonl, the fp16 "
                    "checkpoint and its entry in checkpoints/manifest.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--modality", choices=["image", "audio", "text"], required=True)
    t.add_argument("--objective", choices=["sigma-genib", "genib", "vae"], default="sigma-genib")
    t.add_argument("--tokens", type=int, default=None,
                   help="S_v per image or S_a per audio chunk (default: the preset's); text uses its BPE length")
    t.add_argument("--snr-db", type=snr_interval_arg, default=None, metavar="A:B",
                   help="training SNR range in dB, drawn uniformly; write --snr-db=-10:25 when A is negative (default: the preset's)")
    t.add_argument("--snr-sampling", choices=["example", "batch"], default="example",
                   help="one SNR draw per example of a batch, or one per batch")
    t.add_argument("--channel", choices=["awgn", "rayleigh", "mixed"], default="awgn",
                   help="training channel; mixed: each example over AWGN or Rayleigh block fading, half and half")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=None,
                   help="examples per step per process (under torchrun the global batch is this times the number "
                        "of processes); default: the preset's")
    t.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate (default: the preset's)")
    t.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default: the preset's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    t.add_argument("--xi", type=float, default=None, help="KL weight (default: the preset's xi; vae: its vae_xi)")
    t.add_argument("--lam", type=float, default=None, help="lambda of eq. (13)")
    t.add_argument("--k-samples", type=int, default=None, help="K of eq. (14)")
    t.add_argument("--c-sigma", type=float, default=None, help="Var(sigma) of sigma-GenIB")
    t.add_argument("--obs-var", type=float, default=None, help="variance of the Gaussian likelihood (image/audio)")
    t.add_argument("--uses-per-token", type=int, default=None, help="complex channel uses per token")
    t.add_argument("--consistency", type=float, default=None,
                   help="weight of the token-consistency term ||R(T(t)) - t||^2 / ||t||^2 (0: off; default: the preset's)")
    t.add_argument("--image-arch", choices=["conv", "vit"], default=None,
                   help="image tokenizer: convolutional stages around a token grid, or a ViT with latent queries "
                        "(default: the preset's)")
    t.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="warm start from a checkpoint: a name, looked up beside --out (checkpoints/ by default), or a "
                        ".safetensors path; token "
                        "queries and positions are resampled when --tokens differs")
    t.add_argument("--data", default=None, help="data directory (default data/<preset>)")
    t.add_argument("--run-dir", default=None, help="state and logs (default runs/<name>)")
    t.add_argument("--out", default=None, help="checkpoint path (default checkpoints/<name>.safetensors)")
    t.add_argument("--val-every", type=int, default=250)
    t.add_argument("--save-every", type=int, default=250)
    t.add_argument("--restart", action="store_true", help="ignore a saved state in the run directory")
    t.add_argument("--threads", type=int, default=2, help="most torch CPU threads (drops to 1 while the machine is busy)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    from unitocom.train.dist import add_compute_flags
    add_compute_flags(t, mllm=False)
    t.set_defaults(func=_tokenizer)
    from unitocom.metrics.cli import add_train_command as add_checker
    from unitocom.mllm.cli import add_train_command as add_mllm
    add_mllm(sub)
    add_checker(sub)
    from unitocom.train.semcom import add_train_command as add_semcom
    add_semcom(sub)  # vanilla SemCom, the letter's baseline 2 (and its in-process evaluation, semcom-eval)
    from unitocom.train.resilient import add_train_command as add_resilient
    add_resilient(sub)  # issue 16: mask token, dropout-trained de-tokenizer, importance head
    from unitocom.train.text_prior import add_train_command as add_text_prior
    add_text_prior(sub)  # issue 12: the base station's language prior for text streams
    a = sub.add_parser(
        "all", help="retrain every committed checkpoint in order into one folder (resumable)",
        description="Retrain every committed checkpoint (tokenizers, scene checker, MLLMs) in dependency order "
                    "into OUT, each step the exact `unitocom train ...` command its manifest records. A step whose "
                    "checkpoint is in OUT is skipped; an interrupted one resumes from OUT/runs/<name>. Logs in "
                    "OUT/logs. --install then copies OUT's checkpoints into checkpoints/ and merges the manifests.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--out", default="runs/retrain", help="folder for the weights, manifests, run states and logs")
    a.add_argument("--scale", choices=["cpu", "gpu", "smoke"], default="cpu",
                   help="cpu: the committed recipe (hours on 2 cores; checkpoints/README.md); gpu: the same models with larger batches and "
                        "fewer steps on one CUDA GPU (bf16 MLLM, about 10 minutes on an H200-class GPU); smoke: two "
                        "steps of each, to test the plumbing")
    a.add_argument("--data", default=None,
                   help="data set of every step, made first when missing (default: data/tiny, and data/tiny-speech96 "
                        "for the MLLMs and SemCom's ASR)")
    a.add_argument("--speech-data", default=None,
                   help="data set of the MLLMs and SemCom's ASR, the steps that read the training speech (default: "
                        "--data when given, else data/tiny-speech96, made with --train-clips 12000 "
                        "--train-speakers 96: ten times the preset's training speech)")
    a.add_argument("--only", nargs="+", default=None, metavar="NAME", help="just these checkpoints, in this order")
    a.add_argument("--device", default=None, help="cuda to train on a GPU (default: the CPU)")
    a.add_argument("--mllm-steps", type=int, default=None, metavar="N",
                   help="the base MLLMs' first-part steps instead of the scale's (10000 cpu, 2500 gpu; the second "
                        "part is a fifth of them at 2e-4): a longer run, or what a GPU's measured rate fits in its "
                        "time (scripts/gpu_retrain.sh)")
    a.add_argument("--mllm-mix", default=None, metavar="T=W,...",
                   help="the MLLMs' task weights instead of the recipe's vqa=2,t2i=1,asr=1,cap=1, e.g. "
                        "vqa=2,t2i=1,asr=1,cap=1,obj=2 (the object listing; issue 12); the fine-tunes keep it")
    a.add_argument("--mllm-object-slots", type=float, default=None, metavar="W",
                   help="the base MLLMs train with the object slots' loss at weight W in both parts (`train mllm "
                        "--object-slots`; issue 12), from the data set's scene records or a token cache made since "
                        "the slots; default: none, the recipe's")
    a.add_argument("--mllm-prefix-attention", action="store_true",
                   help="the base MLLMs attend both ways over each prompt in both parts (`train mllm "
                        "--prefix-attention`, a prefix LM; issue 12), and the fine-tunes built on them too; default: "
                        "causal, the recipe's")
    a.add_argument("--mllm-end-to-end", dest="mllm_programs", action="store_false",
                   help="stop the base MLLMs at the letter's end-to-end model. By default (the committed recipe) "
                        "each then answers VQA by a program it writes, run on the objects its slots read (issue 12; "
                        "NS-VQA's split, the reasoning is code): its image encoder pretrained on the object slots "
                        "(`train image-encoder`), then a fine-tune with the prog task and its head phase; the "
                        "resilient and spoken fine-tunes start from the end-to-end MLLM either way")
    a.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes that draw the MLLMs' batches ahead (`train mllm --workers`; another random "
                        "stream than 0's): on a GPU, where drawing in the loop would idle it")
    a.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a.add_argument("--install", action="store_true", help="afterwards, copy OUT's checkpoints into checkpoints/")
    a.set_defaults(func=_all)
    return p


def _all(args) -> int:
    from unitocom.train.retrain import install, run_all
    from unitocom.config import checkpoint_dir
    try:
        run_all(args.out, args.scale, args.data, args.only, args.device, args.dry_run,
                speech_data=args.speech_data, mllm_steps=args.mllm_steps, workers=args.workers,
                mllm_mix=args.mllm_mix, mllm_object_slots=args.mllm_object_slots,
                mllm_prefix_attention=args.mllm_prefix_attention, mllm_programs=args.mllm_programs)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.install and not args.dry_run:
        install(args.out, checkpoint_dir(), args.only)
    return 0
