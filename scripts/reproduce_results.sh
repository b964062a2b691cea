#!/bin/bash
# Reruns every evaluation the README's Results section quotes, writing to out/ (about 40 minutes on 2 cores).
#   scripts/reproduce_results.sh [link|tokenizers|tasks|all]     (default: all)
#   scripts/reproduce_results.sh fig2     Fig. 2 at full n into results/ and the README's tables from it (hours on
#                                         2 cores; not part of `all`; rerun it to continue an interrupted sweep;
#                                         about 1.5 h on 2 cores, most of it the 500 T2I captions a point)
#   scripts/reproduce_results.sh fig3     Fig. 3 at the task level into results/: one MLLM per image token length
#                                         (16, 32, 64, 128) with equal budgets, FIG3_STEPS steps each (default
#                                         4000, the committed figure's; two lengths per core, about 3 h of
#                                         training and 1.5 h of VQA (500 questions) and T2I (FIG3_T2I_N=100
#                                         captions) per length and SNR on 2 cores)
#   scripts/reproduce_results.sh packets  issue 16's packet-loss and token-budget sweeps into results/ (~1 h)
#   scripts/reproduce_results.sh spoken   issue 17's spoken against typed VQA (300 questions, 20 dB Rayleigh) into
#                                         results/spoken-vqa.json (about 10 min on 2 cores)
#   scripts/reproduce_results.sh users    issue 17's users sharing the channel, through services of its own at 20 dB
#                                         Rayleigh: reconstruction (200 groups), VQA (500 groups) and ASR off the
#                                         fresh speech (150 groups) scored per user, for K = 1, 2, 4, sequential,
#                                         orthogonal and superposed, into results/multiaccess{,-vqa,-asr}.* (about
#                                         45 min on 2 cores)
#   scripts/reproduce_results.sh ablation issue 12's MLLM ablation into results/: VQA-only MLLMs, one change
#                                         each, against the previous (then shipped) MLLM and the shipped one, then
#                                         VQA beside captioning or T2I (about 4 h of training on 2 cores)
#   scripts/reproduce_results.sh asr      issue 12's ASR data-size study into results/ablation-asr.* and
#                                         ablation-speech-vqa.*: ASR-only MLLMs trained on the preset's 1200 clips
#                                         of 12 speakers and on 12000 clips of 12 or 96 speakers, and the previous
#                                         MLLM fine-tuned on either speech, all scored on the same test speech
#                                         (about 2 h on 2 cores)
#   scripts/reproduce_results.sh next     issue 12's next MLLM, the two levers together (captioning in the mix, 10x
#                                         the training speech; 10000 steps, then its head phase) against the
#                                         previous one on VQA, ASR and T2I, a T2I-only MLLM, and the next recipe
#                                         with T2I's loss scaled by 8 or its steps doubled, into
#                                         results/ablation-next*.* and ablation-t2i.* (about 4.5 h on 2 cores)
#   scripts/reproduce_results.sh fresh    issue 12's targets on a freshly drawn scene set (seed 77, no checkpoint saw
#                                         it): Fig. 2's VQA and T2I at 0 and 20 dB through the services, into
#                                         results/fig2-seed77.* (about 45 min on 2 cores)
#   scripts/reproduce_results.sh families issue 12's VQA targets at n large enough for a family's interval: unitocom
#                                         at 0 and 20 dB Rayleigh on all 5000 test questions (about 450 a family)
#                                         and all 1000 of the fresh set's, through the services, into
#                                         results/vqa-families*.* (about 15 min on 2 cores)
#   scripts/reproduce_results.sh fresh-asr issue 12's ASR target off speech no checkpoint heard: the fresh seed's
#                                         test speakers and sentences (600 clips; data/tiny-seed77-speech, 1 min),
#                                         unitocom at 5 and 20 dB Rayleigh through the services, into
#                                         results/asr-seed77.* (the test split has 150 clips, all in Fig. 2)
#   scripts/reproduce_results.sh image-targets issue 12's image targets through the services where the packet-loss
#                                         sweep (20 dB, test split) does not reach: unitocom's reconstruction of
#                                         all 1000 test scenes at 0 dB, and of 1000 fresh test scenes (seed 77,
#                                         drawn at the tiny preset's size: data/tiny-seed77-images, 2 min; the
#                                         fresh set's 200 left pair F1 at 0 dB within noise) at 0 and 20 dB,
#                                         into results/reconstruct-*.* (about 10 min on 2 cores)
#   scripts/reproduce_results.sh lr-probe issue 12's learning-rate probe for the twice-wide MLLM: the first 2000
#                                         of the recipe's 10000 steps at width 128 (2e-3) and 256 (1e-3, 5e-4),
#                                         into results/lr-probe.*, then two of them to step 4000 into
#                                         results/lr-probe-4000.* (about 2 h on 2 cores)
#   scripts/reproduce_results.sh wide     issue 12's twice-wide MLLM at its probed rate: lr-probe's wide-5e-4 run
#                                         continued to the recipe's 10000 steps (both cores), then its head phase,
#                                         against the shipped MLLM on the same test questions, utterances and
#                                         captions, and on the fresh section's set (seed 77):
#                                         results/lr-probe-10000.* and results/ablation-wide*.* (about
#                                         2 h on 2 cores after lr-probe: 89 min of training, 13 of head phase, 20
#                                         of scoring; 3 h without it)
#   scripts/reproduce_results.sh steps    issue 12's 'more steps at this width': the one-part MLLM warm-started for
#                                         4000 more steps of its recipe at half its rate, against itself on the
#                                         test questions and utterances and the fresh set's questions, into
#                                         results/ablation-steps*.* (about 70 min of training on 2 cores, 15 of
#                                         scoring)
#   scripts/reproduce_results.sh relations issue 12's floor on relate yesno: the one-part MLLM scored on its own
#                                         training questions (results/ablation-train-split.*), then the probe
#                                         classifier trained on that family alone with ten times its questions,
#                                         on received tokens (positions from noise and from the grid's code) and
#                                         on the clean picture, 3000 steps, and on tokens to 8000
#                                         (results/vqa-probe-relations*.json; about 1.5 h on 2 cores)
#   scripts/reproduce_results.sh perception issue 12's floor again: the same probe reader on every family for
#                                         10000 steps, on the scene record (perfect perception) and on received
#                                         tokens, and on the scene record with relate yesno alone for 20000
#                                         (results/vqa-probe-families-*.json, vqa-probe-relations-scene.json;
#                                         about 1 h on 2 cores)
#   scripts/reproduce_results.sh objects    does an object-level signal lift the token reader? the same probe on
#                                         received tokens with slots that read the scene's objects as well, and
#                                         with the questions reading the slots too
#                                         (results/vqa-probe-objects-*.json; about 70 min on 2 cores)
#   scripts/reproduce_results.sh listing  the probe's object signal in the MLLM: the one-part MLLM fine-tuned 2000
#                                         steps with the "obj" task (list the received scene's objects left to
#                                         right) in its mix, against the same fine-tune without it, on the test
#                                         questions and the fresh set's, what it reads of the scenes, and T2I
#                                         after each one's head phase (results/ablation-listing*.*,
#                                         listing-read.json; about 65 min of training, one core each, 30 of head
#                                         phases and 20 of scoring)
#   scripts/reproduce_results.sh slots    the probe's object slots on the MLLM itself: the installed MLLM fine-tuned
#                                         2000 steps of its recipe with --object-slots 0.5 (a training head reads
#                                         each VQA scene's objects from the hidden states over its image tokens),
#                                         against the same fine-tune without it, on the test questions and the
#                                         fresh set's (results/ablation-slots*.*; about 60 min of training, one core
#                                         each, and 20 of scoring)
#   scripts/reproduce_results.sh prefix   a prefix-LM mask on the MLLM: the installed MLLM fine-tuned 2000 steps of
#                                         its recipe with --prefix-attention (each prompt, a VQA scene and its
#                                         question, attends both ways), against the same fine-tune causal, on the
#                                         test questions, the fresh set's and the test speech, and T2I after
#                                         each one's head phase (results/ablation-prefix*.*; about 60 min of
#                                         training and 30 of head phases, one core each, and 30 of scoring)
#   scripts/reproduce_results.sh encoder  an image encoder in front of the MLLM: the installed MLLM fine-tuned 2000
#                                         steps of its recipe with --image-encoder 2 (two bidirectional layers over
#                                         each received scene's tokens), with and without --object-slots 1 reading
#                                         its features; and the encoder taught the objects first
#                                         (scripts/pretrain_image_encoder.py, 6000 steps) then connected in 1000
#                                         steps; against the prefix study's causal control, on the test questions
#                                         and the fresh set's (results/ablation-encoder*.*; about 70 min of
#                                         training, one core each, 20 + 20 for the pretrained one, 10 of scoring)
#   scripts/reproduce_results.sh objtok   object tokens: the pretrained encoder's MLLM fine-tuned 2000 steps of the
#                                         recipe with --object-tokens (the slots' reading of each received scene,
#                                         one token per object, after its image tokens) at 2e-4, against the
#                                         encoder study's runs, on the test questions and the fresh set's
#                                         (results/ablation-objtok*.*; about 75 min of training on one core, after
#                                         the encoder study's, and 10 of scoring)
#   scripts/reproduce_results.sh programs VQA by a written program: what the encoder's slots answer with each test
#                                         question's own program (scripts/slots_reason.py), then each base MLLM
#                                         with a pretrained encoder fine-tuned 1500 steps with the prog task, scored
#                                         in process against the installed ones (results/ablation-programs*.*) and
#                                         through services that serve the new sigma-GenIB MLLM on every test
#                                         question and the fresh set's (results/vqa-families-programs*.*); about
#                                         35 min of pretraining and 30 of fine-tuning per objective, one core
#                                         each, and 30 of scoring
#   scripts/reproduce_results.sh continue `train all`'s second part for the committed MLLMs: 2000 more steps
#                                         at 2e-4 and a head phase for each base MLLM, the resilient and spoken
#                                         fine-tunes redone on top, and T2I of the two parts against the first on
#                                         the fresh set (results/ablation-continue-seed77-t2i.*; about 2.5 h, one
#                                         core per lane)
#   scripts/reproduce_results.sh text-links issue 12's VQA at 0 dB: `train all`'s text links (the installed ones,
#                                         600 steps over AWGN, then 1500 over AWGN and Rayleigh) staged in
#                                         checkpoints/next, against the installed ones on the same 1000 test
#                                         questions, seeds and image noise, VQA split by whether the question
#                                         arrived exactly, into results/text-links-{installed,next}.* (about 25
#                                         min of training, one core each, and 20 of scoring on 2 cores)
#   scripts/reproduce_results.sh received-questions issue 12's VQA at 0 dB again: the installed MLLM fine-tuned
#                                         1000 steps with half its VQA questions read through the text link at the
#                                         example's SNR, against the same fine-tune on clean questions, paired on
#                                         1000 test questions at 0 and 20 dB, into
#                                         results/ablation-received-questions.* (about 35 min of training, one core
#                                         each, and 10 of scoring)
#   scripts/reproduce_results.sh text-prior issue 12's VQA at 0 dB a third time: the base station reads typed text
#                                         with a language prior (`unitocom train text-prior`, staged in
#                                         checkpoints/next), with the installed text links and with the staged ones,
#                                         on text-links' 1000 test questions, seeds and image noise, into
#                                         results/text-prior-{installed,next}.* (a minute to fit, about 15 min of
#                                         scoring on 2 cores)
#   scripts/reproduce_results.sh text-prior-families the families run's points on the staged links read with
#                                         the prior (after text-prior), into results/vqa-families-prior*.* (about
#                                         8 min on 2 cores)
#   scripts/reproduce_results.sh text-copies issue 12's VQA at 0 dB a fourth time: each question sent twice over
#                                         independent fades and combined by MRC at the base station (link option
#                                         text_copies), on the installed set and on the staged links read with the
#                                         prior (after text-prior), text-links' 1000 test questions and seeds, into
#                                         results/text-copies-{installed,next}.*; then the families run's points with
#                                         the staged set and two copies (and three on the test split), into
#                                         results/vqa-families-copies*.*, and
#                                         question_fades.py's paired table by fade (results/question-fades-copies.*;
#                                         about 35 min on 2 cores)
#   scripts/reproduce_results.sh text-next   the rest of the staged text set, for installing it with the links and
#                                         the prior: the GenIB text link's second part (from the installed first
#                                         part, as text-links does for the other two) and the resilient companion of
#                                         the staged sigma-GenIB link, into checkpoints/next (about 13 and 60 min,
#                                         one core each, side by side)
#   scripts/reproduce_results.sh layout  issue 12's T2I target: text-to-image through a written layout. Each
#                                         installed MLLM fine-tuned 1500 steps with the lay task (caption ->
#                                         layout) in its mix, its objects left to right or in the caption's order
#                                         (sigma-genib both, vae the caption's), a layout renderer trained into
#                                         each (`train layout-renderer`, 4000 steps), and the probe's own renderer
#                                         beside them, scored on 500 test captions in process (no channel; the two
#                                         orders paired: results/t2i-layout-probe.json) and through the services
#                                         at 0 and 20 dB Rayleigh (results/t2i-layout{,-caption,-vae}.*; about 45
#                                         min a fine-tune and 12 a renderer on one core, three of each; 15 min a
#                                         services run)
# Needs the venv and data/tiny: `make test` (or `make demo`) sets up the first, `unitocom data make --preset tiny`
# the second. The task evaluations start their own services on ports 50071.. and stop them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
U=".venv/bin/python -m unitocom.cli"
what="${1:-all}"
mkdir -p out
[ -d data/tiny ] || $U data make --preset tiny
# seed77 DIR [OPTION ...]: a draw with a seed no checkpoint saw into DIR, unless one is there (data make writes
# manifest.json last); the fresh set is its scenes, questions and captions, without speech.
seed77() {
  local dir=$1
  shift
  [ -f "$dir/manifest.json" ] || $U data make --preset tiny --seed 77 --out "$dir" "$@"
}
fresh_set() { seed77 data/tiny-seed77 --scenes 2800 --no-speech; }
# vqa_test_and_fresh NAME MLLM_OPTION ...: the studies' VQA scoring of their MLLMs (--mllm NAME=PATH ...,
# --reference ...), 1000 test questions, then the fresh set's, at 0 / 20 dB over Rayleigh: results/NAME.json and
# results/NAME-seed77.json.
vqa_test_and_fresh() {
  $U ablate --name "$1" "${@:2}" --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 8 --out results --resume
  fresh_set
  $U ablate --name "$1-seed77" --data data/tiny-seed77 "${@:2}" --snr-db 0,20 --channel rayleigh --n-vqa 1000 \
    --workers 8 --out results --resume
}
# finetune_installed RUN_DIR [OPTION ...]: the end-to-end MLLM (installed until 2026-12-07) warm-started for 2000
# steps of its recipe at 2e-4 on data/tiny, one core, with the options given (the studies' variant; none: their
# control), unless RUN_DIR has it.
finetune_installed() {
  [ -f "$1/mllm.safetensors" ] || $U train mllm --objective sigma-genib \
    --init $E2E_DIR/mllm-sigma-genib.safetensors --task-weights vqa=2,t2i=1,asr=1,cap=1 --loss-scale t2i=8 \
    "${@:2}" --steps 2000 --batch-size 64 --snr-db=-5:25 --lr 2e-4 --data data/tiny --val-every 500 \
    --log-every 50 --threads 1 --run-dir "$1" --no-install
}
# serve BASE_PORT METRICS_BASE_PORT RUN_DIR: a section's own services (gRPC on BASE_PORT.., /metrics on
# METRICS_BASE_PORT..), stopped when the script exits; T is the transmitter's address.
serve() {
  T=127.0.0.1:$1
  $U up --base-port "$1" --metrics-base-port "$2" --run-dir "$3"
  trap "$U down --run-dir $3" EXIT
}
# from_git COMMIT NAME SHA256_PREFIX DEST: checkpoints/NAME.safetensors as COMMIT held it, hash-checked, into DEST
from_git() {
  [ -f "$4" ] && return
  mkdir -p "$(dirname "$4")"
  git show "$1:checkpoints/$2.safetensors" > "$4.tmp" ||
    { echo "error: commit $1 is not in this clone (git fetch --unshallow): it holds $2 ($3...)" >&2; exit 1; }
  sha256sum "$4.tmp" | grep -q "^$3" || { echo "error: $4.tmp is not $2 of commit $1 (sha256 $3...)" >&2; exit 1; }
  mv "$4.tmp" "$4"
}
# The MLLM issue 12's studies (ablation, asr, next) measured as `shipped` until `train all`'s next recipe replaced
# it: results/ablation*.json name it `previous` (sha256 9c1b8e74...). The studies take it back out of git history
# (a full clone has it), and `ablate --resume` keeps the points it has under its old name.
PREVIOUS=runs/previous/mllm-sigma-genib.safetensors
previous_mllm() { from_git e214536 mllm-sigma-genib 9c1b8e74adad898c "$PREVIOUS"; }
# The 4 x 128 MLLM `train all` shipped after `previous`, until the twice-wide set replaced it: the results files
# measured it as `shipped`; `narrow` carries its points by hash (ablate's NAME=sha256:PREFIX, read with --resume).
NARROW=sha256:257a54b234d95971
# The one-part MLLMs (the recipe's 10000 steps and a head phase) `train all` shipped until its second part was
# installed: the results files measured mllm-sigma-genib as `shipped`; `one-part` carries its points by hash. The
# studies that start from them (steps, listing, continue) take them back out of git history (259ab08 installed them).
ONE_PART=sha256:23c7d23fccfefc6a
ONE_PART_DIR=runs/one-part
# The end-to-end MLLMs (the letter's design) installed until the program MLLMs replaced them on 2026-12-07: the studies
# that start from "the installed MLLM" or score it as `shipped` (ablation, received-questions, prefix, slots, encoder,
# objtok, programs) measured these; they take them back out of git (3874b52 holds them), and `ablate --resume` keeps
# the points measured under `shipped` by their sha256.
E2E_DIR=runs/end-to-end
end_to_end_mllms() {
  from_git 3874b52 mllm-sigma-genib f5210d0539e4390b $E2E_DIR/mllm-sigma-genib.safetensors
  from_git 3874b52 mllm-vae 42ebeb82949e5a61 $E2E_DIR/mllm-vae.safetensors
}
one_part_mllms() {
  from_git 259ab08 mllm-sigma-genib "${ONE_PART#sha256:}" $ONE_PART_DIR/mllm-sigma-genib.safetensors
  from_git 259ab08 mllm-vae d4c322ad48b4e33d $ONE_PART_DIR/mllm-vae.safetensors
}

if [ "$what" = link ] || [ "$what" = all ]; then
  $U link ber --modulation qam16 --channel rayleigh --snr-db 0:25:5 --bits 400000
  $U link ber --modulation qpsk --channel awgn --snr-db 0:10:2
  $U link ber --modulation qam16 --channel awgn --code ldpc --rate 0.5 --snr-db 5:8:0.5 --bits 204800
fi

if [ "$what" = tokenizers ] || [ "$what" = all ]; then
  $U evaluate-link --modality image --schemes sigma-genib,vae,traditional --channels awgn,rayleigh \
     --snr-db=-10:25:5 --count 200 --traditional-count 40 --out out/tok-eval
  # a freshly drawn set (a seed no checkpoint saw): the same figures off another draw of the generator
  fresh_set
  $U evaluate-link --modality image --schemes sigma-genib --channels rayleigh --snr-db=0:20:10 --count 200 \
     --data data/tiny-seed77 --out out/tok-eval-seed77
  $U evaluate-link --modality image --schemes sigma-genib --tokens 16,32,64,128 --channels awgn,rayleigh \
     --snr-db=-10:25:5 --count 200 --out out/tok-eval-tokens
  $U evaluate-link --modality audio --schemes sigma-genib,vae,traditional --channels awgn,rayleigh \
     --snr-db=-10:25:5 --count 30 --traditional-count 15 --out out/tok-eval
  $U variance-collapse --checkpoints image-vae-s32,image-sigma-genib-s32 --out out/tok-eval/variance-collapse-image.png
  $U variance-collapse --checkpoints audio-vae-s32,audio-sigma-genib-s32 --count 150 \
     --out out/tok-eval/variance-collapse-audio.png
fi

if [ "$what" = tasks ] || [ "$what" = all ]; then
  # Fig. 2's task scores come from `fig2` (results/); this is the check on a freshly drawn scene set (a seed no
  # checkpoint saw): the same VQA figures off another draw of the generator.
  fresh_set
  serve 50071 9171 runs/evalrun
  for snr in 0 20; do
    $U eval --task vqa --scheme unitocom --snr-db $snr --channel rayleigh --n 300 --data data/tiny-seed77 \
       --target $T --json | tee out/vqa_seed77_${snr}.json
  done
fi

if [ "$what" = fig2 ]; then
  # Fig. 2 as files (results/fig2.{json,csv,png}, 95 % intervals, the noiseless upper bound) through services of
  # its own on ports 50081.., then the README's tables regenerated from results/*.json. --resume keeps the points
  # an interrupted run already wrote; the sweep goes on past a scheme the services refuse (recorded as skipped).
  # After `unitocom train mllm-head` (an MLLM's diffusion head alone retrained) --resume measures every MLLM-drawn
  # T2I point again and keeps the VQA and ASR ones, which read none of the head's weights, and semcom's T2I ones,
  # which read no MLLM; any other checkpoint change
  # refuses: move results/fig2.json away and run again.
  # 16 requests in flight (WORKERS) fill the base station's dynamic batches (--batch-max 16): text-to-image, the
  # slow task on a CPU, then generates its captions together instead of one or two at a time.
  serve 50081 9181 runs/fig2run
  $U fig2 --tasks vqa,t2i,asr --schemes unitocom,vae,semcom,traditional --snr-db 0:20:5 --channel rayleigh \
     --n-vqa 500 --n-asr 150 --n-t2i "${N_T2I:-500}" --workers "${WORKERS:-16}" --out results --target $T --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = fig3 ]; then
  # The four lengths train two at a time, one process per core, into runs/fig3/s<N>/ (resumable; a finished run
  # is reused); then one process evaluates them all in process (VQA vs SNR, convergence from the run logs).
  steps="${FIG3_STEPS:-4000}"
  for pair in "16 128" "32 64"; do
    (for n in $pair; do $U fig3 --tokens "$n" --steps "$steps" --runs runs/fig3 --train-only; done) &
  done
  wait
  $U fig3 --tokens 16,32,64,128 --steps "$steps" --runs runs/fig3 --skip-train --snr-db 0:20:5 --channel rayleigh \
     --n-vqa 500 --t2i-n "${FIG3_T2I_N:-100}" --workers "${WORKERS:-16}" --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = packets ]; then
  # Issue 16: quality versus packet loss (i.i.d. and bursty) and versus a token budget, through services of its own
  # on ports 50091.., into results/{packet-loss,budget}.{json,csv,png}, then the README's tables (about an hour on
  # 2 cores; rerun it to continue: --resume keeps the points already measured).
  serve 50091 9191 runs/packetsrun
  for sweep in packet-loss budget; do
    $U loss-sweep --sweep $sweep --snr-db 20 --n-vqa "${N_VQA:-500}" --n-images "${N_IMAGES:-300}" --workers 4 \
       --out results --target $T --resume --quiet
  done
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = spoken ]; then
  # Issue 17: the question as speech against the same questions typed, through services of its own on ports
  # 50101.. (data/tiny's spoken questions: `data make` makes them, `unitocom data spoken-questions` in an older set)
  [ -f data/tiny/spoken_questions/manifest.json ] || $U data spoken-questions --data data/tiny
  serve 50101 9201 runs/spokenrun
  .venv/bin/python scripts/spoken_vqa.py --target $T --data data/tiny --n 300 --snr-db 20 --channel rayleigh \
     --workers "${WORKERS:-4}" --out results/spoken-vqa.json
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = users ]; then
  # Issue 17: K users in one access group, each scored on its own picture (PSNR at the device) and its own question
  # (the base station's answer against the user's label), through services of its own on ports 50191..; one group
  # in flight, so that the latencies are those of an otherwise idle system.
  # speech of speakers and sentences no checkpoint heard (the fresh-asr section's draw): the test split's 150 clips
  # would give K = 4 only 37 groups
  seed77 data/tiny-seed77-speech --scenes 30 --speech 6000 --train-clips 10 --no-spoken-questions
  serve 50191 50291 runs/usersrun
  $U access-sweep --snr-db 20 --groups "${GROUPS_RECONSTRUCT:-200}" --target $T --out results --quiet
  $U access-sweep --task vqa --snr-db 20 --groups "${GROUPS_VQA:-500}" --target $T --out results --quiet
  $U access-sweep --task asr --data data/tiny-seed77-speech --snr-db 20 --groups "${GROUPS_ASR:-150}" --target $T \
     --out results --quiet
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = ablation ]; then
  end_to_end_mllms
  # Issue 12: what would lift VQA. Single-task (VQA-only) MLLMs, each with as many VQA steps as the previous
  # multitask MLLM had (4000 of its 8000), one change each from the preset: none; twice the width (at the preset's
  # learning rate and at half of it); LLaVA-1.5's MLP projection of the received tokens; the question before the
  # image; received tokens standardised per dimension (T2I's token space); image positions that start as the
  # token grid's 2-D sine-cosine code (at full scale, and at 0.14: the RMS the learned ones end at). And the
  # plain one resumed to 8000 VQA
  # steps the way the previous run was (its 4000-step state, the cosine restarted over 8000). Two train at a
  # time, one per core, into
  # runs/ablation/<name> (resumable); then `unitocom ablate` scores them, the MLLM shipped then (`previous`) and the
  # one shipped now in process on the same 1000 test questions and channel draws at 0 and 20 dB Rayleigh (paired
  # differences).
  previous_mllm
  vqa_only() {  # NAME [--mllm-arch ...]: a finished run (its mllm.safetensors) is kept as it is
    local dir="runs/ablation/$1"; shift
    [ -f "$dir/mllm.safetensors" ] || $U train mllm --objective sigma-genib --task-weights vqa=1 --steps 4000 \
      --batch-size 64 --val-every 1000 --snr-db=-5:25 --no-install --run-dir "$dir" "$@"
  }
  (vqa_only vqa-only
   vqa_only vqa-only-mlp-projector --mllm-arch projector_depth=2
   vqa_only vqa-only-question-first --mllm-arch question_first=1
   vqa_only vqa-only-grid --mllm-arch image_grid=32) &
  (vqa_only vqa-only-wide --mllm-arch hidden=256,heads=8,intermediate=688
   vqa_only vqa-only-standardized --mllm-arch standardized_inputs=1
   vqa_only vqa-only-wide-lr1e-3 --mllm-arch hidden=256,heads=8,intermediate=688 --lr 1e-3
   vqa_only vqa-only-grid-0.14 --mllm-arch image_grid=32,image_grid_scale=0.14)
  wait
  if [ ! -f runs/ablation/vqa-only-8000/mllm.safetensors ]; then
    mkdir -p runs/ablation/vqa-only-8000
    [ -f runs/ablation/vqa-only-8000/train_state.safetensors ] ||
      cp runs/ablation/vqa-only/{train_state.safetensors,log.jsonl} runs/ablation/vqa-only-8000/
    $U train mllm --objective sigma-genib --task-weights vqa=1 --steps 8000 --batch-size 64 --val-every 1000 \
      --snr-db=-5:25 --no-install --run-dir runs/ablation/vqa-only-8000
  fi
  $U ablate --mllm previous="$PREVIOUS" --mllm narrow=$NARROW --mllm one-part=$ONE_PART \
     --mllm shipped=$E2E_DIR/mllm-sigma-genib.safetensors \
     --mllm vqa-only=runs/ablation/vqa-only \
     --mllm vqa-only-wide=runs/ablation/vqa-only-wide --mllm vqa-only-mlp-projector=runs/ablation/vqa-only-mlp-projector \
     --mllm vqa-only-question-first=runs/ablation/vqa-only-question-first \
     --mllm vqa-only-standardized=runs/ablation/vqa-only-standardized \
     --mllm vqa-only-wide-lr1e-3=runs/ablation/vqa-only-wide-lr1e-3 --mllm vqa-only-8000=runs/ablation/vqa-only-8000 \
     --mllm vqa-only-grid=runs/ablation/vqa-only-grid --mllm vqa-only-grid-0.14=runs/ablation/vqa-only-grid-0.14 \
     --reference previous,vqa-only \
     --snr-db 0,20 --channel rayleigh \
     --n-vqa 1000 --workers 8 --out results --resume
  # What the previous mix's extra tasks give VQA: the plain VQA-only MLLM against ones with other tasks' steps
  # beside the same 4000 VQA steps: captioning the received scene (cap), text-to-image (t2i), or both; scored on
  # the same questions and draws into results/ablation-caption.json.
  mixed() {  # NAME WEIGHTS STEPS: a finished run is kept as it is
    local dir="runs/ablation/$1"
    [ -f "$dir/mllm.safetensors" ] || $U train mllm --objective sigma-genib --task-weights "$2" --steps "$3" \
      --batch-size 64 --val-every 1000 --snr-db=-5:25 --no-install --run-dir "$dir"
  }
  (mixed vqa-caption vqa=2,cap=1 6000; mixed vqa-caption-t2i vqa=2,cap=1,t2i=1 8000) & mixed vqa-t2i vqa=2,t2i=1 6000
  wait
  $U ablate --name ablation-caption --mllm previous="$PREVIOUS" \
     --mllm vqa-only=runs/ablation/vqa-only --mllm vqa-caption=runs/ablation/vqa-caption \
     --mllm vqa-t2i=runs/ablation/vqa-t2i --mllm vqa-caption-t2i=runs/ablation/vqa-caption-t2i \
     --reference previous,vqa-only --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 8 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = asr ]; then
  # Issue 12: the previous MLLM transcribes its own training clips almost perfectly and the unseen test speakers
  # far worse, so ASR is short of data, not of steps. ASR-only MLLMs with the previous MLLM's ASR steps (2000 of
  # its 8000, batch 64) on more training speech; `data make --train-clips/--train-speakers` redraws the training
  # speech alone (val and test speech come out byte for byte as data/tiny's), so all are scored on one test set.
  mkdir -p runs/asr
  previous_mllm
  [ -f data/tiny-speech12/manifest.json ] || $U data make --preset tiny --out data/tiny-speech12 \
    --train-clips 12000 --no-spoken-questions
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96 --no-spoken-questions
  asr_only() {  # NAME DATA: a finished run is kept as it is
    local dir="runs/asr/asr-only-$1"
    [ -f "$dir/mllm.safetensors" ] || OMP_NUM_THREADS=1 $U train mllm --task-weights asr=1 --steps 2000 \
      --data "$2" --run-dir "$dir" --no-install
  }
  # Does it carry into the multitask MLLM? The previous MLLM trained 2000 more steps of its own mix (lr 5e-4) on
  # the preset's speech and on the 96 speakers' (the same steps, so the data is the only difference); its VQA
  # is scored too, on the same 1000 questions, into results/ablation-speech-vqa.json.
  finetune() {  # NAME DATA
    local dir="runs/asr/ft-$1"
    [ -f "$dir/mllm.safetensors" ] || OMP_NUM_THREADS=1 $U train mllm --objective sigma-genib \
      --init "$PREVIOUS" --steps 2000 --lr 5e-4 --batch-size 64 --val-every 1000 \
      --snr-db=-5:25 --data "$2" --no-install --run-dir "$dir"
  }
  (asr_only base data/tiny; asr_only speech96 data/tiny-speech96; finetune base data/tiny) &
  (asr_only speech12 data/tiny-speech12; finetune speech96 data/tiny-speech96)
  wait
  $U ablate --task asr --name ablation-asr --mllm previous="$PREVIOUS" \
     --mllm asr-only=runs/asr/asr-only-base --mllm asr-only-12000-clips=runs/asr/asr-only-speech12 \
     --mllm asr-only-12000-clips-96-speakers=runs/asr/asr-only-speech96 \
     --mllm finetuned=runs/asr/ft-base --mllm finetuned-12000-clips-96-speakers=runs/asr/ft-speech96 \
     --reference asr-only,finetuned --snr-db 0,5,20 --channel rayleigh --n-asr 150 --workers 8 --out results --resume
  $U ablate --name ablation-speech-vqa --mllm previous="$PREVIOUS" \
     --mllm finetuned=runs/asr/ft-base --mllm finetuned-12000-clips-96-speakers=runs/asr/ft-speech96 \
     --reference finetuned --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 8 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = next ]; then
  # Issue 12: the recipe `train all` ships (next-t2i-x8's), found on the CPU: the previous recipe with captioning
  # in the mix (results/ablation-caption) on ten times the training speech (results/ablation-asr), 10000 steps,
  # then the diffusion head alone (8000 steps, as the previous one). Then text-to-image: an MLLM trained on T2I
  # alone (4000 steps, twice the previous MLLM's T2I steps; scored before and after its head phase, and continued
  # to 8000 steps), and the previous MLLM fine-tuned with T2I's loss scaled by 8 (`--loss-scale`, against the same
  # fine-tune unscaled: results/ablation-asr's `finetuned`): is T2I short of steps, of capacity, or of its share
  # of the optimiser?
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96 --no-spoken-questions
  T1="OMP_NUM_THREADS=1"
  previous_mllm
  next() {  # NAME [OPTION...]: the next recipe (options given after it win) in runs/NAME, then its head phase
    local dir="runs/$1"; shift
    [ -f "$dir/mllm-sigma-genib/mllm.safetensors" ] || env $T1 $U train mllm --objective sigma-genib \
      --task-weights vqa=2,t2i=1,asr=1,cap=1 --steps 10000 --batch-size 64 --val-every 2000 --snr-db=-5:25 \
      --data data/tiny-speech96 --no-install --run-dir "$dir/mllm-sigma-genib" "$@"
    # the head phase on a copy in its run dir (resumable; the multitask run's file stays as it was)
    grep -qa head_steps "$dir/head/mllm.safetensors" 2>/dev/null || env $T1 $U train mllm-head \
      --mllm "$dir/mllm-sigma-genib/mllm.safetensors" --data data/tiny-speech96 --steps 8000 \
      --run-dir "$dir/head" --no-install
  }
  finetune() {  # NAME EXTRA...: the previous MLLM, 2000 more steps of its own mix (results/ablation-asr's recipe)
    local dir="runs/$1"; shift
    [ -f "$dir/mllm.safetensors" ] || env $T1 $U train mllm --objective sigma-genib \
      --init "$PREVIOUS" --steps 2000 --lr 5e-4 --batch-size 64 --val-every 1000 \
      --snr-db=-5:25 --data data/tiny --no-install --run-dir "$dir" "$@"
  }
  t2i_only() {
    local t2i=(train mllm --objective sigma-genib --task-weights t2i=1 --batch-size 64 --val-every 1000 \
               --snr-db=-5:25 --data data/tiny --no-install)
    [ -f runs/ablation/t2i-only/mllm.safetensors ] || env $T1 $U "${t2i[@]}" --steps 4000 \
      --run-dir runs/ablation/t2i-only
    mkdir -p runs/ablation/t2i-only-before-head runs/ablation/t2i-only-8000
    grep -qa head_steps runs/ablation/t2i-only/mllm.safetensors || \
      cp runs/ablation/t2i-only/mllm.safetensors runs/ablation/t2i-only-before-head/
    # continued from step 4000 on an 8000-step cosine (the schedule restarts at half the peak rate)
    [ -f runs/ablation/t2i-only-8000/train_state.safetensors ] || \
      cp runs/ablation/t2i-only/train_state.safetensors runs/ablation/t2i-only/log.jsonl runs/ablation/t2i-only-8000/
    [ -f runs/ablation/t2i-only-8000/mllm.safetensors ] || \
      env $T1 $U "${t2i[@]}" --steps 8000 --run-dir runs/ablation/t2i-only-8000
    # the head phase in place (a finished run resumes to nothing, then trains its head)
    grep -qa head_steps runs/ablation/t2i-only/mllm.safetensors || env $T1 $U "${t2i[@]}" --steps 4000 \
      --run-dir runs/ablation/t2i-only --head-steps 8000
  }
  # then the two T2I levers from scratch on the next recipe: T2I's loss scaled by 8, and twice its steps (12000
  # steps with t2i=2 in the cycle: 4000 T2I steps and the same 4000 VQA steps)
  (next next; finetune asr/ft-base; next next-t2i-x8 --loss-scale t2i=8) &
  (t2i_only; finetune t2i/ft-t2i-x8 --loss-scale t2i=8
   next next-t2i-4000 --task-weights vqa=2,t2i=2,asr=1,cap=1 --steps 12000)
  wait
  # `narrow` is next-t2i-x8's recipe as `train all` trained and shipped it (until the wide set): the same recipe,
  # another run
  NEXT=(--mllm previous="$PREVIOUS" --mllm narrow=$NARROW --mllm next=runs/next/head
        --mllm next-t2i-x8=runs/next-t2i-x8/head --mllm next-t2i-4000=runs/next-t2i-4000/head)
  NEXT_REF="previous,next:next-t2i-x8+next-t2i-4000,next-t2i-x8:narrow"  # the narrow run against its twin
  $U ablate --name ablation-next "${NEXT[@]}" --reference "$NEXT_REF" \
     --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 8 --out results --resume
  $U ablate --task asr --name ablation-next-asr "${NEXT[@]}" --reference "$NEXT_REF" \
     --snr-db 0,5,20 --channel rayleigh --n-asr 150 --workers 8 --out results --resume
  FT_REF="finetuned:next+finetuned-t2i-x8+t2i-only-before-head+t2i-only+t2i-only-8000"
  T2I_REF="t2i-only-before-head:t2i-only+t2i-only-8000,next:next-t2i-x8+next-t2i-4000"  # each against its own base
  $U ablate --task t2i --name ablation-t2i "${NEXT[@]}" \
     --mllm finetuned=runs/asr/ft-base --mllm finetuned-t2i-x8=runs/t2i/ft-t2i-x8 \
     --mllm t2i-only-before-head=runs/ablation/t2i-only-before-head --mllm t2i-only=runs/ablation/t2i-only \
     --mllm t2i-only-8000=runs/ablation/t2i-only-8000 \
     --reference "previous,next-t2i-x8:narrow,$FT_REF,$T2I_REF" \
     --snr-db 20 --channel rayleigh --n-t2i 500 --workers 16 --out results --resume
  $U ablate --name ablation-t2i-vqa --mllm finetuned=runs/asr/ft-base --mllm finetuned-t2i-x8=runs/t2i/ft-t2i-x8 \
     --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 8 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = fresh ]; then
  # The figures Fig. 2 takes off data/tiny's test split, off another draw of the generator (its own scenes,
  # questions and captions), through services of their own on ports 50091..
  fresh_set
  serve 50091 9191 runs/freshrun
  $U fig2 --name fig2-seed77 --data data/tiny-seed77 --tasks vqa,t2i --schemes unitocom,vae,traditional \
     --snr-db 0,20 --channel rayleigh --n-vqa 500 --n-t2i 300 --workers 16 --out results --target $T --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = families ]; then
  # Fig. 2's 500 questions give 35 to 55 a family, intervals about +-0.13: too wide to say which family misses its
  # floor. The same points on every test question of both sets, read family by family (results_tables.py).
  fresh_set
  serve 50101 9201 runs/famrun
  $U fig2 --name vqa-families --tasks vqa --schemes unitocom --snr-db 0,20 --channel rayleigh --n-vqa 5000 \
     --workers 16 --out results --target $T --resume
  $U fig2 --name vqa-families-seed77 --data data/tiny-seed77 --tasks vqa --schemes unitocom --snr-db 0,20 \
     --channel rayleigh --n-vqa 1000 --workers 16 --out results --target $T --resume
  .venv/bin/python scripts/results_tables.py
fi

# link_installed DIR [FROM]: links to every checkpoint in FROM (default checkpoints/) DIR has no file of its own for
# (the BPE included), but the language prior: a set reads text with it only where it is named (staged_set)
link_installed() {
  local f from=${2:-checkpoints}
  for f in "$from"/*.safetensors "$from"/text-bpe.json; do
    [ "${f##*/}" = text-prior.safetensors ] && continue
    [ -e "$1/${f##*/}" ] || ln -s "$(realpath --relative-to="$1" "$f")" "$1/${f##*/}"
  done
}
# The text set installed until 2026-12-07 (commit 93a7a75: the text links' first parts, over AWGN, read by argmax),
# which the text-links, text-prior and text-copies studies call `installed` and compare with the set staged in
# checkpoints/next then and installed since: BEFORE is every installed checkpoint with those text links out of git
# in place of today's, and no prior.
BEFORE=runs/text-before
before_set() {
  local spec
  mkdir -p $BEFORE
  for spec in text-sigma-genib:5bea8f5ee8765ceb text-vae:7e4410e0aa9a2067 text-genib:2cd06525c683a3e5 \
              text-sigma-genib-resilient:4817bfb86c0cc796; do
    from_git 93a7a75 "${spec%%:*}" "${spec##*:}" "$BEFORE/${spec%%:*}.safetensors"
  done
  link_installed $BEFORE
}
# staged_set DIR FILE...: DIR as a base station's checkpoint folder with the staged FILEs in BEFORE's set (links to
# them and to every other checkpoint of BEFORE); checkpoints/next itself holds only the staged files
staged_set() {
  local d=$1 f
  shift
  before_set
  rm -rf "$d" && mkdir -p "$d"
  for f in "$@"; do ln -s "$(realpath --relative-to="$d" "$f")" "$d/"; done
  link_installed "$d" $BEFORE
}
# score_set NAME DIR BASE_PORT METRICS_BASE_PORT RUN_DIR [FIG2_OPTION ...]: `vqa NAME FIG2_OPTION ...` on services
# of their own that serve the checkpoint folder DIR, stopped afterwards
score_set() {
  export UNITOCOM_CHECKPOINTS=$2
  serve "$3" "$4" "$5"
  vqa "$1" "${@:6}"
  $U down --run-dir "$5"
  unset UNITOCOM_CHECKPOINTS
}
# vqa NAME [FIG2_OPTION ...]: unitocom and vae on the same 1000 test questions (request i: seed i, whatever the
# links), through the services at $T
vqa() {
  $U fig2 --name "$1" --tasks vqa --schemes unitocom,vae --snr-db 0:20:5 --channel rayleigh --n-vqa 1000 \
     "${@:2}" --workers 16 --out results --target $T --resume
}

if [ "$what" = text-links ]; then
  # A typed question crosses one Rayleigh h; at 0 dB the installed links (AWGN only, 600 steps) read under half of
  # the test questions exactly. train all's text links now train in two parts: those 600 steps over AWGN, then
  # 1500 over the mixed channel. The installed links are the first parts (their manifest commands): the second
  # parts start from them as commit 9d2b46e holds them, and are staged beside links to every other installed
  # checkpoint, so that UNITOCOM_CHECKPOINTS=checkpoints/next serves the installed set with only the text links
  # changed.
  for obj in sigma-genib:5bea8f5ee8765ceb vae:7e4410e0aa9a2067; do
    from_git 9d2b46e "text-${obj%%:*}" "${obj##*:}" \
      "checkpoints/next/runs/text-${obj%%:*}-awgn/text-${obj%%:*}-awgn.safetensors"
  done
  $U train all --out checkpoints/next --only text-sigma-genib text-vae
  staged_set runs/links-next checkpoints/next/text-sigma-genib.safetensors checkpoints/next/text-vae.safetensors
  score_set text-links-installed $BEFORE 50131 9231 runs/textrun
  score_set text-links-next runs/links-next 50141 9241 runs/textrun-next
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = text-prior ]; then
  # At 0 dB the text links misread about half the questions, and the whole VQA gap is in those. The de-tokenizer
  # reads each id alone; a base station that knows what questions look like reads the stream's most likely text
  # under its language prior (models.text_prior). The prior is staged beside the staged text links (its weight
  # chosen on val through them, with the BPE they share), and each set is scored with it: text-links' questions,
  # seeds and image noise, so that results/text-links-*.json are the same sets read without it.
  N=checkpoints/next
  [ -f $N/text-sigma-genib.safetensors ] ||
    { echo "error: $N holds no staged text links (scripts/reproduce_results.sh text-links)" >&2; exit 1; }
  # the prior counts the BPE's ids and chooses its weight through the staged sigma-GenIB link, in a served set
  staged_set runs/prior-fit $N/text-sigma-genib.safetensors $N/text-vae.safetensors
  if [ ! -f $N/text-prior.safetensors ]; then
    $U train text-prior --out runs/prior-fit/text-prior.safetensors
    cp runs/prior-fit/text-prior.safetensors $N/ && cp runs/prior-fit/manifest-tasks.json $N/
  fi
  staged_set runs/prior-installed $N/text-prior.safetensors
  staged_set runs/prior-next $N/text-prior.safetensors $N/text-sigma-genib.safetensors $N/text-vae.safetensors
  score_set text-prior-installed runs/prior-installed 50151 9251 runs/priorrun
  score_set text-prior-next runs/prior-next 50161 9261 runs/priorrun-next
  # per question: its own fade, read or not, answered or not, for the four ways; the paired difference
  .venv/bin/python scripts/question_fades.py --n 1000 --snr-db 0 --with-prior --installed $BEFORE
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = text-prior-families ]; then
  # The families run's points (0 and 20 dB, every test question, and the fresh set's) on the set the text-prior
  # section stages: the staged text links read with the prior. Run `text-prior` first.
  [ -f runs/prior-next/text-prior.safetensors ] ||
    { echo "error: runs/prior-next is not staged (scripts/reproduce_results.sh text-prior)" >&2; exit 1; }
  fresh_set
  export UNITOCOM_CHECKPOINTS=runs/prior-next
  serve 50171 9271 runs/priorrun-families
  $U fig2 --name vqa-families-prior --tasks vqa --schemes unitocom --snr-db 0,20 --channel rayleigh --n-vqa 5000 \
     --workers 16 --out results --target $T --resume
  $U fig2 --name vqa-families-prior-seed77 --data data/tiny-seed77 --tasks vqa --schemes unitocom --snr-db 0,20 \
     --channel rayleigh --n-vqa 1000 --workers 16 --out results --target $T --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = text-next ]; then
  # Installing the staged text links (text-links) and prior (text-prior) changes how every typed text is read; the
  # set needs its third link and the resilient companion of its new base first. Neither is scored here.
  [ -f checkpoints/next/text-sigma-genib.safetensors ] ||
    { echo "error: checkpoints/next holds no staged text links (scripts/reproduce_results.sh text-links)" >&2; exit 1; }
  from_git 9d2b46e text-genib 2cd06525c683a3e5 checkpoints/next/runs/text-genib-awgn/text-genib-awgn.safetensors
  # side by side, one core each; each merges its entry into checkpoints/next/manifest.json as it finishes, and they
  # finish about 45 min apart
  $U train all --out checkpoints/next --only text-genib &
  $U train all --out checkpoints/next --only text-sigma-genib-resilient
  wait
fi

if [ "$what" = text-copies ]; then
  # A question crosses one Rayleigh h: a deep fade loses it whatever the reader. Sent twice, each copy over its own
  # fade, the base station combines the two by maximal-ratio combining before it reads them (`link.diversity`); the
  # question costs twice its channel uses (74 more for a typical question; the image takes 256). The same requests as
  # text-links and text-prior (seed i for request i, so the first copy crosses the same h as the question sent once).
  [ -f runs/prior-next/text-prior.safetensors ] ||
    { echo "error: runs/prior-next is not staged (scripts/reproduce_results.sh text-prior)" >&2; exit 1; }
  before_set
  score_set text-copies-installed $BEFORE 50181 9281 runs/copiesrun --text-copies 2
  score_set text-copies-next runs/prior-next 50191 9291 runs/copiesrun-next --text-copies 2
  # per question, paired: the same requests sent once and twice, by the fade of the first copy (in process)
  .venv/bin/python scripts/question_fades.py --n 1000 --snr-db 0 --with-prior --copies 2 --name question-fades-copies \
    --installed $BEFORE
  fresh_set
  export UNITOCOM_CHECKPOINTS=runs/prior-next
  serve 50201 9301 runs/copiesrun-families
  $U fig2 --name vqa-families-copies --tasks vqa --schemes unitocom --snr-db 0,20 --channel rayleigh \
     --n-vqa 5000 --text-copies 2 --workers 16 --out results --target $T --resume
  $U fig2 --name vqa-families-copies-seed77 --data data/tiny-seed77 --tasks vqa --schemes unitocom --snr-db 0,20 \
     --channel rayleigh --n-vqa 1000 --text-copies 2 --workers 16 --out results --target $T --resume
  # three copies: how much of the 0 dB gap is left to the reading of the question
  $U fig2 --name vqa-families-copies3 --tasks vqa --schemes unitocom --snr-db 0,20 --channel rayleigh \
     --n-vqa 5000 --text-copies 3 --workers 16 --out results --target $T --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = received-questions ]; then
  end_to_end_mllms
  # The 0 dB questions the text link misreads are answered near chance by an MLLM trained on clean questions only.
  # The installed MLLM fine-tuned 1000 steps of its recipe's mix at the second part's rate with half its VQA
  # questions read through the installed text link at the example's SNR (--received-questions 0.5), against the
  # same fine-tune on clean questions; paired on the same test questions and channel draws (ablate: in process,
  # the typed question through the text link as the services send it).
  ft() {  # NAME EXTRA...: a finished run is kept as it is
    local name=$1
    shift
    [ -f "runs/ft-$name/mllm.safetensors" ] || $U train mllm --init $E2E_DIR/mllm-sigma-genib.safetensors \
      --steps 1000 --lr 2e-4 --val-every 500 --snr-db=-5:25 --task-weights vqa=2,t2i=1,asr=1,cap=1 \
      --loss-scale t2i=8 --threads 1 --data data/tiny-speech96 --log-every 50 --no-install --run-dir "runs/ft-$name" "$@"
  }
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96
  ft received --received-questions 0.5 &
  ft control
  wait
  $U ablate --task vqa --name ablation-received-questions --mllm installed=$E2E_DIR/mllm-sigma-genib.safetensors \
     --mllm control=runs/ft-control --mllm received=runs/ft-received --reference installed,control \
     --snr-db 0,20 --channel rayleigh --n-vqa 1000 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = fresh-asr ]; then
  # Fig. 2's ASR uses all 150 test clips: WER 0.069 [0.037, 0.107] at 5 dB straddles the 0.10 target. Four times
  # the clips, of speakers and sentences drawn with another seed (val and test only: no training speech needed).
  seed77 data/tiny-seed77-speech --scenes 30 --speech 6000 --train-clips 10 --no-spoken-questions
  serve 50111 9211 runs/asrrun
  $U fig2 --name asr-seed77 --data data/tiny-seed77-speech --tasks asr --schemes unitocom --snr-db 5,20 \
     --channel rayleigh --n-asr 600 --workers 16 --out results --target $T --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = image-targets ]; then
  serve 50121 9221 runs/imgrun
  one() {  # name, data, SNR (dB): unitocom without packet loss, every test scene
    $U loss-sweep --sweep packet-loss --name "$1" --data "$2" --tasks reconstruct --schemes unitocom --loss-rates 0 \
      --snr-db "$3" --n-images 1000 --workers 4 --target $T --out results --resume
  }
  one reconstruct-0db data/tiny 0
  seed77 data/tiny-seed77-images --no-speech --no-spoken-questions
  one reconstruct-seed77 data/tiny-seed77-images 20
  one reconstruct-0db-seed77 data/tiny-seed77-images 0
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = lr-probe ]; then
  # Twice the width at its own learning rate, on the real recipe's first steps (`train mllm --stop-at`): the run
  # dirs (runs/lr-probe/NAME) continue to the full 10000 steps by the same command without --stop-at.
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96 --no-spoken-questions
  .venv/bin/python scripts/lr_probe.py --out results
  # the width-128 recipe and the better wide rate on to step 4000 (where the first wide attempt, at 2e-3, trailed)
  .venv/bin/python scripts/lr_probe.py --runs "shipped=@2e-3;wide-5e-4=hidden=256,heads=8,intermediate=688@5e-4" \
    --stop-at 4000 --name lr-probe-4000 --out results
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = wide ]; then
  # The wide model of the lr-probe section to the recipe's end: its run dir resumes where the probe stopped (or
  # starts afresh; a run resumed at other steps draws other batches after them), on both cores (--threads 2:
  # 1.7 times one core's steps/s), then its head phase (8000 steps, as train all's).
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96 --no-spoken-questions
  WIDE_RUN=runs/lr-probe/wide-5e-4
  .venv/bin/python scripts/lr_probe.py --runs "wide-5e-4=hidden=256,heads=8,intermediate=688@5e-4" \
    --stop-at 10000 --jobs 1 --threads 2 --name lr-probe-10000 --out results
  # VQA and ASR on the multitask run (neither reads the diffusion head, all that the head phase changes), then
  # the head phase on both cores, then T2I
  # against the 4 x 128 MLLM it replaced (`narrow`); the shipped mllm-sigma-genib is $WIDE_RUN-head's file
  W=(--mllm narrow=$NARROW --mllm wide=$WIDE_RUN --reference narrow)
  $U ablate --name ablation-wide "${W[@]}" --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 8 \
     --out results --resume
  $U ablate --task asr --name ablation-wide-asr "${W[@]}" --snr-db 0,5,20 --channel rayleigh --n-asr 150 \
     --workers 8 --out results --resume
  grep -qa head_steps $WIDE_RUN-head/mllm.safetensors 2>/dev/null || $U train mllm-head \
     --mllm $WIDE_RUN/mllm.safetensors --data data/tiny-speech96 --steps 8000 --threads 2 \
     --run-dir $WIDE_RUN-head --no-install
  $U ablate --task t2i --name ablation-wide-t2i --mllm narrow=$NARROW \
     --mllm wide=$WIDE_RUN-head --reference narrow --snr-db 20 --channel rayleigh --n-t2i 500 --workers 16 \
     --out results --resume
  # the same two on the fresh section's set (seed 77, drawn after every checkpoint; no speech there): all 1000 of
  # its test questions, all 200 of its test captions that name a (colour, shape) pair
  fresh_set
  $U ablate --name ablation-wide-seed77 --data data/tiny-seed77 "${W[@]}" --snr-db 0,20 --channel rayleigh \
     --n-vqa 1000 --workers 8 --out results --resume
  $U ablate --task t2i --name ablation-wide-seed77-t2i --data data/tiny-seed77 \
     --mllm narrow=$NARROW --mllm wide=$WIDE_RUN-head --reference narrow \
     --snr-db 20 --channel rayleigh --n-t2i 300 --workers 16 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = steps ]; then
  # More steps at the shipped width: a second cosine of 4000 steps from the one-part MLLM (shipped then), at the
  # fine-tunes' rate (2.5e-4, half the first), with its own draws (--seed 1); no head phase (T2I is not scored
  # here). Both cores.
  one_part_mllms
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96 --no-spoken-questions
  RUN=runs/continue-4000
  [ -f $RUN/mllm.safetensors ] || $U train mllm --objective sigma-genib \
    --init $ONE_PART_DIR/mllm-sigma-genib.safetensors --steps 4000 --batch-size 64 --lr 2.5e-4 --snr-db=-5:25 \
    --task-weights vqa=2,t2i=1,asr=1,cap=1 --loss-scale t2i=8 --data data/tiny-speech96 --val-every 1000 \
    --log-every 50 --threads 2 --seed 1 --no-install --run-dir $RUN
  S=(--mllm one-part=$ONE_PART_DIR/mllm-sigma-genib.safetensors --mllm continued-4000=$RUN --reference one-part)
  $U ablate --name ablation-steps "${S[@]}" --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 8 \
     --out results --resume
  fresh_set
  $U ablate --name ablation-steps-seed77 --data data/tiny-seed77 "${S[@]}" --snr-db 0,20 --channel rayleigh \
     --n-vqa 1000 --workers 8 --out results --resume
  $U ablate --task asr --name ablation-steps-asr "${S[@]}" --snr-db 0,5,20 --channel rayleigh --n-asr 150 \
     --workers 8 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = relations ]; then
  # Relate yesno sits at its chance in every MLLM. Is the one-part one fitting its training questions at all (the
  # train split, where it trained), and can a reader given that family alone, with more of its questions than the
  # set holds, learn it from the received tokens or from the clean picture? One core per probe.
  $U ablate --name ablation-train-split --split train --mllm one-part=$ONE_PART \
     --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 2 --out results --resume
  P=(--families relate_yesno --extra-per-scene 10 --eval-every 1000)
  .venv/bin/python scripts/vqa_probe.py --modes tokens,pixels --steps 3000 "${P[@]}" \
     --out results/vqa-probe-relations.json &
  .venv/bin/python scripts/vqa_probe.py --modes tokens --steps 3000 "${P[@]}" --positions grid \
     --out results/vqa-probe-relations-grid.json
  .venv/bin/python scripts/vqa_probe.py --modes tokens --steps 8000 "${P[@]}" \
     --out results/vqa-probe-relations-8000.json
  wait
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = perception ]; then
  # Is relate yesno's plateau the reader or what it is given to read? The probe reader on the scene record itself
  # (no picture, no channel) against the received tokens, every family, one core each; then the scene record with
  # relate yesno alone, where the other families cannot teach it to find objects first.
  F=(--steps 10000 --lr 1e-3 --eval-every 2000)
  .venv/bin/python scripts/vqa_probe.py --modes scene "${F[@]}" --out results/vqa-probe-families-scene.json
  .venv/bin/python scripts/vqa_probe.py --modes scene --families relate_yesno --extra-per-scene 10 --steps 20000 \
     --lr 1e-3 --eval-every 2000 --out results/vqa-probe-relations-scene.json &
  .venv/bin/python scripts/vqa_probe.py --modes tokens "${F[@]}" --out results/vqa-probe-families-tokens.json
  wait
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = objects ]; then
  # The probe on received tokens could not find a described object (relate yesno at chance, where the scene record
  # gives 0.98): train it to read every object of the scene from the same tokens beside the questions, one core.
  # Beside it, on the other core, the questions read the slots' cells as well as the tokens: the slots as an object-level
  # adapter between the link and the reader.
  .venv/bin/python scripts/vqa_probe.py --modes tokens --steps 10000 --lr 1e-3 --eval-every 2000 --objects 1 \
    --out results/vqa-probe-objects-w1.json &
  .venv/bin/python scripts/vqa_probe.py --modes tokens --steps 8000 --lr 1e-3 --eval-every 2000 --objects 1 \
    --read-slots --out results/vqa-probe-objects-read.json
  wait
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = listing ]; then
  # The probe read relations once it also had to read every object (relate yesno 0.45 -> 0.77). The same signal as
  # an LM task of the MLLM: the one-part MLLM warm-started for 2000 steps of its recipe at 2e-4 with "obj" in the
  # cycle, and, on the other core, the same fine-tune without it (the control: more steps alone lift VQA too,
  # results/ablation-steps.json). No head phase: T2I is not scored here.
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96 --no-spoken-questions
  one_part_mllms
  finetune() {  # run dir, task weights
    [ -f "$1/mllm.safetensors" ] || $U train mllm --objective sigma-genib \
      --init $ONE_PART_DIR/mllm-sigma-genib.safetensors --steps 2000 --batch-size 64 --lr 2e-4 --snr-db=-5:25 \
      --task-weights "$2" --loss-scale t2i=8 --data data/tiny-speech96 --val-every 500 --log-every 50 \
      --threads 1 --no-install --run-dir "$1"
  }
  finetune runs/obj/ft-obj vqa=2,t2i=1,asr=1,cap=1,obj=1 &
  finetune runs/obj/ft-ctrl vqa=2,t2i=1,asr=1,cap=1
  wait
  L=(--mllm one-part=$ONE_PART_DIR/mllm-sigma-genib.safetensors --mllm recipe-2000=runs/obj/ft-ctrl
     --mllm listing-2000=runs/obj/ft-obj --reference one-part,recipe-2000)
  vqa_test_and_fresh ablation-listing "${L[@]}"
  .venv/bin/python scripts/listing_read.py --mllm listing-2000=runs/obj/ft-obj --out results/listing-read.json
  # T2I reads the diffusion head: each fine-tune's head phase (8000 steps, one core each), then 500 test captions
  for v in obj ctrl; do
    grep -qa head_steps runs/obj/ft-$v-head/mllm.safetensors 2>/dev/null || $U train mllm-head \
      --mllm runs/obj/ft-$v/mllm.safetensors --data data/tiny-speech96 --steps 8000 --threads 1 \
      --run-dir runs/obj/ft-$v-head --no-install &
  done
  wait
  $U ablate --task t2i --name ablation-listing-t2i --mllm one-part=$ONE_PART_DIR/mllm-sigma-genib.safetensors \
     --mllm recipe-2000=runs/obj/ft-ctrl-head --mllm listing-2000=runs/obj/ft-obj-head \
     --reference one-part,recipe-2000 --snr-db 20 --channel rayleigh --n-t2i 500 --workers 16 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = prefix ]; then
  end_to_end_mllms
  # The slots showed the causal backbone's hidden states hold the objects and its answers do not use them for
  # relations; the probe that did read relations was bidirectional. The same installed MLLM and recipe as the slots
  # study (2000 steps at 2e-4 on data/tiny, one core each), with the prompt attending both ways (PaliGemma's
  # prefix LM), against the fine-tune without it.
  finetune_installed runs/prefix/ft-prefix --prefix-attention &
  finetune_installed runs/prefix/ft-ctrl
  wait
  L=(--mllm shipped=$E2E_DIR/mllm-sigma-genib.safetensors --mllm recipe-2000=runs/prefix/ft-ctrl
     --mllm prefix-2000=runs/prefix/ft-prefix --reference shipped,recipe-2000)
  vqa_test_and_fresh ablation-prefix "${L[@]}"
  $U ablate --task asr --name ablation-prefix-asr "${L[@]}" --snr-db 0,5,20 --channel rayleigh --n-asr 150 \
     --workers 8 --out results --resume
  # T2I reads the diffusion head: each fine-tune's head phase (8000 steps, one core each), then 500 test captions.
  # The prefix LM reads the caption both ways, as a diffusion model's text encoder does.
  for v in prefix ctrl; do
    grep -qa head_steps runs/prefix/ft-$v-head/mllm.safetensors 2>/dev/null || $U train mllm-head \
      --mllm runs/prefix/ft-$v/mllm.safetensors --data data/tiny --steps 8000 --threads 1 \
      --run-dir runs/prefix/ft-$v-head --no-install &
  done
  wait
  $U ablate --task t2i --name ablation-prefix-t2i --mllm shipped=$E2E_DIR/mllm-sigma-genib.safetensors \
     --mllm recipe-2000=runs/prefix/ft-ctrl-head --mllm prefix-2000=runs/prefix/ft-prefix-head \
     --reference shipped,recipe-2000 --snr-db 20 --channel rayleigh --n-t2i 500 --workers 16 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = slots ]; then
  end_to_end_mllms
  # The listing took steps from VQA and taught one written token at a time, and did not help. The probe's own form
  # of the object signal: slots on the MLLM's hidden states over each VQA scene's image tokens, on the VQA steps it
  # already takes. The installed (two-part) MLLM warm-started for 2000 steps of its recipe at 2e-4 with
  # --object-slots 0.5, and, on the other core, the same fine-tune without it (the control). data/tiny: the scenes,
  # questions and captions of data/tiny-speech96, with a tenth of its training speech (both runs alike; ASR is not
  # scored here). No head phase: T2I is not scored here.
  finetune_installed runs/slots/ft-slots --object-slots 0.5 &
  finetune_installed runs/slots/ft-ctrl
  wait
  L=(--mllm shipped=$E2E_DIR/mllm-sigma-genib.safetensors --mllm recipe-2000=runs/slots/ft-ctrl
     --mllm slots-2000=runs/slots/ft-slots --reference shipped,recipe-2000)
  vqa_test_and_fresh ablation-slots "${L[@]}"
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = encoder ]; then
  end_to_end_mllms
  # Every form of the object signal on the causal backbone (listing, slots on its hidden states, a prefix mask) left
  # VQA where it was, while the probe reader, bidirectional and taught the objects, answered relations. This puts
  # that reader in front of the backbone, where an MLLM's vision encoder sits: two bidirectional layers over each
  # received scene's embedded tokens, added back through a projection that starts at zero (the fine-tune begins
  # as the installed MLLM), with the object slots reading the encoder's features (weight 1, as the probe's), and
  # without them (the encoder's capacity alone). The control is the prefix study's (made here if absent). No head
  # phase and no speech: T2I's own tokens and the audio never pass through the encoder.
  finetune_installed runs/encoder/ft-enc-slots --image-encoder 2 --object-slots 1 &
  finetune_installed runs/encoder/ft-enc --image-encoder 2
  wait
  finetune_installed runs/prefix/ft-ctrl
  # Grown inside the fine-tune, the encoder's slots read colour at 0.63 after 1500 steps. BLIP-2's two stages: the
  # encoder taught the objects alone (the MLLM frozen; 6000 steps at 1e-3: colour 0.96, shape 0.92 at 20 dB), then
  # connected by the recipe for 1000 steps (half the others', on both cores).
  [ -f runs/encoder/pretrained.safetensors ] || .venv/bin/python scripts/pretrain_image_encoder.py --steps 6000 \
    --mllm $E2E_DIR/mllm-sigma-genib.safetensors --out runs/encoder/pretrained.safetensors
  [ -f runs/encoder/ft-pre/mllm.safetensors ] || $U train mllm --objective sigma-genib \
    --init runs/encoder/pretrained.safetensors --task-weights vqa=2,t2i=1,asr=1,cap=1 --loss-scale t2i=8 \
    --object-slots 1 --steps 1000 --batch-size 64 --snr-db=-5:25 --lr 2e-4 --data data/tiny --val-every 250 \
    --log-every 50 --threads 2 --run-dir runs/encoder/ft-pre --no-install
  L=(--mllm shipped=$E2E_DIR/mllm-sigma-genib.safetensors --mllm recipe-2000=runs/prefix/ft-ctrl
     --mllm encoder-2000=runs/encoder/ft-enc --mllm encoder-slots-2000=runs/encoder/ft-enc-slots
     --mllm pretrained-encoder-1000=runs/encoder/ft-pre --reference shipped,recipe-2000)
  vqa_test_and_fresh ablation-encoder "${L[@]}"
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = objtok ]; then
  end_to_end_mllms
  # The encoder study's perception was there (the pretrained slots read colour 0.96, shape 0.92) and the answers did
  # not move: its features reached the backbone spread over the 32 image positions. The probe that learnt every
  # family, relations included, in 2000 steps read the scene record: one object per position, attributes and centre.
  # Object tokens give the backbone that form, the slots' own reading (probabilities and centres), one token per slot
  # after the scene's image tokens. Needs the encoder study's runs (made here if absent).
  [ -f runs/encoder/ft-pre/mllm.safetensors ] || bash scripts/reproduce_results.sh encoder
  objtok() {
    [ -f "$1/mllm.safetensors" ] || $U train mllm --objective sigma-genib \
      --init runs/encoder/pretrained.safetensors --task-weights vqa=2,t2i=1,asr=1,cap=1 --loss-scale t2i=8 \
      --object-slots 1 --object-tokens "${@:2}" --steps 2000 --batch-size 64 --snr-db=-5:25 --data data/tiny \
      --val-every 500 --log-every 50 --threads 1 --run-dir "$1" --no-install
  }
  # (a second arm at 5e-4 was stopped at step 700: 0.71 at step 500 against 0.73 at 2e-4)
  objtok runs/objtok/lr2 --lr 2e-4
  L=(--mllm shipped=$E2E_DIR/mllm-sigma-genib.safetensors --mllm recipe-2000=runs/prefix/ft-ctrl
     --mllm pretrained-encoder-1000=runs/encoder/ft-pre --mllm object-tokens-2000=runs/objtok/lr2
     --reference shipped,recipe-2000)
  vqa_test_and_fresh ablation-objtok "${L[@]}"
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = programs ]; then
  end_to_end_mllms
  # The encoder study's slots read the objects (colour 0.96, shape 0.92 at 20 dB) and the MLLM did not learn to
  # compare them. NS-VQA's split: the slots' reading as a scene, each question's program run on it exactly.
  [ -f runs/encoder/pretrained.safetensors ] || .venv/bin/python scripts/pretrain_image_encoder.py --steps 6000 \
    --mllm $E2E_DIR/mllm-sigma-genib.safetensors --out runs/encoder/pretrained.safetensors
  fresh_set
  .venv/bin/python scripts/slots_reason.py --snr-db 0:20:5 --out results/slots-reason.json
  .venv/bin/python scripts/slots_reason.py --data data/tiny-seed77 --n 1000 --snr-db 0:20:5 \
    --out results/slots-reason-seed77.json
  # The MLLM writes the program from the question (the prog task); its answers are the programs run on the slots'
  # reading, its own where a program does not parse or run. Each objective's MLLM with its own pretrained encoder.
  [ -f runs/prog-vae/pretrained.safetensors ] || .venv/bin/python scripts/pretrain_image_encoder.py \
    --mllm $E2E_DIR/mllm-vae.safetensors --steps 6000 --threads 1 --out runs/prog-vae/pretrained.safetensors
  programs() {
    [ -f "$2/mllm.safetensors" ] || $U train mllm --objective "$1" --init "$3" \
      --task-weights vqa=2,t2i=1,asr=1,cap=1,prog=4 --loss-scale t2i=8 --object-slots 1 --steps 1500 \
      --batch-size 64 --snr-db=-5:25 --lr 2e-4 --data data/tiny --val-every 500 --log-every 50 --threads 1 \
      --run-dir "$2" --no-install
  }
  programs sigma-genib runs/prog/ft runs/encoder/pretrained.safetensors &
  programs vae runs/prog-vae/ft runs/prog-vae/pretrained.safetensors
  wait
  L=(--mllm shipped=$E2E_DIR/mllm-sigma-genib.safetensors --mllm programs-1500=runs/prog/ft
     --mllm vae-shipped=$E2E_DIR/mllm-vae.safetensors --mllm vae-programs-1500=runs/prog-vae/ft
     --reference shipped,vae-shipped)
  vqa_test_and_fresh ablation-programs "${L[@]}"
  # ASR on the test speech: the fine-tunes read the preset's training speech (data/tiny), each compared with its own
  $U ablate --task asr --name ablation-programs-asr "${L[@]:0:8}" \
     --reference shipped:programs-1500,vae-shipped:vae-programs-1500 --snr-db 5,20 --channel rayleigh --n-asr 150 \
     --workers 8 --out results --resume
  # Through the services, the question read over the link as every VQA point is: the installed set with the new
  # MLLM in place of mllm-sigma-genib (and the language prior, as installed).
  mkdir -p runs/prog/set
  ln -sfn ../ft/mllm.safetensors runs/prog/set/mllm-sigma-genib.safetensors
  ln -sfn ../../../checkpoints/text-prior.safetensors runs/prog/set/text-prior.safetensors
  link_installed runs/prog/set
  export UNITOCOM_CHECKPOINTS=runs/prog/set
  serve 50301 9301 runs/progrun
  $U fig2 --name vqa-families-programs --tasks vqa --schemes unitocom --snr-db 0,20 --channel rayleigh \
     --n-vqa 5000 --workers 16 --out results --target $T --resume --quiet
  $U fig2 --name vqa-families-programs-seed77 --data data/tiny-seed77 --tasks vqa --schemes unitocom \
     --snr-db 0,20 --channel rayleigh --n-vqa 1000 --workers 16 --out results --target $T --resume --quiet
  $U down --run-dir runs/progrun
  unset UNITOCOM_CHECKPOINTS
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = continue ]; then
  # train all's second part for the committed (one-part) MLLMs: each warm-started for 2000 more steps of its recipe
  # at 2e-4, then its head phase; mllm-sigma-genib's is the listing study's control (runs/obj/ft-ctrl, its head in
  # runs/obj/ft-ctrl-head). The resilient and spoken fine-tunes are redone on top of it with their recipes. One
  # core per lane. The one-part MLLMs they start from come out of git history (one_part_mllms).
  [ -f data/tiny-speech96/manifest.json ] || $U data make --preset tiny --out data/tiny-speech96 \
    --train-clips 12000 --train-speakers 96
  D=data/tiny-speech96
  one_part_mllms
  second() {  # objective, run dir
    [ -f "$2/mllm.safetensors" ] || $U train mllm --objective "$1" --init "$ONE_PART_DIR/mllm-$1.safetensors" \
      --steps 2000 --batch-size 64 --lr 2e-4 --snr-db=-5:25 --task-weights vqa=2,t2i=1,asr=1,cap=1 \
      --loss-scale t2i=8 --data $D --val-every 500 --log-every 50 --threads 1 --no-install --run-dir "$2"
    grep -qa head_steps "$2-head/mllm.safetensors" 2>/dev/null || $U train mllm-head --mllm "$2/mllm.safetensors" \
      --data $D --steps 8000 --threads 1 --run-dir "$2-head" --no-install
  }
  BASE=runs/obj/ft-ctrl-head/mllm.safetensors
  {
    second sigma-genib runs/obj/ft-ctrl
    [ -f runs/cont/resilient/mllm.safetensors ] || $U train mllm --resilient --init $BASE --steps 3000 \
      --lr 2.5e-4 --val-every 1000 --task-weights vqa=2,t2i=1,asr=1,cap=1 --loss-scale t2i=8 --threads 1 \
      --data $D --no-install --run-dir runs/cont/resilient
  } &
  second vae runs/cont/vae
  wait
  [ -f runs/cont/spoken/mllm.safetensors ] || $U train mllm --spoken --init $BASE --steps 1500 --lr 2.5e-4 \
    --val-every 500 --task-weights vqa=2,svqa=2,t2i=1,asr=1,cap=1 --loss-scale t2i=8 --threads 1 --data $D \
    --no-install --run-dir runs/cont/spoken
  # the set, staged beside the installed one (links for the rest) until the tables that read it are rerun
  .venv/bin/python scripts/stage_next.py mllm-sigma-genib=runs/obj/ft-ctrl-head mllm-vae=runs/cont/vae-head \
    mllm-sigma-genib-resilient=runs/cont/resilient mllm-sigma-genib-spoken=runs/cont/spoken
  # T2I of mllm-sigma-genib's two parts against its first on the fresh set (its test split: ablation-listing-t2i)
  fresh_set
  $U ablate --task t2i --name ablation-continue-seed77-t2i --data data/tiny-seed77 \
     --mllm one-part=$ONE_PART_DIR/mllm-sigma-genib.safetensors --mllm recipe-2000=runs/obj/ft-ctrl-head \
     --reference one-part --snr-db 20 --channel rayleigh --n-t2i 300 --workers 16 --out results --resume
  .venv/bin/python scripts/results_tables.py
fi

if [ "$what" = layout ]; then
  # The MLLM writes the captioned scene's layout (the lay task, `mllm.layout`); a renderer inside it draws the
  # layout as image tokens (`train layout-renderer`). The MLLM is the installed program MLLM with the lay task
  # added to its recipe's mix. Beside it, the probe's own renderer says what drawing a layout can reach.
  # lay_mllm OBJECTIVE ORDER RUN_DIR DRAWN_DIR: the fine-tune into RUN_DIR, its renderer into DRAWN_DIR
  lay_mllm() {
    [ -f "$3/mllm.safetensors" ] || $U train mllm --objective "$1" --init "checkpoints/mllm-$1.safetensors" \
      --task-weights vqa=2,t2i=1,asr=1,cap=1,prog=4,lay=4 --layout-order "$2" --loss-scale t2i=8 --object-slots 1 \
      --steps 1500 --batch-size 64 --snr-db=-5:25 --lr 2e-4 --data data/tiny --val-every 500 --log-every 50 \
      --threads 1 --run-dir "$3" --no-install
    [ -f "$4/mllm.safetensors" ] || $U train layout-renderer --init "$3/mllm.safetensors" --data data/tiny \
      --steps 4000 --run-dir "$4"
  }
  {
    lay_mllm sigma-genib left-to-right runs/layout/mllm runs/layout/drawn
    lay_mllm sigma-genib caption runs/layout/mllm-caption runs/layout/drawn-caption
  } &
  [ -f runs/layout/renderer/renderer.safetensors ] || .venv/bin/python scripts/t2i_layout_probe.py --data data/tiny \
    --steps 4000 --run-dir runs/layout/renderer --grids 3,8 --out out/t2i-layout-renderer.json
  lay_mllm vae caption runs/layout-vae/mllm runs/layout-vae/drawn
  wait
  .venv/bin/python scripts/t2i_layout_probe.py --data data/tiny --run-dir runs/layout/renderer --reuse --grids 3,8 \
    --mllm left-to-right=runs/layout/drawn/mllm.safetensors --mllm caption=runs/layout/drawn-caption/mllm.safetensors \
    --unmended --top-p 0.9 --out results/t2i-layout-probe.json
  # Through the services, as Fig. 2's T2I points: the installed set with a layout MLLM in place of the installed
  # one, the caption sent over the text link at 0 and 20 dB Rayleigh, the same 500 test captions.
  # layout_points NAME SCHEME CHECKPOINT DRAWN_DIR PORT: results/NAME.* from a set of its own in runs/NAME-set
  layout_points() {
    mkdir -p "runs/$1-set"
    ln -sfn "$(realpath --relative-to="runs/$1-set" "$4/mllm.safetensors")" "runs/$1-set/$3.safetensors"
    ln -sfn ../../checkpoints/text-prior.safetensors "runs/$1-set/text-prior.safetensors"
    link_installed "runs/$1-set"
    (
      export UNITOCOM_CHECKPOINTS="runs/$1-set"
      serve "$5" "$(($5 - 41000))" "runs/$1-run"
      $U fig2 --name "$1" --tasks t2i --schemes "$2" --snr-db 0,20 --channel rayleigh --n-t2i 500 --workers 16 \
        --out results --target "$T" --resume --quiet
    )
  }
  layout_points t2i-layout unitocom mllm-sigma-genib runs/layout/drawn 50311
  layout_points t2i-layout-caption unitocom mllm-sigma-genib runs/layout/drawn-caption 50321
  layout_points t2i-layout-vae vae mllm-vae runs/layout-vae/drawn 50331
  .venv/bin/python scripts/results_tables.py
fi
