"""`data make` end to end on a small set: byte-identical by seed, counted, loadable, speech that fits its text."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import needs
from unitocom.data.cli import add_subparser
from unitocom.data.loaders import ClevrQuestions, CocoCaptions, LibriSpeech, load_clevr_scenes
from unitocom.data.make import GENERATED, dataset_checksum, make_dataset
from unitocom.data.photos import PHOTO_NAMES
from unitocom.data.presets import SPEECH_SUBSETS, SPLITS, data_preset
from unitocom.data.speech import tools_missing
from unitocom.data.vocab import WORDS, words_of

SCENES, CLIPS = 60, 9
# Small blocks, so that the train split spans several work units and two workers really interleave them.
PRESET = dataclasses.replace(data_preset("tiny"), block_scenes=16)
needs_speech_tools = needs(not tools_missing(), "espeak-ng / sox not installed")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("data") / "small"
    manifest = make_dataset(out, PRESET, seed=3, scenes=SCENES, clips=CLIPS, speech=not tools_missing(),
                            workers=2, progress=False, log=lambda _: None)
    return out, manifest


def test_same_seed_gives_byte_identical_output_whatever_the_workers(small, tmp_path):
    out, manifest = small
    again = make_dataset(tmp_path / "again", PRESET, seed=3, scenes=SCENES, clips=CLIPS,
                         speech=not tools_missing(), workers=1, progress=False, log=lambda _: None)
    assert again["checksum"] == manifest["checksum"] == dataset_checksum(out) == dataset_checksum(out, use_manifest=True)
    a, b = _files(out), _files(tmp_path / "again")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []  # manifest.json included


def test_another_seed_gives_other_scenes(small, tmp_path):
    other = make_dataset(tmp_path / "other", "tiny", seed=4, scenes=SCENES, speech=False, progress=False,
                         log=lambda _: None)
    assert other["sha256"]["CLEVR_v1.0"] != small[1]["sha256"]["CLEVR_v1.0"]
    assert other["sha256"]["photos"] == small[1]["sha256"]["photos"]  # the photos do not depend on the seed


@needs_speech_tools
def test_more_training_speech_leaves_val_and_test_speech_as_they_were(small, tmp_path):
    """The ASR data-size study trains on more clips and speakers and must score on the very same test clips."""
    out, manifest = small
    more = make_dataset(tmp_path / "more", PRESET, seed=3, scenes=SCENES, clips=CLIPS, workers=2, progress=False,
                        log=lambda _: None, train_clips=10, train_speakers=5)
    assert more["counts"]["train"]["clips"] == 10 and more["counts"]["train"]["speakers"] == 5
    assert more["settings"]["speakers_per_split"][1:] == manifest["settings"]["speakers_per_split"][1:]
    a, b = _files(out / "LibriSpeech"), _files(tmp_path / "more" / "LibriSpeech")
    for subset in ("dev-clean/", "test-clean/"):
        mine = {k: v for k, v in a.items() if k.startswith(subset)}
        assert mine and mine == {k: v for k, v in b.items() if k.startswith(subset)}
    assert {k for k in a if k.startswith("train-clean-100/")} != {k for k in b if k.startswith("train-clean-100/")}
    assert more["sha256"]["CLEVR_v1.0"] == manifest["sha256"]["CLEVR_v1.0"]


def test_training_speech_overrides_are_checked():
    with pytest.raises(ValueError, match="training speakers"):
        data_preset("tiny").with_train_speech(speakers=0)
    with pytest.raises(ValueError, match="at most 999"):
        data_preset("tiny").with_train_speech(speakers=1000)
    assert data_preset("tiny").with_train_speech(clips=5).speakers_per_split == (12, 4, 4)


def test_remaking_replaces_only_generated_entries(tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    make_dataset(tmp_path, "tiny", scenes=3, speech=False, workers=1, progress=False, log=lambda _: None)
    (tmp_path / "CLEVR_v1.0" / "stale.txt").write_text("old")
    make_dataset(tmp_path, "tiny", scenes=3, speech=False, workers=1, progress=False, log=lambda _: None)
    assert keep.read_text() == "mine" and not (tmp_path / "CLEVR_v1.0" / "stale.txt").exists()


def test_refuses_to_delete_what_it_did_not_write(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="photos"):
        make_dataset(tmp_path, "tiny", scenes=3, speech=False, workers=1, progress=False, log=lambda _: None)
    assert (tmp_path / "photos" / "holiday.jpg").exists()


def test_manifest_counts_match_the_files(small):
    out, manifest = small
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest and manifest["complete"]
    assert sorted(manifest["sha256"]) == sorted(n for n in GENERATED if (out / n).is_dir())
    preset = data_preset("tiny")
    assert sum(manifest["counts"][s]["scenes"] for s in SPLITS) == SCENES
    for split in SPLITS:
        c = manifest["counts"][split]
        assert len(list((out / "CLEVR_v1.0" / "images" / split).glob("*.png"))) == c["scenes"]
        assert len(list((out / "coco" / f"{split}2017").glob("*.png"))) == c["scenes"]
        assert c["questions"] == c["scenes"] * preset.questions_per_scene
        assert c["captions"] == c["scenes"] * preset.captions_per_image
        if not tools_missing():
            assert len(list((out / "LibriSpeech" / SPEECH_SUBSETS[split]).rglob("*.flac"))) == c["clips"]
    assert sorted(p.stem for p in (out / "photos").glob("*.png")) == sorted(PHOTO_NAMES)


def test_synthetic_sets_load_through_the_real_corpus_loaders(small):
    out, manifest = small
    for split in SPLITS:
        vqa = ClevrQuestions(out, split)
        assert len(vqa) == manifest["counts"][split]["questions"]
        image, question, answer, family = vqa[0]
        assert image.shape == (3, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
        assert question.endswith("?") and answer and family >= 0
        t2i = CocoCaptions(out / "coco", split)
        assert len(t2i) == manifest["counts"][split]["scenes"]
        assert t2i[0].image.shape == (3, 32, 32) and len(t2i[0].captions) == 5
    scenes = load_clevr_scenes(out, "train")
    # The COCO view shows the same pixels as the CLEVR view of a scene.
    clevr_img = np.asarray(Image.open(out / "CLEVR_v1.0" / "images" / "train" / scenes[0]["image_filename"]))
    coco_img = np.asarray(Image.open(out / "coco" / "train2017" / CocoCaptions(out / "coco").images[0]["file_name"]))
    assert np.array_equal(clevr_img, coco_img)


def test_all_text_is_in_the_shared_vocabulary(small):
    out, _ = small
    words = set(WORDS)
    for split in SPLITS:
        for q in ClevrQuestions(out, split).questions:
            assert set(words_of(q["question"] + " " + q["answer"])) <= words
        for caps in CocoCaptions(out / "coco", split).captions:
            assert all(set(words_of(c)) <= words for c in caps)


@needs_speech_tools
def test_speech_layout_and_durations_fit_the_transcripts(small):
    out, manifest = small
    rate = data_preset("tiny").audio_rate_hz
    n_words, active_s, total_s = [], [], []
    for split in SPLITS:
        ds = LibriSpeech(out, SPEECH_SUBSETS[split])
        assert len(ds) == manifest["counts"][split]["clips"]
        for wave, rate_hz, text, speaker, chapter, uid in ds:
            assert rate_hz == rate and text == text.upper() and uid.startswith(f"{speaker}-{chapter}-")
            assert set(words_of(text)) <= set(WORDS)
            w = wave.numpy()
            frames = w[: w.size // 320 * 320].reshape(-1, 320)
            rms = np.sqrt((frames ** 2).mean(axis=1))
            n_words.append(len(text.split()))
            active_s.append(float((rms > 0.02 * rms.max()).sum()) * 320 / rate_hz)
            total_s.append(w.size / rate_hz)
    n_words, active_s, total_s = map(np.asarray, (n_words, active_s, total_s))
    # espeak-ng at 120..200 wpm: a word takes 0.15..0.7 s of sound; the file adds under a second of silence.
    assert np.all((active_s / n_words > 0.15) & (active_s / n_words < 0.7)), list(zip(n_words, active_s))
    assert np.all(total_s - active_s < 1.0)
    assert np.corrcoef(n_words, total_s)[0, 1] > 0.7, "longer transcripts, longer clips"
    speakers = (out / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines()
    assert speakers[0].startswith(";") and len(speakers) > 1


def test_cli_make_and_sheet(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="unitocom")
    add_subparser(parser.add_subparsers())
    args = parser.parse_args(["data", "make", "--out", str(tmp_path / "d"), "--scenes", "12", "--no-speech",
                              "--quiet", "--workers", "1", "--image-px", "64"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "checksum" in printed
    args = parser.parse_args(["data", "sheet", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "s.png"),
                              "--split", "train", "--count", "4", "--columns", "2"])
    assert args.func(args) == 0
    assert "s.png" in capsys.readouterr().out
    with Image.open(tmp_path / "s.png") as sheet:
        assert sheet.width > 2 * 224 and sheet.height > 2 * 224
    args = parser.parse_args(["data", "checksum", "--data", str(tmp_path / "d")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == json.loads((tmp_path / "d" / "manifest.json").read_text())["checksum"]


def test_cli_help_names_every_option():
    parser = argparse.ArgumentParser(prog="unitocom")
    add_subparser(parser.add_subparsers())
    make = parser._subparsers._group_actions[0].choices["data"]._subparsers._group_actions[0].choices["make"]
    text = make.format_help()
    for option in ("--preset", "--out", "--seed", "--scenes", "--speech", "--train-clips", "--train-speakers",
                   "--no-speech"):
        assert option in text


@pytest.mark.slow
@needs_speech_tools
def test_full_tiny_make_fits_in_five_minutes(tmp_path):
    t0 = time.perf_counter()
    manifest = make_dataset(tmp_path / "tiny", "tiny", progress=False, log=lambda _: None)
    assert time.perf_counter() - t0 < 300
    preset = data_preset("tiny")
    for split in SPLITS:
        assert manifest["counts"][split]["scenes"] == preset.scene_counts()[split]
        assert manifest["counts"][split]["clips"] == preset.clip_counts()[split]


def test_sentence_kind_reads_back_the_kind_the_generator_drew():
    import numpy as np

    from unitocom.data.speech import SENTENCE_KINDS, sentence_kind, speech_sentence
    for i in range(2000):  # speech_sentence's first draw picks the kind
        kind = SENTENCE_KINDS[int(np.random.default_rng(i).integers(len(SENTENCE_KINDS)))]
        assert sentence_kind(speech_sentence(np.random.default_rng(i))) == kind
    assert sentence_kind("IS THE RED CIRCLE LEFT OF THE BLUE SQUARE") == "question"

