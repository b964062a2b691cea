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
    assert {"mllm_prefill", "mllm_generate"} <= {t.stage for t in r.timings if t.service == "basestation"}


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


@pytest.mark.parametrize("task", ["vqa", "asr", "t2i"])
def test_every_task_with_the_vae_scheme_reads_vae_tokens(tx, scene, task):
    """`--scheme vae` runs on its own MLLM (mllm-vae), trained on received VAE tokens."""
    q = _first_question(scene)
    if task == "vqa":
        png = (scene / "CLEVR_v1.0/images/test" / q["image_filename"]).read_bytes()
        req = client.build_request(image=png, question=q["question"], task="vqa", scheme="vae", snr_db=20.0)
    elif task == "asr":
        trans = sorted((scene / "LibriSpeech/test-clean").rglob("*.trans.txt"))[0]
        utt, _ = trans.read_text().splitlines()[0].split(" ", 1)
        req = client.build_request(audio=next(trans.parent.glob(f"{utt}.*")).read_bytes(), task="asr", scheme="vae",
                                   snr_db=20.0)
    else:
        req = client.build_request(text="There is a small blue circle.", task="t2i", scheme="vae", snr_db=20.0)
    r = tx.send(req)
    assert r.output_text
    if task == "vqa":
        assert r.output_text in {a.lower() for a in ANSWERS}
    if task == "t2i":
        assert any(o.image_png and "generated" in o.note for o in r.outputs)


def test_a_missing_mllm_is_a_failed_precondition_naming_the_file(tmp_path, monkeypatch):
    from unitocom import config
    from unitocom.stages import mllm as stage
    from unitocom.options import Scheme
    from unitocom.stages.request import RequestError
    monkeypatch.setenv("UNITOCOM_CHECKPOINTS", str(tmp_path))
    monkeypatch.setattr(stage, "_cache", {})
    with pytest.raises(RequestError) as e:
        stage.assistant(Scheme.VAE, config.load("tiny"))
    assert e.value.code == "failed_precondition" and "mllm-vae.safetensors" in str(e.value)


def test_eval_command_scores_vqa_through_the_services(services, scene):
    cfg, _ = services
    r = subprocess.run([sys.executable, "-m", "unitocom.cli", "eval", "--task", "vqa", "--scheme", "unitocom",
                        "--snr-db", "20", "--n", "12", "--data", str(scene), "--target", cfg.address("transmitter").grpc,
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert {"task", "scheme", "snr_db", "channel", "n", "metric", "value", "chance"} <= set(row)
    assert row["n"] == 12 and row["metric"] == "accuracy" and 0 <= row["value"] <= 1 and 0 < row["chance"] < 1
    fam = row["by_family"]
    assert sum(f["n"] for f in fam.values()) == 12
    assert sum(f["accuracy"] * f["n"] for f in fam.values()) == pytest.approx(row["value"] * 12, abs=0.01)
