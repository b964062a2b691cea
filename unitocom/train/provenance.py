"""How a task checkpoint (an MLLM, the scene checker) was made: the command that reproduces it and its entry in
checkpoints/manifest-tasks.json. The tokenizers keep theirs in manifest.json (`train.loop.update_manifest`)."""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
from pathlib import Path

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
