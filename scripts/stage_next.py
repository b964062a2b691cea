#!/usr/bin/env python3
"""Stage MLLMs trained outside `train all` into a whole checkpoint set (default checkpoints/next), ready for
`unitocom train all --out checkpoints/next --install` once every results table that reads them is rerun.

    scripts/stage_next.py mllm-sigma-genib=runs/obj/ft-ctrl-head mllm-vae=runs/cont/vae-head \\
        mllm-sigma-genib-resilient=runs/cont/resilient mllm-sigma-genib-spoken=runs/cont/spoken

Each NAME=PATH (a checkpoint, or a run dir holding mllm.safetensors) is copied to OUT/NAME.safetensors with an
entry in OUT/manifest-tasks.json: the file's own record (command, data checksum, validation, head phase) and a
`history` naming the MLLM it was warm-started from by sha256, with that MLLM's own command and history when it is
an installed checkpoint. Every other installed checkpoint is linked (OUT/x -> ../x), so that with
UNITOCOM_CHECKPOINTS=OUT every command reads the staged set as it reads checkpoints/. Run it again to add to a
set; run it where the trainings ran (the repository root), since a run records its --init as it was given.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unitocom.train.provenance import MANIFEST, file_sha256, manifest_entry  # noqa: E402


def meta_of(path: Path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}"))


def history(meta: dict, installed: Path) -> list[dict]:
    """Where the file's run started: the MLLM of its --init, by sha256, with its own record when installed. An init
    made by `train image-encoder` (the program MLLM's encoder stage) adds that record and, after it, where the
    encoder's MLLM came from."""
    init = (meta.get("train_config") or {}).get("init")
    return _started_from(init, installed) if init else []


def _started_from(init: str, installed: Path) -> list[dict]:
    src = Path(init)  # as the run was given it: relative to where it ran (the repository root)
    if not src.exists():
        return [{"init": init, "note": "not in this checkout"}]
    part = {"init": init, "init_sha256": file_sha256(src)}
    entries = json.loads((installed / MANIFEST).read_text()) if (installed / MANIFEST).exists() else {}
    own = entries.get(src.stem) if src.parent.resolve() == installed.resolve() else None
    if own and own.get("sha256") == part["init_sha256"]:  # an installed MLLM: its own record, as it was
        part.update(command=own["command"], head_command=own.get("head_command"), history=own.get("history"),
                    validation=own.get("validation"), wall_s=own.get("wall_s"))
        return [part]
    encoder = meta_of(src).get("image_encoder_pretraining")
    if not encoder:
        return [part]
    part["image_encoder_pretraining"] = {k: v for k, v in encoder.items() if k != "log"} | {
        "last_reading": (encoder.get("log") or [{}])[-1]}
    source = encoder.get("source")
    return [part] + (_started_from(source, installed) if source else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("mllm", nargs="+", metavar="NAME=PATH", help="the checkpoint name and its file or run dir")
    ap.add_argument("--out", default="checkpoints/next", help="the staged set")
    ap.add_argument("--installed", default="checkpoints", help="the installed set the links point to")
    args = ap.parse_args(argv)
    out, installed = Path(args.out), Path(args.installed)
    out.mkdir(parents=True, exist_ok=True)
    staged = []
    for item in args.mllm:
        name, eq, path = item.partition("=")
        src = Path(path) / "mllm.safetensors" if Path(path).is_dir() else Path(path)
        if not eq or not src.is_file():
            ap.error(f"{item!r}: expected NAME=PATH with PATH an MLLM checkpoint or a run dir holding one")
        if not (installed / f"{name}.safetensors").exists():
            ap.error(f"{name}: no installed checkpoint of that name in {installed} to replace")
        dst = out / f"{name}.safetensors"
        if dst.is_symlink():
            dst.unlink()
        shutil.copyfile(src, dst)
        meta = meta_of(dst)
        manifest_entry(dst, {**meta, "history": history(meta, installed), "staged_from": str(src)})
        staged.append(name)
        print(f"staged {dst} (sha256 {file_sha256(dst)[:12]}) from {src}")
    for f in sorted(installed.iterdir()):
        # not the manifests: a step trained into OUT writes its own entry there, never through a link into ../
        if f.suffix in (".safetensors", ".json") and f.name not in (MANIFEST, "manifest.json"):
            link = out / f.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(Path("..") / f.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
