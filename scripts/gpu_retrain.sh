#!/usr/bin/env bash
# Issue 12 on one GPU reached through a narrow door: retrain a base MLLM (mllm-sigma-genib, then mllm-vae with the
# same step count, so Fig. 2's pair keeps one budget) with `train all`'s gpu-scale recipe, on a machine that has
# PyTorch with CUDA but not the data set, espeak-ng or this project's other dependencies, that receives at most
# 64 MiB and sends back at most 8 files of 16 MiB. One objective per call. Three modes:
#
#   scripts/gpu_retrain.sh prepare             here, before: the data set (data/tiny-speech96, 4 min), one int8 token
#                                              cache per objective (out/gpu-retrain/cache-<objective>, 28.5 MiB
#                                              each, 1 min: `unitocom train token-cache`) and the wheels the GPU
#                                              image lacks or has too old (.whl/, from PyPI, for Python 3.12); it
#                                              prints what a call sends
#   OBJECTIVE=sigma-genib scripts/gpu_retrain.sh run
#                                              there: installs .whl/ into /tmp/site, measures this machine's step
#                                              rate on 30 steps, trains for the steps that fit BUDGET_S (default
#                                              240 s: the first part's N steps and the second part's N/5; or
#                                              STEPS=N, the first call's count for the second objective),
#                                              and writes to $OUT the MLLM in two parts, its sha256, the run's
#                                              records (manifest entry, log.jsonl, logs) and gpu_retrain.log;
#                                              MIX=T=W,... trains another task mix (`train all
#                                              --mllm-mix`, e.g. vqa=2,t2i=1,asr=1,cap=1,obj=2; obj needs caches
#                                              made since the task: older ones keep no listings);
#                                              OBJECT_SLOTS=W adds the object slots' loss at weight W
#                                              (`train all --mllm-object-slots`; caches made since the slots);
#                                              PREFIX=1 trains a prefix LM (`train all --mllm-prefix-attention`:
#                                              each prompt attends both ways); PROGRAMS=0 stops at the end-to-end
#                                              MLLM (`train all --mllm-end-to-end`; default 1: then the program
#                                              MLLM's encoder pretraining and prog fine-tune with its head phase,
#                                              untimed on a GPU, outside BUDGET_S);
#                                              PROBE_ONLY=1 stops after the probe (setup and 30 steps, about 2
#                                              min: a first call that says whether the machine runs the recipe,
#                                              and at what rate, before one spends the session's minutes)
#   scripts/gpu_retrain.sh join DIR [DEST]     here, after: the parts -> DEST/mllm-<objective>.safetensors (sha256
#                                              checked) with its manifest entry and logs (DEST: runs/gpu-retrain),
#                                              a `train all` folder: evaluate with `unitocom ablate --mllm
#                                              gpu=DEST/mllm-sigma-genib.safetensors`, install with `unitocom train
#                                              all --out DEST --only mllm-sigma-genib mllm-vae --install`
#
# What travels is the working tree: the committed checkpoints (108 MB) are more than the door lets through and the
# run reads none of them (its tokenizers are in the cache), so leave them behind for the call, e.g. with git:
#   git rm -r -q --cached checkpoints && echo /checkpoints/ >> .git/info/exclude      (before)
#   git reset -q -- checkpoints && sed -i '\#^/checkpoints/$#d' .git/info/exclude      (after; commit nothing between)
# and send out/gpu-retrain/cache-<objective> and .whl along (carry; 7.9 + 28.5 + 25.8 = 62.2 MiB, measured by prepare on 2026-12-06).
#
# Time: a call is the setup (wheels, imports, the cache: under a minute), the probe (model build, 30 steps, one
# validation; skipped with STEPS=N), BUDGET_S of steps, the recipe's ten validations, the diffusion head's phase
# (its hidden states and 8000 steps on the GPU) and the send. None of it has been timed on a GPU yet: the log
# stamps each part. With 15 minutes of GPU a session (start included), one objective with BUDGET_S=420 fits, or
# both with about 130 s each (which is the `gpu` scale's 2500 x 256, no more examples than the CPU recipe's).
#
# DEVICE=cpu runs the same on the CPU, for the miniature in tests/test_gpu_retrain.py (with SCALE=smoke, CACHE=...).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
PY=${PYTHON:-python3}

if [ "$MODE" = prepare ]; then
  PY=${PYTHON:-.venv/bin/python}
  DATA=${DATA:-data/tiny-speech96}
  [ -f "$DATA/manifest.json" ] || "$PY" -m unitocom.cli data make --preset tiny --out "$DATA" --train-clips 12000 \
    --train-speakers 96
  for obj in sigma-genib vae; do
    c=out/gpu-retrain/cache-$obj
    [ -f "$c/token-cache.json" ] || "$PY" -m unitocom.cli train token-cache --data "$DATA" --out "$c" \
      --objectives "$obj" --values int8
  done
  # The GPU image (python 3.12, torch 2.11; the tool library's KINDS.md) lacks diffusers and jiwer, and its
  # transformers (5.17) and huggingface_hub (1.33) are older than ours: ours travel, with what they import that
  # the image lacks. tests/test_gpu_retrain.py checks that the run imports nothing else the image lacks.
  "$PY" scripts/device_carry.py wheels .whl transformers huggingface_hub kernels httpx2 httpcore2 truststore \
    diffusers jiwer rapidfuzz
  # what one call sends: the tree without checkpoints/, one objective's cache and the wheels (the door: 64 MiB)
  for obj in sigma-genib vae; do
    "$PY" scripts/device_carry.py size out/gpu-retrain/cache-$obj .whl --label "for $obj"
  done
  exit 0
fi

if [ "$MODE" = join ]; then
  SRC=${2:?join DIR [DEST]: the folder the run sent back}
  DEST=${3:-runs/gpu-retrain}
  mkdir -p "$DEST"
  for sums in "$SRC"/mllm-*.sha256; do
    name=$(basename "$sums" .sha256)
    cat "$SRC/$name.safetensors".part* > "$DEST/$name.safetensors"
    sums=$(realpath "$sums")
    (cd "$DEST" && sha256sum -c --quiet "$sums")
    tar -xzf "$SRC/$name-records.tar.gz" -C "$DEST"
    echo "joined $DEST/$name.safetensors (sha256 $(cut -c1-12 "$sums"))"
  done
  PY=${PYTHON:-.venv/bin/python}
  "$PY" - "$DEST" <<'EOF'
import json, pathlib, sys
dest = pathlib.Path(sys.argv[1])
merged = {}
for f in sorted(dest.glob("manifest-tasks.*.json")):  # one per objective's run
    merged.update(json.loads(f.read_text()))
    f.unlink()
old = dest / "manifest-tasks.json"
if old.exists():
    merged = {**json.loads(old.read_text()), **merged}
old.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
for k, v in merged.items():
    print(k, v["command"], json.dumps(v["validation"]))
EOF
  exit 0
fi

[ "$MODE" = run ] || { echo "usage: $0 prepare | run | join DIR [DEST]" >&2; exit 2; }
OBJECTIVE=${OBJECTIVE:?OBJECTIVE=sigma-genib or vae}
CACHE=${CACHE:-out/gpu-retrain/cache-$OBJECTIVE}
OUT=${OUT:-out/gpu-retrain/back}
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-gpu}
BUDGET_S=${BUDGET_S:-240}
WORKERS=${WORKERS:-8}
W=${WORK:-/tmp/gpu-retrain}
mkdir -p "$OUT" "$W"
exec > >(tee -a "$OUT/gpu_retrain.log") 2>&1
T0=$(date +%s)
say() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }

WHEELS=${WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  say "installing $(ls "$WHEELS"/*.whl | wc -l) carried wheels into /tmp/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" -c 'import torch, transformers, diffusers; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "| transformers", transformers.__version__,
  "| diffusers", diffusers.__version__)'
[ -f "$CACHE/token-cache.json" ] || { echo "no token cache at $CACHE (scripts/gpu_retrain.sh prepare)" >&2; exit 2; }

# the run's checkpoint folder: the cache's tokenizers, as `train all` expects them beside what it trains
CK=$W/$OBJECTIVE
mkdir -p "$CK"
cp "$CACHE"/links/* "$CK"/
# --data too: the program MLLM's encoder and fine-tune read the scenes (and the prog task's programs) from the cache
ALL=(-m unitocom.cli train all --scale "$SCALE" --only "mllm-$OBJECTIVE" --data "$CACHE" --speech-data "$CACHE"
     --device "$DEVICE" --workers "$WORKERS" ${MIX:+--mllm-mix "$MIX"}
     ${OBJECT_SLOTS:+--mllm-object-slots "$OBJECT_SLOTS"})
case "${PROGRAMS:-1}" in
  1) ;;
  0) ALL+=(--mllm-end-to-end) ;;
  *) echo "PROGRAMS=$PROGRAMS: 1 (the program MLLM, the recipe's) or 0 (the end-to-end MLLM alone)" >&2; exit 2 ;;
esac
case "${PREFIX:-0}" in
  0) ;;
  1) ALL+=(--mllm-prefix-attention) ;;
  *) echo "PREFIX=$PREFIX: 1 (a prefix LM) or 0 (causal, the recipe's)" >&2; exit 2 ;;
esac
if [ -z "${STEPS:-}" ]; then
  # this machine's rate: the recipe's first 30 steps (a --stop-at probe: no checkpoint), then the steps that fit
  say "probe: 30 steps of mllm-$OBJECTIVE"
  PROBE=$W/probe-$OBJECTIVE
  rm -rf "$PROBE"
  mapfile -t RECIPE < <("$PY" -c 'import sys; from unitocom.train.retrain import plan
print("\n".join(next(s for s in plan(sys.argv[1], mllm_mix=sys.argv[3] or None,
                                      mllm_object_slots=float(sys.argv[4] or 0),
                                      mllm_prefix_attention=sys.argv[5] == "1") if s.name == sys.argv[2]).args))' \
    "$SCALE" "mllm-$OBJECTIVE-base" "${MIX:-}" "${OBJECT_SLOTS:-}" "${PREFIX:-0}")
  UNITOCOM_CHECKPOINTS=$CK "$PY" -m unitocom.cli "${RECIPE[@]}" --data "$CACHE" --device "$DEVICE" \
    --workers "$WORKERS" --stop-at 30 --run-dir "$PROBE" --no-install > "$W/probe.log" 2>&1 \
    || { tail -30 "$W/probe.log"; exit 1; }
  STEPS=$("$PY" - "$PROBE/log.jsonl" "$BUDGET_S" "${MIN_STEPS:-100}" <<'EOF'
import json, sys
row = [json.loads(l) for l in open(sys.argv[1])][-1]
rate = row["steps_per_s"]
# the budget holds the base MLLM's two parts: N steps, then N/5 more (unitocom/train/retrain.py)
steps = max(int(sys.argv[3]), int(rate * float(sys.argv[2]) / 1.2 // 100 * 100))
print(steps)
print(f"{rate:.2f} steps/s over the first 30 (workers starting included): {steps} + {max(2, steps // 5)} steps "
      f"in {sys.argv[2]} s", file=sys.stderr)
EOF
)
  if [ -n "${PROBE_ONLY:-}" ]; then  # a short first call: does the machine run the recipe, and how fast?
    cp "$W/probe.log" "$PROBE/log.jsonl" "$OUT"/
    say "probe only (PROBE_ONLY): STEPS=$STEPS would fit BUDGET_S=$BUDGET_S"
    exit 0
  fi
fi
say "training mllm-$OBJECTIVE for $STEPS steps, then $(( STEPS / 5 > 2 ? STEPS / 5 : 2 )) more"
"$PY" "${ALL[@]}" --mllm-steps "$STEPS" --out "$CK"
say "trained; sending back"
f=$CK/mllm-$OBJECTIVE.safetensors
split -b 15M -d -a 1 "$f" "$OUT/mllm-$OBJECTIVE.safetensors.part"
(cd "$CK" && sha256sum "mllm-$OBJECTIVE.safetensors") > "$OUT/mllm-$OBJECTIVE.sha256"
cp "$CK/manifest-tasks.json" "$CK/manifest-tasks.$OBJECTIVE.json"
RECORDS=()  # each step's log: the two parts, and the program MLLM's encoder and fine-tune where they ran
for f in -base/log.jsonl -e2e/log.jsonl -encoder/encoder_log.jsonl /log.jsonl; do
  if [ -f "$CK/runs/mllm-$OBJECTIVE$f" ]; then RECORDS+=("runs/mllm-$OBJECTIVE$f"); fi
done
tar -czf "$OUT/mllm-$OBJECTIVE-records.tar.gz" -C "$CK" "manifest-tasks.$OBJECTIVE.json" logs "${RECORDS[@]}"
rm "$CK/manifest-tasks.$OBJECTIVE.json"
ls -l "$OUT"
"$PY" -c "import json; e = json.load(open('$CK/manifest-tasks.json'))['mllm-$OBJECTIVE']; print(e['command']);
print(json.dumps(e['validation']))"
say "done: STEPS=$STEPS (give the other objective the same)"
