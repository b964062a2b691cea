"""`unitocom train all`: the plan covers every committed checkpoint, in an order that respects what each needs,
and a smoke run trains a chain of them for real into one folder, resumes by skipping, and installs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import need
from unitocom.train import retrain

COMMITTED = Path(__file__).resolve().parents[1] / "checkpoints"


def _end_to_end(*args, **kw):
    """`train all --mllm-end-to-end`: the plan's parts before the program MLLM's stages, which these tests read."""
    return retrain.run_all(*args, mllm_programs=False, **kw)


def test_plan_covers_every_committed_checkpoint_in_dependency_order():
    for scale in retrain.SCALES:
        names = [s.name for s in retrain.plan(scale)]
        committed = {p.stem for p in COMMITTED.glob("*.safetensors")}
        checkpoints = {s.name for s in retrain.plan(scale) if not s.stage}
        assert checkpoints == committed, f"{scale}: {checkpoints ^ committed}"
        assert names.count("mllm-sigma-genib-base") == 1 and names.count("mllm-vae-base") == 1
        for i, s in enumerate(retrain.plan(scale)):
            assert all(n in names[:i] for n in s.needs), f"{s.name} runs before what it needs"
    with pytest.raises(ValueError, match="scale"):
        retrain.plan("tpu")


def test_every_step_is_a_command_the_cli_accepts():
    from unitocom.cli import parser
    p = parser()
    for s in retrain.plan("cpu"):
        args = p.parse_args(s.args + ["--data", "d"] + retrain._where(s, Path("o")))
        assert callable(args.func)


def test_smoke_run_trains_a_chain_into_one_folder_and_installs(tmp_path):
    from unitocom.data.make import make_dataset
    from unitocom.data.speech import tools_missing
    need(not tools_missing(), "espeak-ng/sox missing: the audio tokenizer and the MLLM's ASR need speech")
    data = tmp_path / "data"
    make_dataset(data, "tiny", seed=5, scenes=24, clips=6, speech=True, workers=1, progress=False, log=lambda s: None)
    out = tmp_path / "out"
    chain = ["text-sigma-genib", "text-prior", "image-sigma-genib-s32", "image-sigma-genib-s16", "audio-sigma-genib-s32",
             "mllm-sigma-genib", "image-sigma-genib-s32-resilient", "mllm-sigma-genib-resilient",
             "mllm-sigma-genib-spoken"]
    lines: list[str] = []
    done = retrain.run_all(out, "smoke", str(data), only=chain, log=lines.append)
    # the first parts came along: the text link's (over AWGN) and the base MLLM's, and the program MLLM's stages
    stages = ["mllm-sigma-genib-base", "mllm-sigma-genib-e2e", "mllm-sigma-genib-encoder"]
    assert done == ["text-sigma-genib-awgn"] + chain[:5] + stages + chain[5:]
    first, e2e, enc = (out / "runs" / s / "mllm.safetensors" for s in stages)
    for s, f in zip(stages, (first, e2e, enc)):
        assert f.exists() and not (out / f"{s}.safetensors").exists(), s  # a stage, not a checkpoint
    text_first = out / "runs" / "text-sigma-genib-awgn" / "text-sigma-genib-awgn.safetensors"
    assert text_first.exists() and not (out / "text-sigma-genib-awgn.safetensors").exists()
    for name in chain:
        assert (out / f"{name}.safetensors").exists(), name
        assert (out / "logs" / f"{name}.log").exists()
    tok = json.loads((out / "manifest.json").read_text())["checkpoints"]
    assert tok["image-sigma-genib-s16"]["train"]["init"] == "image-sigma-genib-s32"
    # the text link's second part, over the mixed channel, started from its first, which installs nothing
    assert tok["text-sigma-genib"]["train"]["init"] == str(text_first) and "text-sigma-genib-awgn" not in tok
    assert "--channel mixed" in tok["text-sigma-genib"]["command"]
    assert "--device" not in tok["image-sigma-genib-s32"]["command"]
    tasks = json.loads((out / "manifest-tasks.json").read_text())
    # the prior counted this folder's data and chose its weight through this folder's text link
    assert tasks["text-prior"]["data_dir"] == str(data) and tasks["text-prior"]["validation"]["count"] == 8
    # the MLLM read the tokenizers trained in this folder, not the committed ones
    assert tasks["mllm-sigma-genib"]["links"]["image"] == "image-sigma-genib-s32.safetensors"
    # the program MLLM started from its encoder stage, itself from the end-to-end stage, from the first part; the
    # stages installed nothing
    assert tasks["mllm-sigma-genib"]["train_config"]["init"] == str(enc)
    assert "--init " + str(enc) in tasks["mllm-sigma-genib"]["command"] and not any("-base" in k or "-e2e" in k
                                                                                    for k in tasks)
    assert tasks["mllm-sigma-genib"]["head"]["head_steps"] == 2 and "prog=4" in tasks["mllm-sigma-genib"]["command"]
    # the resilient companions started from this folder's link and the end-to-end MLLM
    assert tok["image-sigma-genib-s32-resilient"]["base_sha256"] == tok["image-sigma-genib-s32"]["sha256"]
    assert tasks["mllm-sigma-genib-resilient"]["train_config"]["init"] == str(e2e)
    # the spoken-VQA MLLM: warm started from the end-to-end MLLM, on spoken questions made in the data folder
    assert tasks["mllm-sigma-genib-spoken"]["train_config"]["init"] == str(e2e)
    assert ["svqa", 2] in tasks["mllm-sigma-genib-spoken"]["train_config"]["task_weights"]
    assert (data / "spoken_questions" / "manifest.json").is_file()
    again: list[str] = []
    assert retrain.run_all(out, "smoke", str(data), only=chain, log=again.append) == []
    assert all("skipped" in ln for ln in again)
    dest = tmp_path / "installed"
    dest.mkdir()
    (dest / "manifest.json").write_text(json.dumps({"format": "unitocom-checkpoints/1",
                                                    "checkpoints": {"keep-me": {"x": 1}}}))
    copied = retrain.install(out, dest, log=lambda s: None)
    assert sorted(copied) == sorted(chain)
    merged = json.loads((dest / "manifest.json").read_text())["checkpoints"]
    assert "keep-me" in merged and "image-sigma-genib-s32" in merged
    assert "mllm-sigma-genib" in json.loads((dest / "manifest-tasks.json").read_text())
    # a staging folder whose unchanged checkpoints are links to the installed ones (checkpoints/next): only
    # what is new is copied, and a link is not copied onto its own target
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "image-sigma-genib-s32.safetensors").symlink_to(dest / "image-sigma-genib-s32.safetensors")
    (staged / "mllm-sigma-genib.safetensors").write_bytes(b"new")
    assert retrain.install(staged, dest, log=lambda s: None) == ["mllm-sigma-genib"]
    assert (dest / "mllm-sigma-genib.safetensors").read_bytes() == b"new"


def test_a_step_whose_inputs_are_missing_says_so(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")  # the data counts as made: the check that fails is the inputs'
    with pytest.raises(RuntimeError, match="needs image-sigma-genib-s32"):
        retrain.run_all(tmp_path / "out", "smoke", str(data), only=["image-sigma-genib-s16"], log=lambda s: None)


def test_only_runs_in_the_given_order_and_refuses_unknown_names(tmp_path):
    lines: list[str] = []
    retrain.run_all(tmp_path, "smoke", str(tmp_path), only=["mllm-vae", "image-vae-s32"], dry_run=True,
                    log=lines.append)
    assert "mllm-vae" in lines[-2] and "image-vae-s32" in lines[-1]
    with pytest.raises(ValueError, match="unknown checkpoint"):
        retrain.run_all(tmp_path, "smoke", str(tmp_path), only=["image-foo"], dry_run=True, log=lambda s: None)


def test_the_plan_is_the_next_recipe_at_every_scale_on_its_own_speech(tmp_path, monkeypatch):
    """The MLLMs caption too and scale T2I's loss by 8 (issue 12's studies), at every scale, and the steps that
    read speech (the MLLMs, SemCom's ASR, so the baseline hears what the MLLM hears) train on a data set with 10x
    the training speech, made first when missing; the tokenizers keep the preset's data."""
    for scale in retrain.SCALES:
        steps = {s.name: s for s in retrain.plan(scale, mllm_programs=False)}
        for name in ("mllm-sigma-genib", "mllm-vae", "mllm-sigma-genib-resilient"):  # both schemes: a fair pair
            assert "vqa=2,t2i=1,asr=1,cap=1" in " ".join(steps[name].args), (scale, name)
            assert "--loss-scale t2i=8" in " ".join(steps[name].args), (scale, name)
        assert "vqa=2,svqa=2,t2i=1,asr=1,cap=1" in " ".join(steps["mllm-sigma-genib-spoken"].args)
        for name in ("mllm-sigma-genib", "mllm-vae"):  # twice the preset's width at its probed rate, both alike
            a = " ".join(steps[f"{name}-base"].args)
            assert "--mllm-arch hidden=256,heads=8,intermediate=688" in a and "--lr 5e-4" in a, (scale, name)
            assert "vqa=2,t2i=1,asr=1,cap=1" in a and "--no-install" in a and "--head-steps" not in a
            # then a fifth as many steps more at 2e-4 from the first part's weights, and the head's phase
            b, c = steps[f"{name}-base"].args, steps[name].args
            assert int(c[c.index("--steps") + 1]) == max(2, int(b[b.index("--steps") + 1]) // 5), (scale, name)
            assert "--lr 2e-4" in " ".join(c) and "--mllm-arch" not in c and steps[name].init == f"{name}-base"
            assert "--head-steps" in c and steps[name].needs == (f"{name}-base",)
        for name in ("mllm-sigma-genib-resilient", "mllm-sigma-genib-spoken"):  # the base's width, half its rate
            a = " ".join(steps[name].args)
            assert "--mllm-arch" not in a and "--lr 2.5e-4" in a, (scale, name)
        threads = {n for n, s in steps.items() if "--threads" in s.args}
        mllms = {"mllm-sigma-genib", "mllm-vae", "mllm-sigma-genib-base", "mllm-vae-base",
                 "mllm-sigma-genib-resilient", "mllm-sigma-genib-spoken"}
        assert threads == (mllms if scale == "cpu" else set()), scale
        speech = {n for n, s in steps.items() if s.speech}
        assert speech == mllms | {"semcom-asr"}, scale
    monkeypatch.chdir(tmp_path)  # the default data folders are relative: none there yet
    lines: list[str] = []
    _end_to_end(tmp_path / "out", "gpu", None, only=["mllm-vae"], dry_run=True, log=lines.append)
    assert len(lines) == 3  # the speech set alone is made: no step here reads data/tiny
    assert "--train-clips 12000 --train-speakers 96" in lines[0] and "data/tiny-speech96" in lines[0]
    assert "mllm-vae-base:" in lines[1] and "--no-install" in lines[1]  # named alone, it brings its first part
    first = tmp_path / "out" / "runs" / "mllm-vae-base" / "mllm.safetensors"
    assert f"--init {first} " in lines[2]
    assert "--data data/tiny-speech96" in lines[-1] and "--device cuda" in lines[-1]
    made = tmp_path / "made" / "runs" / "mllm-vae-base" / "mllm.safetensors"
    made.parent.mkdir(parents=True)
    made.write_bytes(b"")  # made: skipped, and the second part's input is there
    lines = []
    _end_to_end(tmp_path / "made", "gpu", None, only=["mllm-vae"], dry_run=True, log=lines.append)
    assert "mllm-vae-base: in" in lines[1] and "skipped" in lines[1] and "mllm-vae:" in lines[2]
    (tmp_path / "made" / "mllm-vae.safetensors").write_bytes(b"")  # made: its first part is not asked for
    made.unlink()
    lines = []
    _end_to_end(tmp_path / "made", "gpu", None, only=["mllm-vae"], dry_run=True, log=lines.append)
    assert len(lines) == 1 and "[1/1] mllm-vae: in" in lines[0] and "skipped" in lines[0]  # and no data to make
    lines = []  # the whole plan over that folder: the first part of what is made is not retrained either
    _end_to_end(tmp_path / "made", "gpu", None, dry_run=True, log=lines.append)
    assert any("mllm-vae-base: what starts from it is in" in ln and "skipped" in ln for ln in lines)
    assert any("mllm-sigma-genib-base: unitocom train mllm" in ln for ln in lines)  # its MLLM is not made
    lines = []
    _end_to_end(tmp_path / "out", "cpu", None, only=["image-vae-s32", "semcom-asr"], dry_run=True,
                    log=lines.append)
    made = [ln for ln in lines if "data make" in ln]
    assert len(made) == 2 and any("--out data/tiny --quiet" in ln and "--train-clips" not in ln for ln in made)
    assert "--data data/tiny " in lines[-2] and "--data data/tiny-speech96 " in lines[-1]
    assert "--device" not in lines[-1]
    lines = []  # one folder given: every step reads it, made once as the preset
    _end_to_end(tmp_path / "out", "cpu", "d", only=["image-vae-s32", "mllm-vae"], dry_run=True,
                    log=lines.append)
    assert sum("data make" in ln for ln in lines) == 1 and "--train-clips" not in lines[0]
    assert all("--data d " in ln for ln in lines[1:])


def test_mllm_steps_and_workers_reach_the_base_mllms_alone_and_a_token_cache_serves_them_alone(tmp_path):
    """`train all --mllm-steps N --workers W` (a GPU's measured rate, its batch-drawing processes): the two base
    MLLMs take N steps validated every N/10 and draw with W workers; the fine-tunes keep theirs. A token cache given
    as the speech data serves `train mllm` steps and is never 'made'; other steps refuse it."""
    steps = {s.name: s for s in retrain.plan("gpu", mllm_steps=3000, mllm_programs=False)}
    for name in ("mllm-sigma-genib", "mllm-vae"):
        a = " ".join(steps[f"{name}-base"].args)
        assert "--steps 3000 " in a and "--val-every 300 " in a
        assert "--steps 600 " in " ".join(steps[name].args)  # the second part: a fifth of the first
    assert "--steps 1500 " in " ".join(steps["mllm-sigma-genib-resilient"].args)
    with pytest.raises(ValueError, match="mllm_steps"):
        retrain.plan("gpu", mllm_steps=0, mllm_programs=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "token-cache.json").write_text("{}")
    lines: list[str] = []
    _end_to_end(tmp_path / "out", "gpu", None, only=["mllm-vae", "mllm-sigma-genib-resilient"], dry_run=True,
                    log=lines.append, speech_data=str(cache), mllm_steps=3000, workers=8)
    assert not any("data make" in ln for ln in lines)
    assert f"--data {cache} " in lines[0] and "--steps 3000 " in lines[0] and lines[0].endswith("--workers 8")
    assert f"--data {cache} " in lines[1] and "--steps 600 " in lines[1] and lines[1].endswith("--workers 8")
    assert "--steps 1500 " in lines[2] and lines[2].endswith("--workers 8")  # a resilient fine-tune reads it too
    with pytest.raises(ValueError, match="semcom-asr read the data set itself"):
        _end_to_end(tmp_path / "out", "gpu", None, only=["semcom-asr"], dry_run=True, log=lambda s: None,
                        speech_data=str(cache))


def test_an_mllm_mix_reaches_the_base_mllms_and_their_fine_tunes_and_a_bad_one_fails_first(tmp_path):
    """`train all --mllm-mix` (issue 12's object listing at scale): the base MLLMs train that mix, the resilient
    fine-tune keeps it and the spoken one adds its spoken questions after the typed ones; the default is the
    committed recipe's, and a mix `train mllm` would refuse fails before anything runs."""
    def weights(steps, name):
        a = steps[name].args
        return a[a.index("--task-weights") + 1]
    default = {s.name: s for s in retrain.plan("cpu", mllm_programs=False)}
    assert weights(default, "mllm-sigma-genib") == retrain.MLLM_MIX == "vqa=2,t2i=1,asr=1,cap=1"
    assert weights(default, "mllm-sigma-genib-spoken") == "vqa=2,svqa=2,t2i=1,asr=1,cap=1"
    mixed = {s.name: s for s in retrain.plan("gpu", mllm_mix="vqa=3,t2i=1,asr=1,cap=1,obj=2", mllm_programs=False)}
    for name in ("mllm-sigma-genib-base", "mllm-sigma-genib", "mllm-vae-base", "mllm-vae",
                 "mllm-sigma-genib-resilient"):
        assert weights(mixed, name) == "vqa=3,t2i=1,asr=1,cap=1,obj=2"
    assert weights(mixed, "mllm-sigma-genib-spoken") == "vqa=3,svqa=3,t2i=1,asr=1,cap=1,obj=2"
    assert "--task-weights" not in mixed["semcom-vqa"].args  # SemCom is no MLLM
    with pytest.raises(ValueError, match="--mllm-mix 'vqa=2,objects=1'"):
        _end_to_end(tmp_path / "out", "gpu", None, only=["mllm-vae"], dry_run=True, log=lambda s: None,
                        mllm_mix="vqa=2,objects=1")


def test_object_slots_reach_both_parts_of_the_base_mllms_alone_and_train_from_a_token_cache(tmp_path):
    """`train all --mllm-object-slots W` (issue 12): both parts of each base MLLM train with `--object-slots W`, the
    fine-tunes and SemCom do not; the default recipe has none; a negative weight fails before anything runs. The
    token cache keeps the slots' targets, so the GPU script's cached run can use them."""
    default = retrain.plan("cpu", mllm_programs=False)
    assert not any("--object-slots" in s.args for s in default)
    slotted = {s.name: s for s in retrain.plan("gpu", mllm_object_slots=0.5, mllm_programs=False)}
    for name, s in slotted.items():
        has = name in ("mllm-sigma-genib-base", "mllm-sigma-genib", "mllm-vae-base", "mllm-vae")
        assert ("--object-slots" in s.args) == has, name
        if has:
            assert s.args[s.args.index("--object-slots") + 1] == "0.5"
    with pytest.raises(ValueError, match="mllm_object_slots"):
        retrain.plan("gpu", mllm_object_slots=-1.0, mllm_programs=False)
    from unitocom.cli import parser
    p = parser()
    assert p.parse_args(["train", "all", "--mllm-object-slots", "0.5"]).mllm_object_slots == 0.5
    for s in slotted.values():  # every step, slots and all, is a command the CLI accepts
        assert callable(p.parse_args(s.args + ["--data", "d"] + retrain._where(s, Path("o"))).func)


def test_prefix_attention_reaches_both_parts_of_the_base_mllms_and_the_fine_tunes_inherit_it():
    """`train all --mllm-prefix-attention` (issue 12): both parts of each base MLLM train as a prefix LM; the
    resilient and spoken fine-tunes take the mask from the MLLM they start from (their --init), so their commands
    need no flag; the default recipe is causal."""
    assert not any("--prefix-attention" in s.args for s in retrain.plan("cpu", mllm_programs=False))
    steps = {s.name: s for s in retrain.plan("gpu", mllm_prefix_attention=True, mllm_programs=False)}
    bases = ("mllm-sigma-genib-base", "mllm-sigma-genib", "mllm-vae-base", "mllm-vae")
    assert [n for n, s in steps.items() if "--prefix-attention" in s.args] == list(bases)
    assert all(n in bases or not n.startswith("mllm") or s.init or "--init" in s.args or "--resilient" in s.args
               or "--spoken" in s.args for n, s in steps.items())
    from unitocom.cli import parser
    p = parser()
    assert p.parse_args(["train", "all", "--mllm-prefix-attention"]).mllm_prefix_attention
    assert not p.parse_args(["train", "all"]).mllm_prefix_attention
    for s in steps.values():
        assert callable(p.parse_args(s.args + ["--data", "d"] + retrain._where(s, Path("o"))).func)


def test_the_program_mllms_stages_chain_from_the_end_to_end_mllm_and_the_fine_tunes_keep_it():
    """`train all` (issue 12's program MLLM, the committed recipe): each base MLLM's end-to-end model becomes a stage, its image encoder
    is pretrained on the object slots (a stage), and the prog fine-tune with its head phase is the checkpoint; the
    resilient and spoken fine-tunes start from the end-to-end stage; the committed set is covered either way."""
    from unitocom.cli import parser
    p = parser()
    committed = {f.stem for f in COMMITTED.glob("*.safetensors")}
    for scale in retrain.SCALES:
        steps = {s.name: s for s in retrain.plan(scale, mllm_programs=True)}
        names = list(steps)
        assert {n for n, s in steps.items() if not s.stage} == committed
        for obj in ("sigma-genib", "vae"):
            e2e, enc, prog = steps[f"mllm-{obj}-e2e"], steps[f"mllm-{obj}-encoder"], steps[f"mllm-{obj}"]
            assert e2e.stage and enc.stage and not prog.stage and "--no-install" in e2e.args  # a stage installs none
            assert (e2e.init, enc.init, prog.init) == (f"mllm-{obj}-base", f"mllm-{obj}-e2e", f"mllm-{obj}-encoder")
            assert names.index(e2e.name) < names.index(enc.name) < names.index(prog.name)
            assert enc.args[:2] == ["train", "image-encoder"] and "--objective" in enc.args
            a = " ".join(prog.args)
            assert "vqa=2,t2i=1,asr=1,cap=1,prog=4" in a and "--object-slots 1" in a and "--head-steps" in a
            assert "--lr 2e-4" in a and "--mllm-arch" not in a
        for name in ("mllm-sigma-genib-resilient", "mllm-sigma-genib-spoken"):
            assert steps[name].init == "mllm-sigma-genib-e2e" and "mllm-sigma-genib" not in steps[name].needs
        for s in steps.values():
            assert all(n in names[:names.index(s.name)] for n in s.needs), s.name
            assert callable(p.parse_args(s.args + ["--data", "d"] + retrain._where(s, Path("o"))).func)
    assert "mllm-sigma-genib-e2e" in {s.name for s in retrain.plan("cpu")}  # the committed recipe
    assert "mllm-sigma-genib-e2e" not in {s.name for s in retrain.plan("cpu", mllm_programs=False)}
    assert p.parse_args(["train", "all"]).mllm_programs
    assert not p.parse_args(["train", "all", "--mllm-end-to-end"]).mllm_programs


def test_a_program_mllm_named_alone_brings_its_whole_chain_and_a_made_one_none(tmp_path):
    lines: list[str] = []
    retrain.run_all(tmp_path / "out", "gpu", "d", only=["mllm-vae"], dry_run=True, log=lines.append,
                    mllm_programs=True)
    steps = [ln.split(":")[0].split("] ")[1] for ln in lines if ln.startswith("[")]
    assert steps == ["mllm-vae-base", "mllm-vae-e2e", "mllm-vae-encoder", "mllm-vae"]
    runs = tmp_path / "out" / "runs"
    assert f"--init {runs / 'mllm-vae-e2e' / 'mllm.safetensors'} " in lines[-2] and "--device cuda" in lines[-2]
    assert f"--init {runs / 'mllm-vae-encoder' / 'mllm.safetensors'} " in lines[-1]
    (tmp_path / "out" / "mllm-vae.safetensors").write_bytes(b"")  # made: none of its stages is wanted
    lines = []
    retrain.run_all(tmp_path / "out", "gpu", "d", dry_run=True, log=lines.append, mllm_programs=True)
    for stage in ("mllm-vae-base", "mllm-vae-e2e", "mllm-vae-encoder"):
        assert any(f"{stage}: what starts from it is in" in ln for ln in lines), stage
    # the sigma-GenIB side is not made: its stages run, and the fine-tunes wait for its end-to-end stage
    assert any("mllm-sigma-genib-e2e: unitocom train mllm" in ln for ln in lines)


@pytest.mark.skipif(not (COMMITTED / "mllm-sigma-genib.safetensors").exists(), reason="needs the installed set")
def test_a_smoke_program_mllm_trains_from_an_end_to_end_stage(tmp_path, heldout_data):
    """The two program steps for real, at smoke scale, from the installed MLLM, its encoder taken out, standing in as
    the end-to-end stage: the encoder stage is made in its run dir, and the checkpoint answers by program with its
    head phase done."""
    import shutil

    from tests.conftest import without_encoder
    from unitocom.mllm.checkpoint import load_mllm
    out = tmp_path / "out"
    stage = out / "runs" / "mllm-sigma-genib-e2e" / "mllm.safetensors"
    stage.parent.mkdir(parents=True)
    without_encoder(COMMITTED / "mllm-sigma-genib.safetensors", stage)  # the installed one reads by program
    for f in ("image-sigma-genib-s32", "audio-sigma-genib-s32", "text-sigma-genib"):
        shutil.copyfile(COMMITTED / f"{f}.safetensors", out / f"{f}.safetensors")
    done = retrain.run_all(out, "smoke", str(heldout_data), only=["mllm-sigma-genib"], log=lambda s: None,
                           mllm_programs=True)
    assert done == ["mllm-sigma-genib-encoder", "mllm-sigma-genib"]
    assert (out / "runs" / "mllm-sigma-genib-encoder" / "mllm.safetensors").exists()
    model, _, meta = load_mllm(str(out / "mllm-sigma-genib.safetensors"))
    assert model.cfg.answer_by_program and model.cfg.image_encoder == 2 and model.cfg.object_slots
    assert meta["head"]["head_steps"] == 2
    assert meta["train_config"]["init"] == str(out / "runs" / "mllm-sigma-genib-encoder" / "mllm.safetensors")
