"""Issue 15: the training runs' compute options (`config.TrainCompute`) on the CPU: --device auto, DataLoader
workers (reproducible for any worker count), activation checkpointing (the same step, recomputed), and a clear
refusal of --device cuda where torch sees no GPU. The CUDA paths themselves are the `gpu`-marked tests."""
from __future__ import annotations

import json

import pytest
import torch

from unitocom import config
from unitocom.config import TrainCompute

torch.set_num_threads(1)


def test_compute_options_resolve_and_refuse_what_cannot_run():
    assert TrainCompute().device == "cpu" and not TrainCompute().cuda and not TrainCompute().autocast_bf16
    auto = TrainCompute(device="auto").resolved()
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        TrainCompute(device="tpu")
    with pytest.raises(ValueError, match="workers"):
        TrainCompute(workers=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            TrainCompute(device="cuda").resolved()
    else:
        assert TrainCompute(device="cuda").resolved(local_rank=0).device == "cuda:0"
    # the paper preset's 1.4B MLLM checkpoints its activations on CUDA unless told otherwise; tiny never by default
    from unitocom.mllm.train import activation_checkpointing
    paper, tiny = config.load("paper").preset, config.load("tiny").preset
    assert not activation_checkpointing(TrainCompute(), paper)
    assert activation_checkpointing(TrainCompute(activation_checkpointing=True), tiny)
    assert activation_checkpointing(TrainCompute(device="cuda"), paper)  # (not resolved: no GPU needed to ask)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitocom.data.make import make_dataset
    from unitocom.models import token_link
    from unitocom.models.text_tokenizer import train_bpe
    from unitocom.models.token_link import LinkSpec, TokenLink
    from unitocom.train.data import text_corpus
    d = tmp_path_factory.mktemp("compute")
    make_dataset(d / "data", "tiny", seed=4, scenes=24, clips=2, speech=False, workers=1, progress=False,
                 log=lambda s: None)
    cfg = config.load("tiny")
    torch.manual_seed(0)
    train_bpe(text_corpus(d / "data", "train"), 300).save(str(d / "bpe.json"))
    token_link.save(TokenLink(LinkSpec.from_config(cfg, "image", "sigma-genib")), d / "img.safetensors")
    return d, {"image": str(d / "img.safetensors"), "audio": str(d / "none.safetensors"), "bpe": str(d / "bpe.json")}


def _mllm_losses(world, out, **compute) -> list[float]:
    from unitocom.mllm.train import TrainConfig, train
    d, links = world
    tc = TrainConfig(steps=4, batch=4, lr=3e-3, warmup=1, val_every=4, val_n=2, log_every=1,
                     compute=TrainCompute(**compute))
    train(str(d / "data"), str(d / out), links=links, tc=tc, limit=16, resume=False)
    rows = [json.loads(ln) for ln in (d / out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "task" in r]


def test_mllm_batches_from_workers_are_the_same_for_any_worker_count(world):
    one, two = _mllm_losses(world, "w1", workers=1), _mllm_losses(world, "w2", workers=2)
    assert len(one) == 4 and one == two


def test_activation_checkpointing_recomputes_the_same_step(world, monkeypatch):
    from transformers.models.llama import modeling_llama
    calls = {"n": 0}
    # a part inside each layer: the layer's own forward carries transformers' checkpointing wrapper
    real = modeling_llama.LlamaMLP.forward

    def counted(self, *a, **kw):
        calls["n"] += 1
        return real(self, *a, **kw)
    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", counted)
    plain = _mllm_losses(world, "plain")
    n_plain, calls["n"] = calls["n"], 0
    ckpt = _mllm_losses(world, "ac", activation_checkpointing=True)
    assert calls["n"] == n_plain + 4 * 4  # each of the 4 layers ran again in each of the 4 backwards
    assert plain == pytest.approx(ckpt, rel=1e-6, abs=0)


def test_tokenizer_batches_from_workers_are_the_same_for_any_worker_count(world, tmp_path):
    from unitocom.train.loop import TrainOptions, train
    d, _ = world
    losses = []
    for workers in (1, 2):
        opts = TrainOptions(modality="image", objective="sigma-genib", tokens=8, steps=3, batch_size=4,
                            data_dir=str(d / "data"), run_dir=str(tmp_path / f"run{workers}"),
                            out=str(tmp_path / f"ck{workers}" / "image.safetensors"), val_every=100, val_count=2,
                            log_every=1, progress=False, warmup=1, threads=1,
                            overrides={"width": 32, "layers": 1, "heads": 2, "cm_hidden": 16},
                            compute=TrainCompute(workers=workers))
        entry = train(opts, log=lambda s: None)
        assert f"--workers {workers}" in entry["command"]
        rows = [json.loads(ln) for ln in (tmp_path / f"run{workers}" / "log.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in rows if "loss" in r])
    assert len(losses[0]) == 3 and losses[0] == losses[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where torch sees no GPU")
@pytest.mark.parametrize("what", [["mllm"], ["tokenizer", "--modality", "image"]])
def test_device_cuda_without_a_gpu_is_one_clear_line(what, tmp_path, capsys):
    from unitocom.cli import main
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")  # counts as made: the device is what fails
    rc = main(["train", *what, "--device", "cuda", "--data", str(data), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "no CUDA device" in err and "Traceback" not in err
