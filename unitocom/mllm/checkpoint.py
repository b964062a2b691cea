"""Saving and loading the MLLM, and finding the frozen token links and text vocabulary it reads with."""
from __future__ import annotations

import json
from pathlib import Path


from unitocom.config import Config, preset_checkpoint
from unitocom.mllm import sequences as seq
from unitocom.mllm.data import Standardizer
from unitocom.mllm.model import MLLM, MLLMConfig

FORMAT = "unitocom-mllm/1"

def default_links(preset: str, objective: str = "sigma-genib", image_tokens: int | None = None) -> dict[str, str]:
    """The committed links an MLLM reads with (`checkpoints/`, or $UNITOCOM_CHECKPOINTS): the image and audio
    tokenizers of one objective at the preset's token counts (`image_tokens`: another S_v), and the shipped
    byte-level BPE."""
    from unitocom.config import checkpoint_dir, load
    p = load(preset, image_tokens=image_tokens).preset
    d = checkpoint_dir()
    return {"image": str(d / f"{preset_checkpoint(f'image-{objective}-s{p.image_tokens}', preset)}.safetensors"),
            "audio": str(d / f"{preset_checkpoint(f'audio-{objective}-s{p.tokenizer.audio_tokens}', preset)}"
                             ".safetensors"),
            "bpe": str(d / f"{preset_checkpoint('text-bpe', preset)}.json")}


def mllm_path(objective: str = "sigma-genib", image_tokens: int | None = None, preset: str = "tiny",
              resilient: bool = False, spoken: bool = False) -> Path:
    """`mllm-<objective>.safetensors`: one MLLM per tokenizer family (the VAE baseline reads VAE tokens), on
    the preset's image token count; `mllm-<objective>-s<N>.safetensors` for one trained on `image_tokens` = N
    other than the preset's (Fig. 3: pass None for the preset's own); `-resilient` appended for the one trained
    with token dropout (issue 16), `-spoken` for the one trained with spoken questions in its mix (issue 17)."""
    from unitocom.config import checkpoint_dir
    name = f"mllm-{objective}" if image_tokens is None else f"mllm-{objective}-s{image_tokens}"
    name += "-resilient" if resilient else ""
    name += "-spoken" if spoken else ""
    return checkpoint_dir() / f"{preset_checkpoint(name, preset)}.safetensors"  # `preset`'s own


def mllm_path_for(cfg: Config, objective: str = "sigma-genib", resilient: bool = False, spoken: bool = False) -> Path:
    """The MLLM a base station with `cfg` runs for `objective`'s tokens: `cfg.mllm_path` when set (and not
    `resilient`), otherwise the installed one for the config's image token count (`mllm_path`)."""
    from unitocom.config import PRESETS
    if spoken and cfg.spoken_mllm_path:
        return Path(cfg.spoken_mllm_path)
    if cfg.mllm_path and not resilient and not spoken:
        return Path(cfg.mllm_path)
    n = cfg.preset.image_tokens
    return mllm_path(objective, None if n == PRESETS[cfg.preset.name].image_tokens else n, cfg.preset.name,
                     resilient, spoken)


def saved_links(meta: dict, path: str | Path) -> dict[str, str]:
    """The link files the MLLM at `path` was trained with (its `meta["links"]`): each beside it, else in the
    checkpoint folder (`config.checkpoint_dir`); a missing one is an error that names it."""
    from unitocom.config import checkpoint_dir
    path, out = Path(path), {}
    for k, name in meta["links"].items():
        here = [p for p in (path.parent / name, checkpoint_dir() / name) if p.exists()]
        if not here:
            raise FileNotFoundError(f"{path}: its {k} link {name} is neither beside it nor in {checkpoint_dir()}")
        out[k] = str(here[0])
    return out


def load_links(cfg: Config, links: dict[str, str] | None = None, objective: str = "sigma-genib"):
    """(image_link, audio_link or None, mel frontend or None, Vocab, the paths used)."""
    from unitocom.models import token_link
    from unitocom.models.audio_tokenizer import MelFrontend
    from unitocom.models.text_tokenizer import load_bpe

    paths = {**default_links(cfg.preset.name, objective, cfg.preset.image_tokens), **(links or {})}
    for k in ("image", "bpe"):
        if not Path(paths[k]).exists():
            raise FileNotFoundError(f"{k} checkpoint {paths[k]} is missing (train it with `unitocom train tokenizer`)")
    image = token_link.load(paths["image"])
    audio = frontend = None
    if paths.get("audio") and Path(paths["audio"]).exists():
        audio = token_link.load(paths["audio"])
        s = audio.spec
        frontend = MelFrontend(s.audio_rate_hz, s.n_fft, s.hop, s.mels)
    for m in (image, audio):
        if m is not None:
            m.requires_grad_(False)
    return image, audio, frontend, seq.Vocab(load_bpe(paths["bpe"])), paths


def save_mllm(model: MLLM, std: Standardizer, path: str | Path, meta: dict) -> None:
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    state["image_std.mean"], state["image_std.std"] = std.mean.contiguous(), std.std.contiguous()
    save_file(state, str(path), metadata={"format": FORMAT, "config": json.dumps(model.cfg.__dict__),
                                          "meta": json.dumps(meta)})


def _header(path: str | Path) -> dict:
    """An MLLM checkpoint's safetensors metadata (its config and meta as JSON strings), format checked."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    return meta


def mllm_config(path: str | Path) -> MLLMConfig:
    """The architecture an MLLM checkpoint was trained with, read from its header alone."""
    return MLLMConfig(**json.loads(_header(path)["config"]))


def load_mllm(path: str | Path) -> tuple[MLLM, Standardizer, dict]:
    from safetensors.torch import load_file
    meta = _header(path)
    state = load_file(str(path))
    std = Standardizer(state.pop("image_std.mean"), state.pop("image_std.std"))
    model = MLLM(MLLMConfig(**json.loads(meta["config"])))
    model.load_state_dict(state)
    return model.eval(), std, json.loads(meta["meta"])
