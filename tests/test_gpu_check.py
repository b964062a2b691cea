"""scripts/gpu_check.sh, issue 15's GPU check, in its CPU miniature (--cpu: tiny preset, gloo), so that the script
a GPU owner runs once cannot rot here: every step runs and writes its figures. The nested pytest run (its step 2)
is left out; the gpu-marked tests it selects are collected by this suite anyway."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_in_miniature_on_the_cpu(tmp_path):
    import sys
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_SKIP_TESTS": "1", "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    one = json.loads((tmp_path / "train-tiny-cpu.json").read_text())
    fsdp = json.loads((tmp_path / "train-tiny-2cpu-fsdp.json").read_text())
    assert one["activation_checkpointing"] and one["finite"] and one["processes"] == 1
    assert fsdp["sharding"] == "fsdp" and fsdp["processes"] == 2 and fsdp["finite"]
    assert fsdp["parameters"] == one["parameters"]  # the whole model's count, not a shard's
    mllm = json.loads((tmp_path / "mllm-tiny-cpu.json").read_text())
    assert mllm["prefill_tokens_per_s"] > 0 and mllm["generate_kv_tokens_per_s"] > 0
    # the served stack (placeholder weights, never in checkpoints/) answered every request of each task
    serve = json.loads((tmp_path / "serve-tiny-cpu.json").read_text())[0]
    assert serve["accounted"] and serve["errors"] == 0 and serve["ok"] > 0
    assert set(serve["kinds"]) <= {"vqa/unitocom", "t2i/unitocom", "asr/unitocom"}  # drawn at random, seconds of load
    manifest = json.loads((tmp_path / "placeholder-checkpoints-tiny" / "manifest.json").read_text())
    assert "PLACEHOLDER" in manifest
    assert "done" in (tmp_path / "gpu_check.log").read_text()
