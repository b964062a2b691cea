"""The base station's latent MLLM (section IV): one causal Transformer over discrete and continuous tokens.

A Hugging Face Llama decoder is the backbone, fed with `inputs_embeds` (T^0 of the letter): text ids go through
its embedding table, received continuous tokens (image, audio) through a linear projection per modality.
Discrete tokens are predicted by the LM head (eq. 15-16); continuous tokens by the per-token diffusion head
from the hidden state one position earlier (eq. 17), and fed back as the next input.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaModel

from unitocom.config import ModelPreset
from unitocom.mllm.diffusion_head import DiffusionHead
from unitocom.models.conv_tokenizer import grid_code

MODALITIES = ("image", "audio")


@dataclass(frozen=True)
class MLLMConfig:
    vocab: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    token_dim: int  # d of the continuous tokens
    head_width: int
    head_depth: int
    diffusion_train_steps: int = 1000
    diffusion_sample_steps: int = 50
    # Learned positions added to image tokens (0: none, as the first tiny MLLMs). Image tokens lie on a grid in
    # raster order; an absolute code per cell says where a token is without the model having to count.
    image_positions: int = 0
    # image_pos[:image_grid] starts as the 2-D sine-cosine code of an image_grid-token grid (`token_grid`: rows in
    # half the channels, columns in the other half, the tokenizer's own grid code) times image_grid_scale, instead
    # of 0.02-scale noise; learned from there. 0: noise, as every MLLM before issue 12's positions ablation. The
    # tokenizers learnt the same lesson (`models.transformer.sincos`): from noise, "where" starts buried under
    # "what", and relations (left of, behind) ask where.
    image_grid: int = 0
    image_grid_scale: float = 1.0
    # A learned embedding per modality read in place of a lost token (issue 16; a lost token arrives as a NaN
    # row, `models.resilience`). False: the first MLLMs, which read whatever R made of the zeros that arrived.
    lost_token: bool = False
    # Layers of the projection of a received token into the backbone: 1, a linear map (every MLLM before issue
    # 12's ablation); 2, LLaVA-1.5's two-layer MLP (Linear, GELU, Linear), which decodes each compressed token
    # (16 reals) into features before attention mixes them.
    projector_depth: int = 1
    # VQA's sequence order: False, image then question (every MLLM before issue 12's ablation); True, question
    # then image, so that the causal backbone reads the image tokens knowing what is asked (`sequences.vqa`).
    question_first: bool = False
    # Received tokens standardised per dimension before the projection (issue 12): True, the image tokens a VQA
    # prompt carries are read as (t - mean) / std with the statistics the diffusion head's targets use, so VQA
    # and text-to-image feed `in_proj["image"]` the same token space (T2I's inputs are its own standardised
    # tokens), and audio tokens likewise with their own statistics. False (every MLLM before the ablation that
    # introduced it): raw received tokens, whose per-dimension means reach 3.9 with spreads of 0.16-0.6.
    standardized_inputs: bool = False
    # The backbone's Llama settings beyond the sizes above (a JSON object of LlamaConfig fields: key/value heads,
    # head_dim, RoPE, RMSNorm epsilon, ...), kept when the backbone came from a Hugging Face checkpoint
    # (`config_from_hf`); "": LlamaConfig's defaults, as every MLLM trained from scratch here.
    backbone: str = ""
    # Object slots (issue 12, `mllm.slots`): a training head of this many slots that reads each VQA scene's objects
    # from the hidden states over its image tokens; 0 (every MLLM before it): none. The base station never runs it.
    object_slots: int = 0
    # Attention over the prompt (issue 12): False, causal everywhere (the letter's causal Transformer, every MLLM
    # before it); True, a prefix LM (PaliGemma's mask): the prompt's positions (everything before the first
    # predicted token) attend to each other both ways, so a VQA scene's image tokens read the question and each
    # other, and what is predicted stays causal. Generation is unchanged after the prompt. No tensor changes: a
    # causal MLLM can be fine-tuned into one (`train mllm --prefix-attention`).
    prefix_attention: bool = False
    # Layers of a bidirectional image encoder over each received image's embedded tokens (issue 12,
    # `mllm.image_encoder`: the probe reader where an MLLM's vision encoder sits; the object slots read its
    # features). 0 (every MLLM before it): the projected tokens go straight to the backbone.
    image_encoder: int = 0
    # The slot head's reading of each received scene as tokens (issue 12, `mllm.slots.object_inputs`): one token
    # per slot (its attributes' probabilities, presence, centre) after the scene's image tokens, so the backbone
    # reads one object per position, as the probe that learnt relations from the scene record did. Needs
    # image_encoder and object_slots (the slot head runs at the base station then). False (every MLLM before it):
    # the image's tokens only.
    object_tokens: bool = False
    # VQA answered by a program (issue 12, `mllm.tasks.answer`): the MLLM writes the question's program (the "prog"
    # task, `data.programs`) and the base station runs it on the object slots' reading of the received scene
    # (NS-VQA's split of perception and reasoning, the program written by the MLLM as in visual programming); a
    # program that does not parse or run falls back to the MLLM's own answer. Needs image_encoder and object_slots.
    # False (every MLLM before it): the LM head answers.
    answer_by_program: bool = False
    # Text-to-image through a written layout (issue 12, `mllm.layout`): the MLLM writes the caption's layout (the
    # "lay" task) and this renderer draws it as the image tokens, in the diffusion head's standardised space; a
    # layout that does not read falls back to the diffusion head. A JSON object of `LayoutRenderer`'s arguments
    # (`train layout-renderer` sets it); "" (every MLLM before it): the diffusion head draws every caption.
    layout_renderer: str = ""

    @classmethod
    def from_preset(cls, p: ModelPreset, vocab: int | None = None) -> "MLLMConfig":
        return cls(vocab=vocab or p.mllm_vocab, hidden=p.mllm_hidden, layers=p.mllm_layers, heads=p.mllm_heads,
                   intermediate=p.mllm_intermediate, max_positions=p.mllm_max_positions, token_dim=p.token_dim,
                   head_width=p.diffusion_head_width, head_depth=p.diffusion_head_depth,
                   diffusion_train_steps=p.diffusion_train_steps, diffusion_sample_steps=p.diffusion_sample_steps,
                   image_positions=p.mllm_image_positions)

    def llama(self) -> LlamaConfig:
        kw = dict(vocab_size=self.vocab, hidden_size=self.hidden, intermediate_size=self.intermediate,
                  num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.heads,
                  max_position_embeddings=self.max_positions, tie_word_embeddings=False)
        return LlamaConfig(**{**kw, **json.loads(self.backbone or "{}")})


# LlamaConfig fields a Hugging Face backbone brings besides the sizes MLLMConfig holds (`config_from_hf`).
BACKBONE_FIELDS = ("num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_parameters", "rope_theta",
                   "rope_scaling", "attention_bias", "mlp_bias")


def hf_config(path: str | Path) -> LlamaConfig:
    """The config.json of a local Hugging Face directory, which must be a Llama-architecture decoder."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}/config.json is missing: --init-backbone takes a local Hugging Face "
                                "directory (config.json, model.safetensors, tokenizer.json)")
    hf = LlamaConfig.from_pretrained(str(path), local_files_only=True)
    if hf.model_type != "llama":
        raise ValueError(f"{path}: model_type {hf.model_type!r}, the MLLM's backbone is a Llama decoder")
    return hf


def config_from_hf(path: str | Path, base: MLLMConfig, vocab: int) -> MLLMConfig:
    """`base` (the preset's diffusion head, token size, image positions) with the backbone's sizes and settings
    taken from the Hugging Face config at `path`, and `vocab` ids (the backbone's rows and the MLLM's specials)."""
    hf = hf_config(path)
    d = hf.to_dict()
    extra = {k: d[k] for k in BACKBONE_FIELDS if d.get(k) is not None}
    return dataclasses.replace(base, vocab=vocab, hidden=hf.hidden_size, layers=hf.num_hidden_layers,
                               heads=hf.num_attention_heads, intermediate=hf.intermediate_size,
                               max_positions=hf.max_position_embeddings, backbone=json.dumps(extra, sort_keys=True))


def projector(d: int, hidden: int, depth: int) -> nn.Module:
    """A received token [.., d] -> [.., hidden]: linear (depth 1) or an MLP of `depth` layers with GELU between."""
    if depth < 1:
        raise ValueError(f"projector depth must be at least 1, got {depth}")
    if depth == 1:
        return nn.Linear(d, hidden)
    layers: list[nn.Module] = [nn.Linear(d, hidden)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(hidden, hidden)]
    return nn.Sequential(*layers)


class MLLM(nn.Module):
    def __init__(self, cfg: MLLMConfig, backbone: LlamaModel | None = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else LlamaModel(cfg.llama())
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        self.in_proj = nn.ModuleDict({m: projector(cfg.token_dim, cfg.hidden, cfg.projector_depth)
                                      for m in MODALITIES})
        if cfg.image_positions:
            self.image_pos = nn.Parameter(torch.randn(cfg.image_positions, cfg.hidden) * 0.02)
            if cfg.image_grid:
                if cfg.hidden % 4:
                    raise ValueError(f"a grid code needs a hidden size divisible by 4, got {cfg.hidden}")
                with torch.no_grad():
                    self.image_pos[: cfg.image_grid] = grid_code(cfg.image_grid, cfg.hidden) * cfg.image_grid_scale
        if cfg.standardized_inputs:  # set from the training data (`set_input_stats`), saved with the weights
            for m in MODALITIES:
                self.register_buffer(f"in_mean_{m}", torch.zeros(cfg.token_dim))
                self.register_buffer(f"in_std_{m}", torch.ones(cfg.token_dim))
        if cfg.lost_token:
            self.lost = nn.ParameterDict({m: nn.Parameter(torch.randn(cfg.hidden) * 0.02) for m in MODALITIES})
        self.diffusion = DiffusionHead(cfg.token_dim, cfg.hidden, cfg.head_width, cfg.head_depth,
                                       cfg.diffusion_train_steps)
        if cfg.image_encoder:
            from unitocom.mllm.image_encoder import ImageEncoder
            self.image_encoder = ImageEncoder(cfg.hidden, cfg.heads, cfg.image_encoder)
        if cfg.object_slots:
            from unitocom.mllm.slots import ObjectSlots
            self.slots = ObjectSlots(cfg.hidden, cfg.object_slots)
        if (cfg.object_tokens or cfg.answer_by_program) and not (cfg.image_encoder and cfg.object_slots):
            raise ValueError("object tokens and answers by program read the object slots of the image encoder: they "
                             f"need image_encoder and object_slots (got {cfg.image_encoder}, {cfg.object_slots})")
        if cfg.layout_renderer:
            from unitocom.mllm.layout import LayoutRenderer
            self.layout_renderer = LayoutRenderer(**json.loads(cfg.layout_renderer))
        if cfg.object_tokens:
            from unitocom.mllm.slots import INPUT_WIDTH
            self.object_in = nn.Linear(INPUT_WIDTH, cfg.hidden)
            self.object_pos = nn.Parameter(torch.randn(cfg.object_slots, cfg.hidden) * 0.02)

    @classmethod
    def with_local_backbone(cls, cfg: MLLMConfig, path: str | Path) -> "MLLM":
        """The MLLM with its backbone started from a local Hugging Face Llama directory (config.json +
        safetensors; nothing is downloaded), as the letter starts from a pretrained LLM. `cfg` is
        `config_from_hf(path, ...)`: the backbone's sizes, and `cfg.vocab` >= its embedding rows. The embedding
        is extended for the MLLM's own tokens (its specials after the backbone's ids): the backbone's rows are
        copied, the new rows start at the mean of the old ones; the LM head's text rows are the checkpoint's
        (its `lm_head`, or the embedding where it ties them), the new rows again the mean. The projections of
        the continuous tokens, the image positions and the diffusion head start fresh."""
        from transformers.utils import logging as hf_logging
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a causal LM's lm_head is "unexpected" for the bare model: read below
        try:
            backbone = LlamaModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(level)
        emb = backbone.embed_tokens.weight.detach()
        rows = emb.shape[0]
        if backbone.config.hidden_size != cfg.hidden or backbone.config.num_hidden_layers != cfg.layers:
            raise ValueError(f"{path}: hidden size {backbone.config.hidden_size} x {backbone.config.num_hidden_layers} "
                             f"layers, the MLLM config says {cfg.hidden} x {cfg.layers} (build it with config_from_hf)")
        if cfg.vocab < rows:
            raise ValueError(f"{path}: {rows} embedding rows, more than the MLLM's vocabulary of {cfg.vocab}")
        model = cls(cfg)
        state = {k: v for k, v in backbone.state_dict().items() if k != "embed_tokens.weight"}
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if k != "embed_tokens.weight"]:
            raise ValueError(f"{path}: the backbone's tensors do not match (missing {missing}, "
                             f"unexpected {unexpected})")
        head = _hf_lm_head(Path(path))
        if head is None and getattr(backbone.config, "tie_word_embeddings", False):
            head = emb
        with torch.no_grad():
            model.backbone.embed_tokens.weight[:rows] = emb
            model.backbone.embed_tokens.weight[rows:] = emb.mean(0)
            if head is not None:  # a bare LlamaModel directory has no LM head: the MLLM's starts fresh
                model.lm_head.weight[:rows] = head
                model.lm_head.weight[rows:] = head.mean(0)
        return model

    def with_layout_renderer(self, renderer: nn.Module) -> "MLLM":
        """This MLLM with `renderer` (`layout.LayoutRenderer`) inside (cfg.layout_renderer): it then draws a caption
        from the layout it writes (`tasks.imagine`). Every tensor of both copied."""
        model = MLLM(dataclasses.replace(self.cfg, layout_renderer=json.dumps(renderer.config)))
        state = model.state_dict()
        state.update(self.state_dict())
        state.update({f"layout_renderer.{k}": v for k, v in renderer.state_dict().items()})
        model.load_state_dict(state)
        return model

    # -- inputs -------------------------------------------------------------------------------------------------
    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """ids int64 [B, L] -> [B, L, hidden]."""
        return self.backbone.embed_tokens(ids)

    def set_input_stats(self, modality: str, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-dimension mean and std [d] of the `modality` tokens this MLLM reads (cfg.standardized_inputs)."""
        if not self.cfg.standardized_inputs:
            raise ValueError("this MLLM reads raw tokens (standardized_inputs is off)")
        getattr(self, f"in_mean_{modality}").copy_(mean)
        getattr(self, f"in_std_{modality}").copy_(std)

    def embed_tokens(self, tokens: torch.Tensor, modality: str, offset: int = 0,
                     received: bool = False) -> torch.Tensor:
        """Continuous tokens [B, S, d], the first being the image's token number `offset` -> [B, S, hidden].
        received: tokens that crossed the link (a prompt's image or audio), as opposed to the standardised image
        tokens of text-to-image; an MLLM with cfg.standardized_inputs standardises them first.
        A NaN row is a lost token: the learned `lost` embedding (an MLLM without one reads it as zeros).
        A received image goes through the image encoder of an MLLM with one (cfg.image_encoder)."""
        if received and modality == "image" and self.cfg.image_encoder:
            return self.embed_received_image(tokens, offset)[0]
        return self._project(tokens, modality, offset, received)

    def embed_received_image(self, tokens: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """An MLLM with cfg.image_encoder: received image tokens [B, S, d] -> (their embeddings [B, S, hidden],
        the image encoder's features [B, S, hidden] they were made from, what the object slots read). With
        cfg.object_tokens the embeddings are [B, S + K, hidden]: the K slots' tokens follow the image's."""
        e = self._project(tokens, "image", offset, True)
        f = self.image_encoder.features(e)
        e = e + self.image_encoder.out(f)
        if self.cfg.object_tokens:
            from unitocom.mllm.slots import object_inputs
            e = torch.cat([e, self.object_in(object_inputs(self.slots(f)).to(e.dtype)) + self.object_pos.to(e.dtype)],
                          dim=1)
        return e, f

    def image_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Received image tokens [B, S, d] -> the image encoder's features [B, S, hidden] alone."""
        return self.image_encoder.features(self._project(tokens, "image", 0, True))

    def _project(self, tokens: torch.Tensor, modality: str, offset: int, received: bool) -> torch.Tensor:
        lost = torch.isnan(tokens).any(-1, keepdim=True)
        if received and self.cfg.standardized_inputs:
            mean, std = getattr(self, f"in_mean_{modality}"), getattr(self, f"in_std_{modality}")
            tokens = (tokens - mean.to(tokens.dtype)) / std.to(tokens.dtype)
        e = self.in_proj[modality](tokens.masked_fill(lost, 0.0))
        if self.cfg.lost_token:
            e = torch.where(lost, self.lost[modality].to(e.dtype), e)
        if modality == "image" and self.cfg.image_positions:
            s = tokens.shape[1]
            if offset + s > self.cfg.image_positions:
                raise ValueError(f"{offset + s} image tokens, the MLLM has positions for {self.cfg.image_positions}")
            e = e + self.image_pos[offset: offset + s].to(e.dtype)
        return e

    # -- backbone -----------------------------------------------------------------------------------------------
    def hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
               cache: DynamicCache | None = None, position_ids: torch.Tensor | None = None,
               prefix: torch.Tensor | int | None = None) -> tuple[torch.Tensor, DynamicCache | None]:
        """[B, L, hidden] -> normalised last hidden states [B, L, hidden] (the h_i of eq. 15/17) and the cache.
        attention_mask [B, cached + L] (1: a real position); position_ids [B, L] (default: 0.. after the cache).
        prefix: each row's prompt length [B] (or one int), in the sequence's columns counted from the cache's
        first: read by an MLLM with cfg.prefix_attention, whose prompt attends both ways; None: causal."""
        if self.cfg.prefix_attention and prefix is not None:
            cached = cache.get_seq_length() if cache is not None else 0
            attention_mask = prefix_lm_mask(attention_mask, inputs_embeds.shape[0], inputs_embeds.shape[1], cached,
                                            prefix, inputs_embeds.dtype, inputs_embeds.device)
        out = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache,
                            position_ids=position_ids, use_cache=cache is not None)
        return out.last_hidden_state, cache

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(h)

    # -- generation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_text(self, prefix: torch.Tensor, max_new: int, eos_id: int, use_cache: bool = True,
                      top_p: float | None = None, generator: torch.Generator | None = None,
                      on_prefill: Callable[[], None] | None = None, mask: torch.Tensor | None = None
                      ) -> list[list[int]]:
        """Autoregressive text from a prefix of embeddings [B, L, hidden]: greedy, or top-p sampling (eq. 15).
        on_prefill is called once the forward pass over the prefix is done (a timing hook).

        mask [B, L] (1: real, 0: padding) lets prompts of different lengths share one batch. Padding must be on
        the left, so that every row's last position is its own last prompt token and the new tokens of all rows
        are appended in the same column. Each row's positions count its real tokens only (0 at its first real
        token), so a padded row sees exactly the positions and keys it would see alone: greedy answers equal the
        unbatched ones."""
        b = prefix.shape[0]
        cache = DynamicCache() if use_cache else None
        pos = step_pos = None
        if mask is not None:
            if mask.shape != prefix.shape[:2]:
                raise ValueError(f"mask {tuple(mask.shape)} does not match the prefix {tuple(prefix.shape[:2])}")
            mask = mask.to(prefix.device, torch.long)
            if bool((mask[:, -1] == 0).any()):
                raise ValueError("padding must be on the left: every row's last prompt position must be real")
            pos = step_pos = (mask.cumsum(1) - 1).clamp(min=0)
        seq, step_in = prefix, prefix
        out = torch.full((b, 0), eos_id, dtype=torch.long, device=prefix.device)
        done = torch.zeros(b, dtype=torch.bool, device=prefix.device)
        for step in range(max_new):
            h, cache = self.hidden(step_in if use_cache else seq, attention_mask=mask, cache=cache,
                                   position_ids=step_pos if use_cache else pos, prefix=prefix.shape[1])
            if step == 0 and on_prefill is not None:
                on_prefill()
            nxt = self._pick(self.logits(h[:, -1]), top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
            step_in = self.embed_text(nxt[:, None])
            seq = torch.cat([seq, step_in], dim=1)
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
                step_pos = pos[:, -1:] + 1
                pos = torch.cat([pos, step_pos], dim=1)
        return [self._until(row.tolist(), eos_id) for row in out.cpu()]

    @staticmethod
    def _until(ids: list[int], eos_id: int) -> list[int]:
        return ids[: ids.index(eos_id)] if eos_id in ids else ids

    @staticmethod
    def _pick(logits: torch.Tensor, top_p: float | None, generator: torch.Generator | None) -> torch.Tensor:
        if top_p is None:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float(), -1)
        sorted_p, idx = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # smallest set whose mass reaches top_p
        sorted_p = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
        choice = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=generator)
        return idx.gather(-1, choice)[:, 0]

    @torch.no_grad()
    def generate_tokens(self, prefix: torch.Tensor, count: int, modality: str, steps: int | None = None,
                        use_cache: bool = True, generator: torch.Generator | list[torch.Generator] | None = None,
                        prefix_uncond: torch.Tensor | None = None, guidance: float = 1.0,
                        on_prefill: Callable[[], None] | None = None, mask: torch.Tensor | None = None,
                        mask_uncond: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token diffusion: `count` continuous tokens [B, count, d] after a prefix [B, L, hidden]. Each token
        is sampled from the head conditioned on the last hidden state, then fed back through in_proj.
        With prefix_uncond (the same request without its condition, e.g. an empty caption) and guidance > 1,
        classifier-free guidance runs the unconditional sequence alongside.
        on_prefill is called once the forward passes over the prefixes are done (a timing hook).
        mask / mask_uncond [B, L] (1: real): left-padded prefixes of several requests, as in generate_text;
        generator may then be a list, one per row (see DiffusionHead.sample)."""
        steps = steps or self.cfg.diffusion_sample_steps
        runs = [prefix] + ([prefix_uncond] if prefix_uncond is not None else [])
        masks = [mask] + ([mask_uncond] if prefix_uncond is not None else [])
        pos: list[torch.Tensor | None] = []
        for r, m in enumerate(masks):
            if m is not None:
                if m.shape != runs[r].shape[:2] or bool((m[:, -1] == 0).any()):
                    raise ValueError("a mask must match its prefix and pad on the left")
                masks[r] = m = m.to(runs[r].device, torch.long)
            pos.append(None if m is None else (m.cumsum(1) - 1).clamp(min=0))
        step_pos = list(pos)
        caches = [DynamicCache() if use_cache else None for _ in runs]
        seqs, ins = list(runs), list(runs)
        tokens = []
        for i in range(count):
            hs = []
            for r in range(len(runs)):
                h, caches[r] = self.hidden(ins[r] if use_cache else seqs[r], attention_mask=masks[r],
                                           cache=caches[r], position_ids=step_pos[r] if use_cache else pos[r],
                                           prefix=runs[r].shape[1])
                hs.append(h[:, -1])
            if not tokens and on_prefill is not None:
                on_prefill()
            c = self.diffusion.sample(hs[0], steps, generator, hs[1] if len(hs) > 1 else None, guidance)
            tokens.append(c)
            e = self.embed_tokens(c[:, None], modality, offset=i)
            ins = [e] * len(runs)
            seqs = [torch.cat([s, e], dim=1) for s in seqs]
            for r, m in enumerate(masks):
                if m is not None:
                    masks[r] = torch.cat([m, m.new_ones(m.shape[0], 1)], dim=1)
                    step_pos[r] = pos[r][:, -1:] + 1
                    pos[r] = torch.cat([pos[r], step_pos[r]], dim=1)
        return torch.stack(tokens, dim=1)


def prefix_lm_mask(attention_mask: torch.Tensor | None, batch: int, length: int, cached: int,
                   prefix: torch.Tensor | int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The additive attention mask [B, 1, L, cached + L] of a prefix LM: query i (column cached + i) sees key j
    where j is real (attention_mask [B, cached + L], 1: real; None: all) and j <= i, or both lie in the row's
    prompt (the first prefix[b] columns). A padding query also sees itself, so that no row is empty (its output
    is never read). 0 where seen, the dtype's minimum elsewhere: what eager and SDPA attention both add."""
    q = torch.arange(cached, cached + length, device=device)[:, None]
    k = torch.arange(cached + length, device=device)[None, :]
    p = torch.as_tensor(prefix, device=device).reshape(-1, 1, 1).expand(batch, 1, 1)
    seen = (k <= q)[None] | ((q < p) & (k < p))  # [B, L, cached + L]
    if attention_mask is not None:
        seen = seen & attention_mask.to(device).bool()[:, None, :]
    seen = seen | (k == q)[None]
    return torch.zeros(seen.shape, dtype=dtype, device=device).masked_fill(~seen, torch.finfo(dtype).min)[:, None]


def _hf_lm_head(path: Path) -> torch.Tensor | None:
    """`lm_head.weight` of a Hugging Face causal-LM directory's safetensors (one file or shards), if it has one."""
    from safetensors import safe_open
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            if "lm_head.weight" in st.keys():
                return st.get_tensor("lm_head.weight").float()
    return None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
