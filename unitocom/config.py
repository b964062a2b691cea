"""Typed configuration in one place: presets for the models, defaults for the link, addresses of the services.

Everything a service, the CLI or a benchmark needs to know comes from a `Config` built by `load(preset)`.
Units are in the names: `_db` is decibels, `_s` seconds, `_hz` hertz, `_px` pixels, `_bytes` bytes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

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
    model: str = "awgn"  # awgn | rayleigh | rician
    fading: str = "block"  # block: one h per block_length symbols; fast: one h per symbol
    block_length: int = 0  # 0: one h per modality stream (per frame of eq. (2))
    rician_k_db: float = 10.0
    csi: str = "perfect"  # perfect | estimated
    pilots: int = 8
    erasure_prob: float = 0.0


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


PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        name="tiny", image_size_px=32, audio_rate_hz=16000, image_tokens=32, token_dim=16,
        tokenizer_layers=2, tokenizer_width=96, mllm_layers=3, mllm_hidden=128, mllm_heads=4,
        mllm_intermediate=344, mllm_vocab=512, mllm_max_positions=512, diffusion_head_width=256,
        diffusion_head_depth=3, diffusion_train_steps=1000, diffusion_sample_steps=50,
    ),
    "paper": ModelPreset(
        name="paper", image_size_px=256, audio_rate_hz=24000, image_tokens=32, token_dim=16,
        tokenizer_layers=6, tokenizer_width=512, mllm_layers=24, mllm_hidden=2048, mllm_heads=16,
        # Llama-style 1.4B as in the letter: 24 x 2048 with a 5632-wide SwiGLU and a 32k vocabulary.
        mllm_intermediate=5632, mllm_vocab=32000, mllm_max_positions=4096, diffusion_head_width=1024,
        diffusion_head_depth=6, diffusion_train_steps=1000, diffusion_sample_steps=100,
    ),
}


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
    max_workers: int = 8
    max_concurrent_rpcs: int = 32  # beyond this gRPC answers RESOURCE_EXHAUSTED
    default_deadline_s: float = 120.0
    grace_s: float = 5.0


@dataclass(frozen=True)
class Config:
    preset: ModelPreset
    digital: DigitalLinkConfig = field(default_factory=DigitalLinkConfig)
    channel: ChannelDefaults = field(default_factory=ChannelDefaults)
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    host: str = "127.0.0.1"
    transmitter_port: int = 50051
    channel_port: int = 50052
    basestation_port: int = 50053
    metrics_base_port: int = 9101

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


def load(preset: str = "tiny", **overrides) -> Config:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return Config(preset=PRESETS[preset], **overrides)


def noise_variance(snr_db: float, power: float = POWER_P) -> float:
    """N0 for Es/N0 = snr_db against the power constraint P (complex noise, variance split over I and Q)."""
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db}")
    return power / (10.0 ** (snr_db / 10.0))
