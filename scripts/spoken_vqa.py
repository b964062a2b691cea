"""results/spoken-vqa.json (issue 17): VQA with the question spoken against typed, through running services.

    unitocom up --base-port 50101 --metrics-base-port 9201 --run-dir runs/spokenrun
    .venv/bin/python scripts/spoken_vqa.py --target 127.0.0.1:50101
    unitocom down --run-dir runs/spokenrun

Five rows at one SNR, each the point `unitocom eval --task vqa ... --json` prints (its command is kept in the row):
for unitocom and the traditional scheme, the spoken questions as speech and the same questions typed (the
like-for-like baseline), and unitocom on typed questions spread over the whole test split (Fig. 2's kind of
question). Wilson 95 % intervals. The header records the data and spoken-question checksums and the sha256 of
every checkpoint these rows read. `scripts/results_tables.py` writes the README's block from the file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: this checkout's library
    sys.path.insert(0, str(ROOT))

FORMAT = "unitocom-results/spoken-vqa/1"
# what the five rows read at the base station and the transmitter (the traditional scheme tokenizes the decoded
# AMR-WB clip and the decoded image with the same sigma-GenIB tokenizers)
CHECKPOINTS = ("mllm-sigma-genib", "mllm-sigma-genib-spoken", "image-sigma-genib-s32", "audio-sigma-genib-s32",
               "text-sigma-genib")
ROWS = (("unitocom", True, False), ("unitocom", True, True), ("traditional", True, False),
        ("traditional", True, True), ("unitocom", False, False))  # (scheme, spoken set, typed)


def spoken_checksum(manifest: dict) -> str | None:
    """The spoken questions' checksum: the test split's where the manifest keeps one per split, else the folder's."""
    return manifest.get("sha256", {}).get("test") or manifest.get("checksum")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="the transmitter of running services (`unitocom up`)")
    ap.add_argument("--data", default="data/tiny", help="data set root (default: %(default)s)")
    ap.add_argument("--spoken-questions", default=None,
                    help="the spoken questions (default: <data>/spoken_questions; `unitocom data spoken-questions`)")
    ap.add_argument("--n", type=int, default=300, help="questions per row (default: %(default)s)")
    ap.add_argument("--snr-db", type=float, default=20.0, help="SNR in dB (default: %(default)s)")
    ap.add_argument("--channel", default="rayleigh", help="default: %(default)s")
    ap.add_argument("--workers", type=int, default=2, help="requests in flight (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "results" / "spoken-vqa.json"), help="default: %(default)s")
    args = ap.parse_args(argv)

    from unitocom.data.layouts import read_json, require_data
    from unitocom.data.spoken import default_dir
    from unitocom.errors import UserError
    from unitocom.schemes.learned import checkpoint_dir
    from unitocom.task_eval import evaluate
    from unitocom.train.provenance import file_sha256, git_state, write_atomic

    data = require_data(args.data)
    spoken = Path(args.spoken_questions or default_dir(data))
    manifest = spoken / "manifest.json"
    if not manifest.exists():
        raise SystemExit(f"error: no spoken questions at {spoken} (make them: unitocom data spoken-questions "
                         f"--data {args.data})")
    ck = checkpoint_dir()
    missing = [c for c in CHECKPOINTS if not (ck / f"{c}.safetensors").exists()]
    if missing:
        raise SystemExit(f"error: {ck} lacks {', '.join(missing)} (unitocom train all)")
    commit, dirty = git_state(ROOT)
    header = {"format": FORMAT,
              "figure": f"VQA with a spoken question vs typed (issue 17), {args.snr_db:g} dB {args.channel}, "
                        "through the services",
              "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "split": "test", "data": str(args.data), "data_checksum": read_json(data / "manifest.json")["checksum"],
              "spoken_questions": str(spoken),
              "spoken_questions_checksum": spoken_checksum(read_json(manifest)),
              "git_commit": commit, "git_dirty": dirty, "checkpoints_dir": str(ck),
              "checkpoints": {c: file_sha256(ck / f"{c}.safetensors") for c in CHECKPOINTS},
              "note": f"the spoken questions are the test questions of `unitocom data spoken-questions` (seed 0); "
                      f"n={args.n} of them spread evenly; 'typed, spoken set' sends the same {args.n} questions as "
                      f"text; 'typed' is the ordinary eval's {args.n} questions spread over all test questions. "
                      "Intervals: Wilson 95 %."}
    points = []
    for scheme, on_spoken_set, typed in ROWS:
        cmd = (f"unitocom eval --task vqa{' --spoken' if on_spoken_set else ''}{' --typed' if typed else ''}"
               + (f" --spoken-questions {spoken}" if on_spoken_set else "")
               + f" --scheme {scheme} --snr-db {args.snr_db:g} --channel {args.channel} --n {args.n}"
               f" --data {args.data} --workers {args.workers} --json")
        try:
            row = evaluate("vqa", scheme, args.snr_db, args.channel, args.n, str(data), args.target,
                           workers=args.workers, spoken=spoken if on_spoken_set else None, typed=typed)
        except UserError as e:
            raise SystemExit(f"error: {cmd}: {e}")
        if row.get("value") is None:
            raise SystemExit(f"error: {cmd}: no score came back ({row})")
        points.append(dict(row, command=cmd))
        print(f"{scheme:12s} {row.get('question')} {'spoken set' if on_spoken_set else 'all test questions':18s} "
              f"n={row['n']} accuracy {row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps({"header": header, "points": points}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
