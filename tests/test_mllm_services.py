"""VQA, ASR and text-to-image through the running services with the committed tiny checkpoints."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from unitocom import client
from unitocom.data.vocab import ANSWERS

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A few held-out scenes with questions, captions and speech, made fresh (another seed than training)."""
    from unitocom.data.make import make_dataset
    d = tmp_path_factory.mktemp("heldout")
    make_dataset(d, "tiny", seed=123, scenes=40, clips=8, progress=False, workers=1)
    return d


def _first_question(d: Path) -> dict:
    return json.loads((d / "CLEVR_v1.0/questions/CLEVR_test_questions.json").read_text())["questions"][0]


@pytest.mark.parametrize("scheme", ["unitocom", "traditional"])
def test_vqa_answers_from_the_closed_vocabulary_and_scores_the_label(tx, scene, scheme):
    q = _first_question(scene)
    png = (scene / "CLEVR_v1.0/images/test" / q["image_filename"]).read_bytes()
    r = tx.send(client.build_request(image=png, question=q["question"], task="vqa", scheme=scheme, snr_db=20.0,
                                     channel="rayleigh", answer=q["answer"], seed=1))
    assert r.output_text in {a.lower() for a in ANSWERS}, r.output_text
    assert r.quality["exact_match"] in (0.0, 1.0)
    assert any(t.stage == "mllm" and t.service == "basestation" for t in r.timings)


def test_asr_transcribes_and_reports_wer(tx, scene):
    trans = sorted((scene / "LibriSpeech/test-clean").rglob("*.trans.txt"))[0]
    utt, text = trans.read_text().splitlines()[0].split(" ", 1)
    audio = next(trans.parent.glob(f"{utt}.*")).read_bytes()
    r = tx.send(client.build_request(audio=audio, task="asr", scheme="unitocom", snr_db=20.0, transcript=text))
    assert r.output_text
    assert 0.0 <= r.quality["wer"] <= 2.0


def test_t2i_generates_a_scene_image_and_checks_it(tx):
    r = tx.send(client.build_request(text="There is a large red square.", task="t2i", scheme="unitocom",
                                     snr_db=20.0, seed=3))
    gen = [o for o in r.outputs if o.image_png and "generated" in o.note]
    assert len(gen) == 1
    img = np.asarray(Image.open(io.BytesIO(gen[0].image_png)))
    assert img.shape == (32, 32, 3) and img.std() > 5  # not a flat field
    assert 0.0 <= r.quality["t2i_pair_recall"] <= 1.0


def test_vqa_with_the_vae_scheme_needs_its_own_checkpoints_or_says_which_is_missing(tx, scene):
    q = _first_question(scene)
    png = (scene / "CLEVR_v1.0/images/test" / q["image_filename"]).read_bytes()
    req = client.build_request(image=png, question=q["question"], task="vqa", scheme="vae", snr_db=20.0)
    if (CHECKPOINTS / "mllm-vae.safetensors").exists():
        assert tx.send(req).output_text
    else:
        with pytest.raises(grpc.RpcError) as e:
            tx.send(req)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "is not installed" in e.value.details()


def test_eval_command_scores_vqa_through_the_services(services, scene):
    cfg, _ = services
    r = subprocess.run([sys.executable, "-m", "unitocom.cli", "eval", "--task", "vqa", "--scheme", "unitocom",
                        "--snr-db", "20", "--n", "12", "--data", str(scene), "--target", cfg.address("transmitter").grpc,
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert {"task", "scheme", "snr_db", "channel", "n", "metric", "value", "chance"} <= set(row)
    assert row["n"] == 12 and row["metric"] == "accuracy" and 0 <= row["value"] <= 1 and 0 < row["chance"] < 1
