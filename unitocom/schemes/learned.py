"""The learned schemes: `unitocom` (sigma-GenIB tokenizers) and `vae` (the VAE-tokenizer baseline).

Transmitter, eq. (1): payload -> preset size/rate -> tokens mu = F_alpha(x) -> z = T(mu, SNR), power P.
Base station: y, h_est -> LMMSE equalisation (`link.equalize.mmse_biased`, as in training) -> R(z_hat, SINR)
-> F_beta^-1 -> image / waveform / text. For the reconstruct task the received tokens go straight to the
de-tokenizer; the MLLM tasks read them in `stages/mllm.py`. Stages timed (`unitocom.timing`): source_encode
(preprocessing and F_alpha), channel_encode (T), equalise (LMMSE and R), detokenize (F_beta^-1, and the PNG / WAV
/ text it gives).

Checkpoints (`checkpoints/<name>.safetensors`, `$UNITOCOM_CHECKPOINTS` to point elsewhere) load once per
process and are shared by every request.

What the stream header carries: `tokenizer` (the checkpoint name), `token_shape` (image [S, d], audio
[chunks, S_a, d], text [L, d]), `preprocessing` (what the transmitter did to the input), `audio_rate_hz`, and
for audio `num_samples` (the resampled clip's length), which the receiver uses to cut the last chunk's padding.
"""
from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unitocom.config import POWER_P, Config, checkpoint_dir, preset_checkpoint  # noqa: F401 (checkpoint_dir: its
# home was here, and callers still import it from here)
from unitocom.link.equalize import mmse_biased
from unitocom.messages import LinkSettings, Modality, ModalityOutput, StreamHeader
from unitocom.models.channel_torch import SNR_DB_CLAMP
from unitocom.models.objectives import SCHEME_OBJECTIVE
from unitocom.models.token_link import TokenLink, load
from unitocom.options import Scheme
from unitocom.schemes.encoded import Encoded
from unitocom.stages.request import RequestError, SourcePayload
from unitocom.timing import NOT_TIMED, Clock

OBJECTIVE = {Scheme(s): o for s, o in SCHEME_OBJECTIVE.items()}  # UNITOCOM, VAE
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")  # checkpoint names: never a path
_lock = threading.Lock()
_cache: dict[str, TokenLink] = {}
_bpe_cache: dict[str, object] = {}


def checkpoint_name(scheme: Scheme, modality: Modality, cfg: Config, tokens: int | None = None,
                    resilient: bool = False) -> str:
    """The checkpoint a scheme uses for a modality at the preset's token count (image S_v, audio S_a);
    `resilient`: the link's resilient companion (`unitocom train resilient`)."""
    obj, m = OBJECTIVE[scheme], modality.value
    if m == "text":
        name = preset_checkpoint(f"text-{obj}", cfg.preset.name)
    else:
        s = tokens or (cfg.preset.image_tokens if m == "image" else cfg.preset.tokenizer.audio_tokens)
        name = preset_checkpoint(f"{m}-{obj}-s{s}", cfg.preset.name)
    return f"{name}-resilient" if resilient else name


def model(name: str) -> TokenLink:
    """The TokenLink `name`, loaded on first use and cached for the life of the process."""
    if not _NAME.match(name):
        raise RequestError("header.tokenizer", f"{name!r} is not a checkpoint name")
    path = checkpoint_dir() / f"{name}.safetensors"
    with _lock:
        if str(path) not in _cache:
            if not path.exists():
                raise RequestError("link.scheme", f"checkpoint {name} is not installed ({path} is missing; "
                                   f"{_install_hint(name)})", code="failed_precondition")
            _cache[str(path)] = load(path)
        return _cache[str(path)]


def _install_hint(name: str) -> str:
    if name.endswith("-resilient"):
        return f"train it with `unitocom train resilient --base {name[:-len('-resilient')]}`"
    return "train it with `unitocom train tokenizer`"


def bpe(m: TokenLink):
    path = checkpoint_dir() / m.spec.bpe
    with _lock:
        if str(path) not in _bpe_cache:
            from unitocom.models.text_tokenizer import load_bpe
            _bpe_cache[str(path)] = load_bpe(path)
        return _bpe_cache[str(path)]


PRIOR_FILE = "text-prior.safetensors"  # `unitocom train text-prior`; read when it is in the checkpoint folder
_prior_cache: dict[str, object] = {}


def text_prior(m: TokenLink):
    """The language prior the base station reads this text link's ids with (`models.text_prior`), or None when no
    text-prior.safetensors is installed beside the checkpoints: then each id is its own argmax. A prior made with
    another BPE than the link's is refused, naming both."""
    path = checkpoint_dir() / PRIOR_FILE
    if not path.exists():
        return None
    with _lock:
        if str(path) not in _prior_cache:
            from unitocom.models.text_prior import load as load_prior
            from unitocom.train.provenance import file_sha256
            prior = load_prior(path)
            want = prior.meta.get("bpe_sha256")
            have = file_sha256(checkpoint_dir() / m.spec.bpe)
            if want != have:
                raise RequestError("link.scheme", f"{path} was made for the BPE with sha256 {want}, and "
                                   f"{m.spec.bpe} has {have}: rebuild it with `unitocom train text-prior`",
                                   code="failed_precondition")
            _prior_cache[str(path)] = prior
        return _prior_cache[str(path)]


@torch.no_grad()
def read_ids(m: TokenLink, tokens: torch.Tensor, mask: torch.Tensor, whole: torch.Tensor | None = None
             ) -> torch.Tensor:
    """F_beta^-1's decisions: received text tokens [R, W, d] in rows of segments (`_segments`), mask [R, W] ->
    ids [R, W]. Each id's argmax, or, where a text prior is installed, the prior's best text for the rows that
    hold a whole text (whole [R] bool; None: the rows are one text's segments, whole when there is one row): its
    length is the row's, its BOS and EOS are the row's ends. A row that is one segment of a longer text keeps the
    argmax (the prior knows texts, not pieces of them)."""
    if whole is None:
        whole = torch.full((mask.shape[0],), mask.shape[0] == 1)
    logits = m.detokenize(tokens, mask)
    ids = logits.argmax(-1)
    prior = text_prior(m) if bool(whole.any()) else None
    if prior is not None:
        log_q = logits.log_softmax(-1)
        for r in torch.nonzero(whole).flatten().tolist():
            n = int(mask[r].sum())
            ids[r, :n] = torch.tensor(prior.decode(log_q[r, :n]))
    return ids


def _prior_note(m: TokenLink, whole: bool) -> str:
    """What read_ids did with a text of one segment (whole) or more: the note a text output carries."""
    prior = text_prior(m)
    if prior is None:
        return ""
    if not whole:
        return f"; longer than {m.spec.tokens} tokens: read id by id, without the text prior ({PRIOR_FILE})"
    return f"; read with the text prior ({PRIOR_FILE}: {prior.order}-gram, weight {prior.weight:g}, beam {prior.beam})"


def _frontend(m: TokenLink):
    from unitocom.models.audio_tokenizer import MelFrontend
    s = m.spec
    key = ("frontend", s.audio_rate_hz, s.n_fft, s.hop, s.mels)
    with _lock:
        if key not in _bpe_cache:
            _bpe_cache[key] = MelFrontend(s.audio_rate_hz, s.n_fft, s.hop, s.mels)
        return _bpe_cache[key]


# --- preprocessing ----------------------------------------------------------------------------------------------

def fit_image(image: np.ndarray, size: int) -> tuple[np.ndarray, str]:
    """uint8 [H, W, 3] of any size -> uint8 [size, size, 3] and what was done: the centre square is cropped
    (keeps the aspect ratio) and resized with Pillow's antialiased bicubic filter."""
    h, w = image.shape[:2]
    steps = []
    im = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
    if h != w:
        side = min(h, w)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        steps.append(f"centre-cropped {w}x{h} -> {side}x{side}")
    if im.size != (size, size):
        steps.append(f"resized {im.size[0]}x{im.size[1]} -> {size}x{size} (bicubic)")
        im = im.resize((size, size), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8).copy(), "; ".join(steps) or f"none ({size}x{size} already)"


def fit_audio(wave: np.ndarray, rate_hz: int, target_hz: int) -> tuple[np.ndarray, str]:
    from unitocom.data.loaders import resample
    wave = np.asarray(wave, np.float32)
    if rate_hz == target_hz:
        return wave, f"none ({target_hz} Hz already)"
    return resample(wave, rate_hz, target_hz), f"resampled {rate_hz} -> {target_hz} Hz"


# --- batched pieces, shared with the evaluation ----------------------------------------------------------------

@torch.no_grad()
def images_to_tokens(m: TokenLink, images: np.ndarray) -> torch.Tensor:
    """F_alpha: uint8 [B, S, S, 3] at the model's size -> the tokens mu [B, S_v, d] (mu is what is sent)."""
    x = torch.as_tensor(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0  # a writable copy: a
    # read-only array (a decoded payload's buffer) would otherwise be shared with a tensor torch may write
    mu, _ = m.tokenize(x)
    return mu


def equalize(y: np.ndarray, h_est: np.ndarray, noise_var: float, erased: bool = False, est_error_var: float = 0.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """LMMSE estimate and per-symbol SINR in dB (clamped as in training), any shape. With estimated CSI the
    estimation error counts as extra noise of power est_error_var * P."""
    shape = np.shape(y)
    z, _ = mmse_biased(np.ravel(y), np.ravel(h_est), noise_var, est_error_var)
    h2 = np.abs(np.ravel(h_est)).astype(np.float64) ** 2
    n_eff = noise_var + est_error_var * POWER_P
    sinr = 10.0 * np.log10(np.maximum(h2 * POWER_P / max(n_eff, 1e-30), 1e-6))
    sinr = np.clip(sinr, *SNR_DB_CLAMP)
    if n_eff == 0:
        # A noiseless channel (the upper bound): told 60 dB, R extrapolates past the SNRs it was trained on and
        # recovers worse tokens (audio cos(t_hat, t) 0.976 against 0.994 at 20-25 dB), so a noise-free symbol is
        # read at the top of the training range.
        sinr = np.where(h2 > 0, CLEAN_SNR_DB, SNR_DB_CLAMP[0])
    if erased:  # nothing arrived: tell R so
        z, sinr = np.zeros_like(z), np.full_like(sinr, SNR_DB_CLAMP[0])
    return z.reshape(shape), sinr.astype(np.float32).reshape(shape)


@torch.no_grad()
def symbols_to_tokens(m: TokenLink, z_hat: np.ndarray, sinr_db: np.ndarray) -> torch.Tensor:
    """R: equalised symbols and SINR [B, N] -> tokens [B, S, d]."""
    return m.demodulate(torch.from_numpy(np.ascontiguousarray(z_hat, np.complex64)),
                        torch.from_numpy(np.ascontiguousarray(sinr_db, np.float32)))


# The top of the SNR range the links were trained over (`--snr-db=-10:25`).
CLEAN_SNR_DB = 25.0


@torch.no_grad()
def clean_tokens(m: TokenLink, mu: torch.Tensor, snr_db: float = CLEAN_SNR_DB) -> torch.Tensor:
    """Tokens made at the base station (a decoded JPEG or AMR-WB clip tokenized there, or image tokens the MLLM
    generates), F_alpha's means [B, S, d], as the MLLM and the de-tokenizer read them.

    A link trained with the token-consistency term (`spec.consistency > 0`) has one token space: R's output is
    the sent token, so mu is read as it is. Links trained without it (the first tiny checkpoints) have a private
    R space that correlates with F_alpha's at about 0 (F_beta^-1(mu) was a 14 dB image where
    F_beta^-1(R(T(mu))) was 27.6 dB); for those, mu goes through R(T(.)) over a perfect link first."""
    if m.spec.consistency > 0:
        return mu
    z = m.modulate(mu, torch.full((mu.shape[0],), float(snr_db)))
    return m.demodulate(z, torch.full(z.shape, float(snr_db)))


@torch.no_grad()
def tokens_to_images(m: TokenLink, tokens: torch.Tensor) -> np.ndarray:
    """F_beta^-1: [B, S, d] -> uint8 [B, S, S, 3]."""
    x = m.detokenize(tokens).clamp(0, 1)
    return torch.round(x * 255.0).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def audio_chunks(m: TokenLink, wave: np.ndarray) -> tuple[torch.Tensor, int]:
    """wave float32 [T] at the model's rate -> standardised log-mel chunks [C, frames, M] and T."""
    s = m.spec
    fe = _frontend(m)
    chunk_samples = s.chunk_frames * s.hop
    c = max(1, -(-len(wave) // chunk_samples))
    padded = np.zeros(c * chunk_samples, np.float32)
    padded[: len(wave)] = wave
    mel = fe.logmel(torch.from_numpy(padded))  # [C * frames, M]
    mel = (mel - s.db_mean) / s.db_std
    return mel.view(c, s.chunk_frames, s.mels), len(wave)


@torch.no_grad()
def chunks_to_wave(m: TokenLink, mel_std: torch.Tensor, samples: int) -> np.ndarray:
    """Standardised log-mel chunks [C, frames, M] -> waveform float32 [samples] (Griffin-Lim, fixed)."""
    s = m.spec
    mel_db = (mel_std * s.db_std + s.db_mean).reshape(-1, s.mels)
    total = mel_std.shape[0] * s.chunk_frames * s.hop
    wave = _frontend(m).invert(mel_db, total).numpy()
    return np.clip(wave[:samples], -1.0, 1.0).astype(np.float32)


def _segments(ids: list[int], size: int) -> dict:
    """Token ids -> rows of at most `size` ids, padded: {"x": int64 [n, size'], "mask": bool [n, size']}."""
    rows = [ids[i: i + size] for i in range(0, max(len(ids), 1), size)]
    x = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    mask = torch.zeros(x.shape, dtype=torch.bool)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return {"x": x, "mask": mask}


def _wav_bytes(wave: np.ndarray, rate_hz: int) -> bytes:
    buf = io.BytesIO()
    import soundfile as sf  # here: training reads checkpoint_dir from this module and no sound file
    sf.write(buf, wave, rate_hz, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


# --- the scheme interface ---------------------------------------------------------------------------------------

@torch.no_grad()
def encode(stream_id: int, payload: SourcePayload, link: LinkSettings, cfg: Config,
           clock: Clock = NOT_TIMED, task=None) -> Encoded:
    """`task` is unused: this link carries any task's payload alike (SemCom's does not, `schemes.semcom`)."""
    resilient = link.variant == "resilient"
    name = checkpoint_name(link.scheme, payload.modality, cfg, resilient=resilient)
    m = model(name)
    s = m.spec
    snr = float(link.snr_db)
    header = StreamHeader(stream_id=stream_id, modality=payload.modality, scheme=link.scheme, tokenizer=name)
    source = None
    if payload.modality == Modality.IMAGE:
        budget = link.token_budget and link.token_budget < s.tokens
        sent = None
        with clock.stage("source_encode"):
            ref, note = fit_image(payload.value, s.image_size_px)
            if budget or link.packing == "aggregated":  # F_alpha's features once, for the tokens and their ranks
                feats = m.features(torch.from_numpy(ref[None]).permute(0, 3, 1, 2).float() / 255.0)
                mu, _ = m.posterior(feats)
                sent, how = plan_tokens(m, m.importance_head(feats)[0], int(link.token_budget) if budget else s.tokens,
                                        link.packing == "aggregated",
                                        link.tokens_per_packet or cfg.channel.tokens_per_packet)
                header.sent_tokens.extend(sent.tolist())
                note += how
            else:
                mu = images_to_tokens(m, ref[None])
        if s.preset == "tiny":  # a smeared photo is the domain gap, not the scheme's quality: say so
            note += ("; the tiny image tokenizer is trained on 32x32 CLEVR-style scenes only: other pictures "
                     "(photos) are outside its training domain")
        with clock.stage("channel_encode"):  # T over all the tokens (as trained), power P
            symbols = m.modulate(mu, torch.full((1,), snr)).numpy().astype(np.complex64)[0]
            if sent is not None:  # the sent tokens' symbols, in their order, brought back to mean power P
                symbols = symbols.reshape(s.tokens, s.uses_per_token)[sent.numpy()].ravel()
                gain = np.sqrt(POWER_P / max(float(np.mean(np.abs(symbols) ** 2)), 1e-12))
                symbols = (symbols * gain).astype(np.complex64)
                header.symbol_gain_db = float(20.0 * np.log10(gain))
        header.token_shape.extend([s.tokens, s.token_dim])
    elif payload.modality == Modality.AUDIO:
        with clock.stage("source_encode"):
            ref, note = fit_audio(payload.value, payload.rate_hz, s.audio_rate_hz)
            chunks, samples = audio_chunks(m, ref)
            mu, _ = m.tokenize(chunks)
        with clock.stage("channel_encode"):
            symbols = m.modulate(mu, torch.full((mu.shape[0],), snr)).numpy().astype(np.complex64).ravel()
        header.token_shape.extend([mu.shape[0], s.tokens, s.token_dim])
        header.audio_rate_hz = s.audio_rate_hz
        header.num_samples = samples
        note += f"; {samples / s.audio_rate_hz:.2f} s in {mu.shape[0]} chunk(s) of {s.chunk_frames * s.hop} samples"
        # No `source`: the transmitter scores audio by waveform SNR against it, and Griffin-Lim's phase is not
        # stable under small changes of the magnitudes (-2.3 dB at 10 dB channel SNR against the clean-token
        # decode, measured through the services), so that number would mislead. The evaluation
        # (`unitocom evaluate-link --modality audio`) scores the log-mel distance instead.
    else:
        from unitocom.models.text_tokenizer import encode_text
        with clock.stage("source_encode"):
            ids = encode_text(bpe(m), payload.value)
            batch = _segments(ids, s.tokens)  # segments of at most text_max_tokens tokens, one per row
            mu, _ = m.tokenize(batch["x"], batch["mask"])
        with clock.stage("channel_encode"):
            z = m.modulate(mu, torch.full((mu.shape[0],), snr), batch["mask"])  # power P per segment
            symbols = z[batch["mask"].repeat_interleave(s.uses_per_token, 1)].numpy().astype(np.complex64)
        header.token_shape.extend([len(ids), s.token_dim])
        n = mu.shape[0]
        ref, note = payload.value, f"{len(ids)} BPE tokens" + (f" in {n} segments" if n > 1 else "")
    header.preprocessing = note
    header.num_symbols = len(symbols)
    return Encoded(header, symbols, reference=ref, source=source)


@torch.no_grad()
def remodulate(header: StreamHeader, tokens: torch.Tensor, snr_db: float) -> np.ndarray:
    """The stream's symbols as its device would have sent what the base station received, at the nominal SNR the
    transmitter gave T (the request's): what successive interference cancellation subtracts
    (`link.multiaccess.sic`). Image [S, d] and audio [chunks, S, d]: T applied again to R's tokens. With one token
    space (the consistency term) R's output is the sent token, so this is the sent signal up to R's token error,
    the residual the cancellation leaves. Text [L, d]: its tokens are discrete, so the decisions are re-encoded,
    F then T on the ids F_beta^-1 reads from R's tokens, exactly as the device encoded its ids: an exact
    cancellation where every id was read right, as a digital stream's is where its CRC passed. (T on R's text
    tokens themselves left more power than it removed: R's text estimates are made for the detokenizer, not in F's
    space.) Streams under a token budget are not re-modulated here (superposed access refuses them,
    `stages.access`)."""
    m = model(header.tokenizer)
    s = m.spec
    t = tokens.detach().float()
    if torch.isnan(t).any():  # a resilient reader's lost rows; superposed access has no lost tokens
        t = torch.nan_to_num(t)
    snr = torch.full((1,), float(snr_db))
    if s.modality == "image":
        return m.modulate(t[None], snr).numpy().astype(np.complex64)[0]
    if s.modality == "audio":  # each chunk at power P, as the device modulated them
        t = t.reshape(-1, s.tokens, s.token_dim)
        return m.modulate(t, snr.expand(t.shape[0])).numpy().astype(np.complex64).ravel()
    if s.modality == "text":
        t = t.reshape(-1, s.token_dim)
        batch = _segments([0] * t.shape[0], s.tokens)
        padded = torch.zeros(batch["mask"].shape + (s.token_dim,))
        padded[batch["mask"]] = t
        ids = read_ids(m, padded, batch["mask"])  # the decisions decode_batch read the text from
        mu, _ = m.tokenize(torch.where(batch["mask"], ids, 0), batch["mask"])
        z = m.modulate(mu, snr.expand(mu.shape[0]), batch["mask"])
        return z[batch["mask"].repeat_interleave(s.uses_per_token, 1)].numpy().astype(np.complex64)
    raise ValueError(f"re-modulation of {s.modality} tokens is not built")


@torch.no_grad()
def plan_tokens(m: TokenLink, imp: torch.Tensor, k: int, aggregated: bool, per_packet: int) -> tuple[torch.Tensor, str]:
    """Which image tokens to send and in what order: the k most important by the link's importance scores
    imp [S], in grid order or, aggregated, in packets planned by `resilience.aggregate` -> (positions [k], note)."""
    from unitocom.models.conv_tokenizer import token_grid
    from unitocom.models.resilience import aggregate, grid_adjacency
    s = m.spec.tokens
    sent = torch.sort(imp.topk(k).indices).values
    note = f"; token budget: the {k} most important of {s} tokens sent" if k < s else ""
    if aggregated:
        adj = grid_adjacency(*token_grid(s))[sent][:, sent]
        sent = sent[aggregate(imp[sent], adj, per_packet)]
        note += f"; packets aggregated: {per_packet} tokens each, important tokens and neighbours spread over them"
    return sent, note


def _expected_symbols(header: StreamHeader, m: TokenLink) -> int:
    shape = list(header.token_shape)
    if len(shape) < 2 or shape[-1] != m.spec.token_dim or any(v <= 0 for v in shape):
        raise RequestError("header.token_shape", f"{shape} does not fit checkpoint {header.tokenizer} "
                           f"(tokens of dimension {m.spec.token_dim})")
    sent = list(header.sent_tokens)
    if sent:
        if m.spec.modality != "image" or shape != [m.spec.tokens, m.spec.token_dim]:
            raise RequestError("header.sent_tokens", "a token budget applies to image streams of the checkpoint's "
                               "token shape only")
        if len(set(sent)) != len(sent) or max(sent) >= m.spec.tokens:
            raise RequestError("header.sent_tokens", f"must be distinct positions below {m.spec.tokens}")
    if not (np.isfinite(header.symbol_gain_db) and abs(header.symbol_gain_db) <= 60.0):
        raise RequestError("header.symbol_gain_db", f"must be a finite number of dB in [-60, 60], got "
                           f"{header.symbol_gain_db}")
    if sent:
        return len(sent) * m.spec.uses_per_token
    return int(np.prod(shape[:-1])) * m.spec.uses_per_token


def lost_tokens(h_est: np.ndarray, uses_per_token: int, erased: bool = False) -> np.ndarray:
    """Which received tokens are lost: those whose every symbol came with h_est = 0 (a lost packet,
    `stages.channel`), or all of them when the stream's frames were erased. h_est [n * uses] -> bool [n]."""
    h = np.asarray(h_est).reshape(-1, uses_per_token)
    return np.ones(len(h), bool) if erased else (h == 0).all(1)


def _mask_note(lost: torch.Tensor) -> str:
    return f"; {int(lost.sum())} of {lost.numel()} tokens missing, read as the learned mask token"


def received_image_tokens(m: TokenLink, jobs: list["StreamJob"]) -> tuple[torch.Tensor, torch.Tensor]:
    """LMMSE and R for image streams of one checkpoint -> (R's tokens [B, S, d], lost bool [B, S]).

    A token is lost when the transmitter's budget left it out (header.sent_tokens) or when every one of its
    symbols arrived with h_est = 0 (a lost packet, `stages.channel`) or its frames were erased; R reads a lost
    token's symbols as zeros at the bottom of the SINR range, as it always has. Streams without losses give
    exactly what R gives them alone."""
    s = m.spec
    u, clamp = s.uses_per_token, SNR_DB_CLAMP[0]
    zs, qs, lost = [], [], []
    for j in jobs:
        z, q = equalize(j.y, j.h_est, j.noise_var, j.erased, j.est_error_var)
        g_db = float(j.header.symbol_gain_db)
        if g_db and np.isfinite(g_db):  # back to T's own scale: the signal, and its SINR, were scaled by the gain
            z = (z / 10.0 ** (g_db / 20.0)).astype(np.complex64)
            q = np.clip(q + g_db, *SNR_DB_CLAMP).astype(np.float32)
        sent = np.asarray(list(j.header.sent_tokens) or range(s.tokens), np.int64)
        idx = (sent[:, None] * u + np.arange(u)).ravel()
        full_z = np.zeros(s.tokens * u, np.complex64)
        full_q = np.full(s.tokens * u, clamp, np.float32)
        full_z[idx], full_q[idx] = z, q
        gone = np.ones(s.tokens, bool)
        gone[sent] = lost_tokens(j.h_est, u, j.erased)
        zs.append(full_z)
        qs.append(full_q)
        lost.append(gone)
    return symbols_to_tokens(m, np.stack(zs), np.stack(qs)), torch.from_numpy(np.stack(lost))


def mllm_tokens(m: TokenLink, tokens: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
    """What the MLLM reads of received image tokens [.., S, d]: a resilient link marks its lost tokens as NaN
    rows (the MLLM's learned lost embedding reads them, `models.resilience`); other links give R's output."""
    if not m.spec.resilient:
        return tokens
    from unitocom.models.resilience import with_nan_rows
    return with_nan_rows(tokens, lost)


@torch.no_grad()
def decode(header: StreamHeader, y: np.ndarray, h_est: np.ndarray, noise_var: float, erased: bool,
           cfg: Config, est_error_var: float = 0.0, clock: Clock = NOT_TIMED) -> ModalityOutput:
    return decode_with_tokens(header, y, h_est, noise_var, erased, cfg, est_error_var, clock)[0]


@torch.no_grad()
def decode_with_tokens(header: StreamHeader, y: np.ndarray, h_est: np.ndarray, noise_var: float, erased: bool,
                       cfg: Config, est_error_var: float = 0.0,
                       clock: Clock = NOT_TIMED) -> tuple[ModalityOutput, torch.Tensor]:
    """decode(), and the tokens R gave: image [S, d], audio [chunks, S, d], text [1, L, d] (what `remodulate`
    takes)."""
    m = _checked(header, y)
    s = m.spec
    if s.modality == "image":  # the batched path, with one stream
        return _decode_group(m, [StreamJob(header, y, h_est, noise_var, erased, est_error_var, clock)])[0]
    out = ModalityOutput(modality=header.modality, channel_uses=len(y), erased=erased, decoded=True)
    with clock.stage("equalise"):  # LMMSE, then R: equalised symbols and SINR -> received tokens
        z_hat, sinr = equalize(y, h_est, noise_var, erased, est_error_var)
        if s.modality == "audio":
            c = int(header.token_shape[0])
            tokens = symbols_to_tokens(m, z_hat.reshape(c, -1), sinr.reshape(c, -1))
            # the tokens of lost packets (h_est 0 on all their symbols): the mask token on a resilient link
            lost = torch.from_numpy(lost_tokens(h_est, s.uses_per_token, erased).reshape(c, s.tokens))
            tokens = m.fill_lost(tokens, lost)
        else:  # text: the tokens of lost packets are the mask token on a resilient link, as for audio
            lost = torch.from_numpy(lost_tokens(h_est, s.uses_per_token, erased))[None]
            tokens = m.fill_lost(symbols_to_tokens(m, z_hat[None], sinr[None]), lost)
    with clock.stage("detokenize"):  # F_beta^-1
        if s.modality == "audio":
            samples = int(header.num_samples) or c * s.chunk_frames * s.hop
            out.audio_wav = _wav_bytes(chunks_to_wave(m, m.detokenize(tokens), samples), s.audio_rate_hz)
        else:
            from unitocom.models.text_tokenizer import decode_ids
            length = int(header.token_shape[0])
            batch = _segments([0] * length, s.tokens)
            padded = torch.zeros(batch["mask"].shape + (s.token_dim,))
            padded[batch["mask"]] = tokens[0]  # R works token by token: [L, d]
            ids = read_ids(m, padded, batch["mask"])[batch["mask"]]
            out.text = decode_ids(bpe(m), ids.tolist())
    out.note = _note(header, m, len(y), erased)
    if s.modality == "text":
        out.note += _prior_note(m, batch["mask"].shape[0] == 1)
    if s.resilient and bool(lost.any()):
        out.note += _mask_note(lost)
    return out, tokens


def _checked(header: StreamHeader, y: np.ndarray) -> TokenLink:
    """The stream's checkpoint, after checking that it is for the stream's modality and that `y` has the
    number of symbols the header's token shape needs (RequestError naming the field otherwise)."""
    m = model(header.tokenizer)
    if header.modality != Modality(m.spec.modality):
        raise RequestError("header.modality", f"checkpoint {header.tokenizer} is for {m.spec.modality}")
    n = _expected_symbols(header, m)
    if len(y) != n:
        raise RequestError("header.token_shape", f"{list(header.token_shape)} needs {n} symbols, got {len(y)}")
    return m


def _note(header: StreamHeader, m: TokenLink, symbols: int, erased: bool) -> str:
    obj = {"sigma-genib": "sigma-GenIB", "genib": "GenIB", "vae": "VAE"}[m.spec.objective]
    shape = "x".join(str(v) for v in header.token_shape)
    notes = [f"{obj} tokens {shape} ({header.tokenizer}), {symbols} channel uses",
             f"preprocessing: {header.preprocessing}"]
    if erased:
        notes.append("frames erased by the channel: decoded from nothing")
    return "; ".join(notes)


# --- many streams at once (the base station's dynamic batching, issue 13) --------------------------------------

BATCHED_MODALITIES = (Modality.IMAGE, Modality.TEXT)  # audio streams have a clip-dependent chunk count: decode()


@dataclass
class StreamJob:
    """One received stream for decode_batch: decode()'s arguments, and the request's clock."""

    header: StreamHeader
    y: np.ndarray  # complex64 [N] received symbols
    h_est: np.ndarray  # complex [N] the channel estimate
    noise_var: float
    erased: bool
    est_error_var: float = 0.0
    clock: Clock = NOT_TIMED


@torch.no_grad()
def decode_batch(jobs: list[StreamJob]) -> list[tuple[ModalityOutput, torch.Tensor] | BaseException]:
    """decode() of many image and text streams, with R and F_beta^-1 run once per checkpoint for all of them.

    -> per job (its ModalityOutput, exactly decode()'s, and its received tokens: image [S, d], text [L, d]),
    or the RequestError that decode() would raise for it (the other jobs go on). Every job's clock gets its
    group's whole equalise and detokenize time: what its request waited for."""
    results: list = [None] * len(jobs)
    groups: dict[str, list[int]] = {}
    for i, j in enumerate(jobs):
        try:
            if j.header.modality not in BATCHED_MODALITIES:
                raise ValueError(f"decode_batch takes image and text streams, not {j.header.modality.value}")
            _checked(j.header, j.y)
            groups.setdefault(j.header.tokenizer, []).append(i)
        except Exception as e:  # noqa: BLE001 - this stream's error, raised to its request only
            results[i] = e
    for name, idx in groups.items():
        for i, r in zip(idx, _decode_group(model(name), [jobs[i] for i in idx])):
            results[i] = r
    return results


def _decode_group(m: TokenLink, jobs: list[StreamJob]) -> list[tuple[ModalityOutput, torch.Tensor]]:
    """Streams of one checkpoint: LMMSE per stream, one R for all, one F_beta^-1 for all."""
    import time
    s = m.spec
    t0 = time.perf_counter()
    if s.modality == "image":  # every stream has the checkpoint's S_v tokens: one [B, N] batch
        tokens, lost = received_image_tokens(m, jobs)
        per_job = list(mllm_tokens(m, tokens, lost))
    else:  # R works token by token: the streams' symbols side by side in one row, split after
        eq = [equalize(j.y, j.h_est, j.noise_var, j.erased, j.est_error_var) for j in jobs]
        lengths = [int(j.header.token_shape[0]) for j in jobs]
        flat = symbols_to_tokens(m, np.concatenate([z for z, _ in eq])[None], np.concatenate([q for _, q in eq])[None])
        lost = [torch.from_numpy(lost_tokens(j.h_est, s.uses_per_token, j.erased)) for j in jobs]
        per_job = list(torch.split(m.fill_lost(flat, torch.cat(lost)[None])[0], lengths))
    t1 = time.perf_counter()
    outs = [ModalityOutput(modality=j.header.modality, channel_uses=len(j.y), erased=j.erased, decoded=True,
                           note=_note(j.header, m, len(j.y), j.erased)) for j in jobs]
    if s.modality == "image":
        for o, img, gone in zip(outs, tokens_to_images(m, m.fill_lost(tokens, lost)), lost):
            o.image_png = _png_bytes(img)
            if m.spec.resilient and bool(gone.any()):
                o.note += _mask_note(gone)
    else:
        from unitocom.models.text_tokenizer import decode_ids
        # Each stream's segments (rows of at most s.tokens tokens, as decode() makes them), all rows stacked and
        # padded to the longest; the detokenizer masks the padding, so each row reads only its own tokens.
        segs = [_segments([0] * len(t), s.tokens)["mask"] for t in per_job]
        width = max(g.shape[1] for g in segs)
        mask = torch.zeros(sum(g.shape[0] for g in segs), width, dtype=torch.bool)
        padded = torch.zeros(mask.shape + (s.token_dim,))
        r = 0
        for g, t in zip(segs, per_job):
            mask[r: r + g.shape[0], : g.shape[1]] = g
            padded[r: r + g.shape[0], : g.shape[1]][g] = t
            r += g.shape[0]
        whole = torch.cat([torch.full((g.shape[0],), g.shape[0] == 1) for g in segs])
        ids = read_ids(m, padded, mask, whole)
        r = 0
        for o, g, gone in zip(outs, segs, lost):
            o.text = decode_ids(bpe(m), ids[r: r + g.shape[0], : g.shape[1]][g].tolist())
            o.note += _prior_note(m, g.shape[0] == 1)
            r += g.shape[0]
            if s.resilient and bool(gone.any()):
                o.note += _mask_note(gone)
    t2 = time.perf_counter()
    for j in jobs:
        j.clock.add("equalise", t1 - t0)
        j.clock.add("detokenize", t2 - t1)
    return list(zip(outs, per_job))
