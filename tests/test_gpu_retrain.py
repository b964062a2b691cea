"""scripts/gpu_retrain.sh in miniature on the CPU: an MLLM trained from a token cache alone, with none of the
packages the GPU image lacks (and no gRPC), sent back in files that pass the transfer's limits, and joined here.

The GPU image (the tool library's KINDS.md, 2026-11): Python 3.12 with torch, transformers (too old for us),
numpy, safetensors, tokenizers, tqdm, pillow, scipy; not diffusers, jiwer, soundfile, grpcio-health-checking.
The script carries diffusers, transformers, jiwer and rapidfuzz as wheels; everything else this project imports
that the image lacks is blocked here, and gRPC and protobuf too (their versions there are not ours)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# top-level modules the run may not import there (not in the image, or of another version)
ABSENT = ["grpc", "grpc_health", "grpc_reflection", "grpc_tools", "google", "soundfile", "fastapi", "uvicorn",
          "multipart", "sigmf", "sionna", "cryptography", "pocketsphinx", "kubernetes_validate", "websocket",
          "prometheus_client", "matplotlib", "torchmetrics", "skimage"]
# None in sys.modules: `import x` raises ModuleNotFoundError and importlib.util.find_spec("x") is None, as for a
# package that is not installed (libraries probe for optional ones that way)
BLOCKER = """
import sys
sys.modules.update(dict.fromkeys({absent!r}))
"""
MIB = 2 ** 20


def test_gpu_retrain_runs_from_a_token_cache_and_comes_back_within_the_limits(tmp_path):
    from unitocom import config
    from unitocom.data.make import make_dataset
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.models import token_link
    from unitocom.models.text_tokenizer import train_bpe
    from unitocom.models.token_link import LinkSpec, TokenLink
    from unitocom.train.data import text_corpus
    data, ck = tmp_path / "data", tmp_path / "checkpoints"
    make_dataset(data, "tiny", seed=0, scenes=80, clips=16, progress=False, workers=1, log=lambda *_: None)
    ck.mkdir()
    cfg = config.load("tiny")
    torch.manual_seed(0)
    train_bpe(text_corpus(data, "train"), 300).save(str(ck / "text-bpe.json"))
    for m in ("image", "audio"):
        token_link.save(TokenLink(LinkSpec.from_config(cfg, m, "sigma-genib")), ck / f"{m}-sigma-genib-s32.safetensors")
    env = {**os.environ, "UNITOCOM_CHECKPOINTS": str(ck), "PYTHONPATH": str(ROOT)}
    cache = tmp_path / "cache"
    subprocess.run([sys.executable, "-m", "unitocom.cli", "train", "token-cache", "--data", str(data), "--out",
                    str(cache), "--objectives", "sigma-genib", "--values", "int8", "--threads", "1"],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(absent=ABSENT))
    back, work = tmp_path / "back", tmp_path / "work"
    run_env = {k: v for k, v in os.environ.items() if k != "UNITOCOM_CHECKPOINTS"}  # the cache's links alone
    run_env.update(PYTHON=sys.executable, PYTHONPATH=str(site), OBJECTIVE="sigma-genib", CACHE=str(cache),
                   OUT=str(back), WORK=str(work), DEVICE="cpu", SCALE="smoke", WORKERS="0", WHEELS="/nonexistent",
                   BUDGET_S="0.001", MIN_STEPS="3", OMP_NUM_THREADS="1")
    # PROBE_ONLY: the short first call, the probe alone, its logs sent back and no model
    r = subprocess.run(["bash", str(ROOT / "scripts/gpu_retrain.sh"), "run"], env={**run_env, "PROBE_ONLY": "1",
                       "OUT": str(tmp_path / "probe-back")}, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "STEPS=3 would fit" in r.stdout and "training mllm" not in r.stdout
    assert sorted(f.name for f in (tmp_path / "probe-back").iterdir()) == ["gpu_retrain.log", "log.jsonl", "probe.log"]
    r = subprocess.run(["bash", str(ROOT / "scripts/gpu_retrain.sh"), "run"], env=run_env, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "training mllm-sigma-genib for 3 steps, then 2 more" in r.stdout  # the probe's rate, floored at MIN_STEPS
    files = sorted(back.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * MIB for f in files)
    assert sum(f.stat().st_size for f in files) <= 64 * MIB
    parts = sorted(back.glob("mllm-sigma-genib.safetensors.part*"))
    assert len(parts) == 2 and parts[0].stat().st_size == 15 * MIB  # the 4 x 256 program MLLM: 27.7 MB in two
    dest = tmp_path / "joined"
    r = subprocess.run(["bash", str(ROOT / "scripts/gpu_retrain.sh"), "join", str(back), str(dest)],
                       env={**run_env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    f = dest / "mllm-sigma-genib.safetensors"
    model, _, meta = load_mllm(f)
    assert model.cfg.hidden == 256 and meta["token_cache"]["values"] == "int8"
    # the program MLLM (the recipe's): its fine-tune from the encoder stage, from the second part, from the first,
    # all of which stayed on the machine; every step read the cache
    assert f"--data {cache}" in meta["command"] and "--steps 2 " in meta["command"] and "--workers" not in meta["command"]
    assert "/runs/mllm-sigma-genib-encoder/mllm.safetensors" in meta["command"] and "prog=" in meta["command"]
    assert model.cfg.answer_by_program
    entry = json.loads((dest / "manifest-tasks.json").read_text())["mllm-sigma-genib"]
    assert entry["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest() and entry["data_checksum"] == meta["data_checksum"]
    assert (dest / "runs/mllm-sigma-genib/log.jsonl").is_file() and (dest / "logs/mllm-sigma-genib.log").is_file()
    for stage in ("base", "e2e"):
        assert (dest / f"runs/mllm-sigma-genib-{stage}/log.jsonl").is_file()
        assert (dest / f"logs/mllm-sigma-genib-{stage}.log").is_file()
    assert (dest / "runs/mllm-sigma-genib-encoder/encoder_log.jsonl").is_file()
