"""`unitocom train checker`: the scene checker (FID features, colour/shape recognition for T2I and reconstructions)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_train_command(sub) -> None:
    """Register `checker` under `unitocom train`."""
    c = sub.add_parser("checker", help="the scene checker: FID features and colour/shape recognition for T2I",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--data", default="data/tiny", help="data set root (unitocom data make --preset tiny)")
    c.add_argument("--steps", type=int, default=3000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None, help="default checkpoints/scene-checker.safetensors")
    c.add_argument("--run-dir", default=None, help="write the run's log.jsonl (loss, lr, validation) here")
    c.set_defaults(func=_cmd_checker)


def _cmd_checker(args) -> int:
    from unitocom.data.layouts import require_data
    from unitocom.metrics.scene_checker import train_checker
    from unitocom.schemes.learned import checkpoint_dir
    from unitocom.train.provenance import manifest_entry, recorded_command
    require_data(args.data)
    out = Path(args.out) if args.out else checkpoint_dir() / "scene-checker.safetensors"
    log_path = None
    if args.run_dir:
        Path(args.run_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(args.run_dir) / "log.jsonl"
    meta = train_checker(args.data, out, steps=args.steps, seed=args.seed, command=recorded_command(),
                         log_path=log_path)
    manifest_entry(out, meta)
    print(json.dumps(meta["validation"]))
    return 0
