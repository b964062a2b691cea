"""A language prior for reading received text: the base station decodes a text stream's ids as
argmax_x  log q(x | t_hat) + w * log P(x), with P an n-gram model of the texts the system carries, instead of each
id's own argmax.

Why: at 0 dB over Rayleigh a typed question crosses one fade, and the de-tokenizer, which reads every id alone,
reads fewer than half of the test questions exactly (results/text-links-installed.json). Its per-id posteriors
still hold most of the question: a prior over what questions look like picks the right one among the near misses,
as a speech recogniser's language model does. The stream's length in ids is in its header, so the search is over
texts of that length.

P is interpolated Witten-Bell (parameter-free smoothing: each context gives the lower order the weight of the
number of distinct words seen after it), over the BPE ids plus BOS and EOS, estimated from the distinct training
texts with their counts; the file keeps those texts (2.6 MB for the tiny corpus's 56,871), and the tables are
built at load (about 7 s). The decoder is a beam search over positions. w is chosen on val (`train.text_prior`)
and kept in the file with the beam width.

Not every text is like the corpus, and the text links are trained to carry any text: half of their training
texts are uniformly random ids (`train.data.TextBatches`). So P is that same mixture, P(x) = (1 - r) P_ngram(x) +
r (V - 1)^-L with r = 1/2: the beam searches under the n-gram, and the decision is between its texts and the
argmax text (the best text when every string is alike) under the mixture. A sentence the corpus never held, read
with confidence, keeps its argmax ("Tokens are the units that large models compute with." at 20 dB: the n-gram
alone rewrote it into a question about purple squares); where the channel leaves doubt, the prior pulls towards
the corpus. It is a receiver's choice, not a property of the link (`unitocom train text-prior --help`).
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from pathlib import Path

import torch

FORMAT = "unitocom-text-prior/1"


class NgramPrior:
    """An interpolated Witten-Bell n-gram over ids 0..V-1, with BOS = V and EOS = V + 1.

    texts: distinct id sequences and how often each was seen. log_next(context) -> log P(. | context) [V + 2]."""

    def __init__(self, texts: list[tuple[int, ...]], counts: list[int], vocab: int, order: int,
                 weight: float = 0.5, beam: int = 16, random_share: float = 0.5, meta: dict | None = None):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if not 0.0 <= random_share < 1.0:
            raise ValueError(f"random_share must be in [0, 1), got {random_share}")
        self.vocab, self.order, self.weight, self.beam = vocab, order, float(weight), int(beam)
        self.random_share = float(random_share)
        self.texts, self.counts, self.meta = texts, counts, dict(meta or {})
        bos, eos = vocab, vocab + 1
        tables: list[dict[tuple, Counter]] = [{} for _ in range(order)]  # [context length][context][next id]
        for seq, c in zip(texts, counts):
            s = (bos,) * (order - 1) + tuple(seq) + (eos,)
            for i in range(order - 1, len(s)):
                for k in range(order):
                    tables[k].setdefault(s[i - k:i], Counter())[s[i]] += c
        # each context as (next ids, their counts, distinct next ids): what Witten-Bell reads
        self._tables = [{ctx: (torch.tensor(list(nx.keys())), torch.tensor(list(nx.values()), dtype=torch.float64),
                               float(len(nx))) for ctx, nx in t.items()} for t in tables]
        self._prob = lru_cache(maxsize=16384)(self._prob_uncached)
        # the decoder asks for the same contexts' logs at every position of every beam
        self._log = lru_cache(maxsize=16384)(lambda ctx: self._prob(ctx).float().log())

    @classmethod
    def fit(cls, sequences, vocab: int, order: int, **kw) -> NgramPrior:
        """From id sequences (an iterable of lists of ints, repeats counted)."""
        seen = Counter(tuple(int(i) for i in s) for s in sequences)
        bad = [i for s in seen for i in s if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"id {bad[0]} is outside the vocabulary of {vocab}")
        texts = sorted(seen)
        return cls(texts, [seen[t] for t in texts], vocab, order, **kw)

    def _prob_uncached(self, ctx: tuple) -> torch.Tensor:
        lower = (self._prob(ctx[1:]) if ctx else torch.full((self.vocab + 2,), 1.0 / (self.vocab + 2),
                                                            dtype=torch.float64))
        row = self._tables[len(ctx)].get(ctx)
        if row is None:  # an unseen context: all of its mass to the lower order
            return lower
        ids, counts, types = row
        p = lower * types
        p[ids] += counts
        return p / (counts.sum() + types)

    def log_next(self, context) -> torch.Tensor:
        """log P(next | the last order-1 ids of context) [V + 2], float32; context may start with BOS ids."""
        ctx = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        ctx = (self.vocab,) * (self.order - 1 - len(ctx)) + ctx
        return self._log(ctx)

    def log_prob(self, ids) -> float:
        """log P(ids, EOS | BOS): the prior's score of a whole text."""
        ids = [int(i) for i in ids]
        return float(sum(self.log_next(ids[:i])[w] for i, w in enumerate(ids + [self.vocab + 1])))

    def mixture_log_prob(self, ids) -> float:
        """log P(ids) under the mixture: (1 - r) P_ngram(ids) + r (V - 1)^-L, uniform ids 1..V-1 of that length."""
        a = math.log1p(-self.random_share) + self.log_prob(ids)
        if self.random_share == 0:
            return a
        b = math.log(self.random_share) - len(ids) * math.log(self.vocab - 1)
        return max(a, b) + math.log1p(math.exp(-abs(a - b)))

    @torch.no_grad()
    def decode(self, log_q: torch.Tensor) -> list[int]:
        """log q(x_l = v | t_hat) [L, V] (the de-tokenizer's log-softmax over one text's L ids) -> the L ids with the
        best log q + weight * log P (P the mixture) among the texts the n-gram's beam keeps and the argmax text."""
        L, V = log_q.shape
        if V != self.vocab:
            raise ValueError(f"the de-tokenizer reads {V} ids and the prior {self.vocab}")
        log_q = log_q.float()
        beams: list[tuple[int, ...]] = [()]
        score = torch.zeros(1)
        for pos in range(L):
            prior = torch.stack([self.log_next(b)[:V] for b in beams])  # [B, V]
            total = (score[:, None] + log_q[pos][None] + self.weight * prior).flatten()
            top = total.topk(min(self.beam, total.numel()))
            beams = [beams[i // V] + (i % V,) for i in top.indices.tolist()]
            score = top.values
        argmax = tuple(log_q.argmax(-1).tolist())
        candidates = list(dict.fromkeys(beams + [argmax]))
        rows = torch.arange(L)
        fit = [float(log_q[rows, torch.tensor(c)].sum()) + self.weight * self.mixture_log_prob(c) for c in candidates]
        return list(candidates[max(range(len(fit)), key=fit.__getitem__)])

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        import json

        from safetensors.torch import save_file
        lengths = torch.tensor([len(t) for t in self.texts], dtype=torch.int32)
        flat = torch.tensor([i for t in self.texts for i in t],
                            dtype=torch.int16 if self.vocab + 2 <= 2**15 else torch.int32)  # half the file
        info = {**self.meta, **(meta or {}), "format": FORMAT, "vocab": self.vocab, "order": self.order,
                "weight": self.weight, "beam": self.beam, "random_share": self.random_share}
        save_file({"ids": flat, "lengths": lengths, "counts": torch.tensor(self.counts, dtype=torch.int64)},
                  str(path), metadata={"meta": json.dumps(info, sort_keys=True)})


def load(path: str | Path) -> NgramPrior:
    import json

    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file (format {meta.get('format')!r})")
        flat, lengths, counts = (f.get_tensor(k) for k in ("ids", "lengths", "counts"))
    texts = [tuple(t.tolist()) for t in torch.split(flat.int(), lengths.tolist())]
    return NgramPrior(texts, counts.tolist(), int(meta["vocab"]), int(meta["order"]), float(meta["weight"]),
                      int(meta["beam"]), float(meta["random_share"]), meta)
