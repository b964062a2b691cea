"""Baseline 2 of the letter's section V, "vanilla SemCom": three task-specific deep JSCC systems, no MLLM.

Each is trained end to end through the differentiable channel (`models.channel_torch`): Rayleigh block fading
with one h per example and stream, MMSE equalisation with known CSI, the SNR drawn per example. Every model
splits into a transmitter half and a receiver half so that the serving path can put the real channel between
them:

- `encode(...)` (the user device): input -> complex64 symbols [B, N], already power-normalised to
  (1/N) ||z||^2 = P per example and stream (`channel_torch.power_normalize`; padded positions send nothing and do
  not count in N). The transmitter is SNR-agnostic (no feedback needed), like MU-DeepSC / DeepSC-ST.
- `decode(z_hat, sinr_db, ...)` (the base station): the MMSE-equalised symbols [B, N] and what the receiver
  knows about the channel: the per-symbol SINR in dB after equalisation, |h|^2 P / N0 [B, N] (the second output
  of `channel_torch.equalize`, clamped to `SNR_DB_CLAMP`), or one value per example [B]. As in the learned link's
  R (`coding_modulation.AdaptiveDemodulator`), the SINR enters twice: as an input feature of every received token
  and through a SwinJSCC-style channel-wise mask (`coding_modulation.SNRMask`).

Channel uses match UniToCom's streams exactly: every "token" is `USES` = 8 complex symbols (16 reals,
`TokenizerConfig.channel_uses_per_token`): an image is 32 tokens = 256 symbols; text is 8 symbols per BPE token
of the project's byte-level BPE (`checkpoints/text-bpe.json`); speech is 32 tokens per 64-frame log-mel chunk
(1.024 s at 16 kHz, hop 256) = 256 symbols per chunk, i.e. 4 symbols per mel frame, the clip padded to whole
chunks as `schemes.learned.audio_chunks` does.

The three systems (parameter counts at the default sizes, `count_parameters`):
- `SemComVQA` (after MU-DeepSC): a small CNN on the 32x32 image -> 256 symbols; BPE question -> embeddings + a
  2-layer Transformer -> 8 symbols per BPE token; each stream crosses the channel with its own h; the receiver
  fuses both received sequences with a 3-layer Transformer and classifies over the training set's answers.
  Trained with an auxiliary scene-attribute loss on the received image tokens (a linear head, training only),
  standing in for MU-DeepSC's pretrained image encoder: trained on the answer alone, the tiny model stayed at the
  question prior (accuracy 0.43 at 20 dB, 0.40 with the image stream erased) after 5000 steps.
- `SemComT2I` (after GenSemCom): the caption's BPE -> text encoder -> 8 symbols per BPE token; the receiver
  reads the received caption features with a Transformer, 16 learned queries (a 4x4 grid) cross-attend to them,
  and a convolutional decoder upsamples 4x4 -> 32x32 RGB, with a 4x4 x 4 latent drawn from N(0, I): a conditional
  VAE (ELBO with a Gaussian likelihood of variance 0.01 per pixel value) whose posterior sees only the scene's
  coarse foreground occupancy, so the latent carries what the caption leaves open (where the objects are) and
  colours and shapes must come over the channel. A first deterministic version (L1 + MSE to the scene) drew the
  conditional-mean picture, the empty background, and the scene checker found ~1 % of the named pairs in it.
  The committed one (3500 steps) draws scene-like pictures (objects of the scenes' shapes on the grey floor) that
  barely depend on the caption: pair recall 0.09 at every SNR, what random scenes score; neither layout-aware
  queries nor the optional pooled caption feature (`pooled`) changed that at this budget.
- `SemComASR` (after DeepSC-ST): standardised log-mel frames -> 1-D convolutions (2 frames per token) + a
  Transformer block -> 8 symbols per token; the receiver (1-D conv + 3 Transformer blocks) emits per-token
  character logits for CTC (blank, A-Z, space, apostrophe), decoded greedily into an upper-case transcript.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from unitocom.models.channel_torch import SNR_DB_CLAMP, power_normalize
from unitocom.models.coding_modulation import SNR_SCALE_DB, SNRMask
from unitocom.models.text_tokenizer import PAD_ID
from unitocom.models.transformer import Block, sincos

FORMAT = "unitocom-semcom/1"
USES = 8  # complex channel uses per token (TokenizerConfig.channel_uses_per_token)
IMAGE_TOKENS = 32  # UniToCom's image stream: 32 tokens x 8 = 256 symbols
IMAGE_SYMBOLS = IMAGE_TOKENS * USES
AUDIO_CHUNK_FRAMES = 64  # TokenizerConfig.audio_chunk_frames
AUDIO_TOKENS = 32  # per chunk (TokenizerConfig.audio_tokens): 2 frames per token
FRAMES_PER_TOKEN = AUDIO_CHUNK_FRAMES // AUDIO_TOKENS
CTC_ALPHABET = " 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # ids 1..28; 0 is the CTC blank
TASKS = ("vqa", "t2i", "asr")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- shared pieces ---------------------------------------------------------------------------------------------

def to_symbols(feat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """feat [B, S, 2 * USES] reals -> complex64 [B, S * USES] at power P per example; mask bool [B, S] (real
    tokens): padded tokens send zeros and do not count in N."""
    b, s, _ = feat.shape
    v = feat.float().reshape(b, s, USES, 2)
    z = torch.complex(v[..., 0], v[..., 1]).reshape(b, s * USES)
    return power_normalize(z, mask=None if mask is None else mask.repeat_interleave(USES, dim=1))


def received_tokens(z_hat: torch.Tensor, sinr_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Equalised symbols [B, S * USES] and SINR dB ([B, S * USES] or [B]) -> token features
    [B, S, 2 * USES + 1] (Re, Im of the token's symbols, their mean SINR / 20 dB) and the token SINR [B, S] dB."""
    b, n = z_hat.shape
    if n % USES:
        raise ValueError(f"{n} symbols is not a whole number of {USES}-symbol tokens")
    s = n // USES
    sinr = sinr_db.to(torch.float32)
    if sinr.dim() == 1:
        sinr = sinr[:, None].expand(b, n)
    sinr = sinr.clamp(*SNR_DB_CLAMP)
    z = z_hat.reshape(b, s, USES)
    q = sinr.reshape(b, s, USES).mean(-1)
    x = torch.cat([z.real.float(), z.imag.float(), (q / SNR_SCALE_DB)[..., None]], dim=-1)
    return x, q


class RxEmbed(nn.Module):
    """Received token features [B, S, 2 * USES + 1] -> [B, S, width], scaled channel-wise by the SNR mask."""

    def __init__(self, width: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(2 * USES + 1, width), nn.GELU(), nn.Linear(width, width))
        self.mask = SNRMask(width)

    def forward(self, z_hat: torch.Tensor, sinr_db: torch.Tensor) -> torch.Tensor:
        x, q = received_tokens(z_hat, sinr_db)
        return self.inp(x) * (0.5 + self.mask(q))


class TextTx(nn.Module):
    """BPE ids [B, L] (+ mask, True = real token) -> complex symbols [B, L * USES]: embeddings + positions ->
    bidirectional Transformer -> 16 reals per token."""

    def __init__(self, vocab: int, max_tokens: int, width: int, layers: int, heads: int):
        super().__init__()
        self.max_tokens = max_tokens
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(sincos(max_tokens, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.out = nn.Linear(width, 2 * USES)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_tokens:
            raise ValueError(f"{ids.shape[1]} BPE tokens; this model takes at most {self.max_tokens}")
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        for blk in self.blocks:
            x = blk(x, mask)
        return to_symbols(self.out(self.ln(x)), mask)


class TextRx(nn.Module):
    """Received text symbols [B, L * USES] -> features [B, L, width] (positions added, Transformer)."""

    def __init__(self, max_tokens: int, width: int, layers: int, heads: int):
        super().__init__()
        self.embed = RxEmbed(width)
        self.pos = nn.Parameter(sincos(max_tokens, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))

    def forward(self, z_hat: torch.Tensor, sinr_db: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(z_hat, sinr_db)
        x = x + self.pos[:, : x.shape[1]]
        for blk in self.blocks:
            x = blk(x, mask)
        return x


def _conv(i: int, o: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.GroupNorm(8, o), nn.GELU())


class ResBlock2d(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(8, c), nn.GELU(), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.body(x))


# --- VQA (MU-DeepSC) -------------------------------------------------------------------------------------------

class SemComVQA(nn.Module):
    """Image stream: float images [B, 3, 32, 32] in [0, 1] -> CNN (32x32 -> 8x8, 64 channels) -> 8 channels at
    8x8 = 512 reals -> 32 tokens (2 horizontally adjacent cells each) x 8 complex = 256 symbols.
    Question stream: BPE ids [B, L] -> 8 complex symbols per token ([B, L * 8]).
    Receiver: both received sequences (RxEmbed + positions + a stream-type embedding) and a class token through
    `fuse_layers` Transformer blocks -> logits [B, len(answers)] over the training set's answers."""

    def __init__(self, answers: list[str], vocab: int = 1024, max_tokens: int = 64, text_width: int = 96,
                 text_layers: int = 2, width: int = 128, fuse_layers: int = 3, heads: int = 4, aux_outputs: int = 0):
        super().__init__()
        self.answers = list(answers)
        self.config = dict(answers=self.answers, vocab=vocab, max_tokens=max_tokens, text_width=text_width,
                           text_layers=text_layers, width=width, fuse_layers=fuse_layers, heads=heads,
                           aux_outputs=aux_outputs)
        self.image_tx = nn.Sequential(_conv(3, 32, 2), _conv(32, 64, 2), ResBlock2d(64), ResBlock2d(64),
                                      nn.Conv2d(64, 2 * USES // 2, 1))  # 8 channels x 8 x 8
        self.question_tx = TextTx(vocab, max_tokens, text_width, text_layers, heads)
        self.image_rx = RxEmbed(width)
        self.question_rx = RxEmbed(width)
        self.image_pos = nn.Parameter(sincos(IMAGE_TOKENS, width))
        self.question_pos = nn.Parameter(sincos(max_tokens, width))
        self.stream_type = nn.Parameter(torch.randn(2, width) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(fuse_layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, len(self.answers))
        # training only: scene-attribute logits (which colour-shape pairs, how many objects) from the received
        # image tokens after fusion, so the image stream learns objects early (see train.semcom)
        self.aux = nn.Linear(width, aux_outputs) if aux_outputs else None

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, 32, 32] in [0, 1] -> complex64 [B, 256] at power P."""
        f = self.image_tx(images * 2.0 - 1.0)  # [B, 8, 8, 8]
        b = f.shape[0]
        f = f.permute(0, 2, 3, 1).reshape(b, IMAGE_TOKENS, 2 * USES)
        return to_symbols(f)

    def encode_question(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids int64 [B, L], mask bool [B, L] -> complex64 [B, L * 8] (zeros at padding), power P over real tokens."""
        return self.question_tx(ids, mask)

    def encode(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both streams: (image symbols [B, 256], question symbols [B, L * 8])."""
        return self.encode_image(images), self.encode_question(ids, mask)

    def decode(self, z_image: torch.Tensor, sinr_image: torch.Tensor, z_question: torch.Tensor,
               sinr_question: torch.Tensor, mask: torch.Tensor, aux: bool = False):
        """Equalised image symbols [B, 256] and question symbols [B, L * 8], their SINR dB ([B, N] or [B]), the
        question mask [B, L] -> answer logits [B, A] (aux=True: and the auxiliary scene logits [B, aux_outputs])."""
        b = z_image.shape[0]
        xi = self.image_rx(z_image, sinr_image) + self.image_pos + self.stream_type[0]
        xq = self.question_rx(z_question, sinr_question)
        xq = xq + self.question_pos[:, : xq.shape[1]] + self.stream_type[1]
        x = torch.cat([self.cls.expand(b, -1, -1), xi, xq], dim=1)
        m = torch.cat([torch.ones(b, 1 + IMAGE_TOKENS, dtype=torch.bool, device=mask.device), mask], dim=1)
        for blk in self.blocks:
            x = blk(x, m)
        x = self.ln(x)
        logits = self.head(x[:, 0])
        if aux:
            return logits, self.aux(x[:, 1: 1 + IMAGE_TOKENS].mean(1))
        return logits

    def answer(self, logits: torch.Tensor) -> list[str]:
        return [self.answers[i] for i in logits.argmax(-1).tolist()]


# --- T2I (GenSemCom) -------------------------------------------------------------------------------------------

class SemComT2I(nn.Module):
    """A conditional VAE generator. Transmitter: caption BPE ids [B, L] -> 8 complex symbols per token.
    Receiver: received caption -> Transformer (`rx_layers`) -> 16 learned queries (a 4x4 grid), each plus its
    cell of the latent z [B, latent, 4, 4] (the layout the caption leaves open: where the objects are), twice
    cross-attend to the caption and self-attend over the grid -> [B, width, 4, 4]; z joined again by a 1x1 conv
    -> three (upsample x2, conv, residual
    block) stages, 128 -> 96 -> 64 -> 32 channels -> conv -> sigmoid (no residual block at 32x32): images
    [B, 3, 32, 32] in [0, 1]. At the receiver z ~ N(0, I) (seeded: a request's seed gives the same picture);
    in training z comes from the posterior q(z | layout) (`posterior`, a small CNN used only in training, on the
    scene's 8x8 foreground occupancy: where the objects are, not their colours or shapes)."""

    def __init__(self, vocab: int = 1024, max_tokens: int = 64, text_width: int = 96, text_layers: int = 2,
                 width: int = 128, rx_layers: int = 2, heads: int = 4, latent: int = 4, pooled: bool = False):
        super().__init__()
        self.config = dict(vocab=vocab, max_tokens=max_tokens, text_width=text_width, text_layers=text_layers,
                           width=width, rx_layers=rx_layers, heads=heads, latent=latent)
        if pooled:
            self.config["pooled"] = True
        # pooled: every grid cell also gets the caption's masked mean feature (global conditioning, no attention
        # needed to learn which colours and shapes the caption names)
        self.pooled = nn.Linear(width, width) if pooled else None
        self.latent = latent
        self.tx = TextTx(vocab, max_tokens, text_width, text_layers, heads)
        self.rx = TextRx(max_tokens, width, rx_layers, heads)
        self.queries = nn.Parameter(sincos(16, width, grid=4).clone())
        self.latent_in = nn.Linear(latent, width)  # each grid cell's query knows its layout before it reads the caption
        self.ln_kv = nn.LayerNorm(width)
        self.ln_q = nn.ModuleList(nn.LayerNorm(width) for _ in range(2))
        self.cross = nn.ModuleList(nn.MultiheadAttention(width, heads, batch_first=True) for _ in range(2))
        self.grid_blocks = nn.ModuleList(Block(width, heads) for _ in range(2))
        self.join = nn.Conv2d(width + latent, width, 1)
        chans = [width, 96, 64, 32]
        stages = []
        for k, (i, o) in enumerate(zip(chans[:-1], chans[1:])):
            stages += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(i, o)]
            if k < len(chans) - 2:  # no residual block at 32x32 (the costliest resolution on a CPU)
                stages.append(ResBlock2d(o))
        self.decoder = nn.Sequential(*stages, nn.Conv2d(chans[-1], 3, 3, 1, 1))
        # q(z | layout), training only: the scene's 8x8 foreground occupancy (where objects are, not what they are:
        # colours and shapes must come from the caption) -> mean and log-variance of z per 4x4 cell
        self.posterior = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(),
                                       nn.Conv2d(64, 2 * latent, 1))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids int64 [B, L], mask bool [B, L] -> complex64 [B, L * 8] at power P over the real tokens."""
        return self.tx(ids, mask)

    def infer(self, layout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: foreground occupancy [B, 1, 8, 8] in [0, 1] (`train.semcom.layout_of`) -> the posterior's
        mean and log-variance [B, latent, 4, 4]."""
        mu, logvar = self.posterior(layout * 2.0 - 1.0).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 5.0)

    def decode(self, z_hat: torch.Tensor, sinr_db: torch.Tensor, mask: torch.Tensor,
               latent: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Equalised caption symbols [B, L * 8], SINR dB ([B, N] or [B]), mask [B, L], and the layout latent
        [B, latent, 4, 4] (None: drawn from N(0, I) with `generator`) -> images [B, 3, 32, 32] in [0, 1]."""
        kv = self.ln_kv(self.rx(z_hat, sinr_db, mask))
        b = kv.shape[0]
        if latent is None:
            latent = torch.randn(b, self.latent, 4, 4, generator=generator).to(kv)
        g = self.queries + self.latent_in(latent.flatten(2).transpose(1, 2))  # [B, 16, W]
        if self.pooled is not None:
            w = mask.to(kv.dtype)[..., None]
            g = g + self.pooled((kv * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0))
        for ln, cross, blk in zip(self.ln_q, self.cross, self.grid_blocks):
            a, _ = cross(ln(g), kv, kv, key_padding_mask=~mask, need_weights=False)
            g = blk(g + a)
        g = g.transpose(1, 2).reshape(b, -1, 4, 4)
        return torch.sigmoid(self.decoder(self.join(torch.cat([g, latent], dim=1))))


# --- ASR (DeepSC-ST) -------------------------------------------------------------------------------------------

def ctc_targets(transcript: str) -> list[int]:
    """An upper-case transcript -> CTC label ids (1..28); characters outside A-Z, space and ' are dropped."""
    text = " ".join(transcript.upper().split())
    return [CTC_ALPHABET.index(c) + 1 for c in text if c in CTC_ALPHABET]


def ctc_greedy(logits: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
    """logits [B, T, 29] -> transcripts: best path, repeats merged, blanks dropped, upper case."""
    best = logits.argmax(-1).tolist()
    out = []
    for b, row in enumerate(best):
        n = len(row) if lengths is None else int(lengths[b])
        chars, prev = [], 0
        for k in row[:n]:
            if k != prev and k != 0:
                chars.append(CTC_ALPHABET[k - 1])
            prev = k
        out.append(" ".join("".join(chars).split()))
    return out


class SemComASR(nn.Module):
    """Standardised log-mel [B, T, mels] (T a multiple of 64 frames: whole chunks) -> 1-D convs (the second with
    stride 2: one token per 2 frames) -> a Transformer block -> 16 reals per token -> complex [B, T/2 * 8]
    (= 4 symbols per frame, 256 per 64-frame chunk). Receiver: RxEmbed -> a residual 1-D conv -> `rx_layers`
    Transformer blocks -> CTC logits [B, T/2, 29] (0 = blank)."""

    def __init__(self, mels: int = 64, width: int = 128, rx_layers: int = 3, heads: int = 4,
                 db_mean: float = 0.0, db_std: float = 1.0, max_tokens: int = 512):
        super().__init__()
        self.config = dict(mels=mels, width=width, rx_layers=rx_layers, heads=heads, db_mean=db_mean,
                           db_std=db_std, max_tokens=max_tokens)
        self.db_mean, self.db_std = db_mean, db_std  # the training set's log-mel standardisation (dB)
        self.conv = nn.Sequential(nn.Conv1d(mels, width, 5, 1, 2), nn.GELU(),
                                  nn.Conv1d(width, width, 4, FRAMES_PER_TOKEN, 1), nn.GELU())
        self.tx_pos = nn.Parameter(sincos(max_tokens, width))
        self.tx_block = Block(width, heads)
        self.tx_ln = nn.LayerNorm(width)
        self.tx_out = nn.Linear(width, 2 * USES)
        self.rx_embed = RxEmbed(width)
        self.rx_conv = nn.Conv1d(width, width, 5, 1, 2)
        self.rx_pos = nn.Parameter(sincos(max_tokens, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(rx_layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, len(CTC_ALPHABET) + 1)

    @staticmethod
    def token_mask(chunks: torch.Tensor, tokens: int) -> torch.Tensor:
        """chunks int [B] (whole chunks per clip) -> bool [B, tokens]: the tokens of real chunks."""
        return torch.arange(tokens, device=chunks.device)[None] < (chunks * AUDIO_TOKENS)[:, None]

    def encode(self, mel: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """mel [B, T, mels] standardised (T = max chunks x 64; clips with fewer chunks padded after them),
        chunks int [B] -> complex64 [B, T/2 * 8] at power P over each clip's real chunks (zeros after them)."""
        if mel.shape[1] % AUDIO_CHUNK_FRAMES:
            raise ValueError(f"{mel.shape[1]} frames is not a whole number of {AUDIO_CHUNK_FRAMES}-frame chunks")
        x = self.conv(mel.transpose(1, 2)).transpose(1, 2)  # [B, T/2, W]
        if x.shape[1] > self.tx_pos.shape[1]:
            raise ValueError(f"clip too long: {x.shape[1]} tokens, at most {self.tx_pos.shape[1]}")
        mask = self.token_mask(chunks, x.shape[1])
        x = self.tx_block(x + self.tx_pos[:, : x.shape[1]], mask)
        return to_symbols(self.tx_out(self.tx_ln(x)), mask)

    def decode(self, z_hat: torch.Tensor, sinr_db: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """Equalised symbols [B, T/2 * 8], SINR dB ([B, N] or [B]), chunks int [B] -> CTC logits [B, T/2, 29]
        (frames after a clip's chunks are masked out of attention; read logits up to chunks * 32)."""
        x = self.rx_embed(z_hat, sinr_db)
        mask = self.token_mask(chunks, x.shape[1])
        x = x + self.rx_conv(x.transpose(1, 2)).transpose(1, 2)
        x = x + self.rx_pos[:, : x.shape[1]]
        for blk in self.blocks:
            x = blk(x, mask)
        return self.head(self.ln(x))

    def transcribe(self, logits: torch.Tensor, chunks: torch.Tensor) -> list[str]:
        return ctc_greedy(logits, chunks * AUDIO_TOKENS)


def asr_features(wave: torch.Tensor, frontend, db_mean: float, db_std: float) -> tuple[torch.Tensor, int]:
    """A clip float32 [T] at the frontend's rate (16 kHz) -> standardised log-mel [chunks * 64, mels] and the
    number of chunks: the wave is zero-padded to whole chunks of 64 x hop samples first, as
    `schemes.learned.audio_chunks` does for the learned audio link."""
    chunk_samples = AUDIO_CHUNK_FRAMES * frontend.hop
    chunks = max(1, -(-wave.shape[-1] // chunk_samples))
    padded = torch.zeros(chunks * chunk_samples)
    padded[: wave.shape[-1]] = wave
    mel = frontend.logmel(padded)
    return (mel - db_mean) / db_std, chunks


MODELS = {"vqa": SemComVQA, "t2i": SemComT2I, "asr": SemComASR}


def build(task: str, config: dict) -> nn.Module:
    return MODELS[task](**config)


# --- checkpoints -----------------------------------------------------------------------------------------------

def save(model: nn.Module, task: str, path: str | Path, extra: dict | None = None, half: bool = True) -> None:
    """safetensors, fp16 weights (loaded as fp32); the task and the constructor's config (and `extra`, JSON) in
    the header, so `load(path)` needs nothing else."""
    from safetensors.torch import save_file
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "task": task, "config": json.dumps(model.config)}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load(path: str | Path) -> tuple[str, nn.Module, dict]:
    """-> (task, model in eval mode with fp32 weights, the extra metadata decoded from JSON)."""
    from safetensors.torch import load_file
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format {meta.get('format')!r})")
    task = meta["task"]
    model = build(task, json.loads(meta["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()})
    extra = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "task", "config")}
    return task, model.eval(), extra


__all__ = ["SemComVQA", "SemComT2I", "SemComASR", "build", "save", "load", "count_parameters", "ctc_targets",
           "ctc_greedy", "PAD_ID", "USES", "IMAGE_SYMBOLS", "TASKS"]
