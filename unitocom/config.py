"""Typed configuration in one place: presets for the models, defaults for the link, addresses of the services.

Everything a service, the CLI or a benchmark needs to know comes from a `Config` built by `load(preset)`.
Units are in the names: `_db` is decibels, `_s` seconds, `_hz` hertz, `_px` pixels, `_bytes` bytes.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

# Power constraint P of eq. (1): (1/N) E|z|^2 <= P. Every transmitter normalises to exactly P,
# and SNR in dB is Es/N0 = P / N0, so the channel draws complex noise of variance N0 = P / 10^(snr_db/10).
POWER_P = 1.0


@dataclass(frozen=True)
class DigitalLinkConfig:
    """The traditional scheme of the letter (section V): source codec + channel code + 16-QAM."""

    modulation: str = "qam16"  # bpsk | qpsk | qam16 | qam64
    text_code: str = "turbo"  # the letter: Turbo for text
    media_code: str = "ldpc"  # the letter: LDPC for image and audio
    code_rate: float = 0.5
    ldpc_k: int = 1024  # information bits per LDPC block (5G base graphs, k <= 8448)
    turbo_k: int = 256  # information bits per Turbo block
    ldpc_iterations: int = 20
    turbo_iterations: int = 6
    jpeg_quality: int = 75
    amr_wb_bitrate: int = 23850  # bit/s, the highest AMR-WB mode


@dataclass(frozen=True)
class ChannelDefaults:
    model: str = "awgn"  # awgn | rayleigh | rician | noiseless (the upper bound: y = z)
    fading: str = "block"  # block: one h per block_length symbols; fast: one h per symbol
    block_length: int = 0  # 0: one h per modality stream (per frame of eq. (2))
    rician_k_db: float = 10.0
    csi: str = "perfect"  # perfect | estimated
    pilots: int = 8
    erasure_prob: float = 0.0
    tokens_per_packet: int = 4  # learned schemes' token packets (issue 16)


@dataclass(frozen=True)
class TokenizerConfig:
    """Tokenizers, adaptive coding-modulation and the GenIB objectives (issue 5); sizes per preset.

    Image: a ViT over `image_patch_px` patches with `image_tokens` learned latent queries (TiTok-style 1D tokens).
    Audio: log-mel frames (`audio_mels` bands, hop `audio_hop`) cut into chunks of `audio_chunk_frames`, each
    chunk -> `audio_tokens` time-aligned tokens. Text: byte-level BPE ids -> embeddings -> `token_dim` tokens.
    Every token of `token_dim` reals becomes `channel_uses_per_token` complex symbols (the bandwidth ratio).
    """

    heads: int = 4
    image_patch_px: int = 4  # vit only
    # Image tokenizer architecture: "conv" (convolutional stages around a grid of tokens, `conv_tokenizer`)
    # or "vit" (latent queries, the first tiny tokenizers). The conv one keeps shapes at 32 tokens.
    image_arch: str = "conv"
    image_stem: int = 16  # conv: channels at full resolution, doubled per stage up to image_cap
    image_cap: int = 128
    image_blocks: int = 2
    audio_n_fft: int = 512
    audio_hop: int = 256
    audio_mels: int = 64
    audio_chunk_frames: int = 64  # 64 * 256 / 16 kHz = 1.024 s per chunk
    audio_tokens: int = 32  # S_a per chunk, time-aligned: 64 / 32 = 2 frames (32 ms) per token
    text_vocab: int = 1024  # byte-level BPE: 256 bytes + merges learnt on the captions and questions
    text_max_tokens: int = 64  # longer texts are sent in segments of this many tokens
    channel_uses_per_token: int = 8  # complex symbols per token: 8 for 16 reals is one real per real
    # Objectives: eq. (12) GenIB, eq. (13)-(14) sigma-GenIB, and the VAE baseline (learned variance).
    xi: float = 0.01  # weight of the rate term KL(p(t|x) || N(0, I)) against the distortion term
    vae_xi: float = 0.01  # the VAE's KL weight; 1 (the ELBO) collapsed the tiny image VAE to its prior
    lam: float = 0.5  # lambda of eq. (13): stochastic vs deterministic reconstruction
    k_samples: int = 1  # K of eq. (14)
    # sigma ~ N(0, C_sigma), one draw per example (eq. 13). With E[mu^2] about 1 the latent noise is then a
    # ~20 dB "channel" of its own: 0.1 (~10 dB) trained a decoder that hedged against it and blurred every shape.
    c_sigma: float = 0.01
    # Token consistency (one token space): weight of the normalised ||R(T(t)) - t||^2, see token_link.
    consistency: float = 1.0
    # -log q(x|t) of a Gaussian with this variance per element: distortion = SSE / (2 obs_var), in nats.
    obs_var: float = 0.01
    # Training (Algorithm 1)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    snr_db_range: tuple[float, float] = (-10.0, 25.0)


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of the learned parts (tokenizers, MLLM). `tiny` trains on two CPU cores; `paper` is the letter's."""

    name: str
    image_size_px: int
    audio_rate_hz: int
    image_tokens: int
    token_dim: int
    tokenizer_layers: int
    tokenizer_width: int
    mllm_layers: int
    mllm_hidden: int
    mllm_heads: int
    mllm_intermediate: int  # MLP width of each decoder layer (Llama's SwiGLU)
    mllm_vocab: int  # text vocabulary of the LM head, specials included
    mllm_max_positions: int
    diffusion_head_width: int  # the per-token MLP of eq. (17)-(19)
    diffusion_head_depth: int
    diffusion_train_steps: int  # R of eq. (18)
    diffusion_sample_steps: int  # fewer steps at sampling time (DDPM with a strided schedule)
    mllm_image_positions: int = 0  # learned positions of image tokens in the MLLM (0: none)
    # Activation checkpointing of the MLLM's decoder layers when it trains on CUDA and --activation-checkpointing
    # is not given (`TrainCompute`): the 1.4B model's activations do not fit at the letter's batch without it.
    mllm_activation_checkpointing: bool = False
    # Keep last: it has a default. Tokenizer / coding-modulation / GenIB hyperparameters (issue 5).
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        name="tiny", image_size_px=32, audio_rate_hz=16000, image_tokens=32, token_dim=16,
        tokenizer_layers=2, tokenizer_width=96, mllm_layers=4, mllm_hidden=128, mllm_heads=4,
        mllm_intermediate=344, mllm_vocab=512, mllm_max_positions=512, diffusion_head_width=256,
        diffusion_head_depth=3, diffusion_train_steps=1000, diffusion_sample_steps=50, mllm_image_positions=128,
    ),
    "paper": ModelPreset(
        name="paper", image_size_px=256, audio_rate_hz=24000, image_tokens=32, token_dim=16,
        tokenizer_layers=6, tokenizer_width=512, mllm_layers=24, mllm_hidden=2048, mllm_heads=16,
        # Llama-style 1.4B as in the letter: 24 x 2048 with a 5632-wide SwiGLU and a 32k vocabulary.
        mllm_intermediate=5632, mllm_vocab=32000, mllm_max_positions=4096, diffusion_head_width=1024,
        diffusion_head_depth=6, diffusion_train_steps=1000, diffusion_sample_steps=100,
        mllm_activation_checkpointing=True,
        # The letter's section V: batch 256, AdamW 2e-4, weight decay 0.01; 256 px in 16 px patches, 24 kHz audio.
        tokenizer=TokenizerConfig(heads=8, image_patch_px=16, image_arch="vit", audio_n_fft=1024, audio_hop=384, audio_mels=80,
                                  text_vocab=4096, batch_size=256, lr=2e-4, warmup_steps=1000),
    ),
}


DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class TrainCompute:
    """Where and how a training run computes (issue 15), shared by `unitocom train tokenizer` and `train mllm`
    (their --device, --workers, --activation-checkpointing, --no-fused-adamw, --fsdp). The defaults are the CPU
    runs that made the committed checkpoints, unchanged: fp32, batches drawn in the training loop itself.
    Under `torchrun` the same options hold on every rank (`train.dist`)."""

    device: str = "cpu"  # cpu | cuda | auto (cuda when torch sees a GPU, else cpu); a rank takes cuda:<LOCAL_RANK>
    bf16: bool = True  # bf16 autocast of the MLLM's forward on CUDA (fp32 master weights); the CPU always runs fp32
    # Recompute each decoder layer's activations in the backward pass instead of keeping them (MLLM): memory for
    # compute, needed for the 1.4B model at useful batches. None: on for a preset that asks for it
    # (`ModelPreset.mllm_activation_checkpointing`) when on CUDA, off otherwise.
    activation_checkpointing: bool | None = None
    fused_adamw: bool = True  # AdamW's fused CUDA kernel (one launch for all parameters); ignored on the CPU
    # Worker processes of a torch DataLoader that prepare batches ahead (data sampling, and for the MLLM the frozen
    # link and channel). 0: in the loop, from the run's generator, as the committed checkpoints were trained. >0:
    # batch k is drawn from a generator seeded by (seed, k): reproducible for any worker count and any number of
    # processes, but a different random stream from 0's.
    workers: int = 0
    # Under torchrun, the MLLM sharded with FSDP2 (`fully_shard`: each decoder layer, then the rest) instead of
    # replicated with DDP: parameters, gradients and AdamW moments split over the ranks (the 1.4B model).
    fsdp: bool = False

    def __post_init__(self):
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be one of {list(DEVICES)} (or cuda:N), got {self.device!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, got {self.workers}")

    def resolved(self, local_rank: int | None = None) -> "TrainCompute":
        """`auto` decided (cuda when available) and, for a torchrun rank on CUDA, its own GPU (cuda:<local_rank>)."""
        import torch
        dev = self.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: torch sees no CUDA device (torch {torch.__version__})")
        if dev == "cuda" and local_rank is not None:
            dev = f"cuda:{local_rank}"
        return dataclasses.replace(self, device=dev)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def autocast_bf16(self) -> bool:
        return self.cuda and self.bf16


@dataclass(frozen=True)
class ServiceAddress:
    name: str
    host: str
    port: int
    metrics_port: int

    @property
    def grpc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"


@dataclass(frozen=True)
class ServiceLimits:
    max_message_bytes: int = 64 * 1024 * 1024  # a 1e6-symbol complex64 frame is 8 MB
    max_image_pixels: int = 4096 * 4096
    max_text_chars: int = 100_000
    max_audio_seconds: float = 60.0
    frame_symbols: int = 65536  # symbols per streamed frame
    max_workers: int = 8  # calls that compute at once
    # calls admitted at once (computing + waiting a turn); beyond this RESOURCE_EXHAUSTED. Health and
    # reflection are never counted nor refused (services/common/admission.py)
    max_concurrent_rpcs: int = 32
    default_deadline_s: float = 120.0
    grace_s: float = 5.0
    # a warm-up (loading models, one request through every path) still running after this exits the process
    # non-zero so that it is restarted; generous: a cold paper-preset base station loads GBs
    warmup_timeout_s: float = 600.0
    # torch intra-op threads per service process: the tiny models' small ops spin with more threads on a
    # shared 2-core machine (two orders of magnitude slower seen); raise it for the paper preset on a big host.
    torch_threads: int = 1
    # Dynamic batching of the base station's MLLM work (unitocom.batching): concurrent requests' work runs as
    # one forward of at most batch_max rows; the first waits at most batch_delay_ms for others to join it.
    # 1: every request alone (the library's default, and `basestation --no-batching`); the service's own
    # default is its --batch-max flag.
    batch_max: int = 1
    batch_delay_ms: float = 5.0
    # Users sharing the channel (issue 17): the channel holds every stream of a superposed request until all have
    # arrived (it adds them in the same channel uses); this bounds what it holds, 2**24 symbols = 128 MiB.
    max_superposed_symbols: int = 1 << 24


@dataclass(frozen=True)
class SessionLimits:
    """The base station's table of sessions (requests assembled from several devices' parts, issue 17;
    `unitocom.stages.session`). Every bound is here so that nothing waits for ever and no state outlives its use."""

    # Sessions open at once; one more is RESOURCE_EXHAUSTED. Each open session holds up to (parts - 1) <= 2 worker
    # threads of the base station while its parts wait; 8 of them keep at least half of the default 32 workers for
    # everything else.
    max_open: int = 8
    # How long the base station waits for a session's other parts after the first one arrived, when the request
    # does not say (Session.wait_s), and the most a request may ask for: the longest call deadline of
    # `unitocom.options` (timeout_s <= 600 s), since a part's call cannot wait longer than its own deadline anyway.
    default_wait_s: float = 30.0
    max_wait_s: float = 600.0
    max_id_chars: int = 128
    # Ids of sessions already answered (or expired) are remembered this long, at most `closed_remembered` of them,
    # so that a late or repeated part is refused naming what happened, instead of opening a session that waits in vain.
    closed_memory_s: float = 300.0
    closed_remembered: int = 1024
    # The sweeper removes sessions whose deadline passed with nobody left waiting at most this late.
    sweep_interval_s: float = 0.5


@dataclass(frozen=True)
class Config:
    preset: ModelPreset
    digital: DigitalLinkConfig = field(default_factory=DigitalLinkConfig)
    channel: ChannelDefaults = field(default_factory=ChannelDefaults)
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    sessions: SessionLimits = field(default_factory=SessionLimits)
    host: str = "127.0.0.1"
    # Where the base station runs its MLLM: "cpu", or "cuda" (bf16) when a GPU is there. The tokenizers and
    # the link stay on the CPU (they are small, and their inputs and outputs are numpy arrays).
    device: str = "cpu"
    transmitter_port: int = 50051
    channel_port: int = 50052
    basestation_port: int = 50053
    metrics_base_port: int = 9101
    # The base station's MLLM file, overriding checkpoints/mllm-<objective>.safetensors (or, when the image
    # token count is not the preset's, mllm-<objective>-s<S_v>.safetensors): e.g. a run dir's mllm.safetensors.
    # It serves the schemes whose tokens it was trained on (its meta's objective); None: the installed ones.
    mllm_path: str | None = None
    # The MLLM that reads a VQA request's spoken question (issue 17), overriding
    # checkpoints/mllm-<objective>-spoken.safetensors (e.g. a run dir's mllm.safetensors). None: the installed one.
    spoken_mllm_path: str | None = None

    def address(self, name: str) -> ServiceAddress:
        order = ["transmitter", "channel", "basestation"]
        if name not in order:
            raise KeyError(f"unknown service {name!r}; expected one of {order}")
        i = order.index(name)
        port = (self.transmitter_port, self.channel_port, self.basestation_port)[i]
        return ServiceAddress(name, self.host, port, self.metrics_base_port + i)

    @property
    def services(self) -> list[ServiceAddress]:
        return [self.address(n) for n in ("transmitter", "channel", "basestation")]

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def checkpoint_dir() -> Path:
    """Where the committed checkpoints are read and installed: checkpoints/, or $UNITOCOM_CHECKPOINTS."""
    return Path(os.environ.get("UNITOCOM_CHECKPOINTS", Path(__file__).resolve().parents[1] / "checkpoints"))


def preset_checkpoint(name: str, preset: str) -> str:
    """The file name (no suffix) of checkpoint `name` for `preset`: the preset's name in front, except for the
    tiny preset, whose checkpoints kept the names they were first committed with (`image-sigma-genib-s32`,
    `paper-image-sigma-genib-s32`). A service of one preset so never loads another preset's weights."""
    return name if preset == "tiny" else f"{preset}-{name}"


def checkpoint_preset(name: str) -> str:
    """The preset a checkpoint name belongs to (the inverse of preset_checkpoint)."""
    return next((p for p in PRESETS if p != "tiny" and name.startswith(f"{p}-")), "tiny")


def load(preset: str = "tiny", image_tokens: int | None = None, **overrides) -> Config:
    """The preset's Config with `overrides` of its fields. `image_tokens` (S_v) replaces the preset's image
    token count: the learned schemes then send with `image-<objective>-s<S_v>` and the base station reads them
    with the MLLM trained on that length (Fig. 3)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    if image_tokens is not None and image_tokens != p.image_tokens:
        if isinstance(image_tokens, bool) or not isinstance(image_tokens, int) or image_tokens < 1:
            raise ValueError(f"image_tokens must be a positive integer, got {image_tokens!r}")
        p = dataclasses.replace(p, image_tokens=image_tokens)
    return Config(preset=p, **overrides)


def noise_variance(snr_db: float, power: float = POWER_P) -> float:
    """N0 for Es/N0 = snr_db against the power constraint P (complex noise, variance split over I and Q)."""
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    return power / (10.0 ** (snr_db / 10.0))
