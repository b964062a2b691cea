"""What travels to an offline GPU machine (the tool library's device), for scripts/gpu_retrain.sh and gpu_check.sh.

    device_carry.py wheels DIR [NAME ...] [--list FILE]
        pin each package to the version installed here (NAMEs, and the names FILE lists one a line, '#' comments)
        and download its wheel for the GPU image's Python (CPython 3.12, manylinux x86-64) into DIR
    device_carry.py size [PATH ...] [--label TEXT]
        what one call sends: the working tree without checkpoints/ (tracked and untracked-not-ignored files), plus
        the PATHs it carries; the door takes 64 MiB
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

DOOR_MIB = 64
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")


def wheels(out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    requirements = out / "requirements.txt"
    requirements.write_text("".join(f"{n}=={version(n)}\n" for n in names))
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out),
                    "-r", str(requirements)], check=True)


def _bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs) \
        if os.path.isdir(path) else os.path.getsize(path)


def size(paths: list[str], label: str = "") -> float:
    """MiB one call sends; printed with its parts."""
    def files(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], capture_output=True, text=True, check=True).stdout
        return [f for f in out.split("\0") if f and not f.startswith("checkpoints/") and os.path.isfile(f)]
    tree = sum(os.path.getsize(f) for f in files() + files("--others", "--exclude-standard"))
    carried = sum(_bytes(p) for p in paths)
    total = (tree + carried) / 2**20
    print(f"a call{' ' + label if label else ''} sends {total:.1f} MiB (tree {tree / 2**20:.1f} without checkpoints/, "
          f"{' and '.join(paths) or 'nothing carried'} {carried / 2**20:.1f})"
          + ("" if total < DOOR_MIB else f": over {DOOR_MIB} MiB"))
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wheels", help="download pinned wheels for the GPU image into DIR")
    w.add_argument("dir", type=Path)
    w.add_argument("names", nargs="*")
    w.add_argument("--list", type=Path, help="a file of package names, one a line ('#' starts a comment)")
    s = sub.add_parser("size", help="what one call sends")
    s.add_argument("paths", nargs="*")
    s.add_argument("--label", default="")
    args = p.parse_args(argv)
    if args.cmd == "wheels":
        listed = [] if args.list is None else [n for line in args.list.read_text().splitlines()
                                               if (n := line.split("#")[0].strip())]
        wheels(args.dir, args.names + listed)
    else:
        size(args.paths, args.label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
