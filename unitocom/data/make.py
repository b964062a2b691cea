"""`data make`: write the synthetic CLEVR, COCO-captions and LibriSpeech stand-ins, the demo photos and a manifest.

Determinism: every scene draws from its own seed (seed, split, index) and answer balancing runs per fixed block
of scenes, so the bytes written depend on the seed and the preset only, not on the number of workers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from PIL import Image
from tqdm import tqdm

from unitocom.data.captions import captions_for_scene
from unitocom.data.layouts import (clevr_questions_file, clevr_scenes_file, coco_annotation_file, coco_image_dir,
                                   coco_image_filename, librispeech_utterance_id)
from unitocom.data.photos import PHOTO_NAMES, load_photo
from unitocom.data.presets import SPEECH_SUBSETS, SPLITS, DataPreset, data_preset
from unitocom.data.questions import FAMILIES, AnswerBalancer, questions_for_scene
from unitocom.data.scenes import render_scene, sample_scene
from unitocom.data.speech import (Speaker, make_speakers, speech_sentence, synthesize, tool_versions,
                                  tools_missing, transcript)

FORMAT = "unitocom-data/1"
SPOKEN_FOLDER = "spoken_questions"  # unitocom.data.spoken.FOLDER (not imported: spoken imports this module)
GENERATED = ("CLEVR_v1.0", "coco", "LibriSpeech", "photos", SPOKEN_FOLDER, "manifest.json")  # all `make` removes first
_SPLIT_NO = {s: i for i, s in enumerate(SPLITS)}
_COCO_ID_BASE = {"train": 0, "val": 1_000_000, "test": 2_000_000}  # COCO ids are unique across splits
_SPEAKER_ID_BASE = {"train": 1000, "val": 2000, "test": 3000}  # LibriSpeech's speakers are disjoint per subset
# Stream tags keep the scene, question and speech generators independent of each other.
_SCENES, _QUESTIONS, _SPEECH = 1, 2, 3


def _dump_json(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"), ensure_ascii=False)


def _file_hashes(root: Path) -> list[tuple[str, str]]:
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        # spoken_questions/ (`data spoken-questions`) is an addition with its own manifest and checksum: adding
        # it leaves the set's checksum, which the committed checkpoints record, as it was
        if rel.parts and rel.parts[0] == SPOKEN_FOLDER:
            continue
        if p.is_file() and rel.as_posix() != "manifest.json":
            out.append((p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()))
    return out


def recorded_checksum(directory: str | Path) -> str | None:
    """The checksum `data make` recorded in the directory's manifest.json; None for a set it did not make (real
    CLEVR, COCO or LibriSpeech at a local path, whose files are too many to hash for a results header)."""
    m = Path(directory) / "manifest.json"
    return json.loads(m.read_text()).get("checksum") if m.is_file() else None


def dataset_checksum(directory: str | Path, use_manifest: bool = False) -> str:
    """sha256 over every file's relative path and content (sorted; manifest.json excluded): equal iff same data.
    use_manifest: the checksum `data make` recorded in the directory's manifest.json when there is one (no pass
    over the files; trusts that nothing changed since), else computed."""
    if use_manifest and (recorded := recorded_checksum(directory)):
        return recorded
    h = hashlib.sha256()
    for rel, digest in _file_hashes(Path(directory)):
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


# ---- scenes, questions, captions -------------------------------------------------------------------------------

def _scene_block(preset: DataPreset, split: str, start: int, stop: int, seed: int, image_dir: str) -> tuple:
    """Draw scenes [start, stop) of a split, write their PNGs, and return their scene, question and caption records."""
    balancer = AnswerBalancer(preset.families)
    qrng = np.random.default_rng([seed, _QUESTIONS, _SPLIT_NO[split], start])
    scenes, questions, captions = [], [], []
    for index in range(start, stop):
        rng = np.random.default_rng([seed, _SCENES, _SPLIT_NO[split], index])
        scene = sample_scene(rng, preset, split, index)
        pixels = render_scene(scene, preset.image_size_px, preset.supersample, preset.shadows)
        Image.fromarray(pixels).save(os.path.join(image_dir, scene["image_filename"]), format="PNG")
        captions.append(captions_for_scene(scene, preset, rng, preset.captions_per_image))
        questions.extend(questions_for_scene(scene, preset, qrng, balancer, preset.questions_per_scene))
        scenes.append(scene)
    return scenes, questions, captions


def _run_blocks(preset: DataPreset, seed: int, clevr: Path, workers: int, progress: bool) -> dict[str, tuple]:
    jobs = []
    for split, n in preset.scene_counts().items():
        (clevr / "images" / split).mkdir(parents=True, exist_ok=True)
        for start in range(0, n, preset.block_scenes):
            jobs.append((split, start, min(n, start + preset.block_scenes)))
    results: dict[tuple[str, int], tuple] = {}
    total = sum(preset.scene_counts().values())
    with tqdm(total=total, desc="scenes", unit="scene", disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            # spawn, not fork: the caller may hold torch or threads, which fork copies badly.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(_scene_block, preset, s, a, b, seed, str(clevr / "images" / s)): (s, a, b)
                           for s, a, b in jobs}
                for fut in as_completed(futures):
                    s, a, b = futures[fut]
                    results[(s, a)] = fut.result()
                    bar.update(b - a)
        else:
            for s, a, b in jobs:
                results[(s, a)] = _scene_block(preset, s, a, b, seed, str(clevr / "images" / s))
                bar.update(b - a)
    merged = {}
    for split in SPLITS:
        parts = [results[k] for k in sorted(k for k in results if k[0] == split)]
        merged[split] = tuple([r for p in parts for r in p[i]] for i in range(3))
    return merged


def _write_clevr(clevr: Path, split: str, scenes: list[dict], questions: list[dict], info: dict) -> None:
    for i, q in enumerate(questions):
        q["question_index"] = i
    (clevr / "scenes").mkdir(parents=True, exist_ok=True)
    (clevr / "questions").mkdir(parents=True, exist_ok=True)
    _dump_json({"info": {"split": split, **info}, "scenes": scenes}, clevr_scenes_file(clevr, split))
    _dump_json({"info": {"split": split, **info}, "questions": questions}, clevr_questions_file(clevr, split))


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the COCO view shares the CLEVR images; a hard link costs no space
    except OSError:
        shutil.copyfile(src, dst)


def _write_coco(coco: Path, clevr: Path, split: str, scenes: list[dict], captions: list[list[str]],
                size_px: int, info: dict) -> int:
    image_dir = coco_image_dir(coco, split)
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for scene, caps in zip(scenes, captions):
        image_id = _COCO_ID_BASE[split] + scene["image_index"] + 1
        name = coco_image_filename(image_id)
        _link(clevr / "images" / split / scene["image_filename"], image_dir / name)
        images.append({"license": 1, "file_name": name, "coco_url": "", "height": size_px, "width": size_px,
                       "date_captured": "", "flickr_url": "", "id": image_id})
        for cap in caps:
            annotations.append({"image_id": image_id, "id": _COCO_ID_BASE[split] + len(annotations) + 1,
                                "caption": cap})
    _dump_json({"info": {"description": "UniToCom synthetic captions in MS-COCO 2017 layout", **info},
                "licenses": [{"url": "", "id": 1, "name": "generated by unitocom.data"}],
                "images": images, "annotations": annotations},
               coco_annotation_file(coco, split))
    return len(annotations)


# ---- speech ----------------------------------------------------------------------------------------------------

def _speech_plan(preset: DataPreset, seed: int) -> dict[str, list[tuple[Speaker, int, int, str, int, int]]]:
    """Per split: (speaker, chapter, utterance, text, speed, pitch) of every clip, drawn before any synthesis."""
    plan = {}
    for split, n in preset.clip_counts().items():
        rng = np.random.default_rng([seed, _SPEECH, _SPLIT_NO[split]])
        speakers = make_speakers(rng, preset.speakers_per_split[_SPLIT_NO[split]], _SPEAKER_ID_BASE[split])
        next_utt: Counter[tuple[int, int]] = Counter()
        clips = []
        for i in range(n):
            spk = speakers[i % len(speakers)]
            chapter = spk.speaker_id * 100 + 1 + (i // len(speakers)) % 2  # two chapters a speaker
            utt = next_utt[(spk.speaker_id, chapter)]
            next_utt[(spk.speaker_id, chapter)] += 1
            speed = int(round(spk.speed_wpm * rng.uniform(0.9, 1.1)))
            pitch = int(np.clip(spk.pitch + rng.integers(-8, 9), 0, 99))
            clips.append((spk, chapter, utt, speech_sentence(rng), speed, pitch))
        plan[split] = clips
    return plan


def _write_speech(root: Path, preset: DataPreset, seed: int, workers: int, progress: bool) -> dict[str, dict]:
    missing = tools_missing()
    if missing:
        raise RuntimeError(f"speech synthesis needs {' and '.join(missing)} (Debian: apt-get install espeak-ng sox); "
                           "run with --no-speech to skip it")
    plan = _speech_plan(preset, seed)
    jobs = []
    for split, clips in plan.items():
        for spk, chapter, utt, text, speed, pitch in clips:
            folder = root / SPEECH_SUBSETS[split] / str(spk.speaker_id) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            uid = librispeech_utterance_id(spk.speaker_id, chapter, utt)
            jobs.append((folder / f"{uid}.flac", text, spk.voice, speed, pitch))

    def run(job):
        path, text, voice, speed, pitch = job
        synthesize(text, voice, speed, pitch, preset.audio_rate_hz, path)
        info = sf.info(str(path))
        return info.frames / info.samplerate

    # Threads suffice: the work happens in the espeak-ng and sox child processes.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        durations = list(tqdm(pool.map(run, jobs), total=len(jobs), desc="speech", unit="clip",
                              disable=not progress))
    seconds = dict(zip((j[0] for j in jobs), durations))
    stats = {}
    speaker_rows = []
    for split, clips in plan.items():
        subset = root / SPEECH_SUBSETS[split]
        lines: dict[Path, list[str]] = {}
        minutes: Counter[Speaker] = Counter()
        total = 0.0
        for spk, chapter, utt, text, _, _ in clips:
            uid = librispeech_utterance_id(spk.speaker_id, chapter, utt)
            folder = subset / str(spk.speaker_id) / str(chapter)
            lines.setdefault(folder / f"{spk.speaker_id}-{chapter}.trans.txt", []).append(f"{uid} {transcript(text)}")
            d = seconds[folder / f"{uid}.flac"]
            minutes[spk] += d / 60.0
            total += d
        for path, rows in lines.items():
            path.write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")
        for spk in sorted(minutes, key=lambda s: s.speaker_id):
            speaker_rows.append(f"{spk.speaker_id:<5}| {spk.sex} | {SPEECH_SUBSETS[split]:<16} | "
                                f"{minutes[spk]:5.2f} | espeak-ng {spk.voice} pitch {spk.pitch} {spk.speed_wpm} wpm")
        stats[split] = {"clips": len(clips), "speakers": len(minutes), "seconds": round(total, 3)}
    header = ";ID   |SEX| SUBSET           |MINUTES| NAME\n"
    (root / "SPEAKERS.TXT").write_text(header + "\n".join(speaker_rows) + "\n", encoding="utf-8")
    return stats


def _clear_previous(out: Path) -> None:
    """Remove an earlier make's entries; refuse to touch same-named entries that no make of ours wrote."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    ours = False
    if manifest.exists():
        try:
            ours = json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT
        except (ValueError, AttributeError):
            ours = False
    present = [n for n in GENERATED if (out / n).exists()]
    if present and not ours:
        raise FileExistsError(f"{out} already holds {', '.join(present)} but no manifest.json from `data make`; "
                              "remove them or choose another output directory")
    for name in present:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    # A placeholder first, so that a make that dies half-way can still be replaced by the next one.
    manifest.write_text(json.dumps({"format": FORMAT, "complete": False}) + "\n", encoding="utf-8")


# ---- the whole set -------------------------------------------------------------------------------------------

def make_dataset(out_dir: str | Path, preset: str | DataPreset = "tiny", *, seed: int = 0,
                 scenes: int | None = None, clips: int | None = None, speech: bool = True,
                 image_size_px: int | None = None, workers: int = 2, progress: bool = True,
                 log: Callable[[str], None] = print, spoken_questions: bool = False,
                 train_clips: int | None = None, train_speakers: int | None = None) -> dict:
    """Write the synthetic data sets under `out_dir` and return the manifest (also written as manifest.json).

    `scenes` / `clips` override the preset's totals (split train/val/test in the preset's proportions).
    `train_clips` / `train_speakers` change the training speech alone: each split's speech is drawn from its own
    generator, so val and test come out byte for byte as without them (the ASR data-size study of issue 12).
    Only the entries an earlier make wrote (GENERATED) are replaced; anything else in `out_dir` is left alone,
    and same-named entries without our manifest.json stop the make (FileExistsError) rather than being deleted.
    `spoken_questions` (with speech): also the spoken questions of VQA with a spoken question in
    spoken_questions/ (`unitocom.data.spoken`, its default counts; the set's checksum skips them).
    """
    base = data_preset(preset) if isinstance(preset, str) else preset
    p = base.with_totals(scenes=scenes, clips=clips if speech else 0, image_size_px=image_size_px)
    if train_clips is not None or train_speakers is not None:
        p = p.with_train_speech(clips=train_clips, speakers=train_speakers)
    out = Path(out_dir)
    _clear_previous(out)
    info = {"version": "1.0", "generator": "unitocom.data", "preset": p.name, "seed": seed,
            "license": "generated; no third-party content"}
    t0 = time.perf_counter()
    clevr, coco = out / "CLEVR_v1.0", out / "coco"
    per_split = _run_blocks(p, seed, clevr, workers, progress)
    counts: dict[str, dict] = {}
    answers: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        split_scenes, split_questions, split_captions = per_split[split]
        _write_clevr(clevr, split, split_scenes, split_questions, info)
        n_captions = _write_coco(coco, clevr, split, split_scenes, split_captions, p.image_size_px, info)
        counts[split] = {"scenes": len(split_scenes), "questions": len(split_questions), "captions": n_captions}
        if split == "train":
            by_family: dict[str, Counter] = {}
            for q in split_questions:
                by_family.setdefault(FAMILIES[q["question_family_index"]], Counter())[q["answer"]] += 1
            answers = {f: dict(sorted(c.items())) for f, c in sorted(by_family.items())}
    log(f"scenes: {time.perf_counter() - t0:.1f} s")
    if speech and sum(p.clip_counts().values()) > 0:
        t1 = time.perf_counter()
        speech_stats = _write_speech(out / "LibriSpeech", p, seed, workers, progress)
        for split, s in speech_stats.items():
            counts[split].update(s)
        log(f"speech: {time.perf_counter() - t1:.1f} s")
    photo_dir = out / "photos"
    photo_dir.mkdir()
    for name in PHOTO_NAMES:
        Image.fromarray(load_photo(name, p.image_size_px)).save(photo_dir / f"{name}.png", format="PNG")
    spoken_counts = None
    if speech and spoken_questions:
        from unitocom.data.spoken import make_spoken_questions  # last: it records the checksum of all above
        t1 = time.perf_counter()
        spoken_counts = make_spoken_questions(out, out / SPOKEN_FOLDER, seed=seed, workers=workers,
                                              rate_hz=p.audio_rate_hz, progress=progress,
                                              base_checksum=dataset_checksum(out))["counts"]
        log(f"spoken questions: {time.perf_counter() - t1:.1f} s")
    checksums = {name: dataset_checksum(out / name) for name in GENERATED if (out / name).is_dir()}
    manifest = {
        "format": FORMAT,
        "complete": True,
        "preset": p.name,
        "seed": seed,
        "settings": dataclasses.asdict(p),
        "counts": counts,
        "photos": list(PHOTO_NAMES),
        "train_answers_by_family": answers,
        "tools": tool_versions() if speech else {},
        **({"spoken_questions": spoken_counts} if spoken_counts else {}),
        "sha256": checksums,
        "checksum": dataset_checksum(out),
    }
    text = json.dumps(manifest, indent=2) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8")
    return json.loads(text)  # what a reader of the file gets (lists, not tuples)
