"""Issue 15: `train mllm --init-backbone DIR` starts the MLLM's backbone from a local Hugging Face Llama directory
(config.json + model.safetensors + tokenizer.json), written here by `transformers` and `tokenizers` (no download).
The MLLM keeps the backbone's weights, settings and vocabulary, its own special tokens appended."""
from __future__ import annotations

import json

import pytest
import torch

from unitocom import config
from unitocom.mllm import sequences as seq

WORDS = ("what how many is are there the a an of to left right front behind red blue green gray cube sphere "
         "cylinder small large metal rubber shiny matte color shape size same as other object objects thing things "
         "yes no one two three four five six seven eight nine ten zero").split()


def _write_backbone(d, extra_rows: int = 8):
    """A small random LlamaForCausalLM (grouped-query attention, its own RoPE base and epsilon) saved with
    save_pretrained, and a BPE tokenizer.json that, like Llama's, prepends <s> to what it encodes."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))], trainer)
    from tokenizers import decoders
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(d / "tokenizer.json"))
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size() + extra_rows, hidden_size=64, intermediate_size=96,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      rms_norm_eps=1e-5, rope_theta=5e5, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(str(d))
    return tok, cfg


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf-llama")
    tok, cfg = _write_backbone(d)
    assert (d / "model.safetensors").exists() and (d / "config.json").exists()
    return d, tok, cfg


def _hf_tensors(d):
    from safetensors.torch import load_file
    return load_file(str(d / "model.safetensors"))


def test_the_backbone_starts_as_the_checkpoint_with_its_embedding_extended(backbone):
    from unitocom.mllm.model import MLLM, MLLMConfig, config_from_hf
    d, tok, cfg = backbone
    vocab = seq.Vocab(tok, base=cfg.vocab_size, bare=True)
    # the paper preset on the backbone: the backbone's sizes and vocabulary, not the preset's 24 x 2048 and 32000
    mcfg = config_from_hf(d, MLLMConfig.from_preset(config.load("paper").preset), len(vocab))
    assert (mcfg.hidden, mcfg.layers, mcfg.vocab) == (64, 2, cfg.vocab_size + len(seq.SPECIALS))
    assert json.loads(mcfg.backbone)["num_key_value_heads"] == 2
    m = MLLM.with_local_backbone(mcfg, d)
    hf = _hf_tensors(d)
    assert torch.equal(m.backbone.layers[1].self_attn.k_proj.weight, hf["model.layers.1.self_attn.k_proj.weight"])
    assert m.backbone.layers[0].self_attn.k_proj.weight.shape == (2 * 16, 64)  # grouped-query attention kept
    rows = cfg.vocab_size
    assert torch.equal(m.backbone.embed_tokens.weight[:rows], hf["model.embed_tokens.weight"])
    assert torch.equal(m.lm_head.weight[:rows], hf["lm_head.weight"])
    assert m.backbone.embed_tokens.weight.shape[0] == rows + len(seq.SPECIALS)
    assert vocab["<bos>"] == rows  # the MLLM's specials after the backbone's rows
    # the tokenizer's own <s> is not prepended: the MLLM writes its own <bos>
    assert vocab.encode("how many cubes") == tok.encode("how many cubes", add_special_tokens=False).ids
    # its Llama settings round-trip through the saved MLLM config
    again = MLLMConfig(**json.loads(json.dumps(mcfg.__dict__)))
    assert again.llama().rms_norm_eps == 1e-5 and again.llama().num_key_value_heads == 2


def test_train_mllm_init_backbone_trains_from_it_and_keeps_its_vocabulary(backbone, tmp_path):
    """`unitocom train mllm --init-backbone DIR` (tiny preset's links and data; two steps at learning rate 0, so
    the saved weights are the ones it started from) keeps the backbone's layers, embedding rows and vocabulary."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from unitocom.cli import main
    from unitocom.data.make import make_dataset
    from unitocom.mllm.checkpoint import load_mllm
    d, tok, cfg = backbone
    data = tmp_path / "data"
    make_dataset(data, "tiny", seed=2, scenes=16, clips=2, speech=False, workers=1, progress=False, log=lambda s: None)
    run = tmp_path / "run"
    assert main(["train", "mllm", "--data", str(data), "--run-dir", str(run), "--no-install", "--steps", "2",
                 "--batch-size", "2", "--lr", "0", "--val-every", "2", "--init-backbone", str(d)]) == 0
    saved = load_file(str(run / "mllm.safetensors"))
    hf = _hf_tensors(d)
    rows = cfg.vocab_size
    for k in ("layers.0.self_attn.q_proj.weight", "layers.1.mlp.down_proj.weight", "norm.weight"):
        assert torch.equal(saved[f"backbone.{k}"], hf[f"model.{k}"]), k
    assert torch.equal(saved["backbone.embed_tokens.weight"][:rows], hf["model.embed_tokens.weight"])
    assert saved["backbone.embed_tokens.weight"].shape[0] == rows + len(seq.SPECIALS)
    with safe_open(str(run / "mllm.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert meta["text_tokenizer"]["base"] == rows and meta["backbone"] == str(d.resolve())
    assert (run / "mllm.tokenizer.json").read_text() == (d / "tokenizer.json").read_text()
    model, _, _ = load_mllm(run / "mllm.safetensors")  # loads as any MLLM, the backbone's settings with it
    assert model.cfg.vocab == rows + len(seq.SPECIALS) and model.backbone.config.num_key_value_heads == 2


def test_init_backbone_without_a_tokenizer_says_what_is_missing(tmp_path):
    from unitocom.mllm.train import backbone_vocab
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        backbone_vocab(tmp_path, None)
