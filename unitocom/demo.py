"""`unitocom demo` (what `make demo` runs): start the services, send a real text, photograph and speech clip
through them at a clean and a hostile SNR, print what came back and the metrics, stop the services.
"""
from __future__ import annotations

import io
import pathlib
import shutil
import subprocess
import tempfile
import urllib.request

from PIL import Image

from unitocom import client, config, launcher

TEXT = "Tokens are the units that large models compute with, and the units a wireless network should carry."
SPEECH = "three red cubes left of a blue sphere"
# (label, channel, snr_db, block_length): a clean AWGN link, and Rayleigh block fading (a new h every
# 256 symbols) at an SNR where deep fades break some LDPC blocks and with them the JPEG.
CONDITIONS = [("clean", "awgn", 30.0, 0), ("hostile", "rayleigh", 6.0, 256)]


def photograph(size_px: int = 256) -> bytes:
    """scikit-image's bundled astronaut (no download), resized; PNG bytes."""
    from skimage import data
    img = Image.fromarray(data.astronaut()).resize((size_px, size_px), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def speech_clip(text: str = SPEECH) -> bytes | None:
    """A WAV spoken by espeak-ng, or None when espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        wav = pathlib.Path(d) / "clip.wav"
        subprocess.run([exe, "-w", str(wav), text], check=True, capture_output=True, timeout=30)
        return wav.read_bytes()


def metrics_summary(url: str) -> list[str]:
    try:
        body = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError as e:
        return [f"    (could not read {url}: {e})"]
    return [f"    {line}" for line in body.splitlines()
            if line.startswith(("unitocom_requests_total{", "unitocom_channel_uses_total{"))]


def run(preset: str = "tiny", out_dir: str = "out/demo", base_port: int = 50051, metrics_base_port: int = 9101) -> int:
    from unitocom.cli import format_result
    cfg = config.load(preset).replace(transmitter_port=base_port, channel_port=base_port + 1,
                                      basestation_port=base_port + 2, metrics_base_port=metrics_base_port)
    d = launcher.run_dir(str(pathlib.Path.home() / ".cache/unitocom/demo"))
    launcher.down(d)  # a previous demo that was interrupted
    print(f"== starting the services (preset {preset})")
    launcher.up(cfg, preset, d)
    out = pathlib.Path(out_dir)
    payloads = [("text", {"text": TEXT}), ("image", {"image": photograph()})]
    clip = speech_clip()
    if clip is not None:
        payloads.append(("speech", {"audio": clip}))
    else:
        print("   (espeak-ng not found: skipping the speech clip; `make system` installs it)")
    failures = 0
    try:
        with client.Client(cfg.address("transmitter").grpc) as c:
            for label, channel, snr_db, block in CONDITIONS:
                for name, payload in payloads:
                    req = client.build_request(**payload, task="reconstruct", scheme="traditional", snr_db=snr_db,
                                               channel=channel, block_length=block, seed=7)
                    print(f"\n== {name}, {label} link ({channel}, {snr_db:g} dB)")
                    try:
                        result = c.send(req)
                    except Exception as e:  # report and go on: the demo shows every case
                        failures += 1
                        print(f"   request failed: {e}")
                        continue
                    d_ = client.result_to_dict(result)
                    d_["files"] = [str(p) for p in client.save_outputs(result, out / f"{label}_{name}")]
                    print(format_result(d_))
        print("\n== metrics (Prometheus text format) while the services ran:")
        for a in cfg.services:
            print(f"  {a.name}: {a.metrics_url}")
            print("\n".join(metrics_summary(a.metrics_url)))
    finally:
        print("\n== stopping the services")
        launcher.down(d)
    print(f"outputs written under {out}/; `unitocom up` keeps the services running for your own requests")
    return 1 if failures else 0


def add_subparser(sub) -> None:
    p = sub.add_parser("demo", help="start the services, send text / image / speech at two SNRs, print, stop")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", default="out/demo", help="where reconstructed payloads are written")
    p.add_argument("--base-port", type=int, default=50051)
    p.add_argument("--metrics-base-port", type=int, default=9101)
    p.set_defaults(func=lambda a: run(a.preset, a.out, a.base_port, a.metrics_base_port))
