"""Sequence packing and a short real training run of the multitask MLLM on a small generated data set."""
from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import CharBpe
from unitocom import config
from unitocom.config import TrainCompute
from unitocom.mllm import objects, sequences as seq
from unitocom.mllm.model import MLLM, MLLMConfig

torch.set_num_threads(1)


def _model(vocab: int) -> MLLM:
    torch.manual_seed(0)
    return MLLM(MLLMConfig(vocab=vocab, hidden=32, layers=1, heads=2, intermediate=64, max_positions=256,
                           token_dim=4, head_width=32, head_depth=1))


def test_targets_sit_one_position_before_what_they_predict():
    v = seq.Vocab(CharBpe())
    m = _model(len(v))
    img = torch.randn(5, 4)
    vqa = seq.vqa(v, img, "q?", "ab")
    t2i = seq.t2i(v, "cap", img)
    p = seq.pack(m, [vqa, t2i])
    # VQA: <bos><vqa><boi> img*5 <eoi> q ? <sep> | a b <eos>
    sep = 3 + 5 + 1 + 2
    assert p.lm_targets[0, sep].item() == ord("a")
    assert p.lm_targets[0, sep + 1].item() == ord("b")
    assert p.lm_targets[0, sep + 2].item() == v["<eos>"]
    assert (p.lm_targets[0, :sep] == seq.IGNORE).all() and (p.lm_targets[0, sep + 3:] == seq.IGNORE).all()
    # T2I: <bos><t2i> c a p <boi> | img*5 ; the hidden state at <boi> conditions the first image token
    boi = 2 + 3
    assert p.diff_index.tolist() == [[1, boi + i] for i in range(5)]
    assert torch.equal(p.diff_targets, img)
    assert p.mask[0].sum() == sep + 1 + 3 and p.mask[1].sum() == boi + 1 + 5
    assert torch.allclose(p.embeds[0, 3:8], m.embed_tokens(img[None], "image")[0])


def test_each_row_s_prompt_ends_where_its_first_target_begins():
    v = seq.Vocab(CharBpe())
    img = torch.randn(5, 4)
    p = seq.pack(_model(len(v)), [seq.vqa(v, img, "q?", "ab"), seq.t2i(v, "cap", img), seq.vqa(v, img, "q?", None)])
    # VQA: <bos><vqa><boi> img*5 <eoi> q ? <sep> (12) | answer; T2I: <bos><t2i> c a p <boi> (6) | img*5; no target:
    # the whole row (12) is prompt
    assert p.prefix.tolist() == [12, 6, 12]
    assert p.lm_targets[0, 11].item() == ord("a") and p.diff_index[0].tolist() == [1, 5]


def test_a_prefix_lm_answers_as_it_was_trained_to_read_the_prompt():
    """What `loss_of` reads (a packed row with its answer, prompt both ways) is what generation reads: the logits
    at <sep> and at each answer position match those of generation's steps, cached and not."""
    v = seq.Vocab(CharBpe())
    torch.manual_seed(0)
    m = MLLM(MLLMConfig(vocab=len(v), hidden=32, layers=2, heads=2, intermediate=64, max_positions=256,
                        token_dim=4, head_width=32, head_depth=1, prefix_attention=True)).eval()
    img = torch.randn(5, 4)
    p = seq.pack(m, [seq.vqa(v, img, "q?", "ab")])
    with torch.no_grad():
        h, _ = m.hidden(p.embeds, attention_mask=p.mask, prefix=p.prefix)
        causal, _ = m.hidden(p.embeds, attention_mask=p.mask)
    assert not torch.allclose(h[0, :12], causal[0, :12], atol=1e-4)  # the prompt reads both ways
    teacher = m.logits(h[0, 11:14]).argmax(-1).tolist()  # what training scores at <sep>, a, b
    prompt = seq.prefix(m, seq.vqa(v, img, "q?", None))
    for use_cache in (True, False):
        out = m.generate_text(prompt, 3, eos_id=10**6, use_cache=use_cache)[0]
        assert out[0] == teacher[0]
    # teacher forcing the generated tokens: the same three picks, one step at a time
    forced = seq.pack(m, [seq.vqa(v, img, "q?", None) + [seq.Segment("text", out[:2], target=True)]])
    with torch.no_grad():
        hf, _ = m.hidden(forced.embeds, prefix=forced.prefix)
    assert m.logits(hf[0, 11:14]).argmax(-1).tolist() == out


def test_question_first_puts_the_question_before_the_image_and_the_answer_after_sep():
    v = seq.Vocab(CharBpe())
    img = torch.randn(5, 4)
    segs = seq.vqa(v, img, "q?", "ab", question_first=True)
    assert [s.kind for s in segs] == ["text", "image", "text", "text"]
    assert segs[0].value == [v["<bos>"], v["<vqa>"], ord("q"), ord("?"), v["<boi>"]]
    assert segs[2].value == [v["<eoi>"], v["<sep>"]] and segs[3].target
    p = seq.pack(_model(len(v)), [segs])
    sep = 5 + 5 + 1  # <bos><vqa>q?<boi> img*5 <eoi> | <sep> predicts the answer's first token
    assert p.lm_targets[0, sep].item() == ord("a") and (p.lm_targets[0, :sep] == seq.IGNORE).all()


def test_vocab_specials_follow_the_bpe_ids_and_decode_drops_them():
    v = seq.Vocab(CharBpe())
    assert len(v) == 128 + len(seq.SPECIALS) and v["<bos>"] == 128
    assert v.decode([ord("h"), ord("i"), v["<eos>"], 0]) == "hi"
    assert seq.normalize("  Two  RED\tcubes ") == "two red cubes"


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """A small generated data set, an untrained image/audio link pair and a BPE: the MLLM's inputs."""
    from unitocom.data.make import make_dataset
    from unitocom.models import token_link
    from unitocom.models.text_tokenizer import train_bpe
    from unitocom.models.token_link import LinkSpec, TokenLink
    from unitocom.train.data import text_corpus
    d = tmp_path_factory.mktemp("mllm")
    make_dataset(d / "data", "tiny", seed=0, scenes=80, clips=16, progress=False, workers=1)
    cfg = config.load("tiny")
    torch.manual_seed(0)
    train_bpe(text_corpus(d / "data", "train"), 300).save(str(d / "bpe.json"))
    token_link.save(TokenLink(LinkSpec.from_config(cfg, "image", "sigma-genib")), d / "img.safetensors")
    token_link.save(TokenLink(LinkSpec.from_config(cfg, "audio", "sigma-genib")), d / "aud.safetensors")
    return d, {"image": str(d / "img.safetensors"), "audio": str(d / "aud.safetensors"), "bpe": str(d / "bpe.json")}


def test_training_lowers_the_losses_and_saves_a_loadable_checkpoint(small_world):
    from unitocom.mllm import tasks
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    tc = TrainConfig(steps=90, batch=16, lr=3e-3, warmup=10, val_every=45, val_n=8)
    meta = train(str(d / "data"), str(d / "out"), links=links, tc=tc, resume=False)
    rows = [json.loads(line) for line in (d / "out/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [45, 90]
    assert rows[-1]["vqa_lm"] < 0.7 * 6.9  # well below log(vocab): it learned the answer format and priors
    assert {"val_vqa_acc_20db", "val_asr_wer_20db", "val_t2i_diffusion", "val_t2i_caption_gain"} <= set(meta["validation"])
    v = meta["validation"]
    assert v["val_t2i_caption_gain"] == pytest.approx(v["val_t2i_diffusion_other_caption"]
                                                      - v["val_t2i_diffusion_own_caption"])
    model, std, saved = load_mllm(d / "out/mllm.safetensors")
    assert saved["links"]["image"] == "img.safetensors" and std.mean.shape == (16,)
    assert saved["data_checksum"] and saved["parameters"] == sum(p.numel() for p in model.parameters())
    _, _, _, vocab, _ = load_links(config.load("tiny"), links)
    answers = tasks.answer(model, vocab, [torch.randn(32, 16)], ["how many red things are there?"])
    assert isinstance(answers[0], str)
    tokens = tasks.imagine(model, vocab, "a red square", count=4, steps=5, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (4, 16) and torch.isfinite(tokens).all()
    # the caption gain is a paired difference: with one caption for every image it is exactly 0
    from types import SimpleNamespace

    from unitocom.mllm.train import caption_gain
    same = SimpleNamespace(captions=[(i, "a red square") for i in range(6)], vocab=vocab, image_std=std,
                           coco_mu=torch.randn(6, 32, 16))
    assert caption_gain(model, same, 6)["val_t2i_caption_gain"] == 0.0
    differ = SimpleNamespace(**{**vars(same), "captions": [(i, f"a red square and {i} blue circles") for i in range(6)]})
    assert caption_gain(model, differ, 6)["val_t2i_caption_gain"] != 0.0


def test_resume_continues_from_the_saved_step(small_world):
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    out = d / "resume"
    train(str(d / "data"), str(out), links=links, tc=TrainConfig(steps=4, batch=4, val_every=2, val_n=2), resume=False)
    train(str(d / "data"), str(out), links=links, tc=TrainConfig(steps=6, batch=4, val_every=2, val_n=2), resume=True)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    # once more on the finished run: nothing is trained, the last validation is what it reports
    meta = train(str(d / "data"), str(out), links=links, tc=TrainConfig(steps=6, batch=4, val_every=2, val_n=2),
                 resume=True)
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    assert meta["validation"] == {k: v for k, v in last.items() if k.startswith("val_")} and meta["validation"]


def test_stop_at_trains_the_full_schedules_first_steps_and_leaves_a_run_to_resume(small_world):
    """--stop-at is a learning-rate probe: its first steps must be the full run's (the same learning rates, so the
    same weights and validation at that step), and the run must go on from there when asked."""
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    tc = TrainConfig(steps=6, batch=4, lr=3e-3, warmup=1, val_every=3, val_n=2)
    whole = d / "whole"
    train(str(d / "data"), str(whole), links=links, tc=tc, resume=False)
    probe = d / "probe"
    assert train(str(d / "data"), str(probe), links=links, tc=tc, resume=False, stop_at=3) == {}
    assert not (probe / "mllm.safetensors").exists() and (probe / "train_state.safetensors").is_file()
    row = lambda run, i: json.loads((run / "log.jsonl").read_text().splitlines()[i])  # noqa: E731
    first = {k: v for k, v in row(whole, 0).items() if k not in ("time_s", "steps_per_s")}
    assert {k: v for k, v in row(probe, 0).items() if k not in ("time_s", "steps_per_s")} == first
    # a 3-step schedule would have decayed the rate to 0 by step 3: other weights, another validation
    short = d / "short"
    train(str(d / "data"), str(short), links=links, tc=dataclasses.replace(tc, steps=3), resume=False)
    assert row(short, 0)["val_t2i_diffusion"] != first["val_t2i_diffusion"]
    meta = train(str(d / "data"), str(probe), links=links, tc=tc, resume=True)
    assert (probe / "mllm.safetensors").is_file() and meta["validation"]
    assert [json.loads(line)["step"] for line in (probe / "log.jsonl").read_text().splitlines()] == [3, 6]


def test_a_token_cache_trains_the_model_the_data_set_trains(small_world):
    """`train token-cache` then `train mllm --data <cache>` (a GPU machine without the data set): the same examples,
    the same weights and validation as from the data set itself, the data set's checksum in the checkpoint; a
    cache refuses links other than those its means were made with."""
    from safetensors.torch import load_file

    from unitocom.mllm import layout, token_cache
    from unitocom.mllm.checkpoint import load_links
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    cache = d / "cache"
    meta = token_cache.make(d / "data", cache, ["sigma-genib"], links={"sigma-genib": links}, log=lambda *_: None)
    assert token_cache.is_cache(cache) and not token_cache.is_cache(d / "data")
    assert sorted(p.name for p in (cache / "links").iterdir()) == ["aud.safetensors", "bpe.json", "img.safetensors"]
    img, aud, fe, vocab, _ = load_links(config.load("tiny"), links)
    want = TaskData(d / "data", "val", img, aud, fe, vocab, 32)
    got = token_cache.load_split(cache, "sigma-genib", "val", img, aud, vocab)
    assert torch.equal(got.clevr_mu, want.clevr_mu) and torch.equal(got.coco_mu, want.coco_mu)
    assert got.questions == want.questions and got.families == want.families and got.captions == want.captions
    assert got.listings == want.listings and len(want.listings) == len(want.clevr_mu)
    assert len(got.speech) == len(want.speech) > 0
    assert all(torch.equal(a, b) and s == t for (a, s), (b, t) in zip(got.speech, want.speech))
    assert torch.equal(got.image_std.mean, want.image_std.mean) and got.counts() == want.counts()
    assert got.layouts == want.layouts and want.counts()["lay"] > 0
    for order in layout.ORDERS:
        got.layout_order = want.layout_order = order
        assert [got.layout_text(i) for i in range(len(got.layouts))] == \
            [want.layout_text(i) for i in range(len(want.layouts))]
    tc = TrainConfig(steps=4, batch=4, lr=3e-3, warmup=1, val_every=2, val_n=4,
                     task_weights=(("vqa", 1), ("t2i", 1), ("asr", 1), ("lay", 1)), layout_order="caption")
    from_data = train(str(d / "data"), str(d / "from-data"), links=links, tc=tc, resume=False)
    from_cache = train(str(cache), str(d / "from-cache"), tc=tc, resume=False)  # its own links, by default
    assert from_cache["validation"] == from_data["validation"]
    assert from_cache["data_checksum"] == from_data["data_checksum"] == meta["data_checksum"]
    assert from_cache["links"] == from_data["links"]
    a, b = (load_file(str(d / run / "mllm.safetensors")) for run in ("from-data", "from-cache"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = dict(links, image=str(d / "other-img.safetensors"))
    from unitocom.models import token_link
    from unitocom.models.token_link import LinkSpec, TokenLink
    torch.manual_seed(1)
    token_link.save(TokenLink(LinkSpec.from_config(config.load("tiny"), "image", "sigma-genib")), other["image"])
    with pytest.raises(ValueError, match="means were made with image link img.safetensors"):
        train(str(cache), str(d / "other"), links=other, tc=tc, resume=False)
    with pytest.raises(ValueError, match="not vae's"):
        token_cache.links_of(cache, "vae")


def test_an_int8_token_cache_is_a_quarter_of_the_size_and_40_db_under_the_means(small_world):
    from unitocom.mllm import token_cache
    from unitocom.mllm.checkpoint import load_links
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    exact, small = d / "cache-f32", d / "cache-i8"
    for folder, values in ((exact, "float32"), (small, "int8")):
        token_cache.make(d / "data", folder, ["sigma-genib"], links={"sigma-genib": links}, values=values,
                         log=lambda *_: None)
    size = lambda f: (f / "sigma-genib-train.safetensors").stat().st_size  # noqa: E731
    assert size(small) < 0.32 * size(exact)
    meta = token_cache.read_meta(small)
    assert meta["values"] == "int8" and min(meta["objectives"]["sigma-genib"]["sqnr_db"].values()) > 38
    img, aud, _, vocab, _ = load_links(config.load("tiny"), links)
    a = token_cache.load_split(exact, "sigma-genib", "train", img, aud, vocab)
    b = token_cache.load_split(small, "sigma-genib", "train", img, aud, vocab)
    assert b.clevr_mu.dtype == torch.float32 and token_cache.sqnr_db(a.clevr_mu, b.clevr_mu) > 38
    assert not torch.equal(a.clevr_mu, b.clevr_mu) and b.questions == a.questions
    assert torch.equal(b.coco_mu, b.clevr_mu)  # stored once: the synthetic set's captioned pictures are its scenes
    assert all(token_cache.sqnr_db(x, y) > 38 for (x, _), (y, _) in zip(a.speech, b.speech))
    # one row's quantization error is at most half a step of its own scale
    q = token_cache.quantize(a.clevr_mu)
    step = q["scale"].float()
    assert ((token_cache.dequantize(q["q"], q["scale"]) - a.clevr_mu).abs() <= 0.5 * step + 1e-6).all()
    meta = train(str(small), str(d / "from-int8"), tc=TrainConfig(steps=2, batch=4, val_every=2, val_n=2),
                 resume=False)
    assert meta["token_cache"]["values"] == "int8" and meta["token_cache"]["sqnr_db"]["train"] > 38


def _prompted(m, v):
    from unitocom.mllm import tasks
    torch.manual_seed(1)
    img = torch.randn(5, 4)
    answers = tasks.answer(m, v, [img], ["q?"], max_new=4)
    tokens = tasks.imagine(m, v, "cap", count=3, steps=4, generator=torch.Generator().manual_seed(0))
    return answers, tokens


def test_generation_runs_in_bf16_as_the_base_station_does_on_a_gpu():
    """--device cuda runs the MLLM in bf16: the packing, cache and diffusion paths must follow the model's dtype."""
    v = seq.Vocab(CharBpe())
    m = _model(len(v)).eval()
    answers32, tokens32 = _prompted(m, v)
    answers16, tokens16 = _prompted(m.to(torch.bfloat16), v)
    assert tokens16.dtype == torch.bfloat16 and torch.isfinite(tokens16.float()).all()
    assert tokens16.shape == tokens32.shape and len(answers16) == len(answers32) == 1
    assert torch.allclose(tokens16.float(), tokens32, atol=0.3)  # same noise, bf16 rounding only


@pytest.mark.gpu
def test_cuda_generation_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    v = seq.Vocab(CharBpe())
    m = _model(len(v)).eval()
    a_cpu, t_cpu = _prompted(m, v)
    a_gpu, t_gpu = _prompted(m.to("cuda"), v)
    assert a_gpu == a_cpu and torch.allclose(t_gpu.float().cpu(), t_cpu, atol=1e-3)


def test_recorded_command_leaves_out_where_it_ran(monkeypatch):
    import sys

    from unitocom.train.provenance import recorded_command
    monkeypatch.setattr(sys, "argv", ["unitocom", "train", "mllm", "--objective", "vae", "--run-dir", "runs/x",
                                      "--no-install", "--steps", "5", "--snr-db=-5:25"])
    assert recorded_command() == "unitocom train mllm --objective vae --steps 5 --snr-db=-5:25"


@pytest.mark.gpu
def test_mllm_trains_on_cuda_in_bf16_autocast(small_world, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    meta = train(str(d / "data"), str(tmp_path / "run"), links=links, limit=64,
                 tc=TrainConfig(steps=3, batch=8, val_every=3, val_n=8, compute=TrainCompute(device="cuda")))
    assert meta["train_config"]["compute"]["device"].startswith("cuda") and "val_vqa_acc_20db" in meta["validation"]


def test_the_head_phase_lowers_the_t2i_loss_and_leaves_everything_else_as_it_was(small_world):
    """`train mllm-head` in miniature: only the diffusion head moves (VQA and ASR answers cannot change), its
    held-out loss falls, the checkpoint records the phase, and a longer rerun resumes from the saved step."""
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.mllm.cli import head_phase
    from unitocom.mllm.head_train import HeadConfig
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    out = d / "head-run"
    train(str(d / "data"), str(out), links=links, tc=TrainConfig(steps=4, batch=4, val_every=4, val_n=2), resume=False)
    path = out / "mllm.safetensors"
    before, _, _ = load_mllm(path)
    hc = HeadConfig(steps=60, batch=256, lr=3e-3, warmup=5, val_every=30, val_images=8)
    meta = head_phase(path, "sigma-genib", str(d / "data"), out / "head", hc, head_command="unitocom train mllm-head",
                      links=links)
    after, _, saved = load_mllm(path)
    b, a = before.state_dict(), after.state_dict()
    moved = {k for k in b if not torch.equal(b[k], a[k])}
    assert moved and all(k.startswith("diffusion.") for k in moved), moved
    h = saved["head"]
    assert h["head_val_t2i_diffusion_after"] < h["head_val_t2i_diffusion_before"]
    assert saved["validation"]["val_t2i_diffusion_head"] == h["head_val_t2i_diffusion_after"]
    assert saved["head_command"] == "unitocom train mllm-head" and saved["command"] == meta["command"]
    log = [json.loads(line)["step"] for line in (out / "head" / "head_log.jsonl").read_text().splitlines()]
    assert log == [0, 30, 60]
    head_phase(path, "sigma-genib", str(d / "data"), out / "head", HeadConfig(**{**vars(hc), "steps": 90}), None,
               links=links)
    log = [json.loads(line)["step"] for line in (out / "head" / "head_log.jsonl").read_text().splitlines()]
    assert log == [0, 30, 60, 90]


def test_head_rows_are_every_caption_then_each_picture_once_unconditioned():
    from types import SimpleNamespace

    from unitocom.mllm.head_train import rows_of
    data = SimpleNamespace(captions=[(0, "a"), (0, "b"), (1, "c"), (2, "d")])
    assert rows_of(data) == [(0, "a"), (0, "b"), (1, "c"), (2, "d"), (0, ""), (1, ""), (2, "")]
    assert rows_of(data, first_only=True) == [(0, "a"), (1, "c"), (2, "d"), (0, ""), (1, ""), (2, "")]
    assert rows_of(data, limit=1) == [(0, "a"), (0, "b"), (0, "")]


def test_the_head_phase_keeps_the_manifests_history_of_the_mllm(tmp_path):
    from unitocom.mllm.cli import _manifest_entry_of
    (tmp_path / "manifest-tasks.json").write_text(json.dumps(
        {"mllm-x": {"history": "ran twice", "command": "old", "sha256": "0", "bytes": 1, "file": "mllm-x.safetensors"}}))
    assert _manifest_entry_of(tmp_path / "mllm-x.safetensors") == {"history": "ran twice", "command": "old"}
    assert _manifest_entry_of(tmp_path / "mllm-y.safetensors") == {}


def test_train_mllm_head_threads_reach_the_phase_and_bad_ones_are_refused(tmp_path, monkeypatch):
    """`train mllm-head --threads N`: the phase's config carries N (the cached states' forward pass and the head's
    steps run on it); 0 is refused before anything is copied or trained."""
    from unitocom import cli
    from unitocom.mllm import cli as mcli
    seen = []

    def fake_phase(path, objective, data, run_dir, hc, head_command, images=None):
        seen.append(hc.threads)
        return {"head": {"steps": hc.steps}, "validation": {}}

    monkeypatch.setattr(mcli, "head_phase", fake_phase)
    monkeypatch.setattr("unitocom.data.layouts.require_data", lambda d: Path(d))
    src = tmp_path / "mllm.safetensors"
    src.write_bytes(b"weights")
    base = ["train", "mllm-head", "--mllm", str(src), "--data", str(tmp_path), "--no-install", "--steps", "2"]
    assert cli.main([*base, "--run-dir", str(tmp_path / "a")]) == 0 and seen == [1]
    assert cli.main([*base, "--run-dir", str(tmp_path / "b"), "--threads", "2"]) == 0 and seen == [1, 2]
    assert cli.main([*base, "--run-dir", str(tmp_path / "c"), "--threads", "0"]) == 2
    assert seen == [1, 2] and not (tmp_path / "c").exists()


def test_hidden_rows_gather_the_state_before_each_image_token_in_order_whatever_the_batch():
    """The rows the head trains on (and t2i_diagnose reads): one per image token, targets the tokens row-major,
    and a caption's rows do not depend on which other captions share its batch."""
    from unitocom.mllm.head_train import hidden_rows
    vocab = seq.Vocab(CharBpe())
    model = _model(len(vocab))
    tokens = torch.randn(3, 5, 4)
    caps = ["a red cube", "", "two blue balls"]
    h, c = hidden_rows(model, vocab, caps, tokens)
    assert h.shape == (15, 32) and torch.equal(c, tokens.reshape(-1, 4))
    h1, _ = hidden_rows(model, vocab, caps, tokens, batch=1)
    torch.testing.assert_close(h1, h, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(h[:5], h[5:10])  # the caption conditions the state


def test_task_weights_are_parsed_and_bad_ones_refused():
    import argparse

    from unitocom.mllm.cli import task_weights_arg
    assert task_weights_arg("vqa=2,t2i=1, asr=1") == (("vqa", 2), ("t2i", 1), ("asr", 1))
    assert task_weights_arg("vqa=1,t2i=0") == (("vqa", 1),)
    for bad in ("vqa", "vqa=x", "ocr=1", "vqa=1,vqa=2", "vqa=0", "vqa=-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            task_weights_arg(bad)


def test_an_architecture_other_than_the_presets_is_trained_recorded_and_loaded(small_world):
    """--mllm-arch: the ablation trains the asked sizes and layout, and the checkpoint rebuilds them."""
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    tc = TrainConfig(steps=2, batch=4, val_every=2, val_n=2, task_weights=(("vqa", 1),),
                     arch=(("hidden", 48), ("heads", 3), ("layers", 1), ("question_first", True)))
    train(str(d / "data"), str(d / "sized"), links=links, tc=tc, resume=False)
    model, _, saved = load_mllm(d / "sized/mllm.safetensors")
    assert (model.cfg.hidden, model.cfg.heads, model.cfg.layers, model.cfg.question_first) == (48, 3, 1, True)
    assert saved["train_config"]["arch"] == [["hidden", 48], ["heads", 3], ["layers", 1], ["question_first", True]]


def test_a_warm_start_continues_the_architecture_and_weights_it_starts_from(small_world):
    """--init (and --resilient, --spoken, which warm start from the installed MLLM): the fine-tune is built with
    its source's architecture, not the preset's, and starts from every one of its weights; a model the weights do
    not fit is refused, never silently trained from scratch."""
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.mllm.train import TrainConfig, train, warm_start_state
    d, links = small_world
    arch = (("hidden", 48), ("heads", 3), ("layers", 1), ("intermediate", 96))
    train(str(d / "data"), str(d / "wide-src"), links=links, resume=False,
          tc=TrainConfig(steps=2, batch=4, val_every=2, val_n=2, task_weights=(("vqa", 1),), arch=arch))
    src = d / "wide-src/mllm.safetensors"
    # lr 0: the fine-tune's weights are those it started from
    train(str(d / "data"), str(d / "wide-ft"), links=links, resume=False,
          tc=TrainConfig(steps=1, batch=4, val_every=1, val_n=2, lr=0.0, task_weights=(("vqa", 1),),
                         init=str(src), token_dropout=True))
    source, _, _ = load_mllm(src)
    tuned, _, _ = load_mllm(d / "wide-ft/mllm.safetensors")
    assert (tuned.cfg.hidden, tuned.cfg.heads, tuned.cfg.layers, tuned.cfg.intermediate) == (48, 3, 1, 96)
    assert tuned.cfg.lost_token and not source.cfg.lost_token
    theirs, ours = source.state_dict(), tuned.state_dict()
    assert set(theirs) < set(ours)  # the lost-token embeddings are new
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    with pytest.raises(ValueError, match="another shape"):
        warm_start_state(str(src), _model(tuned.cfg.vocab))


def test_a_warm_start_with_prefix_attention_keeps_every_weight_and_the_checkpoint_says_how_it_attends(small_world):
    """--prefix-attention on a warm start: no tensor changes (lr 0 leaves the source's weights), the checkpoint
    records the mask, and the loaded model reads prompts both ways (its prompt states differ from the source's)."""
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    src = d / "causal-src"
    train(str(d / "data"), str(src), links=links, resume=False,
          tc=TrainConfig(steps=2, batch=4, val_every=2, val_n=2, task_weights=(("vqa", 1),)))
    train(str(d / "data"), str(d / "prefix-ft"), links=links, resume=False,
          tc=TrainConfig(steps=1, batch=4, val_every=1, val_n=2, lr=0.0, task_weights=(("vqa", 1),),
                         init=str(src / "mllm.safetensors"), prefix_attention=True))
    source, _, _ = load_mllm(src / "mllm.safetensors")
    tuned, _, meta = load_mllm(d / "prefix-ft/mllm.safetensors")
    assert tuned.cfg.prefix_attention and not source.cfg.prefix_attention
    assert all(torch.equal(v, tuned.state_dict()[k]) for k, v in source.state_dict().items())
    x = torch.randn(1, 9, tuned.cfg.hidden)
    with torch.no_grad():
        assert not torch.allclose(tuned.hidden(x, prefix=6)[0], source.hidden(x, prefix=6)[0], atol=1e-4)


def test_mllm_arch_is_parsed_and_bad_values_refused():
    import argparse

    from unitocom.mllm.cli import arch_arg
    parsed = arch_arg("hidden=256, heads=8,question_first=0")
    assert parsed == (("hidden", 256), ("heads", 8), ("question_first", False))
    assert arch_arg("standardized_inputs=1") == (("standardized_inputs", True),)
    assert arch_arg("prefix_attention=1") == (("prefix_attention", True),)
    assert arch_arg("image_encoder=2") == (("image_encoder", 2),)
    assert all(type(v) is (bool if k == "question_first" else int) for k, v in parsed)
    assert arch_arg("image_grid=32,image_grid_scale=0.14") == (("image_grid", 32), ("image_grid_scale", 0.14))
    for bad in ("hidden", "width=3", "hidden=0", "hidden=2,hidden=3", "layers=x", "question_first=2",
                "prefix_attention=2", "image_encoder=-1", "image_grid_scale=0", "image_grid_scale=nan",
                "image_grid_scale=x", "image_grid=1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            arch_arg(bad)


def test_image_grid_starts_the_image_positions_as_the_token_grid_code():
    """image_grid=32: image_pos[:32] is the 4 x 8 grid's row code (first half of the channels, equal along a row)
    and column code (second half, equal down a column) times the scale; later rows stay small noise. A model
    without it starts from 0.02-scale noise, as before."""
    from unitocom.models.conv_tokenizer import grid_code
    base = _model(40).cfg
    cfg = dataclasses.replace(base, image_positions=48, image_grid=32, image_grid_scale=0.5)
    torch.manual_seed(0)
    pos = MLLM(cfg).image_pos.detach()
    half = cfg.hidden // 2
    assert torch.allclose(pos[:32], grid_code(32, cfg.hidden) * 0.5)
    grid = pos[:32].reshape(4, 8, -1)
    assert torch.equal(grid[:, :1, :half].expand(4, 8, half), grid[..., :half])  # a row shares its row code
    assert torch.equal(grid[:1, :, half:].expand(4, 8, half), grid[..., half:])  # a column shares its column code
    assert not torch.equal(grid[0, 0], grid[0, 1]) and not torch.equal(grid[0, 0], grid[1, 0])
    assert float(pos[32:].abs().max()) < 0.15 and float(pos[:32].pow(2).mean().sqrt()) == pytest.approx(0.5 * 0.5 ** 0.5)
    plain = MLLM(dataclasses.replace(base, image_positions=48)).image_pos.detach()
    assert float(plain.abs().max()) < 0.15


def test_standardized_inputs_read_vqa_and_t2i_image_tokens_in_one_token_space():
    """standardized_inputs: a received image token t (VQA) and T2I's standardised (t - mean) / std are embedded
    alike, NaN rows stay lost tokens, and an MLLM without the flag reads the raw token as before."""
    v = seq.Vocab(CharBpe())
    cfg = MLLMConfig(vocab=len(v), hidden=32, layers=1, heads=2, intermediate=64, max_positions=256, token_dim=4,
                     head_width=32, head_depth=1, standardized_inputs=True, lost_token=True)
    torch.manual_seed(0)
    m = MLLM(cfg)
    mean, std = torch.tensor([1.0, 2.0, -3.0, 4.0]), torch.tensor([0.5, 0.2, 1.0, 2.0])
    m.set_input_stats("image", mean, std)
    t = torch.randn(5, 4) * std + mean
    p = seq.pack(m, [seq.vqa(v, t, "q?", "a"), seq.t2i(v, "c", (t - mean) / std)])
    assert torch.allclose(p.embeds[0, 3:8], p.embeds[1, 4:9], atol=1e-6)
    assert not torch.allclose(p.embeds[0, 3:8], m.embed_tokens(t[None], "image")[0], atol=1e-3)
    lost = t.clone()
    lost[2] = float("nan")
    e = m.embed_tokens(lost[None], "image", received=True)[0]
    assert torch.isfinite(e).all() and torch.allclose(e[2], m.lost["image"])
    plain = MLLM(dataclasses.replace(cfg, standardized_inputs=False))
    assert torch.equal(plain.embed_tokens(t[None], "image", received=True), plain.embed_tokens(t[None], "image"))
    with pytest.raises(ValueError, match="raw tokens"):
        plain.set_input_stats("image", mean, std)


def test_standardized_inputs_take_the_training_datas_statistics_into_the_checkpoint(small_world):
    """The statistics are those of T2I's targets (image) and of the training clips (audio), saved as buffers
    that the base station's load rebuilds."""
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    tc = TrainConfig(steps=2, batch=4, val_every=2, val_n=2, arch=(("standardized_inputs", True),))
    train(str(d / "data"), str(d / "standardized"), links=links, tc=tc, resume=False)
    model, std, saved = load_mllm(d / "standardized/mllm.safetensors")
    assert model.cfg.standardized_inputs and saved["train_config"]["arch"] == [["standardized_inputs", True]]
    assert torch.equal(model.in_mean_image, std.mean) and torch.equal(model.in_std_image, std.std)
    assert not torch.equal(model.in_mean_audio, torch.zeros_like(model.in_mean_audio))
    assert (model.in_std_audio > 0).all()


def test_captioning_is_vqa_without_a_question_and_learns_the_caption_after_sep():
    """The "cap" task: <bos><vqa><boi> image <eoi><sep> | caption <eos>, the same in both VQA orders, with the
    LM target the normalised caption."""
    v = seq.Vocab(CharBpe())
    img = torch.randn(5, 4)
    segs = seq.caption(v, img, "A Red X.")
    assert segs == seq.caption(v, img, "A Red X.") and [s.kind for s in segs] == ["text", "image", "text", "text"]
    assert segs[0].value == [v["<bos>"], v["<vqa>"], v["<boi>"]] and segs[2].value == [v["<eoi>"], v["<sep>"]]
    first = seq.vqa(v, img, "", "A Red X.", question_first=True)
    assert [s.value for s in first if s.kind == "text"] == [s.value for s in segs if s.kind == "text"]
    p = seq.pack(_model(len(v)), [segs])
    sep = 3 + 5 + 1
    assert p.lm_targets[0, sep: sep + 9].tolist() == [ord(c) for c in "a red x."] + [v["<eos>"]]
    assert (p.lm_targets[0, :sep] == seq.IGNORE).all() and len(p.diff_targets) == 0


def test_captioning_trains_beside_vqa_and_its_loss_is_validated(small_world):
    """--task-weights vqa=1,cap=1: the caption steps read received scenes (T2I's pairs the other way round), their
    loss falls, validation reports it, and the trained model writes captions."""
    from unitocom.mllm import tasks
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.cli import task_weights_arg
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import TrainConfig, train
    from unitocom.models.channel_torch import TorchChannelSpec
    d, links = small_world
    assert task_weights_arg("vqa=2,cap=1") == (("vqa", 2), ("cap", 1))
    cfg = config.load("tiny")
    image_link, audio_link, frontend, vocab, _ = load_links(cfg, links)
    data = TaskData(d / "data", "val", image_link, None, frontend, vocab, cfg.preset.image_size_px)
    assert data.counts()["cap"] == len(data.captions) > 0
    gen = torch.Generator().manual_seed(0)
    rows = data.examples("cap", [0, 1], torch.tensor([20.0, 0.0]), TorchChannelSpec(model="rayleigh"), gen)
    image, text = data.captions[0]
    assert rows[0][3].value == vocab.target(text) + [vocab["<eos>"]]
    assert not torch.allclose(rows[0][1].value, data.coco_mu[image])  # the received scene, not the clean means
    tc = TrainConfig(steps=60, batch=16, lr=3e-3, warmup=10, val_every=30, val_n=8, log_every=4,
                     task_weights=(("vqa", 1), ("cap", 1)))
    meta = train(str(d / "data"), str(d / "captioned"), links=links, tc=tc, resume=False)
    logged = [json.loads(line) for line in (d / "captioned/log.jsonl").read_text().splitlines()]
    # every 4 steps, each task's latest step (not only the task of every 4th step, always captioning here)
    assert [(r["step"], r["task"]) for r in logged if "task" in r][:4] == [(3, "vqa"), (4, "cap"), (7, "vqa"),
                                                                           (8, "cap")]
    cap = [r["loss"] for r in logged if r.get("task") == "cap"]
    assert len(cap) == 15 and sum(cap[-5:]) / 5 < 0.6 * sum(cap[:5]) / 5
    vals = [r["val_cap_lm_20db"] for r in logged if "val_cap_lm_20db" in r]
    assert len(vals) == 2 and vals[1] < vals[0] and meta["validation"]["val_cap_lm_20db"] == vals[1]
    model, _, _ = load_mllm(d / "captioned/mllm.safetensors")
    said = tasks.describe(model, vocab, [rows[0][1].value], max_new=12)
    assert isinstance(said[0], str) and said[0]


def test_a_finished_run_reports_the_validation_of_its_last_step_never_an_earlier_one(tmp_path):
    """The meta of a resumed, finished run takes the log's validation at the final step (per-step records passed
    over); a log whose last validation is older than the state is refused rather than recorded as the model's."""
    from unitocom.mllm.train import final_validation
    log = tmp_path / "log.jsonl"
    rows = [{"step": 2, "time_s": 1.0, "val_vqa_acc_20db": 0.3}, {"step": 3, "task": "vqa", "loss": 0.5},
            {"step": 4, "time_s": 2.0, "vqa_loss": 0.4, "val_vqa_acc_20db": 0.5},
            {"step": 4, "task": "vqa", "loss": 0.4}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert final_validation(log, 4) == ({"val_vqa_acc_20db": 0.5}, 2.0)
    log.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    with pytest.raises(RuntimeError, match="last validation is at 2"):
        final_validation(log, 4)


def test_a_loss_scale_changes_the_scaled_tasks_updates_and_nothing_else(small_world):
    """--loss-scale multiplies T2I's loss on its steps: after a VQA step has set AdamW's second moments, the T2I
    steps' updates differ from the unscaled run's; a scale on a task that is not in the mix changes nothing. (An
    untrained model's gradients exceed the clipping norm of 1, which would hide an upward scale: 0.01 here; and
    the diffusion head starts at zero, so T2I reaches the backbone only after its first steps: 12 steps.)"""
    from unitocom.mllm.cli import loss_scale_arg
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.mllm.train import TrainConfig, train
    assert loss_scale_arg("t2i=8,asr=0.5") == (("t2i", 8.0), ("asr", 0.5))
    for bad in ("t2i=0", "t2i=-1", "t2i=nan", "t2i=inf", "foo=2", "t2i", "t2i=1,t2i=2"):
        with pytest.raises(Exception, match="TASK=SCALE|twice"):
            loss_scale_arg(bad)
    d, links = small_world

    def run(name, scale):
        tc = TrainConfig(steps=12, batch=4, val_every=12, val_n=2, task_weights=(("vqa", 1), ("t2i", 2)),
                         loss_scale=scale, warmup=0)
        train(str(d / "data"), str(d / name), links=links, tc=tc, resume=False)
        model, _, meta = load_mllm(d / name / "mllm.safetensors")
        return {k: v.clone() for k, v in model.state_dict().items()}, meta

    plain, meta = run("ls-plain", ())
    other, _ = run("ls-other", (("asr", 8.0),))
    scaled, meta8 = run("ls-t2i", (("t2i", 0.01),))
    assert all(torch.equal(plain[k], other[k]) for k in plain)
    moved = [k for k in plain if "layers" in k and not torch.equal(plain[k], scaled[k])]
    assert moved, "the scaled T2I step should move the shared backbone differently"
    assert meta8["train_config"]["loss_scale"] == [["t2i", 0.01]] and meta["train_config"]["loss_scale"] == []


# The "obj" task (issue 12): the received scene's objects read out left to right with their places, an LM target
# beside captioning that gives relation questions the signal they lack.


def _obj(colour: str, shape: str, x: int, y: int, size: str = "small", material: str = "metal") -> dict:
    return {"color": colour, "shape": shape, "size": size, "material": material, "pixel_coords": [x, y, 9.0]}


def test_places_are_the_thirds_of_the_picture_across_and_down():
    assert objects.where(0.1, 0.1) == "top left" and objects.where(0.9, 0.9) == "bottom right"
    assert objects.where(0.5, 0.1) == "top" and objects.where(0.1, 0.5) == "left"
    assert objects.where(0.5, 0.5) == "middle" and objects.where(1.0, 0.0) == "top right"  # edges stay inside


def test_a_listing_reads_the_objects_left_to_right_in_the_pictures_own_size():
    scene = [_obj("red", "square", 25, 21), _obj("cyan", "circle", 13, 25, "large"), _obj("brown", "triangle", 17, 4)]
    assert objects.listing(scene, 32, 32) == ("a large cyan metal circle at the bottom, "
                                              "a small brown metal triangle at the top, "
                                              "a small red metal square at the right")
    # real CLEVR's pictures are 480 x 320: the same pixel column is left there, and a row of 300 the bottom
    assert objects.listing([_obj("gray", "cube", 100, 300, "large", "rubber")], 480, 320) == \
        "a large gray rubber cube at the bottom left"
    assert objects.listing([_obj("red", "sphere", 240, 160)], 480, 320) == "a small red metal sphere in the middle"


def test_every_scene_of_a_split_has_its_listing_and_a_split_without_scenes_has_none(small_world, tmp_path):
    d, _ = small_world
    scenes = json.loads((d / "data/CLEVR_v1.0/scenes/CLEVR_val_scenes.json").read_text())["scenes"]
    got = objects.listings(d / "data", "val", 10 ** 6)
    assert [i for i, _ in got] == sorted(s["image_index"] for s in scenes if s["objects"])
    for (i, text), scene in zip(got, sorted(scenes, key=lambda s: s["image_index"])):
        assert text.count(", a ") + 1 == len(scene["objects"])
        assert all(f"{o['color']} {o['material']} {o['shape']}" in text for o in scene["objects"])
    assert [i for i, _ in objects.listings(d / "data", "val", 3)] == [0, 1, 2]
    assert objects.listings(d / "data", "test-without-scenes", 10) == []


def test_obj_examples_ask_for_the_listing_of_the_received_scene_and_train(small_world):
    """data.examples("obj"): the received scene, the prompt as the question and the listing as the LM target;
    `--task-weights vqa=1,obj=1` trains it and validation reports its loss; a cache made before the task has none."""
    from unitocom.mllm import token_cache
    from unitocom.mllm.checkpoint import load_links
    from unitocom.mllm.cli import task_weights_arg
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import TrainConfig, train
    from unitocom.models.channel_torch import TorchChannelSpec
    d, links = small_world
    assert task_weights_arg("vqa=2,obj=1") == (("vqa", 2), ("obj", 1))
    image_link, _, frontend, vocab, _ = load_links(config.load("tiny"), links)
    data = TaskData(d / "data", "val", image_link, None, frontend, vocab, 32)
    assert data.counts()["obj"] == len(data.listings) == len(data.clevr_mu)
    rows = data.examples("obj", [0, 1], torch.tensor([20.0, 0.0]), TorchChannelSpec(model="rayleigh"),
                         torch.Generator().manual_seed(0))
    image, text = data.listings[0]
    assert rows[0] == seq.vqa(vocab, rows[0][1].value, objects.PROMPT, text)
    assert rows[0][-1].value == vocab.target(text) + [vocab["<eos>"]] and rows[0][-1].target
    assert not torch.allclose(rows[0][1].value, data.clevr_mu[image])  # received, not the clean means
    tc = TrainConfig(steps=8, batch=8, lr=3e-3, warmup=2, val_every=4, val_n=8, task_weights=(("vqa", 1), ("obj", 1)))
    meta = train(str(d / "data"), str(d / "listed"), links=links, tc=tc, resume=False)
    logged = [json.loads(line) for line in (d / "listed/log.jsonl").read_text().splitlines()]
    vals = [r["val_obj_lm_20db"] for r in logged if "val_obj_lm_20db" in r]
    assert len(vals) == 2 and vals[1] < vals[0] and meta["validation"]["val_obj_lm_20db"] == vals[1]
    assert "val_cap_lm_20db" not in meta["validation"]
    cache = d / "obj-cache"
    token_cache.make(d / "data", cache, ["sigma-genib"], links={"sigma-genib": links}, log=lambda *_: None)
    path = cache / "sigma-genib-val.json.gz"
    with gzip.open(path, "rt") as f:
        old = json.load(f)
    assert [tuple(x) for x in old.pop("listings")] == data.listings
    with gzip.open(path, "wt") as f:
        json.dump(old, f)
    assert token_cache.load_split(cache, "sigma-genib", "val", image_link, None, vocab).counts()["obj"] == 0


def test_a_written_listing_is_scored_position_by_position_against_the_scene():
    truth = "a large cyan metal circle at the bottom, a small red metal square in the middle"
    assert objects.parse(truth)[1] == {"size": "small", "color": "red", "material": "metal", "shape": "square",
                                       "place": "middle"}
    assert objects.agreement(truth, truth) == {"exact": 1.0, "count": 1.0, "found": 1.0, "size": 1.0, "color": 1.0,
                                               "material": 1.0, "shape": 1.0, "place": 1.0}
    # the second object's colour wrong and a third, spurious item: count wrong, colour half right
    said = "a large cyan metal circle at the bottom, a small blue metal square in the middle, a small"
    got = objects.agreement(said, truth)
    assert got["count"] == 0.0 and got["color"] == 0.5 and got["shape"] == 1.0 and got["exact"] == 0.0
    assert got["found"] == 0.5
    # the right objects in the wrong order: found, not placed position by position; one item finds one object
    swapped = "a small red metal square in the middle, a large cyan metal circle at the bottom"
    assert objects.agreement(swapped, truth)["found"] == 1.0 and objects.agreement(swapped, truth)["color"] == 0.0
    twice = "a large cyan metal circle at the bottom, a large cyan metal circle at the bottom"
    assert objects.agreement(twice, truth)["found"] == 0.5
    assert objects.parse("a red") == [None] and objects.agreement("", truth)["size"] == 0.0


def test_listing_read_scores_an_obj_trained_mllm_and_refuses_one_that_was_not(small_world, tmp_path):
    import shutil
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import listing_read
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    for weights, run in (((("vqa", 1), ("obj", 1)), "obj"), ((("vqa", 1),), "plain")):
        train(str(d / "data"), str(tmp_path / run), links=links, resume=False,
              tc=TrainConfig(steps=2, batch=4, lr=3e-3, warmup=1, val_every=2, val_n=4, task_weights=weights))
        for p in links.values():  # the links beside the run, where listing_read looks first
            shutil.copy(p, tmp_path / run)
    out = tmp_path / "read.json"
    assert listing_read.main(["--mllm", f"m={tmp_path / 'obj'}", "--data", str(d / "data"), "--split", "val",
                              "--n", "6", "--snr-db", "20", "--batch", "4", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    p = got["points"][0]
    assert p["n"] == 6 and p["snr_db"] == 20.0 and len(p["shown"]) == 5
    assert all(0.0 <= p[f]["ci95"][0] <= p[f]["value"] <= p[f]["ci95"][1] <= 1.0 for f in ("count", "color"))
    assert got["header"]["mllms"]["m"]["task_weights"] == {"vqa": 1, "obj": 1}
    with pytest.raises(SystemExit, match="not trained on the obj task"):
        listing_read.main(["--mllm", f"m={tmp_path / 'plain'}", "--data", str(d / "data"), "--split", "val",
                           "--out", str(out)])


# Object slots (issue 12, `mllm.slots`): a training head that reads each VQA scene's objects from the hidden states
# over its received image tokens.


def test_slot_targets_hold_each_scenes_objects_left_to_right_with_their_centres(small_world, tmp_path):
    from unitocom.mllm import slots
    d, _ = small_world
    scenes = json.loads((d / "data/CLEVR_v1.0/scenes/CLEVR_val_scenes.json").read_text())["scenes"]
    t = slots.targets(d / "data", "val", 5)
    assert t.shape == (5, slots.SLOTS, slots.WIDTH)
    for scene in scenes:
        i = scene["image_index"]
        if i >= 5:
            continue
        objs = sorted(scene["objects"], key=lambda o: (o["pixel_coords"][0], o["pixel_coords"][1]))
        n = len(objs)
        assert t[i, :, 4].tolist() == [1.0] * n + [0.0] * (slots.SLOTS - n)
        for k, o in enumerate(objs):
            assert [slots.ATTRIBUTES[a][int(t[i, k, j])] for j, a in enumerate(slots.ATTRIBUTES)] == \
                [o[a] for a in slots.ATTRIBUTES]
            assert t[i, k, 5].item() == pytest.approx(2 * o["pixel_coords"][0] / 32 - 1, abs=1e-6)
            assert t[i, k, 6].item() == pytest.approx(2 * o["pixel_coords"][1] / 32 - 1, abs=1e-6)
        assert (t[i, n:, :4] == slots.EMPTY).all()
        assert (t[i, :n, 5].diff() >= 0).all()  # left to right
    assert slots.targets(d / "data", "test-without-scenes", 5) is None
    # another generator's values (real CLEVR's cubes) are refused by name, not read as some index
    import shutil
    shutil.copytree(d / "data", tmp_path / "data")
    path = tmp_path / "data/CLEVR_v1.0/scenes/CLEVR_val_scenes.json"
    doc = json.loads(path.read_text())
    doc["scenes"][0]["objects"][0]["shape"] = "cube"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="cube"):
        slots.targets(tmp_path / "data", "val", 5)


def test_the_slot_loss_is_the_closed_form_at_uniform_logits_and_zero_when_read_right():
    from unitocom.mllm import slots
    k = slots.SLOTS
    target = torch.zeros(1, k, slots.WIDTH)
    target[..., :4] = slots.EMPTY
    target[0, 0] = torch.tensor([1.0, 2.0, 0.0, 1.0, 1.0, 0.5, -0.5])  # one object, centre (0.5, -0.5)
    uniform = ([torch.zeros(1, k, len(v)) for v in slots.ATTRIBUTES.values()], torch.zeros(1, k, 2),
               torch.zeros(1, k, 2))
    import math
    expected = math.log(2) + sum(math.log(len(v)) for v in slots.ATTRIBUTES.values()) + 0.5
    assert slots.loss_per_example(uniform, target).item() == pytest.approx(expected, rel=1e-5)
    big = 50.0
    right = ([torch.nn.functional.one_hot(target[..., a].long().clamp_min(0), len(v)).float() * big
              for a, v in enumerate(slots.ATTRIBUTES.values())],
             torch.nn.functional.one_hot(target[..., 4].long(), 2).float() * big, target[..., 5:].clone())
    assert slots.loss_per_example(right, target).item() < 1e-6
    read = slots.reading(right, target)
    assert read["count"] == 1.0 and read["shape"] == 1.0 and read["centre_distance"] == 0.0
    assert slots.reading(uniform, target)["count"] == 0.0  # argmax of a tie is "absent": 0 objects of 1


def test_vqa_examples_carry_slot_targets_and_pack_finds_the_image_positions(small_world):
    from unitocom.mllm import slots
    from unitocom.mllm.checkpoint import load_links
    from unitocom.mllm.data import TaskData
    from unitocom.models.channel_torch import TorchChannelSpec
    d, links = small_world
    image_link, _, frontend, vocab, _ = load_links(config.load("tiny"), links)
    data = TaskData(d / "data", "val", image_link, None, frontend, vocab, 32)
    gen = torch.Generator().manual_seed(0)
    ch = TorchChannelSpec(model="rayleigh")
    plain = data.examples("vqa", [0, 3], torch.tensor([20.0, 0.0]), ch, torch.Generator().manual_seed(0))
    data.slot_targets = slots.targets(d / "data", "val", len(data.clevr_mu))
    rows = data.examples("vqa", [0, 3], torch.tensor([20.0, 0.0]), ch, gen)
    for row, old, q in zip(rows, plain, [0, 3]):
        assert torch.equal(row[1].value, old[1].value)  # the same draws with or without targets
        assert torch.equal(row[1].objects, data.slot_targets[data.questions[q][0]])
    m = MLLM(MLLMConfig(vocab=len(vocab), hidden=32, layers=1, heads=2, intermediate=64, max_positions=256,
                        token_dim=16, head_width=32, head_depth=1, object_slots=slots.SLOTS))
    rows.append(data.examples("t2i", [0], torch.zeros(1), ch, gen)[0])  # a generated picture carries none
    p = seq.pack(m, rows)
    assert p.object_index.tolist() == [[0, 3, 32], [1, 3, 32]]  # after <bos> <vqa> <boi>
    assert torch.equal(p.object_targets, torch.stack([r[1].objects for r in rows[:2]]))
    assert seq.pack(m, plain).object_targets is None


def test_object_slots_train_beside_vqa_without_changing_its_draws_and_are_validated(small_world):
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    base = {"steps": 30, "batch": 8, "lr": 3e-3, "warmup": 2, "val_every": 15, "val_n": 8, "log_every": 1,
            "task_weights": (("vqa", 2), ("t2i", 1))}
    train(str(d / "data"), str(d / "slots0"), links=links, tc=TrainConfig(**base), resume=False)
    meta = train(str(d / "data"), str(d / "slots1"), links=links, tc=TrainConfig(**base, object_slots=1.0),
                 resume=False)

    def steps(run):  # the per-step records of --log-every, not the validations
        return [r for r in map(json.loads, (d / run / "log.jsonl").read_text().splitlines()) if "task" in r]
    plain, slotted = steps("slots0"), steps("slots1")
    # step 1 is the same batch through the same weights: the same VQA loss, and the slots' loss beside it
    assert slotted[0]["task"] == "vqa" and slotted[0]["lm"] == pytest.approx(plain[0]["lm"], rel=1e-6)
    assert slotted[0]["loss"] == pytest.approx(slotted[0]["lm"] + slotted[0]["slots"], rel=1e-5)
    assert all(("slots" in r) == (r["task"] == "vqa") for r in slotted) and not any("slots" in r for r in plain)
    losses = [r["slots"] for r in slotted if "slots" in r]
    assert sum(losses[-4:]) < 0.9 * sum(losses[:4])
    assert {"val_slots_count_20db", "val_slots_shape_20db"} <= set(meta["validation"])
    model, _, _ = load_mllm(d / "slots1/mllm.safetensors")
    assert model.cfg.object_slots and hasattr(model, "slots")
    assert not hasattr(load_mllm(d / "slots0/mllm.safetensors")[0], "slots")


def test_object_slots_train_from_a_token_cache_made_since_them_and_a_negative_weight_is_refused(small_world, tmp_path, capsys):
    from unitocom.cli import main
    from unitocom.mllm import token_cache
    from unitocom.mllm.train import TrainConfig, train
    d, links = small_world
    from unitocom.mllm import slots
    from unitocom.mllm.checkpoint import load_links
    cache = tmp_path / "cache"
    token_cache.make(d / "data", cache, ["sigma-genib"], links={"sigma-genib": links}, log=lambda *_: None)
    image_link, _, _, vocab, _ = load_links(config.load("tiny"), links)
    got = token_cache.load_split(cache, "sigma-genib", "train", image_link, None, vocab)
    want = slots.targets(d / "data", "train", len(got.clevr_mu))
    assert got.cached_slot_targets.dtype == torch.float32
    assert torch.equal(got.cached_slot_targets[..., :5], want[..., :5])  # value indices and presence exactly
    torch.testing.assert_close(got.cached_slot_targets, want, atol=1e-3, rtol=0)  # centres to 1e-3
    assert got.slot_targets is None  # carried only where a run asks for the slots
    tc = TrainConfig(steps=2, batch=4, object_slots=1.0, val_every=2, val_n=4, task_weights=(("vqa", 1),))
    meta = train(str(cache), str(tmp_path / "run"), links=links, tc=tc, resume=False)
    assert "val_slots_count_20db" in meta["validation"]
    # a cache made before the slots keeps none: refused by name, not trained without them
    from safetensors.torch import load_file, save_file
    f = cache / "sigma-genib-train.safetensors"
    save_file({k: v for k, v in load_file(str(f)).items() if k != "slot_targets"}, str(f))
    with pytest.raises(ValueError, match="keeps no object-slot targets"):
        train(str(cache), str(tmp_path / "run2"), links=links, tc=tc, resume=False)
    assert main(["train", "mllm", "--data", str(d / "data"), "--object-slots", "-1", "--no-install",
                 "--run-dir", str(tmp_path / "r")]) == 2
    assert "--object-slots -1.0: a weight >= 0" in capsys.readouterr().err
    assert main(["train", "mllm", "--data", str(d / "data"), "--image-encoder", "-1", "--no-install",
                 "--run-dir", str(tmp_path / "r")]) == 2
    assert "--image-encoder -1: a number of layers >= 0" in capsys.readouterr().err


def test_received_questions_are_the_text_links_reading_clean_at_high_snr_and_garbled_at_low():
    from unitocom.config import checkpoint_dir
    from unitocom.mllm.data import received_texts
    from unitocom.models import token_link
    from unitocom.models.channel_torch import TorchChannelSpec
    from unitocom.models.text_tokenizer import load_bpe
    path = checkpoint_dir() / "text-sigma-genib.safetensors"
    if not path.exists():
        pytest.skip("the installed text link is missing")
    link, bpe = token_link.load(path).eval(), load_bpe(checkpoint_dir() / "text-bpe.json")
    qs = ["How many red cubes are there?", "Is there a big thing left of the small sphere?",
          "What shape is the large cyan thing?"] * 4
    gen = torch.Generator().manual_seed(0)
    assert received_texts(link, bpe, qs, torch.full((12,), 30.0), TorchChannelSpec(model="awgn"), gen) == qs
    low = received_texts(link, bpe, qs, torch.full((12,), -10.0), TorchChannelSpec(model="rayleigh"), gen)
    assert len(low) == 12 and sum(a != b for a, b in zip(low, qs)) >= 9  # at -10 dB most come back garbled


def test_received_questions_is_a_share(capsys, tmp_path):
    from unitocom.cli import main
    assert main(["train", "mllm", "--received-questions", "1.5", "--steps", "1", "--no-install",
                 "--run-dir", str(tmp_path)]) != 0
    assert "--received-questions 1.5: a share in 0..1" in capsys.readouterr().err


def test_an_image_encoder_starts_as_no_change_reads_the_scene_both_ways_and_leaves_generated_pictures_alone():
    """MLLMConfig.image_encoder: a fresh encoder adds nothing (a warm start begins as its source); once it has
    learnt, a received image's first token reads its last (bidirectional) and each embedding changes; the tokens
    text-to-image draws (received=False) never pass through it, and image_features is what the slots read."""
    base = dataclasses.replace(_model(40).cfg, image_positions=8)
    torch.manual_seed(0)
    plain = MLLM(base).eval()
    enc = MLLM(dataclasses.replace(base, image_encoder=2)).eval()
    state = enc.state_dict()
    state.update(plain.state_dict())
    enc.load_state_dict(state)
    t = torch.randn(2, 8, 4)
    with torch.no_grad():
        assert torch.equal(enc.embed_tokens(t, "image", received=True), plain.embed_tokens(t, "image", received=True))
        torch.nn.init.normal_(enc.image_encoder.out.weight, std=0.1)  # as after training
        e = enc.embed_tokens(t, "image", received=True)
        assert not torch.allclose(e, plain.embed_tokens(t, "image", received=True))
        t2 = t.clone()
        t2[:, -1] += 1.0
        assert not torch.allclose(enc.embed_tokens(t2, "image", received=True)[:, 0], e[:, 0])  # first reads last
        assert torch.equal(enc.embed_tokens(t, "image"), plain.embed_tokens(t, "image"))  # T2I's own tokens
        assert torch.equal(enc.embed_tokens(t, "audio", received=True), plain.embed_tokens(t, "audio", received=True))
        f = enc.image_features(t)
        assert f.shape == (2, 8, base.hidden)
        e2, f2 = enc.embed_received_image(t)
        assert torch.equal(e2, e) and torch.equal(f2, f)
        assert torch.allclose(enc.image_encoder.out(f), e - plain.embed_tokens(t, "image", received=True), atol=1e-5)


def test_a_warm_start_with_an_image_encoder_starts_as_its_source_and_its_slots_train_the_encoder(small_world):
    """--image-encoder 2 --object-slots 1 on a warm start: at lr 0 the answers' loss of step 1 is the source's
    (the encoder starts as no change), the checkpoint records the encoder and the loaded model runs it; the slots
    read the encoder's features, so their loss reaches the encoder and not the backbone."""
    from unitocom.mllm import slots
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import TrainConfig, loss_of, train
    from unitocom.models.channel_torch import TorchChannelSpec
    d, links = small_world
    src = d / "enc-src"
    base = {"batch": 4, "val_every": 1, "val_n": 4, "log_every": 1, "task_weights": (("vqa", 1),)}
    train(str(d / "data"), str(src), links=links, resume=False, tc=TrainConfig(steps=2, **{**base, "val_every": 2}))
    for name, extra in (("enc-0", {}), ("enc-2", {"image_encoder": 2, "object_slots": 1.0})):
        train(str(d / "data"), str(d / name), links=links, resume=False,
              tc=TrainConfig(steps=1, lr=0.0, init=str(src / "mllm.safetensors"), **base, **extra))
    first = [json.loads(open(d / n / "log.jsonl").readline()) for n in ("enc-0", "enc-2")]
    assert first[1]["lm"] == pytest.approx(first[0]["lm"], rel=1e-6) and first[1]["slots"] > 0
    model, _, meta = load_mllm(d / "enc-2/mllm.safetensors")
    assert model.cfg.image_encoder == 2 and hasattr(model, "image_encoder") and hasattr(model, "slots")
    assert "val_slots_count_20db" in meta["validation"]
    image_link, _, frontend, vocab, _ = load_links(config.load("tiny"), links)
    data = TaskData(d / "data", "val", image_link, None, frontend, vocab, 32)
    data.slot_targets = slots.targets(d / "data", "val", len(data.clevr_mu))
    rows = data.examples("vqa", [0, 1, 2], torch.full((3,), 20.0), TorchChannelSpec(model="rayleigh"),
                         torch.Generator().manual_seed(0))
    model.train()
    packed = seq.pack(model, rows)
    with torch.no_grad():  # the slots read the features the scenes' embeddings were made from
        scenes = torch.stack([r[1].value for r in rows])
        torch.testing.assert_close(packed.object_features, model.image_features(scenes))
    out = loss_of(model, packed, 1, torch.Generator().manual_seed(0), slot_weight=1.0)
    out["slots"].backward()
    assert model.image_encoder.layers.layers[0].linear1.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in model.backbone.parameters())


def test_pretraining_an_image_encoder_leaves_the_mllm_as_it_was_and_trains_only_the_encoder_and_slots():
    """`train image-encoder`: the MLLM with the encoder added embeds every input as its source did (the encoder's
    output projection starts and stays zero and frozen), and only the encoder's layers and the slot head learn;
    one step of the slots' loss moves them and nothing else."""
    from unitocom.mllm import encoder_train as pre
    from unitocom.mllm import slots
    src = MLLM(dataclasses.replace(_model(40).cfg, image_positions=8)).eval()
    model = pre.with_encoder(src, 2)
    params = pre.trainable(model)
    assert model.cfg.image_encoder == 2 and model.cfg.object_slots == slots.SLOTS
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("image_encoder.layers.", "image_encoder.norm.", "slots.")) for n in names)
    assert len(params) == len(names)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target = torch.zeros(3, slots.SLOTS, slots.WIDTH)
    target[..., :4] = slots.EMPTY
    target[:, 0, :4], target[:, 0, 4] = torch.tensor([0.0, 1.0, 2.0, 1.0]), 1.0
    opt = torch.optim.AdamW(params, lr=1e-2)
    loss = slots.loss_per_example(model.slots(model.image_features(torch.randn(3, 8, 4))), target).mean()
    loss.backward()
    opt.step()
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("image_encoder.layers.", "image_encoder.norm.", "slots.")) for k in moved)
    t = torch.randn(2, 8, 4)
    with torch.no_grad():
        assert torch.equal(model.embed_tokens(t, "image", received=True), src.embed_tokens(t, "image", received=True))


SHIPPED_MLLM = Path(__file__).resolve().parents[1] / "checkpoints" / "mllm-sigma-genib.safetensors"


@pytest.mark.skipif(not SHIPPED_MLLM.exists(), reason="needs the installed MLLM")
def test_image_encoder_command_resumes_as_an_unbroken_run_and_records_its_source(tmp_path, heldout_data, capsys):
    """`unitocom train image-encoder` on the installed MLLM: stopped at step 2 and run again, it ends where an
    unbroken 4-step run ends, bit for bit; the checkpoint names its source by sha256 and its command; the older
    script's options (--mllm, --out) run the same command."""
    from safetensors.torch import load_file

    from tests.conftest import load_script, without_encoder
    from unitocom.cli import main
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.train.provenance import file_sha256
    src = without_encoder(SHIPPED_MLLM, tmp_path / "source.safetensors")
    common = ["train", "image-encoder", "--init", str(src), "--data", str(heldout_data), "--steps", "4",
              "--batch-size", "8", "--eval-every", "2", "--n-val", "16"]
    assert main(common + ["--run-dir", str(tmp_path / "a")]) == 0
    assert main(common + ["--run-dir", str(tmp_path / "b"), "--stop-at", "2"]) == 0
    assert not (tmp_path / "b" / "mllm.safetensors").exists()  # stopped: a state, no checkpoint
    assert main(common + ["--run-dir", str(tmp_path / "b")]) == 0
    a, b = (load_file(str(tmp_path / r / "mllm.safetensors")) for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _, _, meta = load_mllm(str(tmp_path / "a" / "mllm.safetensors"))
    rec = meta["image_encoder_pretraining"]
    assert rec["source_sha256"] == file_sha256(src) and rec["config"]["steps"] == 4
    assert [r["step"] for r in rec["log"]] == [2, 4] and {"color", "shape"} <= set(rec["log"][-1]["20db"])
    pre = load_script("scripts/pretrain_image_encoder.py")
    out = tmp_path / "c" / "pretrained.safetensors"
    out.parent.mkdir()
    assert pre.main(["--mllm", str(src), "--data", str(heldout_data), "--steps", "4", "--batch-size", "8",
                     "--eval-every", "2", "--n-val", "16", "--out", str(out)]) == 0
    c = load_file(str(out))
    assert all(torch.equal(a[k], c[k]) for k in a)
    cmd = load_mllm(str(out))[2]["image_encoder_pretraining"]["command"]
    assert cmd.startswith(f"unitocom train image-encoder --init {src} ") and "--out" not in cmd
    # a token cache of the same data (float32 means: what the data set gives) trains the same weights
    from unitocom.mllm import token_cache
    cache = tmp_path / "cache"
    token_cache.make(heldout_data, cache, ["sigma-genib"], log=lambda *_: None)
    at = common.index("--data") + 1
    assert main(common[:at] + [str(cache)] + common[at + 1:] + ["--run-dir", str(tmp_path / "d")]) == 0
    d = load_file(str(tmp_path / "d" / "mllm.safetensors"))
    assert all(torch.equal(a[k], d[k]) for k in a)
    # a cache made before the slots keeps no targets to teach the encoder: refused by name, nothing written
    from safetensors.torch import save_file
    f = cache / "sigma-genib-train.safetensors"
    save_file({k: v for k, v in load_file(str(f)).items() if k != "slot_targets"}, str(f))
    capsys.readouterr()
    assert main(common[:at] + [str(cache)] + common[at + 1:] + ["--run-dir", str(tmp_path / "e")]) == 2
    assert "train image-encoder: the token cache" in capsys.readouterr().err
    assert not (tmp_path / "e" / "mllm.safetensors").exists()


def _object_token_model(vocab: int, **kw) -> MLLM:
    from unitocom.mllm import slots
    torch.manual_seed(0)
    cfg = dataclasses.replace(_model(vocab).cfg, image_positions=8, image_encoder=1, object_slots=slots.SLOTS,
                              object_tokens=True, **kw)
    return MLLM(cfg).eval()


def test_object_tokens_follow_a_received_image_and_are_the_slots_reading():
    """MLLMConfig.object_tokens: a received image embeds as its S tokens, then one token per slot made from the slot
    head's reading of the encoder's features (each attribute's probabilities sum to 1); T2I's own tokens and audio
    get none; an MLLM without the encoder or the slots is refused."""
    from unitocom.mllm import slots
    m = _object_token_model(40)
    t = torch.randn(2, 8, 4)
    with torch.no_grad():
        e, f = m.embed_received_image(t)
        assert e.shape == (2, 8 + slots.SLOTS, m.cfg.hidden) and f.shape == (2, 8, m.cfg.hidden)
        x = slots.object_inputs(m.slots(f))
        assert x.shape == (2, slots.SLOTS, slots.INPUT_WIDTH)
        start = 0
        for values in slots.ATTRIBUTES.values():
            torch.testing.assert_close(x[..., start:start + len(values)].sum(-1), torch.ones(2, slots.SLOTS))
            start += len(values)
        torch.testing.assert_close(e[:, 8:], m.object_in(x) + m.object_pos)
        assert torch.equal(m.embed_tokens(t, "image", received=True), e)
        assert m.embed_tokens(t, "image").shape[1] == 8 and m.embed_tokens(t, "audio", received=True).shape[1] == 8
    for kw in ({"image_encoder": 0}, {"object_slots": 0}):
        with pytest.raises(ValueError, match="need image_encoder and object_slots"):
            MLLM(dataclasses.replace(m.cfg, **kw))
        with pytest.raises(ValueError, match="need image_encoder and object_slots"):
            MLLM(dataclasses.replace(m.cfg, object_tokens=False, answer_by_program=True, **kw))


def test_with_object_tokens_the_answer_is_predicted_after_them_and_batched_answers_equal_single_ones():
    """pack places the answer's targets after the scene's K object tokens and counts them in the prompt, and
    greedy answers are the same one prompt at a time and left-padded together (what the base station batches)."""
    from unitocom.mllm import slots, tasks
    v = seq.Vocab(CharBpe())
    m = _object_token_model(len(v))
    img = torch.randn(8, 4)
    p = seq.pack(m, [seq.vqa(v, img, "q?", "ab"), seq.t2i(v, "cap", img)])
    sep = 3 + 8 + slots.SLOTS + 1 + 2  # <bos><vqa><boi> img*8 objects*K <eoi> q ? <sep>
    assert p.lm_targets[0, sep].item() == ord("a") and p.lm_targets[0, sep + 2].item() == v["<eos>"]
    assert (p.lm_targets[0, :sep] == seq.IGNORE).all()
    assert p.prefix.tolist() == [sep + 1, 6] and p.diff_index[0].tolist() == [1, 5]  # T2I unchanged
    scenes = [torch.randn(8, 4) for _ in range(3)]
    questions = ["q?", "a longer q?", "x"]
    one = tasks.answer(m, v, scenes, questions, max_new=4)
    assert tasks.answer(m, v, scenes, questions, max_new=4, batched=True) == one


def test_a_warm_start_with_object_tokens_records_them_and_the_answers_loss_reaches_the_slot_head(small_world):
    """--object-tokens on a warm start from an MLLM with an image encoder: the checkpoint records them, the loaded
    model embeds them, and the answers' loss alone moves the slot head (its reading is the tokens' input)."""
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import TrainConfig, loss_of, train
    from unitocom.models.channel_torch import TorchChannelSpec
    d, links = small_world
    src, dst = d / "objtok-src", d / "objtok"
    base = {"batch": 4, "val_every": 1, "val_n": 4, "log_every": 1, "task_weights": (("vqa", 1),),
            "object_slots": 1.0}
    train(str(d / "data"), str(src), links=links, resume=False, tc=TrainConfig(steps=1, image_encoder=1, **base))
    train(str(d / "data"), str(dst), links=links, resume=False,
          tc=TrainConfig(steps=1, init=str(src / "mllm.safetensors"), object_tokens=True, **base))
    model, _, meta = load_mllm(dst / "mllm.safetensors")
    assert model.cfg.object_tokens and hasattr(model, "object_in") and "val_slots_count_20db" in meta["validation"]
    image_link, _, frontend, vocab, _ = load_links(config.load("tiny"), links)
    data = TaskData(d / "data", "val", image_link, None, frontend, vocab, 32)
    rows = data.examples("vqa", [0, 1], torch.full((2,), 20.0), TorchChannelSpec(model="rayleigh"),
                         torch.Generator().manual_seed(0))
    model.train()
    loss_of(model, seq.pack(model, rows), 1, torch.Generator().manual_seed(0))["lm"].backward()
    assert model.slots.attributes[0].weight.grad.abs().sum() > 0


def test_object_tokens_need_the_slots_and_an_image_encoder(small_world, capsys, tmp_path):
    from unitocom.cli import main
    d, _ = small_world
    for extra in ([], ["--object-slots", "1"]):
        assert main(["train", "mllm", "--data", str(d / "data"), "--object-tokens", *extra, "--steps", "1",
                     "--no-install", "--run-dir", str(tmp_path)]) == 2
        assert "--object-tokens reads the object slots of the image encoder" in capsys.readouterr().err


def test_an_mllm_that_answers_by_program_runs_the_program_it_writes_on_the_slots_reading(monkeypatch):
    """answer_by_program: each question's written program runs on the objects the slots read from its scene; a
    program that does not parse is answered by the MLLM itself (what `answer` gives without programs); batched and
    one at a time alike. The programs are set here (a fresh MLLM writes noise); the scenes' objects are the
    slots' real reading."""
    from unitocom.mllm import slots, tasks
    v = seq.Vocab(CharBpe())
    m = MLLM(dataclasses.replace(_object_token_model(len(v)).cfg, object_tokens=False, answer_by_program=True)).eval()
    scenes = [torch.randn(8, 4) for _ in range(3)]
    questions = ["How many things?", "q?", "Are there things?"]
    written = ["things many", "things any many", "things any"]  # the second does not type: counts a truth
    for name in ("_generate", "_generate_batch"):
        real = getattr(tasks, name)

        def fake(model, vocab, prompts, max_new, clock, real=real):
            if prompts[0][0].value[2] != vocab["<boi>"]:  # the program prompts: <bos><vqa> question <sep>
                return written[:len(prompts)]
            return real(model, vocab, prompts, max_new, clock)
        monkeypatch.setattr(tasks, name, fake)
    with torch.no_grad():
        objects = slots.scene_objects(m.slots(m.image_features(torch.stack(scenes))))
    plain = MLLM(dataclasses.replace(m.cfg, answer_by_program=False)).eval()
    plain.load_state_dict(m.state_dict())
    own = tasks.answer(plain, v, scenes[1:2], questions[1:2], max_new=4)
    for batched in (False, True):
        answers, got, by_program = tasks.answer_by_program(m, v, scenes, questions, max_new=4, batched=batched)
        assert got == written and by_program == [True, False, True]
        assert answers == [str(len(objects[0])), own[0], "yes" if objects[2] else "no"]
        assert tasks.answer(m, v, scenes, questions, max_new=4, batched=batched) == answers


def test_the_prog_task_writes_each_questions_program_and_needs_the_slots(small_world):
    """TaskData's "prog" examples: <bos><vqa> question <sep> | the program in words <eos>, no image; training with
    it needs the image encoder and slots, and then records answer_by_program."""
    from unitocom.data.programs import to_text
    from unitocom.data.layouts import load_clevr_questions
    from unitocom.mllm.checkpoint import load_links, load_mllm
    from unitocom.mllm.data import TaskData
    from unitocom.mllm.train import TrainConfig, train
    from unitocom.models.channel_torch import TorchChannelSpec
    d, links = small_world
    image_link, _, frontend, vocab, _ = load_links(config.load("tiny"), links)
    data = TaskData(d / "data", "val", image_link, None, frontend, vocab, 32)
    qs = [q for q in load_clevr_questions(d / "data", "val") if q["image_index"] < len(data.clevr_mu)]
    assert data.counts()["prog"] == len(qs) > 0
    row = data.examples("prog", [0], torch.zeros(1), TorchChannelSpec(model="rayleigh"), torch.Generator())[0]
    assert [s.kind for s in row] == ["text", "text"] and row[1].target
    assert row[0].value == [vocab["<bos>"], vocab["<vqa>"]] + vocab.encode(qs[0]["question"]) + [vocab["<sep>"]]
    assert vocab.decode(row[1].value[:-1]) == to_text(qs[0]["program"])
    base = {"batch": 4, "val_every": 1, "val_n": 4, "log_every": 1, "task_weights": (("vqa", 1), ("prog", 1))}
    with pytest.raises(ValueError, match="needs an image encoder and object slots"):
        train(str(d / "data"), str(d / "prog-bare"), links=links, resume=False, tc=TrainConfig(steps=1, **base))
    train(str(d / "data"), str(d / "prog"), links=links, resume=False,
          tc=TrainConfig(steps=2, image_encoder=1, object_slots=1.0, **base))
    model, _, meta = load_mllm(d / "prog/mllm.safetensors")
    assert model.cfg.answer_by_program and "val_prog_lm_20db" in meta["validation"]


def test_an_mllms_links_are_found_beside_it_then_in_the_checkpoint_folder_and_a_missing_one_is_named(tmp_path,
                                                                                                    monkeypatch):
    from unitocom.mllm.checkpoint import saved_links
    (tmp_path / "run").mkdir()
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "run/img.safetensors").write_bytes(b"x")
    (tmp_path / "ckpt/img.safetensors").write_bytes(b"x")
    (tmp_path / "ckpt/bpe.json").write_text("{}")
    monkeypatch.setenv("UNITOCOM_CHECKPOINTS", str(tmp_path / "ckpt"))
    meta = {"links": {"image": "img.safetensors", "bpe": "bpe.json"}}
    assert saved_links(meta, tmp_path / "run/mllm.safetensors") == {
        "image": str(tmp_path / "run/img.safetensors"), "bpe": str(tmp_path / "ckpt/bpe.json")}
    with pytest.raises(FileNotFoundError, match="its audio link aud.safetensors is neither beside it nor in"):
        saved_links({"links": {"audio": "aud.safetensors"}}, tmp_path / "run/mllm.safetensors")
