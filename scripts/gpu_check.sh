#!/usr/bin/env bash
# Issue 15's GPU check. Whoever has a CUDA machine runs it once from the repository root and sends back
# out/gpu-check/ (a log and one JSON file per measurement); nothing here has run on a GPU yet.
#
#   scripts/gpu_check.sh prepare  here, before an offline GPU machine (the tool library's device): downloads the
#                                 wheels its image lacks (scripts/gpu_wheels.txt, our versions, Python 3.12) into
#                                 .whl-check/ and prints what a call sends. Carry .whl-check and leave checkpoints/
#                                 behind (the check serves placeholder weights), as scripts/gpu_retrain.sh says.
#   scripts/gpu_check.sh          on a CUDA machine. Uses $PYTHON; else, where .whl-check/ holds wheels, the
#                                 machine's python3 (its torch) with them installed into /tmp/site-check; else
#                                 .venv-gpu (made here from PyPI: torch 2.13, its CUDA build, and this package).
#                                 Sized for about 8 minutes on one H200 with the install; STEPS=N changes the timed
#                                 training steps (default 100).
#   scripts/gpu_check.sh --cpu    the same steps in miniature on the CPU (tiny preset, gloo): checks the script
#                                 itself in seconds (tests/test_gpu_check.py runs it; GPU_CHECK_SKIP_TESTS=1 leaves
#                                 out step 2, the pytest run)
#
# Steps: 1. what torch sees; 2. the `gpu`-marked tests (CUDA training of a tokenizer and of the MLLM in bf16, CUDA
# generation against the CPU, two GPUs against one process); 3. a few steps of the paper preset's 1.4B MLLM in
# bf16 autocast with activation checkpointing and fused AdamW, on synthetic tokens (bench/bench_train.py: step
# time, tokens/s, peak memory, model FLOP utilisation); 4. with two GPUs or more, the same under torchrun on 2
# processes, FSDP2 and DDP; 5. the preset's MLLM forward in bf16 (prefill and generation tokens/s, FLOP
# utilisation); 6. the three services serving the preset with the base station on the GPU (placeholder weights),
# VQA, T2I and ASR requests: requests/s and latency (bench/bench_load.py).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
WHEELS=${WHEELS:-.whl-check}

if [ "${1:-}" = prepare ]; then
  PY=${PYTHON:-.venv/bin/python}
  "$PY" scripts/device_carry.py wheels "$WHEELS" --list scripts/gpu_wheels.txt
  "$PY" scripts/device_carry.py size "$WHEELS"
  exit 0
fi
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

if [ -z "${PYTHON:-}" ]; then
  if [ "$MODE" = cpu ]; then
    PYTHON=.venv/bin/python
  elif ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "== installing $(ls "$WHEELS"/*.whl | wc -l) carried wheels into /tmp/site-check (the machine's python3)"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-check \
      "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site-check${PYTHONPATH:+:$PYTHONPATH}
    PYTHON=python3
  else
    if [ ! -x .venv-gpu/bin/python ]; then
      echo "== installing .venv-gpu (torch 2.13.0 with CUDA from PyPI, then this package)"
      python3 -m venv .venv-gpu
      .venv-gpu/bin/pip install -q --upgrade pip
      .venv-gpu/bin/pip install -q torch==2.13.0
      .venv-gpu/bin/pip install -q -e '.[dev]'
    fi
    PYTHON=.venv-gpu/bin/python
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
T0=$SECONDS
step() { echo; echo "== [$((SECONDS - T0)) s] $*"; }

step "1. what torch sees"
"$PYTHON" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, CUDA available {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF
NGPU=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
if [ "$MODE" = gpu ] && [ "$NGPU" -lt 1 ]; then
  echo "no CUDA device: this is the GPU check (scripts/gpu_check.sh --cpu runs the miniature)"
  exit 1
fi

if [ "${GPU_CHECK_SKIP_TESTS:-0}" != 1 ]; then
  step "2. gpu-marked tests (they skip without CUDA)"
  "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests/test_train.py tests/test_mllm_train.py \
    tests/test_distributed.py tests/test_train_compute.py
fi

if [ "$MODE" = gpu ]; then
  STEPS=${STEPS:-100}
  step "3. paper-preset MLLM (1.4B), one GPU: bf16 autocast, activation checkpointing, fused AdamW, $STEPS steps"
  "$PYTHON" bench/bench_train.py --preset paper --device cuda --steps "$STEPS" --batch-size 8 \
    --json "$OUT/train-paper-1gpu.json"
  if [ "$NGPU" -ge 2 ]; then
    for how in --fsdp ""; do
      name=$([ -n "$how" ] && echo fsdp || echo ddp)
      step "4. paper-preset MLLM under torchrun, 2 GPUs, ${name^^}"
      "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 2 bench/bench_train.py --preset paper \
        --device cuda $how --steps "$STEPS" --batch-size 8 --json "$OUT/train-paper-2gpu-$name.json"
    done
  else
    step "4. skipped: $NGPU GPU (torchrun on 2 processes needs 2)"
  fi
else
  step "3. (miniature) tiny-preset MLLM on the CPU: activation checkpointing, 3 steps"
  "$PYTHON" bench/bench_train.py --preset tiny --device cpu --steps 3 --batch-size 2 --activation-checkpointing \
    --json "$OUT/train-tiny-cpu.json"
  # FSDP only: DDP on gloo is tests/test_distributed.py's (two processes against one, in the default suite)
  step "4. (miniature) torchrun on 2 CPU processes (gloo), FSDP"
  "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 2 bench/bench_train.py --preset tiny \
    --device cpu --fsdp --steps 3 --batch-size 2 --json "$OUT/train-tiny-2cpu-fsdp.json"
fi

# 5-6: serving. The preset's MLLM forward in bf16 with the KV cache, then the three services with the base station on
# the device, answering VQA, T2I and ASR. The paper preset has no trained weights yet: PLACEHOLDER random ones
# (scripts/random_checkpoints.py) in $OUT, never in checkpoints/; what is measured is time, not answers.
if [ "$MODE" = gpu ]; then SPRESET=paper; SDEV=cuda; SECS=${SERVE_SECONDS:-30}; BATCH=8; else SPRESET=tiny; SDEV=cpu; SECS=4; BATCH=1; fi
step "5. $SPRESET-preset MLLM forward on $SDEV: prefill and generation tokens/s (KV cache), FLOP utilisation"
"$PYTHON" bench/bench_mllm.py --preset "$SPRESET" --device "$SDEV" --batch "$BATCH" --repeats 3 \
  --json "$OUT/mllm-$SPRESET-$SDEV.json"
step "6. the three services, $SPRESET preset (placeholder weights), base station on $SDEV: VQA, T2I, ASR"
CK="$OUT/placeholder-checkpoints-$SPRESET"
"$PYTHON" scripts/random_checkpoints.py --preset "$SPRESET" --out "$CK"
RUN="$OUT/run-$SPRESET"
# Six free ports under the kernel's ephemeral range (`unitocom.ports`; gRPC, then /metrics): a block in that range
# can be held by some connection's client end (it was, in CI: the channel could not bind its /metrics port).
PORT=${SERVE_BASE_PORT:-$("$PYTHON" -m unitocom.ports 6)}
export UNITOCOM_CHECKPOINTS="$CK"
"$PYTHON" -m unitocom.cli up --preset "$SPRESET" --run-dir "$RUN" --base-port "$PORT" \
  --metrics-base-port $((PORT + 3)) --timeout 900 --extra-args basestation="--device $SDEV"
trap '"$PYTHON" -m unitocom.cli down --run-dir "$RUN" >/dev/null 2>&1 || true' EXIT
"$PYTHON" bench/bench_load.py --target "127.0.0.1:$PORT" --schemes unitocom --mix vqa=1,t2i=1,asr=1 --clients 4 \
  --duration "$SECS" --timeout 120 --json "$OUT/serve-$SPRESET-$SDEV.json"
"$PYTHON" -m unitocom.cli down --run-dir "$RUN"
trap - EXIT
unset UNITOCOM_CHECKPOINTS
step "done: $OUT"
