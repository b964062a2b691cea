"""A contact sheet: sample scenes of a data directory with their questions, answers and a caption, as one PNG.

Scenes are enlarged with nearest-neighbour sampling, so the sheet shows the pixels a model gets, not a smoothed
version; the native-size image sits beside it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unitocom.data.layouts import clevr_root, coco_annotation_file, load_clevr_questions


def _wrap(text: str, font: ImageFont.ImageFont, width_px: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and font.getlength(trial) > width_px:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def _captions(data_dir: Path, split: str) -> dict[str, list[str]]:
    """Captions by CLEVR image file name, when the directory also holds the COCO view of the same scenes."""
    path = coco_annotation_file(data_dir / "coco", split)
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    by_id = defaultdict(list)
    for ann in data["annotations"]:
        by_id[ann["image_id"]].append(ann["caption"])
    # The synthetic COCO ids are the CLEVR indices plus a per-split base; the order of images is the same.
    return {f"CLEVR_{split}_{k:06d}.png": by_id[im["id"]] for k, im in enumerate(sorted(data["images"],
                                                                                          key=lambda i: i["id"]))}


def contact_sheet(data_dir: str | Path, split: str = "val", count: int = 12, columns: int = 4, seed: int = 0,
                  cell_px: int = 224, questions_per_cell: int = 3) -> Image.Image:
    data_dir = Path(data_dir)
    root = clevr_root(data_dir)
    by_image: dict[str, list[dict]] = defaultdict(list)
    for q in load_clevr_questions(root, split):
        by_image[q["image_filename"]].append(q)
    names = sorted(by_image)
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(names), size=min(count, len(names)), replace=False))
    captions = _captions(data_dir, split)
    font = ImageFont.load_default(size=12)
    line_px = 15
    native_px = 0
    for i in picked:
        with Image.open(root / "images" / split / names[i]) as im:
            native_px = max(native_px, im.width)
    # The native-size image sits to the right of the enlarged one, where it is small enough to be worth it.
    native_px = native_px if native_px <= cell_px // 2 else 0
    cell_w = cell_px + 6 + native_px
    cells = []
    for i in picked:
        name = names[i]
        lines: list[tuple[str, str]] = [(name, "gray")]
        for q in by_image[name][:questions_per_cell]:
            lines += [(t, "black") for t in _wrap(f"Q{q.get('question_family_index', '')}: {q['question']}",
                                                   font, cell_w)]
            lines.append((f"A: {q.get('answer', '')}", "darkgreen"))
        if captions.get(name):
            lines += [(t, "navy") for t in _wrap(f"C: {captions[name][0]}", font, cell_w)]
        cells.append((name, lines))
    cell_h = cell_px + 8 + line_px * max((len(lines) for _, lines in cells), default=0)
    rows = (len(cells) + columns - 1) // columns
    header_px = 12 + 2 * line_px
    sheet = Image.new("RGB", (columns * (cell_w + 12) + 12, header_px + rows * (cell_h + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    native = ""
    for k, (name, lines) in enumerate(cells):
        x0 = 12 + (k % columns) * (cell_w + 12)
        y0 = header_px + (k // columns) * (cell_h + 12)
        with Image.open(root / "images" / split / name) as im:
            im = im.convert("RGB")
            native = f"{im.width}x{im.height} px"
            scale = cell_px / max(im.size)  # keep the aspect: real CLEVR is 480x320
            sheet.paste(im.resize((round(im.width * scale), round(im.height * scale)), Image.NEAREST), (x0, y0))
            if native_px:
                sheet.paste(im, (x0 + cell_px + 6, y0))
        y = y0 + cell_px + 4
        for text, colour in lines:
            draw.text((x0, y), text, fill=colour, font=font)
            y += line_px
    side_note = "; native size at right" if native_px else ""
    draw.text((12, 6), f"{data_dir}  split={split}  images {native}, scaled with nearest neighbour{side_note}",
              fill="black", font=font)
    draw.text((12, 6 + line_px), "Qn: question of family n   A: answer   C: first caption", fill="black", font=font)
    return sheet


def write_contact_sheet(data_dir: str | Path, out_path: str | Path, **kwargs) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(data_dir, **kwargs).save(out_path)
    return out_path
