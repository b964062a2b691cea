"""The one training scaffolding (`unitocom.train.scaffold`) and the three loops that use it: each keeps its exact
schedule and numerics (the values below were measured with the loops as they were before they shared it), the
resumable state round-trips, and an MLLM run interrupted under the old `train_state.pt` format still resumes."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

# --- the schedules as each loop wrote them before the scaffold (copied verbatim) -----------------------------


def old_tokenizer_lr(step, steps, lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))


def old_mllm_lr(step, steps, lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def old_checker_lr(step, steps, lr):
    return lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + torch.cos(torch.tensor(step / steps * 3.14159)).item())


# --- the world the short runs read: a few scenes, an untrained image link, a small BPE ------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitocom import config
    from unitocom.data.make import make_dataset
    from unitocom.models import token_link
    from unitocom.models.text_tokenizer import train_bpe
    from unitocom.models.token_link import LinkSpec, TokenLink
    from unitocom.train.data import text_corpus
    d = tmp_path_factory.mktemp("scaffold")
    make_dataset(d / "data", "tiny", seed=3, scenes=24, clips=0, speech=False, workers=1, progress=False,
                 log=lambda s: None)
    torch.manual_seed(0)
    train_bpe(text_corpus(d / "data", "train"), 300).save(str(d / "bpe.json"))
    token_link.save(TokenLink(LinkSpec.from_config(config.load("tiny"), "image", "sigma-genib")),
                    d / "img.safetensors")
    return d, {"image": str(d / "img.safetensors"), "audio": str(d / "none.safetensors"),
               "bpe": str(d / "bpe.json")}


SMALL = {"width": 32, "layers": 1, "heads": 2, "cm_hidden": 16}


def _tokenizer_run(world, tmp_path, steps=4):
    from unitocom.train.loop import TrainOptions, train
    d, _ = world
    opts = TrainOptions(modality="image", objective="sigma-genib", tokens=8, snr_db=(-5.0, 20.0), steps=steps,
                        batch_size=4, data_dir=str(d / "data"), run_dir=str(tmp_path / "run"),
                        out=str(tmp_path / "ck" / "image.safetensors"), val_every=100, save_every=2, val_count=2,
                        log_every=1, progress=False, overrides=dict(SMALL), warmup=1, threads=1)
    entry = train(opts, log=lambda s: None)
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    return ([r["loss"] for r in rows if "loss" in r], [r["lr"] for r in rows if "lr" in r],
            _weight_sum(tmp_path / "run" / "state.safetensors", "model."), entry)


def _mllm_run(world, tmp_path, monkeypatch, steps=4, resume=False, out="mllm"):
    from unitocom.mllm import train as T
    d, links = world
    losses = []
    real = T.loss_of

    def recording(*a, **kw):
        o = real(*a, **kw)
        losses.append(float(o["loss"].detach()))
        return o
    monkeypatch.setattr(T, "loss_of", recording)
    tc = T.TrainConfig(steps=steps, batch=4, lr=3e-3, warmup=1, val_every=steps, val_n=2)
    meta = T.train(str(d / "data"), str(tmp_path / out), links=links, tc=tc, limit=16, resume=resume)
    monkeypatch.setattr(T, "loss_of", real)
    return losses[:steps], _weight_sum(tmp_path / out / "mllm.safetensors"), meta


def _checker_run(world, tmp_path, monkeypatch, steps=4):
    from unitocom.metrics import scene_checker as S
    d, _ = world
    losses = []
    real = S.F.cross_entropy

    class _F:  # records the count loss: the step's loss is pairs' BCE + this
        def __getattr__(self, k):
            return getattr(torch.nn.functional, k)

        @staticmethod
        def cross_entropy(*a, **kw):
            out = real(*a, **kw)
            losses.append(float(out.detach()))
            return out
    monkeypatch.setattr(S, "F", _F())
    meta = S.train_checker(d / "data", tmp_path / "checker.safetensors", steps=steps, batch=8, seed=0)
    monkeypatch.setattr(S, "F", torch.nn.functional)
    return losses, _weight_sum(tmp_path / "checker.safetensors"), meta


def _weight_sum(path, prefix=""):
    """sum |w| over a file's floating tensors (named `prefix`...): moves with every step's learning rate."""
    from safetensors.torch import load_file
    w = load_file(str(path))
    return float(sum(v.double().abs().sum() for k, v in w.items()
                     if k.startswith(prefix) and v.is_floating_point() and not k.startswith("image_std")))


# --- the schedules ----------------------------------------------------------------------------------------------

def test_tokenizer_schedule_is_the_old_one_exactly():
    from unitocom.train.loop import lr_at
    for steps, warmup, lr in ((4, 1, 1e-3), (100, 10, 1.0), (2000, 200, 1e-3), (8000, 1000, 2e-4), (5, 0, 3e-3)):
        assert [lr_at(s, steps, lr, warmup) for s in range(steps + 2)] == \
            [old_tokenizer_lr(s, steps, lr, warmup) for s in range(steps + 2)]


def test_mllm_schedule_gives_adamw_the_old_numbers():
    """The old MLLM formula took the cosine of pi * (step - warmup) / span, the shared one of pi * ((step - warmup)
    / span): the two double-precision learning rates can differ in their last bit. AdamW applies them in float32
    (lr / bias correction as the step size, 1 - lr * weight decay as the decay factor), and those are equal at every
    step of the MLLM's configurations: the training is unchanged."""
    from unitocom.mllm.train import TrainConfig, lr_at
    for steps, warmup, lr in ((4, 1, 3e-3), (90, 10, 3e-3), (3000, 100, 2e-3), (4000, 100, 2e-3), (8000, 100, 2e-3)):
        tc = TrainConfig(steps=steps, warmup=warmup, lr=lr)
        for s in range(steps):
            new, old = lr_at(s, tc), old_mllm_lr(s, steps, lr, warmup)
            assert math.isclose(new, old, rel_tol=1e-10), (s, new, old)  # 1 + cos cancels near the end
            bc1 = 1 - 0.9 ** (s + 1)
            assert np.float32(new / bc1) == np.float32(old / bc1), s
            assert np.float32(1 - new * tc.weight_decay) == np.float32(1 - old * tc.weight_decay), s


def test_checker_schedule_is_the_old_one_exactly():
    from unitocom.metrics.scene_checker import checker_lr
    for steps in (4, 1500, 3000):
        assert [checker_lr(s, steps, 2e-3) for s in range(steps)] == [old_checker_lr(s, steps, 2e-3)
                                                                      for s in range(steps)]


def test_warmup_cosine_ends_at_its_floor():
    from unitocom.train.scaffold import warmup_cosine
    assert warmup_cosine(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 1.0, 10) == 1.0 and warmup_cosine(10, 100, 1.0, 10) == 1.0
    assert warmup_cosine(100, 100, 1.0, 10, floor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(100, 100, 1.0, 10) == pytest.approx(0.0)
    assert warmup_cosine(150, 100, 1.0, 10, floor=0.25) == pytest.approx(0.25)  # held after the end


# --- the loops' numerics: losses of a 4-step run measured before the scaffold -----------------------------------
# (rel 1e-5: a changed schedule or optimizer moves them far more; a different CPU's kernels less)

BEFORE = {
    "tokenizer": {"loss": [5492.29736, 4864.42285, 3909.31445, 2151.42969],
                  "lr": [0.001, 0.001, 0.0007750000000000001, 0.00032500000000000015], "weights": 19418.6921958299},
    "mllm": {"loss": [5.677836894989014, 4.229332447052002, 0.9919981956481934, 4.244841575622559],
             "weights": 35988.14887569122},
    "checker": {"loss": [1.4784389734268188, 1.9415563344955444, 1.9247369766235352, 2.2232656478881836],
                "weights": 6119.537224714935},
}


def test_tokenizer_loop_trains_as_before(world, tmp_path):
    loss, lr, weights, _ = _tokenizer_run(world, tmp_path)
    assert lr == BEFORE["tokenizer"]["lr"]
    assert loss == pytest.approx(BEFORE["tokenizer"]["loss"], rel=1e-5)
    assert weights == pytest.approx(BEFORE["tokenizer"]["weights"], rel=1e-6)


def test_mllm_loop_trains_as_before(world, tmp_path, monkeypatch):
    loss, weights, _ = _mllm_run(world, tmp_path, monkeypatch)
    assert loss == pytest.approx(BEFORE["mllm"]["loss"], rel=1e-5)
    assert weights == pytest.approx(BEFORE["mllm"]["weights"], rel=1e-6)
    assert (tmp_path / "mllm" / "train_state.safetensors").exists()
    assert not (tmp_path / "mllm" / "train_state.pt").exists()


def test_checker_trains_as_before_and_logs(world, tmp_path, monkeypatch):
    loss, weights, meta = _checker_run(world, tmp_path, monkeypatch)
    assert loss == pytest.approx(BEFORE["checker"]["loss"], rel=1e-5)
    assert weights == pytest.approx(BEFORE["checker"]["weights"], rel=1e-6)
    from unitocom.metrics.scene_checker import train_checker
    train_checker(world[0] / "data", tmp_path / "c2.safetensors", steps=3, batch=4, log_path=tmp_path / "log.jsonl",
                  log_every=2, progress=False)
    rows = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3, 3] and "loss" in rows[0] and "pair_f1" in rows[-1]["val"]


# --- resume -----------------------------------------------------------------------------------------------------

def test_mllm_resumes_a_run_interrupted_under_the_old_state_format(world, tmp_path, monkeypatch):
    """An MLLM run stopped before the scaffold left `train_state.pt` (torch.save): it resumes from that file, read
    with weights_only=True, exactly as the old code resumed it."""
    from safetensors.torch import load_file

    from unitocom.mllm import train as T
    from unitocom.train import scaffold
    d, links = world
    # a 2-step run, its state rewritten in the old format (what the old loop's torch.save wrote), the new file gone
    _mllm_run(world, tmp_path, monkeypatch, steps=2, out="old")
    model, opt = _mllm_model_and_opt(world, T)
    assert scaffold.load_state(tmp_path / "old" / T.STATE_FILE, model, opt) == 2
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": 2}, tmp_path / "old" / "train_state.pt")
    (tmp_path / "old" / T.STATE_FILE).unlink()
    # the same 2-step run resumed from the new format, for comparison
    _mllm_run(world, tmp_path, monkeypatch, steps=2, out="new")
    tc = T.TrainConfig(steps=4, batch=4, lr=3e-3, warmup=1, val_every=2, val_n=2)
    for out in ("old", "new"):
        T.train(str(d / "data"), str(tmp_path / out), links=links, tc=tc, limit=16, resume=True)
        steps = [json.loads(ln)["step"] for ln in (tmp_path / out / "log.jsonl").read_text().splitlines()]
        assert steps == [2, 4], out
    a, b = (load_file(str(tmp_path / o / "mllm.safetensors")) for o in ("old", "new"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert scaffold.state_meta(tmp_path / "old" / T.STATE_FILE)["step"] == "4"


def _mllm_model_and_opt(world, T):
    from unitocom import config
    from unitocom.mllm.checkpoint import load_links
    from unitocom.mllm.model import MLLM, MLLMConfig
    from unitocom.train import scaffold
    _, _, _, vocab, _ = load_links(config.load("tiny"), world[1])
    model = MLLM(MLLMConfig.from_preset(config.load("tiny").preset, vocab=len(vocab)))
    return model, scaffold.adamw(model, 3e-3, 0.01)


def test_state_round_trips_model_optimizer_generators_and_step(tmp_path):
    from unitocom.train import scaffold
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))
    opt = scaffold.adamw(net, 1e-2, 0.1, betas=(0.9, 0.99), split_decay=True)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 4]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        net(torch.randn(16, 4, generator=gen)).square().mean().backward()
        opt.step()
        opt.zero_grad()
    scaffold.save_state(tmp_path / "s.safetensors", net, opt, 3, {"rng": gen}, meta={"note": "x"})
    assert not list(tmp_path.glob("*.tmp"))
    expect = torch.randn(3, generator=gen)
    net2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))
    opt2 = scaffold.adamw(net2, 1e-2, 0.1, betas=(0.9, 0.99), split_decay=True)
    gen2 = torch.Generator().manual_seed(0)
    assert scaffold.state_meta(tmp_path / "s.safetensors") == {"note": "x", "step": "3"}
    assert scaffold.load_state(tmp_path / "s.safetensors", net2, opt2, {"rng": gen2}) == 3
    assert torch.equal(torch.randn(3, generator=gen2), expect)
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
        assert all(torch.equal(opt.state[p][k], opt2.state[q][k]) for k in opt.state[p])


def test_legacy_state_is_read_without_unpickling_code(tmp_path):
    """`train_state.pt` is read with weights_only=True: a file that would run code on loading is refused."""
    from unitocom.train import scaffold

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"model": {}, "opt": {}, "step": Evil()}, tmp_path / "train_state.pt")
    net = torch.nn.Linear(2, 2)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        scaffold.load_state(tmp_path / "train_state.pt", net, scaffold.adamw(net, 1e-3, 0.0))


def test_latest_state_is_the_newest_file(tmp_path):
    import os

    from unitocom.train import scaffold
    assert scaffold.latest_state(tmp_path / "a", tmp_path / "b") is None
    (tmp_path / "a").write_text("")
    (tmp_path / "b").write_text("")
    os.utime(tmp_path / "a", (1, 1))
    assert scaffold.latest_state(tmp_path / "a", tmp_path / "b") == tmp_path / "b"


def test_jsonl_log_fresh_and_resumed(tmp_path):
    from unitocom.train import scaffold
    p = tmp_path / "log.jsonl"
    with scaffold.JsonlLog(p) as log:
        for s in (1, 2, 3, 4):
            log.write({"step": s, "loss": 1.0 / s})
    with scaffold.JsonlLog(p, resume_step=2) as log:  # the state was saved at 2: 3 and 4 are done again
        log.write({"step": 3})
    assert [json.loads(ln)["step"] for ln in p.read_text().splitlines()] == [1, 2, 3]
    with scaffold.JsonlLog(p) as log:  # a fresh run, a fresh log
        log.write({"step": 1})
    assert p.read_text().count("\n") == 1


def test_tokenizer_manifest_records_the_data_sets_own_checksum(world, tmp_path):
    from unitocom.data.make import dataset_checksum
    d, _ = world
    *_, entry = _tokenizer_run(world, tmp_path, steps=1)
    recorded = json.loads((d / "data" / "manifest.json").read_text())["checksum"]
    assert entry["dataset"]["checksum"] == recorded == dataset_checksum(d / "data")
