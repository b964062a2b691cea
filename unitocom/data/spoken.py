"""`data spoken-questions`: CLEVR questions of an existing data set read aloud by espeak-ng (issue 17, VQA with a
spoken question).

Layout (default `<data>/spoken_questions/`, or any `--out` directory):

    spoken_questions/
      manifest.json                 format, base data checksum, counts, speakers, tools, checksum of this folder
      questions_<split>.json        {"questions": [{"question_index", "image_index", "question", "answer",
                                     "question_family_index", "file", "speaker_id", "voice", "seconds"}, ...]}
      <split>/<question_index>.flac mono 16-bit at the preset's audio rate

Each record points into `CLEVR_v1.0/questions/CLEVR_<split>_questions.json` of the base set by question_index,
so the image and the answer are the typed question's. `dataset_checksum` of the base set skips a
`spoken_questions/` folder inside it, so adding them does not change the checksum the committed checkpoints
record; this folder has its own checksum in its manifest.

Which questions: `count` per split drawn without replacement by a seeded generator (the same seed and counts give
the same questions, voices and bytes). Speakers are espeak-ng voices as `data make` draws them, disjoint per split
(ids 5000+ train, 6000+ val, 7000+ test), every clip with its own speed and pitch jitter.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from unitocom.data.layouts import clevr_questions_file, clevr_root, read_json
from unitocom.data.speech import make_speakers, synthesize, tool_versions, tools_missing

FORMAT = "unitocom-spoken-questions/1"
FOLDER = "spoken_questions"  # the default place inside a data set (skipped by the base set's checksum)
_SPLIT_NO = {"train": 0, "val": 1, "test": 2}
_SPEAKER_ID_BASE = {"train": 5000, "val": 6000, "test": 7000}
_STREAM = 17  # the generator stream tag (data make uses 1-3): independent of the scenes and the speech set
DEFAULT_COUNTS = {"train": 3000, "val": 400, "test": 500}
SPEAKERS_PER_SPLIT = {"train": 12, "val": 4, "test": 4}


def default_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / FOLDER


def _plan(data_dir: Path, split: str, count: int, seed: int) -> list[dict]:
    qs = read_json(clevr_questions_file(clevr_root(data_dir), split))["questions"]
    rng = np.random.default_rng([seed, _STREAM, _SPLIT_NO[split]])
    pick = sorted(rng.choice(len(qs), size=min(count, len(qs)), replace=False).tolist())
    speakers = make_speakers(rng, SPEAKERS_PER_SPLIT[split], _SPEAKER_ID_BASE[split])
    out = []
    for k, i in enumerate(pick):
        q = qs[i]
        spk = speakers[k % len(speakers)]
        out.append({"question_index": int(q.get("question_index", i)), "image_index": int(q["image_index"]),
                    "question": q["question"], "answer": q["answer"],
                    "question_family_index": int(q.get("question_family_index", -1)),
                    "file": f"{split}/{int(q.get('question_index', i)):06d}.flac", "speaker_id": spk.speaker_id,
                    "voice": spk.voice,
                    # a little faster than the speech set on average: questions are long (up to 14 words) and
                    # the MLLM reads at most a few 1.024 s chunks of audio
                    "speed_wpm": int(round(spk.speed_wpm * rng.uniform(1.0, 1.2))),
                    "pitch": int(np.clip(spk.pitch + rng.integers(-8, 9), 0, 99))})
    return out


def _in_splits(rel: str, splits) -> bool:
    return splits is None or any(rel.startswith(f"{s}/") or rel == f"questions_{s}.json" for s in splits)


def folder_checksum(folder: str | Path, splits: tuple[str, ...] | None = None) -> str:
    """sha256 over the relative path and content of every file but manifest.json (as `dataset_checksum`); with
    `splits`, of those splits' files only (what a training run read: adding a test split leaves it as it was)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != "manifest.json" and _in_splits(rel, splits):
            h.update(f"{rel}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def make_spoken_questions(data_dir: str | Path, out_dir: str | Path | None = None,
                          counts: dict[str, int] | None = None, seed: int = 0, workers: int = 2,
                          rate_hz: int | None = None, progress: bool = True, base_checksum: str | None = None) -> dict:
    """Synthesise the spoken questions of `data_dir` into `out_dir` (default `<data_dir>/spoken_questions`);
    -> the manifest (also written there). In an earlier folder of ours only the splits asked for (count > 0) are
    replaced, the others kept (a test split can be added after a model was trained on train and val); a folder
    that is not ours refuses. base_checksum: the base set's (`make.dataset_checksum`), recorded in the manifest;
    None: the one its manifest.json records (this module does not import `make`, which imports it)."""

    missing = tools_missing()
    if missing:
        raise RuntimeError(f"spoken questions need {' and '.join(missing)} (Debian: apt-get install espeak-ng sox)")
    data_dir = Path(data_dir)
    out = Path(out_dir) if out_dir is not None else default_dir(data_dir)
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    base = read_json(data_dir / "manifest.json") if (data_dir / "manifest.json").is_file() else {}
    rate_hz = rate_hz or int(base.get("settings", {}).get("audio_rate_hz", 16000))
    import shutil
    before: dict = {}
    if out.exists():
        m = out / "manifest.json"
        before = json.loads(m.read_text()) if m.is_file() else {}
        if before.get("format") != FORMAT and any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty and holds no spoken-questions manifest.json; choose another "
                                  "--out or remove it")
        if before.get("complete") and (before.get("seed") != seed or before.get("audio_rate_hz") != rate_hz):
            before = {}  # another seed or rate: nothing kept
        for split in ({"train", "val", "test"} if not before.get("complete") else
                      {k for k, n in counts.items() if n > 0}):
            shutil.rmtree(out / split, ignore_errors=True)
            (out / f"questions_{split}.json").unlink(missing_ok=True)
        if not before.get("complete"):
            before = {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps({"format": FORMAT, "complete": False}) + "\n")
    t0 = time.perf_counter()
    plans = {split: _plan(data_dir, split, n, seed) for split, n in counts.items() if n > 0}
    jobs = []
    for split, recs in plans.items():
        (out / split).mkdir()
        jobs += [r for r in recs]

    def run(r):
        path = out / r["file"]
        synthesize(r["question"], r["voice"], r["speed_wpm"], r["pitch"], rate_hz, path)
        info = sf.info(str(path))
        r["seconds"] = round(info.frames / info.samplerate, 3)

    # threads suffice: the work happens in the espeak-ng and sox child processes
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(tqdm(pool.map(run, jobs), total=len(jobs), desc="spoken questions", unit="clip",
                  disable=not progress))
    stats = {k: v for k, v in before.get("counts", {}).items() if k not in plans}
    for split, recs in plans.items():
        (out / f"questions_{split}.json").write_text(
            json.dumps({"info": {"split": split, "seed": seed}, "questions": recs}, separators=(",", ":")))
        stats[split] = {"questions": len(recs), "speakers": len({r["speaker_id"] for r in recs}),
                        "seconds": round(sum(r["seconds"] for r in recs), 3),
                        "max_seconds": max((r["seconds"] for r in recs), default=0.0)}
    manifest = {"format": FORMAT, "complete": True, "seed": seed, "audio_rate_hz": rate_hz,
                "base": {"dir": str(data_dir), "checksum": base_checksum or base.get("checksum")},
                "counts": dict(sorted(stats.items(), key=lambda kv: _SPLIT_NO[kv[0]])), "tools": tool_versions(),
                "wall_s": round(time.perf_counter() - t0, 1), "checksum": folder_checksum(out),
                "sha256": {split: folder_checksum(out, (split,)) for split in stats}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load(spoken_dir: str | Path, split: str) -> list[dict]:
    """The split's records (see the module's layout); FileNotFoundError naming the command that makes them."""
    f = Path(spoken_dir) / f"questions_{split}.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: make it with `unitocom data spoken-questions --data <data dir> "
                                f"--out {spoken_dir}`")
    return json.loads(f.read_text())["questions"]
