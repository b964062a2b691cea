"""The real source codecs of the traditional scheme (the letter's section V): UTF-8 for text, JPEG for images,
AMR-WB for audio. Decoders never raise on bad bytes: a failure is a result (`ok=False` with the reason), because
after a noisy channel corrupt bitstreams are an expected outcome to be counted, not a bug.
The `*_from_bytes` helpers are for validating *input* files and do raise ValueError.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

AMR_WB_RATE_HZ = 16000
AMR_WB_BITRATES: tuple[int, ...] = (6600, 8850, 12650, 14250, 15850, 18250, 19850, 23050, 23850)
AMR_WB_MAGIC = b"#!AMR-WB\n"  # RFC 4867 section 5 storage format header
_FFMPEG_TIMEOUT_S = 60.0


@dataclass
class CodecResult:
    ok: bool
    value: object | None  # str (text) | uint8 [H,W,3] (image) | (float32 [T], rate_hz) (audio)
    error: str = ""


# --- text -------------------------------------------------------------------------------------------------

def utf8_encode(text: str) -> bytes:
    return text.encode("utf-8")


def utf8_decode(data: bytes) -> CodecResult:
    """Strict UTF-8. On failure ok=False, value is the lossy decode (U+FFFD for bad bytes) so that a text metric
    can still be computed on what arrived, and error names the first bad byte."""
    try:
        return CodecResult(True, bytes(data).decode("utf-8"))
    except UnicodeDecodeError as e:
        return CodecResult(False, bytes(data).decode("utf-8", errors="replace"), f"invalid UTF-8: {e.reason} at byte {e.start}")


# --- images -----------------------------------------------------------------------------------------------

def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image must be HxW or HxWx3 uint8, got shape {a.shape}")
    return np.ascontiguousarray(a[:, :, :3])


def jpeg_encode(image: np.ndarray, quality: int = 75) -> bytes:
    """uint8 [H,W,3] (or [H,W] grey, or RGBA with alpha dropped) -> baseline JPEG bytes (4:2:0, Pillow/libjpeg)."""
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg quality must be in [1, 100], got {quality}")
    buf = io.BytesIO()
    Image.fromarray(_as_rgb_uint8(image), "RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def jpeg_decode(data: bytes) -> CodecResult:
    """JPEG bytes -> uint8 [H,W,3]. Truncated or corrupt streams -> ok=False with the decoder's reason;
    Pillow's tolerant decoding of a damaged but complete stream is accepted (the image then scores low on PSNR)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            if im.format != "JPEG":
                return CodecResult(False, None, f"not a JPEG stream (found {im.format})")
            im.load()
            return CodecResult(True, np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... on corrupt streams
        # Pillow names the stream object (`<_io.BytesIO object at 0x7f...>`): an address differs per process and
        # means nothing to a client, so the note says "the data" instead.
        reason = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", str(e))
        return CodecResult(False, None, f"cannot decode JPEG: {type(e).__name__}: {reason}")


def image_from_bytes(data: bytes) -> np.ndarray:
    """Any image format Pillow reads, any mode -> uint8 [H,W,3] RGB. Raises ValueError('cannot decode image: ...')."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P", "PA") and ("transparency" in im.info or im.mode.endswith("A")):
                # Composite onto white rather than letting transparent pixels turn black.
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8).copy()
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception as e:
        raise ValueError(f"cannot decode image: {type(e).__name__}: {e}") from None


def psnr_db(ref: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """10 log10(peak^2 / MSE) over all elements; inf when identical. Shapes must match."""
    r = np.asarray(ref, dtype=np.float64)
    t = np.asarray(test, dtype=np.float64)
    if r.shape != t.shape:
        raise ValueError(f"psnr_db needs equal shapes, got {r.shape} and {t.shape}")
    mse = float(np.mean((r - t) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(peak**2 / mse))


# --- audio ------------------------------------------------------------------------------------------------

def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg not found on PATH (Debian: apt-get install ffmpeg libavcodec-extra)")
    return exe


def amrwb_encoder_name() -> str | None:
    """The ffmpeg encoder for AMR-WB, or None. Debian's libavcodec-extra provides libvo_amrwbenc."""
    try:
        out = subprocess.run([_ffmpeg(), "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=_FFMPEG_TIMEOUT_S).stdout
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return None
    for name in ("libvo_amrwbenc",):
        if f" {name} " in out:
            return name
    return None


def _mono_float32(wave: np.ndarray) -> np.ndarray:
    w = np.asarray(wave)
    if w.ndim == 2:
        w = w.mean(axis=1)
    if w.ndim != 1:
        raise ValueError(f"wave must be [T] or [T, channels], got shape {np.shape(wave)}")
    if np.issubdtype(w.dtype, np.integer):
        w = w.astype(np.float32) / float(np.iinfo(w.dtype).max)
    return np.asarray(w, dtype=np.float32)


def amrwb_encode(wave: np.ndarray, rate_hz: int, bitrate: int = 23850) -> bytes:
    """float wave [T] (or [T, C], mixed to mono) at rate_hz -> AMR-WB storage-format bytes ('#!AMR-WB\\n' + frames).
    ffmpeg resamples to 16 kHz and encodes with libvo_amrwbenc at `bitrate` (one of AMR_WB_BITRATES, bit/s)."""
    import soundfile as sf

    if bitrate not in AMR_WB_BITRATES:
        raise ValueError(f"AMR-WB bitrate must be one of {list(AMR_WB_BITRATES)}, got {bitrate}")
    if not isinstance(rate_hz, (int, np.integer)) or rate_hz <= 0:
        raise ValueError(f"rate_hz must be a positive integer, got {rate_hz!r}")
    enc = amrwb_encoder_name()
    if enc is None:
        raise RuntimeError("no AMR-WB encoder in ffmpeg (install libavcodec-extra for libvo_amrwbenc)")
    w = np.clip(_mono_float32(wave), -1.0, 1.0)
    wav = io.BytesIO()
    sf.write(wav, w, int(rate_hz), format="WAV", subtype="PCM_16")
    with tempfile.TemporaryDirectory(prefix="amrwb") as d:
        out = os.path.join(d, "out.amr")
        proc = subprocess.run(
            [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "wav", "-i", "pipe:0",
             "-ac", "1", "-ar", str(AMR_WB_RATE_HZ), "-c:a", enc, "-b:a", str(bitrate), "-f", "amr", "-y", out],
            input=wav.getvalue(), capture_output=True, timeout=_FFMPEG_TIMEOUT_S,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg AMR-WB encode failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
        with open(out, "rb") as f:
            return f.read()


def amrwb_decode(data: bytes) -> CodecResult:
    """AMR-WB storage-format bytes -> CodecResult(value=(float32 [T] at 16 kHz, 16000)).
    A missing header or an ffmpeg error gives ok=False. Frames damaged in their payload decode to distorted
    audio (AMR has no checksum of its own), which is a success here and scores low on SNR."""
    import soundfile as sf

    data = bytes(data)
    if not data.startswith(AMR_WB_MAGIC):
        return CodecResult(False, None, "not an AMR-WB stream: missing '#!AMR-WB' header")
    try:
        with tempfile.TemporaryDirectory(prefix="amrwb") as d:
            src = os.path.join(d, "in.amr")
            with open(src, "wb") as f:
                f.write(data)
            proc = subprocess.run(
                [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "amr", "-i", src,
                 "-ac", "1", "-ar", str(AMR_WB_RATE_HZ), "-f", "wav", "-c:a", "pcm_s16le", "pipe:1"],
                capture_output=True, timeout=_FFMPEG_TIMEOUT_S,
            )
        if proc.returncode != 0:
            return CodecResult(False, None, f"ffmpeg AMR-WB decode failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")
        if not proc.stdout:
            return CodecResult(False, None, "ffmpeg AMR-WB decode produced no audio")
        wave, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=False)
        if wave.ndim == 2:
            wave = wave.mean(axis=1).astype(np.float32)
        if wave.size == 0:
            return CodecResult(False, None, "AMR-WB stream decoded to no samples")
        return CodecResult(True, (wave, int(rate)))
    except subprocess.TimeoutExpired:
        return CodecResult(False, None, f"ffmpeg AMR-WB decode timed out after {_FFMPEG_TIMEOUT_S} s")
    except Exception as e:
        return CodecResult(False, None, f"AMR-WB decode error: {type(e).__name__}: {e}")


def audio_from_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """WAV/FLAC/OGG (what libsndfile reads) -> (mono float32 [T], rate_hz). Raises ValueError on corrupt input."""
    import soundfile as sf

    try:
        wave, rate = sf.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=False)
    except Exception as e:
        raise ValueError(f"cannot decode audio: {type(e).__name__}: {e}") from None
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.size == 0:
        raise ValueError("cannot decode audio: no samples")
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)
