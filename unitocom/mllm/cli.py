"""`unitocom train mllm` and `unitocom train checker`: the base-station MLLM and the scene checker."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def add_train_commands(sub) -> None:
    m = sub.add_parser("mllm", help="the base-station MLLM: VQA, text-to-image and ASR on received tokens",
                       description="Train one multitask MLLM on tokens that crossed the frozen learned link at "
                                   "SNRs drawn per example (Rayleigh by default). Resumes from <run-dir>; writes "
                                   "<run-dir>/log.jsonl and checkpoints/mllm-<objective>.safetensors with its "
                                   "entry in checkpoints/manifest.json.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m.add_argument("--preset", default="tiny")
    m.add_argument("--objective", default="sigma-genib", choices=["sigma-genib", "vae", "genib"],
                   help="which tokenizers' tokens it reads (one MLLM per scheme)")
    m.add_argument("--data", default="data/tiny")
    m.add_argument("--steps", type=int, default=3000)
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--lr", type=float, default=2e-3)
    m.add_argument("--snr-db", default="-5:25", help="training SNR range A:B in dB (write --snr-db=-5:25)")
    m.add_argument("--channel", default="rayleigh", choices=["awgn", "rayleigh"])
    m.add_argument("--val-every", type=int, default=500)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--run-dir", default=None, help="default runs/mllm-<objective>")
    m.add_argument("--no-install", action="store_true", help="leave the result in the run dir only")
    m.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 autocast) to train on a GPU")
    m.set_defaults(func=_cmd_mllm)
    c = sub.add_parser("checker", help="the scene checker: FID features and colour/shape recognition for T2I",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--data", default="data/tiny")
    c.add_argument("--steps", type=int, default=3000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None, help="default checkpoints/scene-checker.safetensors")
    c.set_defaults(func=_cmd_checker)


def _command() -> str:
    """The command that reproduces the checkpoint: where it ran (--run-dir, --out) and whether it was installed
    do not change the weights, so they are left out."""
    args, out, skip = sys.argv[1:], [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--run-dir", "--out"):
            skip = True
        elif not (a == "--no-install" or a.startswith(("--run-dir=", "--out="))):
            out.append(a)
    return "unitocom " + " ".join(shlex.quote(a) for a in out)


def _cmd_mllm(args) -> int:
    import shutil

    from unitocom.mllm.checkpoint import mllm_path
    from unitocom.mllm.train import TrainConfig, train
    lo, hi = (float(v) for v in args.snr_db.split(":"))
    tc = TrainConfig(steps=args.steps, batch=args.batch_size, lr=args.lr, snr_db=(lo, hi), channel=args.channel,
                     val_every=args.val_every, seed=args.seed, device=args.device)
    run = Path(args.run_dir or f"runs/mllm-{args.objective}")
    meta = train(args.data, str(run), args.preset, objective=args.objective, tc=tc, command=_command())
    if not args.no_install:
        dst = mllm_path(args.objective)
        shutil.copyfile(run / "mllm.safetensors", dst)
        _manifest_entry(dst, meta)
        print(f"installed {dst}")
    print(json.dumps(meta["validation"]))
    return 0


def _cmd_checker(args) -> int:
    from unitocom.metrics.scene_checker import train_checker
    from unitocom.schemes.learned import checkpoint_dir
    out = Path(args.out) if args.out else checkpoint_dir() / "scene-checker.safetensors"
    meta = train_checker(args.data, out, steps=args.steps, seed=args.seed, command=_command())
    _manifest_entry(out, meta)
    print(json.dumps(meta["validation"]))
    return 0


MANIFEST = "manifest-tasks.json"  # the MLLMs and the scene checker; the tokenizers have manifest.json


def _manifest_entry(path: Path, meta: dict) -> None:
    """Record how a checkpoint was made: command, seed, data checksum, validation figures, file hash."""
    import hashlib
    manifest = path.parent / MANIFEST
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    entries[path.stem] = {**{k: v for k, v in meta.items() if k != "format"}, "file": path.name,
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
    manifest.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
