"""The demo's line on what its one generated picture is a sample of (unitocom.demo.t2i_context)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from unitocom.demo import t2i_context

ROOT = Path(__file__).resolve().parents[1]


def _fig2(path: Path, sha: str) -> Path:
    point = {"task": "t2i", "scheme": "unitocom", "snr_db": 20.0, "n": 500, "value": 170.0, "pair_recall": 0.3167,
             "pair_recall_ci_low": 0.29, "pair_recall_ci_high": 0.351}
    other = {**point, "scheme": "vae", "pair_recall": 0.9}
    path.write_text(json.dumps({"header": {"checkpoints_sha256": {"mllm-sigma-genib.safetensors": sha}},
                                "points": [other, {**point, "snr_db": 0.0, "pair_recall": 0.1}, point]}))
    return path


def test_the_context_names_the_installed_mllms_figure_and_nothing_else(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    (ck / "mllm-sigma-genib.safetensors").write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    line = t2i_context(_fig2(tmp_path / "fig2.json", sha), ck)
    assert line is not None and "0.32 [0.29, 0.35]" in line and "at 20 dB" in line and "500 captions" in line
    assert "0.50" in line  # the target beside it
    # a file measured on other weights, a missing file, a missing checkpoint: no figure rather than a wrong one
    assert t2i_context(_fig2(tmp_path / "other.json", "0" * 64), ck) is None
    assert t2i_context(tmp_path / "absent.json", ck) is None
    assert t2i_context(_fig2(tmp_path / "fig2b.json", sha), tmp_path / "nowhere") is None
    assert t2i_context(_fig2(tmp_path / "fig2c.json", sha), ck, snr_db=10.0) is None  # no point at that SNR


def test_the_committed_fig2_measured_the_installed_mllm():
    # the README's Fig. 2 and the demo's line speak of the MLLM that `make demo` serves
    line = t2i_context(ROOT / "results" / "fig2.json", ROOT / "checkpoints")
    assert line is not None and "fig2.json" in line
