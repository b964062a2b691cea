"""Source codecs of the traditional scheme: UTF-8, JPEG, AMR-WB. Failures must be results, never exceptions."""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import needs
from unitocom import codecs
from unitocom.codecs import (
    CodecResult, amrwb_decode, amrwb_encode, audio_from_bytes, image_from_bytes, jpeg_decode, jpeg_encode, psnr_db,
    utf8_decode, utf8_encode,
)

needs_amr = needs(codecs.amrwb_encoder_name() is not None, "ffmpeg with libvo_amrwbenc not installed")
needs_espeak = needs(shutil.which("espeak-ng") is not None, "espeak-ng not installed")


def smooth_image(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w)], axis=-1).astype(np.uint8)


def test_utf8_round_trip_and_failure():
    text = "token communication: ñ, 数据, 🙂"
    r = utf8_decode(utf8_encode(text))
    assert r.ok and r.value == text and r.error == ""
    bad = utf8_decode(b"ab\xff\xfecd")
    assert not bad.ok and "invalid UTF-8" in bad.error and "byte 2" in bad.error
    assert bad.value == "ab\ufffd\ufffdcd"  # the lossy reading is still there for scoring


def test_jpeg_round_trip_quality_and_grey():
    img = smooth_image()
    data = jpeg_encode(img, quality=90)
    assert data[:2] == b"\xff\xd8"
    r = jpeg_decode(data)
    assert r.ok and r.value.shape == img.shape and r.value.dtype == np.uint8
    assert psnr_db(img, r.value) > 30
    assert len(jpeg_encode(img, 20)) < len(data)
    grey = jpeg_decode(jpeg_encode(img[:, :, 0]))
    assert grey.ok and grey.value.shape == img.shape


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "png"])
def test_jpeg_failure_is_a_result(damage):
    data = jpeg_encode(smooth_image())
    bad = {"truncate": data[: len(data) // 3], "garbage": bytes(range(256)) * 4, "empty": b"",
           "png": _png(smooth_image())}[damage]
    r = jpeg_decode(bad)
    assert isinstance(r, CodecResult) and not r.ok and r.value is None and r.error


def test_jpeg_random_bit_flips_never_raise():
    data = bytearray(jpeg_encode(smooth_image(), 75))
    rng = np.random.default_rng(0)
    for _ in range(30):
        d = bytearray(data)
        for i in rng.integers(0, len(d), 20):
            d[i] ^= 1 << int(rng.integers(0, 8))
        r = jpeg_decode(bytes(d))
        assert (r.ok and r.value.ndim == 3) or (not r.ok and r.error)


def _png(img: np.ndarray, mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_image_from_bytes_any_mode(mode):
    img = smooth_image()
    out = image_from_bytes(_png(img, mode))
    assert out.dtype == np.uint8 and out.shape == img.shape


def test_image_from_bytes_rejects_corrupt():
    with pytest.raises(ValueError, match="cannot decode image"):
        image_from_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode image"):
        image_from_bytes(_png(smooth_image())[:60])


def test_psnr():
    a = np.zeros((4, 4), np.uint8)
    assert psnr_db(a, a) == float("inf")
    b = a.copy()
    b[0, 0] = 16  # MSE = 256/16 = 16
    assert psnr_db(a, b) == pytest.approx(10 * np.log10(255**2 / 16))
    with pytest.raises(ValueError):
        psnr_db(a, np.zeros((2, 2)))


def test_audio_from_bytes_wav_flac_and_corrupt():
    import soundfile as sf

    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32) * 0.5
    for fmt in ("WAV", "FLAC"):
        buf = io.BytesIO()
        sf.write(buf, stereo, 8000, format=fmt)
        wave, rate = audio_from_bytes(buf.getvalue())
        assert rate == 8000 and wave.dtype == np.float32 and wave.shape == (8000,)
        assert np.max(np.abs(wave - stereo[:, 0])) < 1e-3
    with pytest.raises(ValueError, match="cannot decode audio"):
        audio_from_bytes(b"RIFF1234WAVEjunk")


def _speech(tmp_path) -> tuple[np.ndarray, int]:
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Token communication over a noisy wireless channel."],
                   check=True, timeout=60, capture_output=True)
    return audio_from_bytes(path.read_bytes())


@needs_amr
@needs_espeak
def test_amrwb_round_trip_speech(tmp_path):
    from scipy.signal import resample_poly

    wave, rate = _speech(tmp_path)
    data = amrwb_encode(wave, rate, bitrate=23850)
    assert data.startswith(b"#!AMR-WB\n")
    seconds = wave.size / rate
    assert 0.8 * 23850 / 8 * seconds < len(data) < 1.25 * 23850 / 8 * seconds + 100  # ~ bitrate * duration
    r = amrwb_decode(data)
    assert r.ok, r.error
    out, out_rate = r.value
    assert out_rate == 16000 and out.dtype == np.float32
    assert abs(out.size / out_rate - seconds) < 0.05  # 20 ms frames: duration kept to a frame or two
    g = np.gcd(16000, rate)
    ref = resample_poly(wave, 16000 // g, rate // g)
    best_corr, best_lag = max(
        (np.corrcoef(*_align(out, ref, lag))[0, 1], lag) for lag in range(0, 400, 1)
    )
    a, b = _align(out, ref, best_lag)
    gain = np.dot(a, b) / np.dot(a, a)
    snr = 10 * np.log10(np.sum(b**2) / np.sum((gain * a - b) ** 2))
    assert best_corr > 0.85 and snr > 6.0, (best_corr, snr, best_lag)


def _align(out: np.ndarray, ref: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    a = out[lag:]
    n = min(a.size, ref.size)
    return a[:n], ref[:n]


@needs_amr
def test_amrwb_bitrates_and_bad_arguments():
    wave = (0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
    small, big = amrwb_encode(wave, 16000, 6600), amrwb_encode(wave, 16000, 23850)
    assert len(small) < len(big)
    with pytest.raises(ValueError, match="bitrate"):
        amrwb_encode(wave, 16000, 24000)


@needs_amr
@pytest.mark.parametrize("damage", ["header", "empty", "garbage", "truncated_header"])
def test_amrwb_failure_is_a_result(damage):
    wave = (0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)).astype(np.float32)
    data = amrwb_encode(wave, 16000)
    bad = {"header": b"#!AMR\n" + data[9:], "empty": b"", "garbage": bytes(range(256)),
           "truncated_header": data[:5]}[damage]
    r = amrwb_decode(bad)
    assert not r.ok and r.value is None and r.error


@needs_amr
def test_amrwb_corrupt_payload_never_raises():
    wave = (0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
    data = bytearray(amrwb_encode(wave, 16000))
    rng = np.random.default_rng(1)
    for _ in range(5):
        d = bytearray(data)
        d[9:] = rng.integers(0, 256, len(d) - 9, dtype=np.uint8).tobytes()
        r = amrwb_decode(bytes(d))
        assert isinstance(r, CodecResult) and (r.ok or r.error)
