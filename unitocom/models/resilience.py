"""Tokens that can be lost (issue 16): which tokens a receiver misses, and how it reads a sequence without them.

The ResiTok idea, on this testbed's links: a de-tokenizer (and the MLLM) trained on sequences whose missing
tokens are replaced by one learned mask token, with token and packet dropout drawn at random rates, degrades
smoothly as tokens go missing; the learned importance head lets a transmitter under a channel-use budget send
the tokens that matter most and leave the rest to the mask.

Conventions (shared by the training, the transmitter and the base station):
- `lost`: bool [B, S], True where the receiver has no token (a lost packet, or a token the budget left out).
- Tokens handed to the MLLM carry a lost token as a row of NaN ([S, d] with NaN rows), so that the sequence
  code and the batching do not need a second tensor; `MLLM.embed_tokens` reads such a row as its learned mask.
- Packets hold consecutive tokens in the order they are sent (raster order of the token grid, or the budget's
  order), `tokens_per_packet` per packet, as `stages.transmitter` cuts them.
"""
from __future__ import annotations

import torch
from torch import nn

# The mixture of loss patterns the resilient models are trained on (fractions of a batch): nothing lost
# (keeps the zero-loss quality), tokens lost i.i.d., whole packets lost, and a budget (the most important
# tokens kept). Rates are drawn uniformly in [0, MAX_LOSS] per example.
PATTERNS = (("none", 0.25), ("tokens", 0.3), ("packets", 0.25), ("budget", 0.2))
MAX_LOSS = 0.6
PACKET_SIZES = (2, 4, 8)


def lost_iid(b: int, s: int, rate: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each token lost with its example's probability rate [B] -> bool [B, S]."""
    return torch.rand(b, s, generator=gen) < rate[:, None]


def lost_packets(b: int, s: int, rate: torch.Tensor, per_packet: int, gen: torch.Generator) -> torch.Tensor:
    """Packets of `per_packet` consecutive tokens, each lost with its example's probability -> bool [B, S]."""
    packets = -(-s // per_packet)
    lost = torch.rand(b, packets, generator=gen) < rate[:, None]
    return lost.repeat_interleave(per_packet, 1)[:, :s]


def keep_top(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The budget: keep the k[b] highest-scoring tokens of each row of scores [B, S] -> lost bool [B, S]."""
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)  # 0 for the most important token
    return rank >= k[:, None]


def training_mask(b: int, s: int, gen: torch.Generator, scores: torch.Tensor | None = None) -> torch.Tensor:
    """One batch's lost tokens [B, S] drawn from PATTERNS (`scores` [B, S]: the importance the budget keeps
    by; without it the budget keeps a random subset)."""
    weights = torch.tensor([w for _, w in PATTERNS])
    kind = torch.multinomial(weights, b, replacement=True, generator=gen)
    rate = torch.rand(b, generator=gen) * MAX_LOSS
    size = torch.tensor(PACKET_SIZES)[torch.randint(len(PACKET_SIZES), (b,), generator=gen)]
    lost = torch.zeros(b, s, dtype=torch.bool)
    names = [n for n, _ in PATTERNS]
    pick = kind == names.index("tokens")
    lost[pick] = lost_iid(b, s, rate, gen)[pick]
    for p in PACKET_SIZES:
        pick = (kind == names.index("packets")) & (size == p)
        lost[pick] = lost_packets(b, s, rate, p, gen)[pick]
    pick = kind == names.index("budget")
    k = torch.clamp(torch.round((1 - rate) * s), 1, s).long()
    sc = scores if scores is not None else torch.rand(b, s, generator=gen)
    lost[pick] = keep_top(sc.detach(), k)[pick]
    return lost


def with_nan_rows(tokens: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
    """tokens [..., S, d], lost [..., S] -> a copy with the lost tokens as NaN rows (the MLLM's convention)."""
    return tokens.masked_fill(lost[..., None], float("nan"))


def nan_rows(tokens: torch.Tensor) -> torch.Tensor:
    """The lost tokens of a [..., S, d] tensor that marks them as NaN rows -> bool [..., S]."""
    return torch.isnan(tokens).any(-1)


class ImportanceHead(nn.Module):
    """Token features [B, S, width] (F_alpha before the posterior) -> importance scores [B, S]: how much the
    picture loses when this token is missing (trained on the leave-one-out distortion, `train.resilient`)."""

    def __init__(self, width: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)[..., 0]


def standardize_rows(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per row of [B, S] (what the importance loss compares: only the order matters)."""
    return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-6)


# --- packet aggregation (issue 16, stretch) ----------------------------------------------------------------------

def grid_adjacency(gh: int, gw: int) -> torch.Tensor:
    """bool [S, S]: tokens of a gh x gw grid (raster order) that touch (4-neighbourhood)."""
    r, c = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    r, c = r.flatten(), c.flatten()
    return ((r[:, None] - r[None]).abs() + (c[:, None] - c[None]).abs()) == 1


def aggregate(importance: torch.Tensor, adjacency: torch.Tensor, per_packet: int, spread: float = 1.0
              ) -> torch.Tensor:
    """The order to send tokens in so that each run of `per_packet` is a packet whose loss costs little: a
    greedy search over assignments against a loss proxy. importance [S] -> a permutation [S].

    Proxy of losing a packet: the square of its tokens' importance (positive, standardised: one packet holding
    two important tokens costs more than two packets holding one each, so important tokens go to different
    packets) plus `spread` per pair of neighbours in it (the mask token's de-tokenizer fills a lost token from
    its neighbours, which a packet of neighbours takes away together). Tokens are placed most important first,
    each in the packet with room whose proxy grows least."""
    s = importance.shape[0]
    packets = -(-s // per_packet)
    w = torch.softmax(importance.float(), 0) * s  # positive, mean 1
    members: list[list[int]] = [[] for _ in range(packets)]
    load = torch.zeros(packets)
    for i in torch.argsort(importance, descending=True).tolist():
        best, cost = -1, float("inf")
        for p in range(packets):
            if len(members[p]) >= per_packet:
                continue
            c = (load[p] + w[i]) ** 2 - load[p] ** 2 + spread * sum(bool(adjacency[i, j]) for j in members[p])
            if c < cost:
                best, cost = p, float(c)
        members[best].append(i)
        load[best] += w[i]
    return torch.tensor([i for m in members for i in sorted(m)])
