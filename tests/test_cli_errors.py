"""A user's mistake ends in one `error: ...` line on stderr and exit code 2, never a traceback; a bug keeps its
traceback. Commands that read the made-here data name the command that makes it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE_DATA = "unitocom data make --preset tiny"

CASES = [  # (arguments, what the one line must say)
    (["eval", "--task", "vqa", "--data", "/nonexistent", "--n", "3"], MAKE_DATA),
    (["eval-sweep", "--task", "asr", "--data", "/nonexistent", "--snr-db", "0,10"], MAKE_DATA),
    (["evaluate-link", "--schemes", "traditional", "--data", "/nonexistent"], MAKE_DATA),
    (["train", "tokenizer", "--modality", "image", "--data", "/nonexistent", "--run-dir", "{tmp}/run"], MAKE_DATA),
    (["train", "checker", "--data", "/nonexistent", "--out", "{tmp}/checker.safetensors"], MAKE_DATA),
    (["data", "checksum", "--data", "/nonexistent"], MAKE_DATA),
    (["up", "--preset", "huge", "--run-dir", "{tmp}/run"], "--preset"),
    (["eval-sweep", "--task", "vqa", "--snr-db", "5:1:1"], "--snr-db"),
    (["train", "mllm", "--snr-db=25:-5"], "--snr-db"),
    (["link", "ber", "--snr-db", "loud"], "--snr-db"),
    (["variance-collapse", "--checkpoints", "image-nothere-s32"], "checkpoint image-nothere-s32 is not installed"),
    (["eval-sweep", "--task", "vqa", "--data", "{root}/tests/fixtures/clevr", "--snr-db", "10", "--n", "1",
      "--target", "127.0.0.1:1"], "carry no answers"),  # real CLEVR's test split: nothing to score against
    (["evaluate-link", "--tokens", "7", "--data", "{tmp}"], "checkpoints image-sigma-genib-s7, image-vae-s7 are not installed"),
    (["loss-sweep", "--sweep", "budget", "--data", "/nonexistent", "--out", "{tmp}"], MAKE_DATA),
    (["train", "resilient", "--data", "/nonexistent", "--run-dir", "{tmp}/run"], MAKE_DATA),
    (["train", "mllm", "--resilient", "--init", "{tmp}/none.safetensors", "--data", "{root}/tests/fixtures/clevr"],
     "no such MLLM checkpoint"),
]


@pytest.mark.parametrize("args, says", CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_a_user_mistake_is_one_line_and_exit_2(args, says, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)).replace("{root}", str(ROOT)) for a in args]
    r = subprocess.run([sys.executable, "-m", "unitocom.cli", *args], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120, env={**_env(), "UNITOCOM_CHECKPOINTS": str(ROOT / "checkpoints")})
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_bug_keeps_its_traceback(monkeypatch):
    from unitocom import cli
    from unitocom.link import cli as link_cli

    def broken(args):
        raise ZeroDivisionError("a real bug")
    monkeypatch.setattr(link_cli, "run_capacity", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["link", "capacity", "--snr-db", "0"])


def _env() -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if k != "UNITOCOM_DEBUG"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
