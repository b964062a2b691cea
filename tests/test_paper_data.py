"""The paper preset reads the real corpora (issue 15): a training step of each paper-preset tokenizer on the
fixtures in their real formats (CLEVR's 480x320 PNG renders, COCO JPEGs and captions, LibriSpeech's 16 kHz FLAC),
laid out under one root as the README's "The letter's runs" says. Slow: the paper tokenizers are large for a CPU
(and the text one learns its 4096-id BPE first)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _letter_root(tmp: Path) -> Path:
    d = tmp / "letter"
    (d / "LibriSpeech").mkdir(parents=True)
    (d / "CLEVR_v1.0").symlink_to(FIXTURES / "clevr" / "CLEVR_v1.0")
    (d / "coco").symlink_to(FIXTURES / "coco")
    speech = FIXTURES / "librispeech" / "LibriSpeech" / "dev-clean"
    for subset in ("train-clean-100", "dev-clean"):  # the fixture has one subset; both splits read it
        (d / "LibriSpeech" / subset).symlink_to(speech)
    return d


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["image", "audio", "text"])
def test_a_paper_tokenizer_trains_on_the_real_formats(tmp_path, modality):
    data = _letter_root(tmp_path)
    out = tmp_path / f"{modality}.safetensors"
    r = subprocess.run([sys.executable, "-m", "unitocom.cli", "train", "tokenizer", "--modality", modality,
                        "--preset", "paper", "--data", str(data), "--steps", "1", "--batch-size", "2", "--warmup", "1",
                        "--out", str(out), "--run-dir", str(tmp_path / "run"), "--quiet"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from unitocom.models.token_link import load
    spec = load(out).spec
    assert spec.preset == "paper"
    if modality == "image":
        assert spec.image_size_px == 256
    if modality == "audio":
        assert spec.audio_rate_hz == 24000
    manifest = json.loads((out.parent / "manifest.json").read_text())["checkpoints"]
    entry = next(v for v in manifest.values() if v["file"] == out.name)
    assert entry["preset"] == "paper" and entry["name"].startswith("paper-")  # never a tiny checkpoint's name
