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
                            progress=not args.quiet)
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


def add_subparser(subparsers) -> argparse.ArgumentParser:
    data = subparsers.add_parser(
        "data", help="make and inspect the synthetic data sets",
        description="Synthetic stand-ins for CLEVR (VQA), MS-COCO captions (text-to-image) and LibriSpeech (ASR), "
                    "written in the real corpora's layouts so that the same loaders read both.")
    sub = data.add_subparsers(dest="data_command", metavar="{make,sheet,checksum}")
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
    make.add_argument("--no-speech", action="store_true", help="skip speech (no espeak-ng / sox needed)")
    make.add_argument("--image-px", type=int, default=None, metavar="PX", help="image side instead of the preset's")
    make.add_argument("--workers", type=int, default=2, help="parallel workers (default: 2)")
    make.add_argument("--quiet", action="store_true", help="no progress bars")
    make.set_defaults(func=_make)

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
