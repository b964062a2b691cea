"""Where CLEVR v1.0, MS-COCO captions 2017 and LibriSpeech keep their files, in one place for writer and readers.

    CLEVR_v1.0/images/<split>/CLEVR_<split>_000000.png
    CLEVR_v1.0/scenes/CLEVR_<split>_scenes.json          {"info", "scenes": [...]}      (none for test)
    CLEVR_v1.0/questions/CLEVR_<split>_questions.json    {"info", "questions": [...]}
    coco/annotations/captions_<split>2017.json           {"info", "licenses", "images", "annotations"}
    coco/<split>2017/000000000001.png                    (real COCO: 12-digit id .jpg)
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "UTT-ID TRANSCRIPT IN CAPS" lines
"""
from __future__ import annotations

import json
from pathlib import Path

from unitocom.errors import DataMissing


def clevr_image_filename(split: str, index: int) -> str:
    return f"CLEVR_{split}_{index:06d}.png"


def coco_image_filename(image_id: int, suffix: str = ".png") -> str:
    return f"{image_id:012d}{suffix}"


def librispeech_utterance_id(speaker: int, chapter: int, utterance: int) -> str:
    return f"{speaker}-{chapter}-{utterance:04d}"


def require_data(root: str | Path) -> Path:
    """The data set's root directory, or DataMissing naming the command that makes it."""
    root = Path(root)
    if not root.is_dir():
        raise DataMissing(f"no data set at {root}")
    return root


def _first_dir(root: Path, candidates: list[Path], what: str) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise DataMissing(f"no {what} under {root} (looked for {', '.join(str(c) for c in candidates)})")


def clevr_root(root: str | Path) -> Path:
    """The CLEVR_v1.0 directory, given it or its parent."""
    root = Path(root)
    if (root / "questions").is_dir():
        return root
    return _first_dir(root, [root / "CLEVR_v1.0"], "CLEVR_v1.0")


def clevr_scenes_file(root: str | Path, split: str) -> Path:
    return clevr_root(root) / "scenes" / f"CLEVR_{split}_scenes.json"


def clevr_questions_file(root: str | Path, split: str) -> Path:
    return clevr_root(root) / "questions" / f"CLEVR_{split}_questions.json"


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_clevr_scenes(root: str | Path, split: str) -> list[dict]:
    """Scene records of a split (the real CLEVR ships none for test)."""
    return read_json(clevr_scenes_file(root, split))["scenes"]


def load_clevr_questions(root: str | Path, split: str) -> list[dict]:
    return read_json(clevr_questions_file(root, split))["questions"]


def coco_annotation_file(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"captions_{split.removesuffix('2017')}2017.json"


def coco_image_dir(root: str | Path, split: str) -> Path:
    return Path(root) / f"{split.removesuffix('2017')}2017"


def librispeech_root(root: str | Path, subset: str) -> Path:
    """The subset directory (e.g. .../LibriSpeech/dev-clean), given it, its parent or the parent of LibriSpeech/."""
    root = Path(root)
    return _first_dir(root, [root / "LibriSpeech" / subset, root / subset, root], f"LibriSpeech subset {subset!r}")
