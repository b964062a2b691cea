"""How a task checkpoint (an MLLM, the scene checker) was made: the command that reproduces it and its entry in
checkpoints/manifest-tasks.json. The tokenizers keep theirs in manifest.json (`train.loop.update_manifest`)."""
from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MANIFEST = "manifest-tasks.json"  # the MLLMs and the scene checker; the tokenizers have manifest.json


def recorded_command(argv: list[str] | None = None) -> str:
    """The command that reproduces the checkpoint: where it ran (--run-dir, --out) and whether it was installed
    do not change the weights, so they are left out."""
    args, out, skip = (sys.argv[1:] if argv is None else argv), [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--run-dir", "--out"):
            skip = True
        elif not (a == "--no-install" or a.startswith(("--run-dir=", "--out="))):
            out.append(a)
    return "unitocom " + " ".join(shlex.quote(a) for a in out)


def command_argv(name: str, args) -> list[str]:
    """A results file's command line: as typed (from the command `name` on), or, when called in process, rebuilt
    from the parsed options (lists as comma lists, floats as %g, flags only when set)."""
    if name in sys.argv[1:]:
        return sys.argv[sys.argv.index(name, 1):]
    out = [name]
    for k, v in sorted(vars(args).items()):
        if k in ("func", "command") or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif isinstance(v, (list, tuple)):
            out.append(f"{flag}={','.join(f'{x:g}' if isinstance(x, float) else str(x) for x in v)}")
        else:
            out += [flag, str(v)]
    return out


def git_state(root: Path = ROOT) -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether tracked files other than results/ and Markdown differ from it), or (None, None)
    outside a git checkout. results/ is what these commands write, and the README's tables are written from it
    (`scripts/results_tables.py`, which a rerun script calls after each sweep): neither a sweep rewriting its own
    file nor the tables of the one before it is a change to what measured it; no Markdown file is read by one."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return None, None
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results",
                             ":(exclude,glob)**/*.md"],
                            cwd=root,
                            capture_output=True, text=True, timeout=60)
        return head.stdout.strip(), (bool(st.stdout.strip()) if st.returncode == 0 else None)
    except (OSError, subprocess.SubprocessError):
        return None, None


def write_atomic(path: Path, text: str) -> None:
    """Write a results file so that a reader (or a resumed sweep after a kill) never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def tensors_sha256(path: Path, exclude_prefix: str) -> str:
    """sha256 over a safetensors file's tensors whose names do not start with `exclude_prefix` (each tensor's
    name, dtype, shape and bytes, in name order): what stays the same when only those tensors are retrained."""
    import torch
    from safetensors import safe_open
    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for name in sorted(f.keys()):
            if name.startswith(exclude_prefix):
                continue
            t = f.get_tensor(name).contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 every manifest and results file records for a checkpoint, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_entry(path: Path, meta: dict) -> None:
    """Record how a checkpoint was made beside it: command, seed, data checksum, validation figures, file hash."""
    manifest = path.parent / MANIFEST
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    entries[path.stem] = {**{k: v for k, v in meta.items() if k != "format"}, "file": path.name,
                          "sha256": file_sha256(path), "bytes": path.stat().st_size}
    manifest.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
