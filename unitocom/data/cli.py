"""`unitocom data ...`: make the synthetic data sets, draw a contact sheet, print a checksum."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from unitocom.data.presets import DATA_PRESETS


def _make(args: argparse.Namespace) -> int:
    from unitocom.data.make import make_dataset

    out = Path(args.out or f"data/{args.preset}")
    t0 = time.perf_counter()
    manifest = make_dataset(out, args.preset, seed=args.seed, scenes=args.scenes, clips=args.speech,
                            speech=not args.no_speech, image_size_px=args.image_px, workers=args.workers,
                            progress=not args.quiet, spoken_questions=not args.no_spoken_questions,
                            train_clips=args.train_clips, train_speakers=args.train_speakers)
    wall = time.perf_counter() - t0
    print(f"wrote {out} (preset {manifest['preset']}, seed {manifest['seed']}) in {wall:.1f} s")
    keys = ["scenes", "questions", "captions", "clips", "seconds"]
    print(f"{'split':<6}" + "".join(f"{k:>11}" for k in keys))
    for split, c in manifest["counts"].items():
        print(f"{split:<6}" + "".join(f"{c.get(k, 0):>11}" for k in keys))
    print(f"photos: {len(manifest['photos'])}   checksum: {manifest['checksum']}")
    return 0


def _sheet(args: argparse.Namespace) -> int:
    from unitocom.data.contact_sheet import write_contact_sheet

    path = write_contact_sheet(args.data, args.out, split=args.split, count=args.count, columns=args.columns,
                               seed=args.seed, cell_px=args.cell_px)
    print(f"wrote {path}")
    return 0


def _checksum(args: argparse.Namespace) -> int:
    from unitocom.data.layouts import require_data
    from unitocom.data.make import dataset_checksum

    print(dataset_checksum(require_data(args.data)))
    return 0


def _spoken(args: argparse.Namespace) -> int:
    from unitocom.data.layouts import require_data
    from unitocom.data.make import dataset_checksum
    from unitocom.data.spoken import default_dir, make_spoken_questions

    out = Path(args.out) if args.out else default_dir(args.data)
    m = make_spoken_questions(args.data, out, {"train": args.train, "val": args.val, "test": args.test},
                              seed=args.seed, workers=args.workers, progress=not args.quiet,
                              base_checksum=dataset_checksum(require_data(args.data), use_manifest=True))
    print(f"wrote {out} in {m['wall_s']} s; checksum {m['checksum']}")
    for split, c in m["counts"].items():
        print(f"{split:<6} {c['questions']:>6} questions {c['speakers']:>3} speakers {c['seconds']:>9.1f} s "
              f"(longest {c['max_seconds']:.2f} s)")
    return 0


def add_subparser(subparsers) -> argparse.ArgumentParser:
    data = subparsers.add_parser(
        "data", help="make and inspect the synthetic data sets",
        description="Synthetic stand-ins for CLEVR (VQA), MS-COCO captions (text-to-image) and LibriSpeech (ASR), "
                    "written in the real corpora's layouts so that the same loaders read both.")
    sub = data.add_subparsers(dest="data_command", metavar="{make,spoken-questions,sheet,checksum}")
    sub.required = True

    make = sub.add_parser(
        "make", help="generate the data sets of a preset",
        description="Draw CLEVR-style scenes with questions and captions, synthesise speech with espeak-ng, copy "
                    "the demo photos, and write manifest.json (counts, sha256). Same seed, same bytes.")
    make.add_argument("--preset", choices=sorted(DATA_PRESETS), default="tiny", help="size preset (default: tiny)")
    make.add_argument("--out", default=None, help="output directory (default: data/<preset>)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    make.add_argument("--scenes", type=int, default=None, metavar="N",
                      help="total scenes over train/val/test instead of the preset's")
    make.add_argument("--speech", type=int, default=None, metavar="N",
                      help="total speech clips over train/val/test instead of the preset's")
    make.add_argument("--train-clips", type=int, default=None, metavar="N",
                      help="training speech clips instead of the preset's (val and test speech stay byte for byte "
                           "as the preset makes them: each split has its own generator)")
    make.add_argument("--train-speakers", type=int, default=None, metavar="N",
                      help="training speakers instead of the preset's (tiny: 12); see --train-clips")
    make.add_argument("--no-speech", action="store_true", help="skip speech (no espeak-ng / sox needed)")
    make.add_argument("--no-spoken-questions", action="store_true",
                      help="skip the spoken VQA questions (spoken_questions/, about 1.5 min on 2 workers; made "
                           "otherwise, with speech: see `data spoken-questions`)")
    make.add_argument("--image-px", type=int, default=None, metavar="PX", help="image side instead of the preset's")
    make.add_argument("--workers", type=int, default=2, help="parallel workers (default: 2)")
    make.add_argument("--quiet", action="store_true", help="no progress bars")
    make.set_defaults(func=_make)

    spoken = sub.add_parser(
        "spoken-questions", help="read CLEVR questions of a data set aloud (VQA with a spoken question)",
        description="Synthesise questions of an existing data set (made by `data make`) with espeak-ng, as the "
                    "speech set is: <out>/<split>/<question_index>.flac, questions_<split>.json pointing at the "
                    "typed question (image, answer, family), and manifest.json (counts, the base set's checksum, "
                    "this folder's checksum). The default --out is <data>/spoken_questions, which the base set's "
                    "checksum skips. Same seed and counts, same bytes. About 40 ms a clip per worker. In a folder "
                    "made before, a split given 0 is kept as it is (e.g. --train 0 --val 0 --test 500 adds the "
                    "test split only).")
    spoken.add_argument("--data", required=True, help="data directory made by `data make`")
    spoken.add_argument("--out", default=None, help="output directory (default: <data>/spoken_questions)")
    spoken.add_argument("--train", type=int, default=3000, metavar="N", help="train questions (default: 3000)")
    spoken.add_argument("--val", type=int, default=400, metavar="N", help="val questions (default: 400)")
    spoken.add_argument("--test", type=int, default=500, metavar="N",
                        help="test questions, what `unitocom eval --task vqa --spoken` scores (default: 500)")
    spoken.add_argument("--seed", type=int, default=0, help="seed choosing questions and voices (default: 0)")
    spoken.add_argument("--workers", type=int, default=2, help="parallel synthesis workers (default: 2)")
    spoken.add_argument("--quiet", action="store_true", help="no progress bar")
    spoken.set_defaults(func=_spoken)

    sheet = sub.add_parser(
        "sheet", help="draw a contact sheet of sample scenes with questions and answers",
        description="One PNG of sample scenes, enlarged with nearest neighbour so the real pixels show, each with "
                    "its questions, answers and first caption: for a person to check the data by eye.")
    sheet.add_argument("--data", required=True, help="directory made by `data make` (or holding CLEVR_v1.0/)")
    sheet.add_argument("--out", default="sheet.png", help="PNG to write (default: sheet.png)")
    sheet.add_argument("--split", default="val", help="split to sample (default: val)")
    sheet.add_argument("--count", type=int, default=12, help="scenes on the sheet (default: 12)")
    sheet.add_argument("--columns", type=int, default=4, help="scenes per row (default: 4)")
    sheet.add_argument("--cell-px", type=int, default=224, help="side of each enlarged scene in pixels (default: 224)")
    sheet.add_argument("--seed", type=int, default=0, help="seed choosing the scenes (default: 0)")
    sheet.set_defaults(func=_sheet)

    checksum = sub.add_parser("checksum", help="print the sha256 of a data directory (as recorded in manifest.json)")
    checksum.add_argument("--data", required=True, help="data directory")
    checksum.set_defaults(func=_checksum)
    return data
