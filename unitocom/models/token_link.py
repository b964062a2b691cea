"""One modality's learned link: tokenizer F_alpha, posterior, coding-modulation T, demodulation R and
de-tokenizer F_beta^-1, trained together (Algorithm 1) and saved together in one safetensors file.

    x --F_alpha--> mu (, log sigma^2) --sample--> t --T--> z --channel--> z_hat --R--> t_hat --F_beta^-1--> x_hat

What x is per modality: image float32 [B, 3, H, W] in [0, 1]; audio a standardised log-mel chunk
[B, frames, mels]; text int64 ids [B, L] with a bool mask [B, L].
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from unitocom.config import Config, TokenizerConfig
from unitocom.models import objectives as obj
from unitocom.models.audio_tokenizer import AudioDetokenizer, AudioTokenizer, audio_distortion
from unitocom.models.channel_torch import TorchChannelSpec, transmit
from unitocom.models.conv_tokenizer import ConvImageDetokenizer, ConvImageTokenizer
from unitocom.models.coding_modulation import AdaptiveDemodulator, AdaptiveModulator
from unitocom.models.text_tokenizer import TextDetokenizer, TextTokenizer, text_distortion
from unitocom.models.vit_tokenizer import ImageDetokenizer, ImageTokenizer, image_distortion

MODALITIES: tuple[str, ...] = ("image", "audio", "text")
FORMAT = "unitocom-token-link/1"
OBSOLETE_FIELDS = {"patch_frames"}


@dataclass(frozen=True)
class LinkSpec:
    """Everything needed to rebuild a TokenLink; stored as JSON in the checkpoint's metadata."""

    modality: str
    objective: str
    tokens: int  # S_v per image, S_a per audio chunk; text: the longest segment (S_t = its BPE length)
    token_dim: int
    width: int
    layers: int
    heads: int
    uses_per_token: int
    xi: float
    lam: float
    k_samples: int
    c_sigma: float
    obs_var: float
    cm_hidden: int = 64
    image_stem: int = 32  # channels of the image tokenizer's convolution stem (conv: of the full-resolution stage)
    image_head: int = 16  # channels of the image de-tokenizer's convolution head (vit only)
    # "vit": latent queries (`vit_tokenizer`); "conv": convolutional stages around a grid of tokens
    # (`conv_tokenizer`). Checkpoints written before the field existed are ViTs.
    image_arch: str = "vit"
    image_cap: int = 128  # conv: channel cap of the deepest stages
    image_blocks: int = 2  # conv: residual blocks at the token grid's resolution
    # Token consistency (one token space, eq. 3): weight of ||R(T(t)) - t||^2 / ||t||^2, summed over the
    # example's tokens and dimensions as a Gaussian of this inverse variance (0: off, as before).
    consistency: float = 0.0
    # A learned mask token read in place of lost tokens, and an importance head for token budgets (issue 16,
    # `models.resilience`; trained by `unitocom train resilient` on top of a frozen link).
    resilient: bool = False
    preset: str = "tiny"
    image_size_px: int = 0
    patch_px: int = 0
    audio_rate_hz: int = 0
    n_fft: int = 0
    hop: int = 0
    mels: int = 0
    chunk_frames: int = 0
    db_mean: float = 0.0  # standardisation of the log-mel dB values, measured on the training set
    db_std: float = 1.0
    text_vocab: int = 0
    bpe: str = ""  # file name of the BPE tokenizer, next to the checkpoint

    @property
    def objective_spec(self) -> obj.ObjectiveSpec:
        return obj.ObjectiveSpec(self.objective, self.xi, self.lam, self.k_samples, self.c_sigma)

    @property
    def channel_uses(self) -> int:
        """Complex symbols per image / per audio chunk (text: per token)."""
        return self.tokens * self.uses_per_token if self.modality != "text" else self.uses_per_token

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LinkSpec":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict) -> "LinkSpec":
        # `patch_frames` (audio frames per patch) became chunk_frames / tokens when audio tokens became
        # time-aligned; image and text checkpoints written before carry it as 0.
        return cls(**{k: v for k, v in d.items() if k not in OBSOLETE_FIELDS})

    @classmethod
    def from_config(cls, cfg: Config, modality: str, objective: str, tokens: int | None = None,
                    **overrides) -> "LinkSpec":
        """The preset's sizes and hyperparameters; `overrides` replace any field (e.g. xi=0.1)."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {list(MODALITIES)}, got {modality!r}")
        if objective not in obj.OBJECTIVES:
            raise ValueError(f"objective must be one of {list(obj.OBJECTIVES)}, got {objective!r}")
        p, t = cfg.preset, cfg.preset.tokenizer
        fields = dict(modality=modality, objective=objective, token_dim=p.token_dim, width=p.tokenizer_width,
                      layers=p.tokenizer_layers, heads=t.heads, uses_per_token=t.channel_uses_per_token,
                      xi=t.vae_xi if objective == "vae" else t.xi, lam=t.lam, k_samples=t.k_samples,
                      c_sigma=t.c_sigma, obs_var=t.obs_var, consistency=t.consistency, preset=p.name)
        if modality == "image":
            fields.update(tokens=tokens or p.image_tokens, image_size_px=p.image_size_px, patch_px=t.image_patch_px,
                          image_arch=t.image_arch, image_stem=t.image_stem, image_cap=t.image_cap,
                          image_blocks=t.image_blocks)
        elif modality == "audio":
            fields.update(tokens=tokens or t.audio_tokens, audio_rate_hz=p.audio_rate_hz, n_fft=t.audio_n_fft,
                          hop=t.audio_hop, mels=t.audio_mels, chunk_frames=t.audio_chunk_frames)
        else:
            fields.update(tokens=tokens or t.text_max_tokens, text_vocab=t.text_vocab)
        fields.update(overrides)
        return cls(**fields)


class TokenLink(nn.Module):
    def __init__(self, spec: LinkSpec):
        super().__init__()
        self.spec = s = spec
        if s.modality == "image" and s.image_arch == "conv":
            self.tokenizer = ConvImageTokenizer(s.image_size_px, s.tokens, s.width, s.layers, s.heads,
                                                s.image_stem, s.image_cap, s.image_blocks)
            self.detokenizer = ConvImageDetokenizer(s.image_size_px, s.tokens, s.token_dim, s.width, s.layers,
                                                    s.heads, s.image_stem, s.image_cap, s.image_blocks)
        elif s.modality == "image":
            if s.image_arch != "vit":
                raise ValueError(f"image_arch must be vit or conv, got {s.image_arch!r}")
            self.tokenizer = ImageTokenizer(s.image_size_px, s.patch_px, s.tokens, s.width, s.layers, s.heads,
                                            s.image_stem)
            self.detokenizer = ImageDetokenizer(s.image_size_px, s.patch_px, s.tokens, s.token_dim, s.width,
                                                s.layers, s.heads, s.image_head)
        elif s.modality == "audio":
            self.tokenizer = AudioTokenizer(s.chunk_frames, s.mels, s.tokens, s.width, s.layers, s.heads)
            self.detokenizer = AudioDetokenizer(s.chunk_frames, s.mels, s.tokens, s.token_dim, s.width, s.layers,
                                                s.heads)
        elif s.modality == "text":
            self.tokenizer = TextTokenizer(s.text_vocab, s.tokens, s.width, s.layers, s.heads)
            self.detokenizer = TextDetokenizer(s.text_vocab, s.tokens, s.token_dim, s.width, s.layers, s.heads)
        else:
            raise ValueError(f"unknown modality {s.modality!r}")
        self.posterior = obj.Posterior(s.width, s.token_dim, s.objective_spec.learned_variance)
        self.modulator = AdaptiveModulator(s.token_dim, s.uses_per_token, s.cm_hidden)
        self.demodulator = AdaptiveDemodulator(s.token_dim, s.uses_per_token, s.cm_hidden)
        if s.resilient:
            from unitocom.models.resilience import ImportanceHead
            self.mask_token = nn.Parameter(torch.zeros(s.token_dim))
            self.importance_head = ImportanceHead(s.width)

    # --- the pieces, as the services call them ------------------------------------------------------------
    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """F_alpha before the posterior: x -> [B, S, width]."""
        return self.tokenizer(x, mask) if self.spec.modality == "text" else self.tokenizer(x)

    def tokenize(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F_alpha: x -> (mu [B, S, d], log sigma^2 [B, S, d] or None)."""
        return self.posterior(self.features(x, mask))

    def importance(self, x: torch.Tensor) -> torch.Tensor:
        """x -> importance scores [B, S] of its tokens (resilient links only): the budget sends the highest."""
        if not self.spec.resilient:
            raise ValueError("this link has no importance head (not a resilient link)")
        return self.importance_head(self.features(x))

    def fill_lost(self, tokens: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        """Received tokens [B, S, d] with lost [B, S] -> the lost ones replaced by the learned mask token (a
        resilient link), or left as R made them from the zeros that arrived (any other link)."""
        if not self.spec.resilient:
            return tokens
        return torch.where(lost[..., None], self.mask_token.to(tokens.dtype), tokens)

    def modulate(self, tokens: torch.Tensor, snr_db: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """T: tokens [B, S, d], nominal SNR [B] -> complex64 [B, S * uses] at power P."""
        return self.modulator(tokens, snr_db, mask)

    def demodulate(self, z_hat: torch.Tensor, sinr_db: torch.Tensor) -> torch.Tensor:
        """R: equalised symbols and their SINR (dB), both [B, S * uses] -> tokens [B, S, d]."""
        return self.demodulator(z_hat, sinr_db)

    def detokenize(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """F_beta^-1: tokens -> pixels [B, 3, H, W] | standardised log-mel [B, F, M] | logits [B, L, V]."""
        return self.detokenizer(tokens, mask) if self.spec.modality == "text" else self.detokenizer(tokens)

    def distortion(self, x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """-log q_beta(x | t) per example [B], nats (up to a constant for images and audio)."""
        if self.spec.modality == "image":
            return image_distortion(x, x_hat, self.spec.obs_var)
        if self.spec.modality == "audio":
            return audio_distortion(x, x_hat, self.spec.obs_var)
        return text_distortion(x, x_hat, mask)

    # --- Algorithm 1 ----------------------------------------------------------------------------------------
    def through_channel(self, tokens: torch.Tensor, snr_db: torch.Tensor, channel: TorchChannelSpec,
                        generator: torch.Generator | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Lines 7-8: T, the differentiable channel with perfect-CSI equalisation, R. [B, S, d] -> [B, S, d]."""
        z = self.modulate(tokens, snr_db, mask)
        z_hat, sinr_db = transmit(z, snr_db, channel, generator)
        return self.demodulate(z_hat, sinr_db)

    def loss(self, x: torch.Tensor, snr_db: torch.Tensor, channel: TorchChannelSpec,
             generator: torch.Generator | None = None, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One training step's loss for a batch: x (see module doc), snr_db [B] -> {"loss", "kl", ...}."""
        spec = self.spec.objective_spec
        mu, logvar = self.tokenize(x, mask)  # line 4
        lat = obj.draw_latents(spec, mu, logvar, generator, mask)  # lines 5-6
        n = len(lat.weights)
        rep = (lambda a: None if a is None else a.repeat((n,) + (1,) * (a.dim() - 1)))
        t_hat = self.through_channel(lat.tokens, snr_db.repeat(n), channel, generator, rep(mask))  # lines 7-8
        x_hat = self.detokenize(t_hat, rep(mask))  # line 9
        dist = self.distortion(rep(x), x_hat, rep(mask))  # line 10
        out = obj.total_loss(spec, lat, dist)  # line 11
        nmse = token_nmse(lat.tokens, t_hat, rep(mask))
        if self.spec.consistency > 0:  # R's output is the token itself, not a private code of the de-tokenizer
            elems = lat.tokens[0].numel() if mask is None else rep(mask).sum(1) * lat.tokens.shape[-1]
            out["loss"] = out["loss"] + self.spec.consistency * (nmse * elems / 2.0).mean()
        out["token_nmse"] = nmse.detach().mean()
        out["mu_power"] = (mu.detach() ** 2).mean()
        return out


def token_nmse(t: torch.Tensor, t_hat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """||t_hat - t||^2 / ||t||^2 per example [B] over its (real, unpadded) tokens: how far R's output is from
    the transmitted token. Scale-invariant, gradients included: the power of t is differentiated through, so
    shrinking the tokens cannot buy a smaller error (with the power held constant it could, and the image
    tokens shrank step after step against sigma-GenIB's fixed latent noise)."""
    w = 1.0 if mask is None else mask[..., None].to(t.dtype)
    err = (((t_hat - t) ** 2) * w).flatten(1).sum(1)
    power = ((t ** 2) * w).flatten(1).sum(1).clamp_min(1e-9)
    return err / power


def token_cosine(t: torch.Tensor, t_hat: torch.Tensor) -> torch.Tensor:
    """cos(t_hat, t) per example [B], both flattened over tokens and dimensions."""
    return torch.nn.functional.cosine_similarity(t_hat.flatten(1), t.flatten(1), dim=1)


# --- checkpoints ------------------------------------------------------------------------------------------------

def save(model: TokenLink, path: str | Path, half: bool = True, extra: dict | None = None) -> None:
    """safetensors with the spec (and `extra`) as metadata; fp16 weights unless `half` is False."""
    from safetensors.torch import save_file

    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous()
             for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "spec": model.spec.to_json()}
    if extra:
        meta.update({k: json.dumps(v) for k, v in extra.items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load(path: str | Path) -> TokenLink:
    """A TokenLink in eval mode, weights in float32."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format {meta.get('format')!r})")
    model = TokenLink(LinkSpec.from_json(meta["spec"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()
