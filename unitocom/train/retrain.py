"""`unitocom train all`: retrain every committed checkpoint, in dependency order, into one folder.

    data -> tokenizers (image s32 first: the token-length ones start from it) -> text prior -> scene checker
         -> MLLMs (each in two parts, then its diffusion head's phase: the end-to-end MLLM; its image encoder
            pretrained on the object slots; a fine-tune that writes VQA programs, then its head phase)
         -> their fine-tunes (from the end-to-end MLLM) -> SemCom

Each step is one `unitocom train ...` command run as its own process (the exact command a manifest records),
with `UNITOCOM_CHECKPOINTS=<out>` so that the MLLMs read the tokenizers just trained and install next to them.
Resumable twice over: a step whose checkpoint is already in <out> is skipped, and an interrupted step resumes
from its run directory (<out>/runs/<name>); a base MLLM's first part (a stage, `<name>-base`) leaves its MLLM
there, and the second part starts from it. Logs: <out>/logs/<name>.log.

Scales: `cpu` is the committed checkpoints' recipe (hours on two cores: checkpoints/README.md); `gpu` the same
models with larger batches and fewer steps for one CUDA GPU (bf16 MLLM); `smoke` a few steps of each, to test the
plumbing.

The recipe is the one issue 12's CPU studies found better: the MLLMs (and vanilla SemCom's ASR, so that the
baseline hears the same speech) train on ten times the training speech (`data make --train-clips 12000
--train-speakers 96`, `SPEECH_DATA`: ASR-only WER 0.197 -> 0.037 at 20 dB, results/ablation-asr.json), with
captioning in the MLLMs' mix (`cap`: +0.087 VQA at 20 dB over VQA-only, results/ablation-caption.json) and T2I's
loss scaled by 8 (`--loss-scale t2i=8`: T2I pair recall +0.062 over the same recipe unscaled, VQA and ASR within
noise, results/ablation-t2i.json and ablation-next*.json). The tokenizers, the scene checker and SemCom's VQA and
T2I read scenes and captions only, the same in both data sets: they train on data/tiny.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SCALES = ("cpu", "gpu", "smoke")
# the data sets (folder, what `data make --preset tiny` is given to make it): scenes for the tokenizers, the
# checker and SemCom's VQA and T2I; speech for the steps marked `speech`, which read the training speech (val and
# test are the preset's, byte for byte; only the training speech grows)
SCENE_DATA = ("data/tiny", [])
SPEECH_DATA = ("data/tiny-speech96", ["--train-clips", "12000", "--train-speakers", "96"])


@dataclass(frozen=True)
class Step:
    name: str  # the checkpoint's file stem in <out>
    args: list[str]  # after `unitocom`
    needs: tuple[str, ...] = ()  # checkpoints that must exist first
    extra: dict = field(default_factory=dict)  # scale-dependent flags, filled by plan()
    speech: bool = False  # trains on SPEECH_DATA (the MLLMs and SemCom's ASR)
    stage: bool = False  # a first part, no checkpoint: it leaves its weights in <out>/runs/<name> (`made`)
    init: str = ""  # the stage this step warm-starts from (`--init` its `made` file)


def _tok(modality: str, objective: str, steps: int, tokens: int | None = None, **flags) -> list[str]:
    args = ["train", "tokenizer", "--modality", modality, "--objective", objective]
    if tokens:
        args += ["--tokens", str(tokens)]
    args += ["--snr-db=-10:25", "--channel", flags.pop("channel", "mixed"), "--steps", str(steps)]
    for k, v in flags.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


# The MLLMs' width and peak learning rate (issue 12): twice the tiny preset's hidden size, at the rate lr_probe.py
# found for it (results/lr-probe*.json: at 1e-3 its VQA stalled near 0.47 by step 2000; the preset's 2e-3 is the
# 4 x 128 model's). The fine-tunes warm start from mllm-sigma-genib and keep its architecture; they run at half
# its peak rate, as the 4 x 128 recipe's did (1e-3 after 2e-3).
MLLM_ARCH = "hidden=256,heads=8,intermediate=688"
MLLM_LR = "5e-4"
FINETUNE_LR = "2.5e-4"
# The base MLLMs run in two parts: the recipe's cosine at MLLM_LR, then a fifth as many steps more of the same mix
# warm-started at CONTINUE_LR, and the diffusion head's phase on the result. On the CPU the second part (2000 steps)
# lifted test-split VQA by +0.033 / +0.028 at 0 / 20 dB and T2I pair recall by +0.064 (+0.060 on a fresh set) over
# the first part with its own head phase (results/ablation-listing*.json, ablation-continue-seed77-t2i.json).
CONTINUE_LR = "2e-4"


MLLM_MIX = "vqa=2,t2i=1,asr=1,cap=1"


def _mix(text: str) -> tuple[tuple[str, int], ...]:
    """"vqa=2,obj=1" -> its (task, weight) pairs, checked as `train mllm --task-weights` checks them (ValueError)."""
    import argparse

    from unitocom.mllm.cli import task_weights_arg
    try:
        return task_weights_arg(text)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--mllm-mix {text!r}: {e}") from None


def plan(scale: str = "cpu", mllm_steps: int | None = None, mllm_mix: str | None = None,
         mllm_object_slots: float | None = None, mllm_prefix_attention: bool = False,
         mllm_programs: bool = True) -> list[Step]:
    """Every committed checkpoint, in the order they depend on each other. mllm_steps: the two base MLLMs' steps
    other than the scale's (validated a tenth of the way, as at every scale); mllm_mix: their task weights other
    than MLLM_MIX (e.g. with obj, the object listing), which the fine-tunes built on them keep too;
    mllm_object_slots: the weight of the object slots' loss in both parts of the base MLLMs (`train mllm
    --object-slots`; None or 0: none, the recipe's); mllm_prefix_attention: both parts of the base MLLMs attend
    both ways over each prompt (`train mllm --prefix-attention`; the fine-tunes built on them inherit it);
    mllm_programs (the committed recipe; False: the letter's end-to-end MLLMs, as committed before issue 12's
    program MLLM): each base MLLM then answers VQA by a written program (`_program_steps`: the end-to-end MLLM
    becomes a stage, its image encoder is pretrained on the object slots, and a fine-tune with the prog task
    connects it); the resilient and spoken fine-tunes start from the end-to-end stage."""
    if mllm_object_slots is not None and not mllm_object_slots >= 0:
        raise ValueError(f"mllm_object_slots must be a weight >= 0, got {mllm_object_slots}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    if mllm_steps is not None and mllm_steps < 1:
        raise ValueError(f"mllm_steps must be at least 1, got {mllm_steps}")
    # (image steps, token-length fine-tune steps, audio steps, text steps, checker steps, MLLM steps, its head
    # phase's steps, batches)
    n = {"cpu": dict(image=3500, length=800, audio=1500, text_awgn=600, text=1500, checker=3000, mllm=10000, head=8000,
                     tb=64, mb=64),
         # untested on a GPU so far (no device lent yet): sized from CPU step times to fit about 10 minutes
         "gpu": dict(image=2000, length=500, audio=800, text_awgn=400, text=1000, checker=1000, mllm=2500, head=8000,
                     tb=256, mb=256),
         "smoke": dict(image=2, length=2, audio=2, text_awgn=2, text=2, checker=2, mllm=2, head=2, tb=8,
                       mb=8)}[scale]
    if mllm_steps is not None:
        n = {**n, "mllm": mllm_steps}
    lr_img = {"cpu": 2e-3, "gpu": 3e-3, "smoke": 2e-3}[scale]
    val = ["--val-every", str(max(2, n["image"] // 7))] if scale != "smoke" else ["--val-every", "1000"]
    steps: list[Step] = []
    for obj in ("sigma-genib", "genib", "vae"):
        steps.append(Step(f"image-{obj}-s32", _tok("image", obj, n["image"], 32, lr=lr_img, batch_size=n["tb"]) + val))
    for s in (16, 64, 128):
        steps.append(Step(f"image-sigma-genib-s{s}",
                          _tok("image", "sigma-genib", n["length"], s, lr=lr_img / 2, batch_size=n["tb"],
                               init="image-sigma-genib-s32", warmup=50) + val, needs=("image-sigma-genib-s32",)))
    for obj in ("sigma-genib", "genib", "vae"):
        # audio's distortion is summed over 64 x 64 log-mel values (tens of thousands of nats): the consistency
        # term needs a larger weight to hold cos(t_hat, t) above 0.99 there (0.81 with weight 1)
        steps.append(Step(f"audio-{obj}-s32", _tok("audio", obj, n["audio"], 32, batch_size=n["tb"], consistency=20)))
    for obj in ("sigma-genib", "genib", "vae"):
        # Two parts: the first links' 600 steps over AWGN (a stage), then 1500 more over the mixed channel at half
        # the preset's rate, with the consistency term (one token space: cos(t_hat, t) 0.99). A typed question
        # crosses one Rayleigh h: the second part reads more test questions exactly at every SNR (0.45 -> 0.55 at
        # 0 dB), though VQA does not move (results/text-links-*.json: the questions it now reads were nearly read
        # before; at their own SNRs of -7 to 0 dB both links still garble most, results/question-fades.json).
        # From scratch over the mixed channel, 3000 steps left
        # sigma-GenIB's link below the first one at 10 and 20 dB Rayleigh (checkpoints/README.md).
        steps.append(Step(f"text-{obj}-awgn", _tok("text", obj, n["text_awgn"], channel="awgn", batch_size=n["tb"]),
                          stage=True))
        steps.append(Step(f"text-{obj}", _tok("text", obj, n["text"], batch_size=n["tb"], lr="5e-4", warmup=50),
                          needs=(f"text-{obj}-awgn",), init=f"text-{obj}-awgn"))
    # The base station's language prior (issue 12): an n-gram of the training texts, its weight chosen on val texts
    # read through the sigma-GenIB text link at 0 dB Rayleigh (`train text-prior`, about a minute on one core)
    prior_count = {"cpu": 500, "gpu": 500, "smoke": 8}[scale]
    steps.append(Step("text-prior", ["train", "text-prior", "--count", str(prior_count)],
                      needs=("text-sigma-genib",)))
    steps.append(Step("scene-checker", ["train", "checker", "--steps", str(n["checker"])]))
    weights = _mix(mllm_mix or MLLM_MIX)  # a bad mix fails here, before any step has run
    base_mix = ",".join(f"{t}={w}" for t, w in weights)
    # the spoken fine-tune: its base's mix with spoken questions as many steps as typed ones, right after them
    spoken_mix = ",".join(f"{t}={w}" + (f",svqa={w}" if t == "vqa" else "") for t, w in weights if t != "svqa")
    mix = ["--task-weights", base_mix, "--loss-scale", "t2i=8"]
    slots = ["--object-slots", f"{mllm_object_slots:g}"] if mllm_object_slots else []
    slots += ["--prefix-attention"] if mllm_prefix_attention else []
    # train all runs one step at a time: on the CPU an MLLM step takes both cores (1.8x one core's steps/s)
    threads = ["--threads", "2"] if scale == "cpu" else []
    cont = max(2, n["mllm"] // 5)
    # the program MLLM's stages: image-encoder pretraining steps and batch, then the prog fine-tune's steps
    pg = {"cpu": dict(encoder=6000, eb=64, prog=1500), "gpu": dict(encoder=2000, eb=192, prog=500),
          "smoke": dict(encoder=2, eb=8, prog=2)}[scale]
    e2e = "-e2e" if mllm_programs else ""  # the end-to-end MLLM: the checkpoint, or the program MLLM's stage
    for obj in ("sigma-genib", "vae"):
        # Both schemes alike (MLLM_ARCH at MLLM_LR, then the continuation), so Fig. 2's pair keeps one recipe and
        # one budget. Then the diffusion head alone on the frozen model's hidden states (`train mllm-head`): the
        # same 8000 steps at every scale but smoke, since it trains a small MLP on cached rows (seconds on a GPU).
        steps.append(Step(f"mllm-{obj}-base", ["train", "mllm", "--objective", obj, "--steps", str(n["mllm"]),
                                               "--batch-size", str(n["mb"]), "--val-every",
                                               str(max(2, n["mllm"] // 10)), "--snr-db=-5:25"] + mix
                          + slots + ["--mllm-arch", MLLM_ARCH, "--lr", MLLM_LR, "--log-every", "50", "--no-install"]
                          + threads, needs=(f"image-{obj}-s32", f"audio-{obj}-s32"), speech=True, stage=True))
        steps.append(Step(f"mllm-{obj}{e2e}", ["train", "mllm", "--objective", obj, "--steps", str(cont),
                                                "--batch-size", str(n["mb"]), "--val-every", str(max(2, cont // 4)),
                                                "--snr-db=-5:25", "--head-steps", str(n["head"])] + mix + slots
                          + ["--lr", CONTINUE_LR, "--log-every", "50"] + ["--no-install"] * bool(e2e) + threads,
                          needs=(f"mllm-{obj}-base",), speech=True, init=f"mllm-{obj}-base", stage=bool(e2e)))
        if mllm_programs:
            steps += _program_steps(obj, pg, n, base_mix, threads)
    # Issue 16: the image, audio and text links' resilient companions (their F_alpha, T, R frozen) and the MLLM
    # fine-tuned with token dropout from mllm-sigma-genib.
    rz = {"cpu": dict(image=3000, audio=1500, text=3000, mllm=3000),
          "gpu": dict(image=2000, audio=1000, text=2000, mllm=1500),
          "smoke": dict(image=2, audio=2, text=2, mllm=2)}[scale]
    for m, base in (("image", "image-sigma-genib-s32"), ("audio", "audio-sigma-genib-s32"), ("text", "text-sigma-genib")):
        steps.append(Step(f"{base}-resilient", ["train", "resilient", "--base", base, "--steps", str(rz[m])],
                          needs=(base,)))
    # the fine-tunes keep their base's mix (spoken VQA joins it), so they do not drift from what it learnt
    # (with programs, from the end-to-end stage: their answers are the end-to-end MLLM's, as committed)
    after = dict(init="mllm-sigma-genib-e2e") if mllm_programs else {}
    steps.append(Step("mllm-sigma-genib-resilient", ["train", "mllm", "--resilient", "--steps", str(rz["mllm"]),
                                                     "--lr", FINETUNE_LR, "--val-every", str(max(2, rz["mllm"] // 3))]
                      + mix + threads, needs=(f"mllm-sigma-genib{e2e}",) * (not e2e), speech=True, **after))
    # Issue 17: VQA with a spoken question in the mix, fine-tuned from mllm-sigma-genib; it serves the VQA requests
    # whose question is audio. Its spoken questions are made in <data>/spoken_questions when missing (`unitocom data
    # spoken-questions`, about 2 min); the committed one ran 1500 steps on 2 shared cores (about 40 min).
    sp = {"cpu": 1500, "gpu": 800, "smoke": 2}[scale]
    steps.append(Step("mllm-sigma-genib-spoken", ["train", "mllm", "--spoken", "--steps", str(sp), "--lr", FINETUNE_LR,
                                                  "--val-every", str(max(2, sp // 3)), "--task-weights",
                                                  spoken_mix, "--loss-scale", "t2i=8"] + threads,
                      needs=(f"mllm-sigma-genib{e2e}",) * (not e2e) + ("audio-sigma-genib-s32",), speech=True,
                      **after))
    # Vanilla SemCom (baseline 2): task-specific, from pixels / BPE / log-mel, no tokenizer of ours. The committed
    # semcom-vqa was 5000 steps at lr 2e-3 then 4000 warm-started at 1e-3 (its manifest's history); the plan gives
    # it the same 9000 steps in one schedule.
    sem = {"cpu": dict(vqa=9000, t2i=3500, asr=4500), "gpu": dict(vqa=3000, t2i=1500, asr=2000),
           "smoke": dict(vqa=2, t2i=2, asr=2)}[scale]
    for task in ("vqa", "t2i", "asr"):
        steps.append(Step(f"semcom-{task}", ["train", "semcom", "--task", task, "--steps", str(sem[task]),
                                             "--val-every", str(max(2, sem[task] // 4))],
                          needs=("scene-checker",) if task == "t2i" else (), speech=task == "asr"))
    return steps


# The program MLLM (issue 12, `train all`'s recipe since 2026-12-07): VQA answered by a program the MLLM writes, run
# on the objects its slots read off the received scene (NS-VQA's split; `mllm.tasks.answer_by_program`). Through the
# services it lifted test-split VQA from 0.76 / 0.64 to 0.945 / 0.715 at 20 / 0 dB Rayleigh, every family over its
# floor (results/vqa-families-programs*.json); the reasoning is code, not learnt.
PROGRAM_MIX_WEIGHT = 4  # prog's weight beside the base mix (its programs are short: 14 BPE ids at most)
PROGRAM_LR = "2e-4"


def _program_steps(obj: str, pg: dict, n: dict, base_mix: str, threads: list[str]) -> list[Step]:
    """The end-to-end MLLM's image encoder pretrained on the object slots (a stage), then the MLLM fine-tuned
    with the prog task and the slots' loss, and its diffusion head's phase: the checkpoint mllm-<obj>."""
    mix = f"{base_mix},prog={PROGRAM_MIX_WEIGHT}" if "prog=" not in base_mix else base_mix
    encoder = Step(f"mllm-{obj}-encoder", ["train", "image-encoder", "--objective", obj, "--steps",
                                           str(pg["encoder"]), "--batch-size", str(pg["eb"]), "--snr-db=-5:25",
                                           "--eval-every", str(max(2, pg["encoder"] // 6))] + threads,
                   needs=(f"image-{obj}-s32",), stage=True, init=f"mllm-{obj}-e2e")
    # the committed fine-tune read the preset's speech (data/tiny): its ASR stayed the end-to-end MLLM's on the
    # test speech (results/ablation-programs-asr.json)
    prog = Step(f"mllm-{obj}", ["train", "mllm", "--objective", obj, "--steps", str(pg["prog"]), "--batch-size",
                                str(n["mb"]), "--val-every", str(max(2, pg["prog"] // 3)), "--snr-db=-5:25",
                                "--head-steps", str(n["head"]), "--task-weights", mix, "--loss-scale", "t2i=8",
                                "--object-slots", "1", "--lr", PROGRAM_LR, "--log-every", "50"] + threads,
                needs=(f"image-{obj}-s32", f"audio-{obj}-s32"), init=f"mllm-{obj}-encoder")
    return [encoder, prog]


# The commands that write an MLLM (a run dir's mllm.safetensors) and read an MLLM's training data, which a token
# cache can stand in for
MLLM_COMMANDS = (["train", "mllm"], ["train", "image-encoder"])


def _staged(name: str, args: list[str], out: Path) -> Path:
    """Where stage `name` leaves its weights: an MLLM's mllm.safetensors, a tokenizer's <name>.safetensors, in its
    run directory (not in <out>, so that `install` leaves it)."""
    return out / "runs" / name / ("mllm.safetensors" if args[:2] in MLLM_COMMANDS else f"{name}.safetensors")


def made(step: Step, out: Path) -> Path:
    """What a step leaves in <out>: its checkpoint, or a stage's weights in its run directory."""
    return _staged(step.name, step.args, out) if step.stage else out / f"{step.name}.safetensors"


def _where(step: Step, out: Path) -> list[str]:
    """Flags that put a step's outputs in <out> (left out of the recorded command: they change no weight), and the
    stage it starts from (the recorded command names it)."""
    runs = out / "runs" / step.name
    tokenizer = step.args[:2] == ["train", "tokenizer"]
    if step.init:  # a second part starts from its stage, of its own kind
        init = ["--init", str(_staged(step.init, step.args, out))]
        if tokenizer:
            return init + ["--out", str(out / f"{step.name}.safetensors"), "--run-dir", str(runs), "--quiet"]
        return init + ["--run-dir", str(runs)]
    if tokenizer:
        return ["--out", str(made(step, out)), "--run-dir", str(runs), "--quiet"]
    if step.args[:2] in (["train", "checker"], ["train", "text-prior"]):  # beside the BPE and text link it reads
        return ["--out", str(out / f"{step.name}.safetensors")]
    if step.args[:2] in (["train", "semcom"], ["train", "resilient"]):
        return ["--out", str(out / f"{step.name}.safetensors"), "--run-dir", str(runs), "--quiet"]
    return ["--run-dir", str(runs)]


def run_all(out: str | Path, scale: str = "cpu", data: str | None = None, only: list[str] | None = None,
            device: str | None = None, dry_run: bool = False, log=print,
            speech_data: str | None = None, mllm_steps: int | None = None, workers: int = 0,
            mllm_mix: str | None = None, mllm_object_slots: float | None = None,
            mllm_prefix_attention: bool = False, mllm_programs: bool = True) -> list[str]:
    """Run the plan into `out`; returns the names trained this time. Raises RuntimeError on a failed step.
    data: the data set of every step (default: SCENE_DATA, and SPEECH_DATA for the steps that read speech);
    speech_data: that of the speech steps (default: `data` when given, else SPEECH_DATA). Each is made first when
    missing (the defaults with their recipe, another folder as the preset's). mllm_steps, mllm_mix, mllm_object_slots,
    mllm_prefix_attention, mllm_programs: `plan`'s; workers: the MLLM steps' batch-drawing processes (`train mllm
    --workers`)."""
    out = Path(out)
    speech_data = speech_data or data or SPEECH_DATA[0]
    data = data or SCENE_DATA[0]
    if scale == "gpu" and device is None:
        device = "cuda"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    bpe = out / "text-bpe.json"
    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "text-bpe.json"
    if not bpe.exists() and shipped.exists():  # the BPE is data, not weights: every text model shares it
        shutil.copyfile(shipped, bpe)
    by_name = {s.name: s for s in plan(scale, mllm_steps, mllm_mix, mllm_object_slots, mllm_prefix_attention,
                                       mllm_programs)}
    unknown = [n for n in only or [] if n not in by_name]
    if unknown:
        raise ValueError(f"unknown checkpoint(s) {', '.join(unknown)}; the plan has {', '.join(by_name)}")
    # --only runs in the order given (a long step can go first while its inputs are ready); else the plan's order.
    # A checkpoint named alone and not yet made brings the stages it warm-starts from (its first part; the program
    # MLLM's end-to-end stage and encoder), each skipped below when made.
    steps = list(by_name.values())
    if only:
        steps = []
        for n in only:
            chain, s = [], by_name[n]
            while s.init and s.init not in only and not made(s, out).exists() and by_name[s.init] not in steps:
                s = by_name[s.init]
                chain.insert(0, s)
            steps += chain + [by_name[n]]
    # a stage is wanted while a step that starts from it is not finished (a staged or installed folder holds the
    # checkpoint and not its stages: nothing to retrain)
    starts_from: dict[str, list[Step]] = {}
    for s in by_name.values():
        if s.init:
            starts_from.setdefault(s.init, []).append(s)

    def finished(s: Step) -> bool:
        if made(s, out).exists():
            return True
        return s.stage and all(finished(t) for t in starts_from.get(s.name, []))

    todo = [s for s in steps if not finished(s)]
    from unitocom.mllm.token_cache import is_cache
    uncached = [s.name for s in todo if s.args[:2] not in MLLM_COMMANDS and is_cache(speech_data if s.speech else data)]
    if uncached:
        raise ValueError(f"{', '.join(uncached)} read the data set itself; a token cache serves the `train mllm` "
                         "and `train image-encoder` steps alone (--only mllm-sigma-genib mllm-vae, say)")
    for folder, recipe in dict(((speech_data, SPEECH_DATA), (data, SCENE_DATA))).items():
        if not any((speech_data if s.speech else data) == folder for s in todo):
            continue
        if not (Path(folder) / "manifest.json").exists() and not is_cache(folder):
            extra = recipe[1] if folder == recipe[0] else []
            cmd = [sys.executable, "-m", "unitocom.cli", "data", "make", "--preset", "tiny", "--out", folder,
                   "--quiet", *extra]
            log("$ " + shlex.join(cmd))
            if not dry_run:
                subprocess.run(cmd, check=True)
    env = {**os.environ, "UNITOCOM_CHECKPOINTS": str(out.resolve())}
    done = []
    for i, step in enumerate(steps, 1):
        target = made(step, out)
        if finished(step):
            why = f"in {out}" if target.exists() else f"what starts from it is in {out}"
            log(f"[{i}/{len(steps)}] {step.name}: {why}, skipped")
            continue
        missing = [n for n in step.needs if not made(by_name[n], out).exists()]
        if missing and not dry_run:
            raise RuntimeError(f"{step.name} needs {', '.join(missing)} in {out} first")
        args = step.args + ["--data", speech_data if step.speech else data] + _where(step, out)
        if device and step.args[:2] in (["train", "tokenizer"], *MLLM_COMMANDS):
            args += ["--device", device]
        if workers and step.args[:2] == ["train", "mllm"]:
            args += ["--workers", str(workers)]
        cmd = [sys.executable, "-m", "unitocom.cli"] + args
        log(f"[{i}/{len(steps)}] {step.name}: unitocom {shlex.join(args)}")
        if dry_run:
            continue
        t0 = time.perf_counter()
        with open(out / "logs" / f"{step.name}.log", "a") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if rc != 0 or not target.exists():
            raise RuntimeError(f"{step.name} failed (exit {rc}); see {out / 'logs' / (step.name + '.log')}")
        log(f"    done in {(time.perf_counter() - t0) / 60:.1f} min")
        done.append(step.name)
    return done


def install(src: str | Path, dest: str | Path, names: list[str] | None = None, log=print) -> list[str]:
    """Copy checkpoints from a `train all` folder into `dest` (checkpoints/), merging their manifest entries
    (manifest.json for tokenizers, manifest-tasks.json for the MLLMs and the checker) into dest's."""
    import json
    src, dest = Path(src), Path(dest)
    copied = []
    for f in sorted(src.glob("*.safetensors")):
        if names and f.stem not in names:
            continue
        if (dest / f.name).exists() and os.path.samefile(f, dest / f.name):
            continue  # a link to the installed file (a staging folder may link what its plan leaves as it is)
        shutil.copyfile(f, dest / f.name)
        copied.append(f.stem)
        log(f"installed {dest / f.name}")
    m_src, m_dst = src / "manifest.json", dest / "manifest.json"
    if m_src.exists():
        mine = json.loads(m_dst.read_text()) if m_dst.exists() else {"format": "unitocom-checkpoints/1",
                                                                     "checkpoints": {}}
        for k, v in json.loads(m_src.read_text())["checkpoints"].items():
            if k in copied:
                mine["checkpoints"][k] = v
        mine["checkpoints"] = dict(sorted(mine["checkpoints"].items()))
        m_dst.write_text(json.dumps(mine, indent=2) + "\n")
    t_src, t_dst = src / "manifest-tasks.json", dest / "manifest-tasks.json"
    if t_src.exists():
        mine = json.loads(t_dst.read_text()) if t_dst.exists() else {}
        mine.update({k: v for k, v in json.loads(t_src.read_text()).items() if k in copied})
        t_dst.write_text(json.dumps(mine, indent=2, sort_keys=True) + "\n")
    return copied
