"""Vanilla SemCom (the letter's baseline 2) on the request path: the committed task-specific checkpoints serve
vqa, t2i and asr through `pipeline.run` (the cores the services call), with the same channel uses per request as
UniToCom, and reconstruction is refused with the reason."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from tests.conftest import need
from unitocom import client, config, pipeline
from unitocom.data.layouts import clevr_root
from unitocom.stages.request import RequestError, from_wire

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"


def _checkpoint(task: str) -> None:
    need((CHECKPOINTS / f"semcom-{task}.safetensors").exists(),
         f"checkpoints/semcom-{task}.safetensors is committed (`unitocom train semcom --task {task}`)")


def _scene_png() -> bytes:
    img = np.full((32, 32, 3), 120, np.uint8)
    img[8:20, 10:22] = (200, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _run(**kw):
    return pipeline.run(from_wire(client.build_request(channel="rayleigh", seed=3, **kw)), config.load("tiny"))


def test_vqa_answers_from_the_answer_vocabulary_with_unitocoms_channel_uses():
    _checkpoint("vqa")
    from unitocom.models import semcom as sc
    kw = dict(task="vqa", image=_scene_png(), question="How many red cubes are there?", answer="1", snr_db=10.0)
    sem, uni = _run(scheme="semcom", **kw), _run(scheme="unitocom", **kw)
    _, m, _ = sc.load(CHECKPOINTS / "semcom-vqa.safetensors")
    assert sem.output_text in m.answers and "exact_match" in sem.quality
    assert sem.channel_uses == uni.channel_uses  # the fairness: the same symbols per request
    assert {(t.service, t.stage) for t in sem.timings} >= {("basestation", "equalise"), ("basestation", "decode")}
    assert not any(t.stage.startswith("mllm") for t in sem.timings)  # no MLLM on this path


def test_t2i_draws_a_picture_and_asr_writes_a_transcript():
    _checkpoint("t2i")
    r = _run(scheme="semcom", task="t2i", text="A small red square left of a cyan circle.", snr_db=20.0)
    pngs = [o.image_png for o in r.outputs if o.image_png]
    assert pngs and Image.open(io.BytesIO(pngs[0])).size == (32, 32)
    assert "t2i_pair_recall" in r.quality  # scored against the caption the device sent (its label)
    _checkpoint("asr")
    wave = (0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV")
    kw = dict(task="asr", audio=buf.getvalue(), transcript="HELLO", snr_db=10.0)
    sem, uni = _run(scheme="semcom", **kw), _run(scheme="unitocom", **kw)
    assert sem.output_text == sem.output_text.upper() and "wer" in sem.quality
    assert sem.channel_uses == uni.channel_uses


def test_semcom_quality_on_held_out_questions_is_above_chance(heldout_data):
    """Pins the committed VQA system: 60 test questions of a freshly drawn set at 20 dB Rayleigh beat the
    majority-class guess."""
    _checkpoint("vqa")
    DATA = heldout_data
    from unitocom.task_eval import vqa_items
    items, guess = vqa_items(DATA, "test", 60)
    correct = []
    for i, q in enumerate(items):
        png = (clevr_root(DATA) / "images" / "test" / q["image_filename"]).read_bytes()
        r = _run(scheme="semcom", task="vqa", image=png, question=q["question"], answer=q["answer"], snr_db=20.0)
        correct.append(r.quality["exact_match"])
    chance = np.mean([g == q["answer"] for g, q in zip(guess, items)])
    assert np.mean(correct) > chance, (np.mean(correct), chance)


def test_reconstruction_with_semcom_is_refused_with_the_reason():
    with pytest.raises(RequestError) as e:
        _run(scheme="semcom", task="reconstruct", text="hello", snr_db=10.0)
    assert e.value.code == "unimplemented" and "task-specific" in e.value.reason


def test_the_manifest_records_how_each_semcom_checkpoint_was_made():
    manifest = json.loads((CHECKPOINTS / "manifest-tasks.json").read_text())
    for task in ("vqa", "t2i", "asr"):
        if (CHECKPOINTS / f"semcom-{task}.safetensors").exists():
            e = manifest[f"semcom-{task}"]
            assert e["command"].startswith("unitocom train semcom") and e["parameters"] > 0 and len(e["sha256"]) == 64
