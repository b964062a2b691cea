"""Text path: a byte-level BPE (Hugging Face `tokenizers`) learnt on the project's captions and questions, an
embedding of the ids into the token space, and a cross-entropy-trained inverse back to ids.

Why BPE and not a word list: the synthetic corpus has a closed vocabulary, so the learnt merges make every one of
its words a single token (as compact as a word list), while the byte-level fallback still round-trips ANY UTF-8
text exactly (names, digits, other scripts): there is no <unk>, which a word list would need.

Text tokenizer: ids [B, L] -> embedding + positions -> bidirectional Transformer -> features [B, L, W] (the
Posterior head makes them S_t = L tokens of dimension d). De-tokenizer: received tokens [B, L, d] ->
Transformer -> logits [B, L, V]; the loss is the summed cross-entropy, i.e. -log q(x|t) exactly.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from unitocom.models.transformer import Block, sincos

PAD = "<pad>"
PAD_ID = 0  # the first special token, so that id 0 is always padding


def train_bpe(texts, vocab_size: int):
    """A byte-level BPE learnt on `texts` (an iterable of str); returns a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    assert tok.token_to_id(PAD) == PAD_ID
    return tok


def load_bpe(path: str | Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def encode_text(tok, text: str) -> list[int]:
    return tok.encode(text).ids


def decode_ids(tok, ids) -> str:
    return tok.decode([int(i) for i in ids if int(i) != PAD_ID], skip_special_tokens=True)


class TextTokenizer(nn.Module):
    def __init__(self, vocab: int, max_tokens: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(sincos(max_tokens, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids int64 [B, L], mask bool [B, L] (True = real token) -> features [B, L, width]."""
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        for blk in self.blocks:
            x = blk(x, mask)
        return self.ln(x)


class TextDetokenizer(nn.Module):
    def __init__(self, vocab: int, max_tokens: int, token_dim: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(token_dim, width)
        self.pos = nn.Parameter(sincos(max_tokens, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, L, d] -> logits [B, L, V]."""
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        for blk in self.blocks:
            x = blk(x, mask)
        return self.head(self.ln(x))


def text_distortion(ids: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over the real tokens of each sequence: [B] nats."""
    ce = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")  # [B, L]
    return (ce * mask).sum(1)
