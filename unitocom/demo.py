"""`unitocom demo` (what `make demo` runs): start the services; send a real text, photograph and speech clip
through them with the traditional scheme at a clean and a hostile SNR; then the learned scheme end to end: a
photo reconstructed from 32 tokens, a question about a scene (VQA), the speech clip transcribed (ASR) and a
caption turned into an image (T2I); print what came back and the metrics; stop the services.
"""
from __future__ import annotations

import io
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import numpy as np
from PIL import Image

from unitocom import config

TEXT = "Tokens are the units that large models compute with, and the units a wireless network should carry."
SPEECH = "the large red square is left of the blue circle"
CAPTION = "There is a large red square and a small blue circle."
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


def scene_with_question(seed: int = 2026) -> tuple[bytes, str, str]:
    """A freshly drawn scene (not in any training set), one templated question about it and its answer."""
    from unitocom.data.presets import data_preset
    from unitocom.data.questions import AnswerBalancer, questions_for_scene
    from unitocom.data.scenes import render_scene, sample_scene
    p = data_preset("tiny")
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, p, "test", 0)
    q = questions_for_scene(scene, p, rng, AnswerBalancer(p.families), 1)[0]
    buf = io.BytesIO()
    Image.fromarray(render_scene(scene, p.image_size_px)).save(buf, format="PNG")
    return buf.getvalue(), q["question"], q["answer"]


def metrics_summary(url: str) -> list[str]:
    try:
        body = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError as e:
        return [f"    (could not read {url}: {e})"]
    wanted = [line for line in body.splitlines() if line.startswith("unitocom_requests_total{")
              or line.startswith("unitocom_channel_uses_total{")]
    return [f"    {line}" for line in wanted]


def t2i_context(fig2_json: pathlib.Path, checkpoints: pathlib.Path, snr_db: float = 20.0) -> str | None:
    """What one generated picture is a sample of: unitocom's T2I pair recall at snr_db in the Fig. 2 file, when that
    file measured the MLLM installed now (same sha256), else None (another model's figure would mislead)."""
    import json

    from unitocom.targets import T2I_PAIR_RECALL, target_point
    from unitocom.train.provenance import file_sha256
    name = "mllm-sigma-genib.safetensors"
    try:
        fig = json.loads(fig2_json.read_text())
        recorded = fig["header"]["checkpoints_sha256"][name]
        if file_sha256(checkpoints / name) != recorded:
            return None
        p = target_point(fig, "t2i", snr_db)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if p is None or "pair_recall" not in p:
        return None
    return (f"one sample: this MLLM draws the caption's (colour, shape) pairs in {p['pair_recall']:.2f} "
            f"[{p['pair_recall_ci_low']:.2f}, {p['pair_recall_ci_high']:.2f}] of its pictures at {snr_db:g} dB "
            f"({fig2_json.parent.name}/{fig2_json.name}, {p['n']} captions; "
            f"issue 12's target is {T2I_PAIR_RECALL:.2f})")


def _generated_png(result) -> bytes | None:
    return next((o.image_png for o in result.outputs if o.image_png), None) if result is not None else None


def summary_sheet(scene_png: bytes, results: dict, path: pathlib.Path, scale: int = 6) -> pathlib.Path | None:
    """The sent scene, the scene received through 32 tokens and the image generated from the caption, enlarged
    side by side in one PNG, each with what the scene checker recognises in it (colour-shape pairs)."""
    from PIL import ImageDraw

    from unitocom.metrics.scene_checker import load_checker
    from unitocom.schemes.learned import checkpoint_dir
    panels = [("sent scene", scene_png), ("received (unitocom)", _generated_png(results.get("unitocom_scene"))),
              ("generated from caption", _generated_png(results.get("t2i")))]
    panels = [(t, p) for t, p in panels if p]
    if len(panels) < 2:
        return None
    ck = checkpoint_dir() / "scene-checker.safetensors"
    checker = load_checker(ck) if ck.exists() else None
    cell, pad, text_h = 32 * scale, 8, 34
    sheet = Image.new("RGB", (len(panels) * (cell + pad) + pad, cell + text_h + 2 * pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (title, png) in enumerate(panels):
        im = Image.open(io.BytesIO(png)).convert("RGB").resize((32, 32), Image.BICUBIC)
        x0 = pad + i * (cell + pad)
        sheet.paste(im.resize((cell, cell), Image.NEAREST), (x0, pad))
        draw.text((x0, cell + pad + 2), title, fill="black")
        if checker is not None:
            import torch
            x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255.0
            seen = sorted(checker.recognise(x)[0])
            draw.text((x0, cell + pad + 16), ", ".join(f"{c} {s}" for c, s in seen)[:34] or "(nothing)", fill="gray")
            print(f"   {title}: the scene checker sees {', '.join(f'{c} {s}' for c, s in seen) or 'nothing'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def run(preset: str = "tiny", out_dir: str = "out/demo", base_port: int = 50051, metrics_base_port: int = 9101) -> int:
    from unitocom import client, launcher  # here: the CLI's other commands (training) need no gRPC
    from unitocom.report import format_result
    cfg = config.load(preset).replace(transmitter_port=base_port, channel_port=base_port + 1,
                                      basestation_port=base_port + 2, metrics_base_port=metrics_base_port)
    d = launcher.run_dir(str(pathlib.Path.home() / ".cache/unitocom/demo"))
    launcher.down(d)  # a previous demo that was interrupted
    print(f"== starting the services (preset {preset})")
    launcher.up(cfg, preset, d)
    out = pathlib.Path(out_dir)
    photo = photograph()
    clip = speech_clip()
    if clip is None:
        print("   (espeak-ng not found: skipping the speech clip; `make system` installs it)")
    scene, question, answer = scene_with_question()
    jobs = []
    for label, channel, snr_db, block in CONDITIONS:
        link = dict(snr_db=snr_db, channel=channel, block_length=block, seed=7)
        jobs += [(f"text, traditional, {label} ({channel} {snr_db:g} dB)", f"{label}_text",
                  dict(text=TEXT, scheme="traditional", **link)),
                 (f"photo, traditional, {label} ({channel} {snr_db:g} dB)", f"{label}_photo",
                  dict(image=photo, scheme="traditional", **link))]
        if clip is not None:
            jobs.append((f"speech, traditional, {label} ({channel} {snr_db:g} dB)", f"{label}_speech",
                         dict(audio=clip, scheme="traditional", **link)))
    rayleigh = dict(snr_db=10.0, channel="rayleigh", seed=7)
    jobs += [("scene, unitocom: a fresh CLEVR-style scene as 32 sigma-GenIB tokens, 256 channel uses "
              "(rayleigh 10 dB)", "unitocom_scene", dict(image=scene, scheme="unitocom", **rayleigh)),
             ("photo, unitocom: 32 sigma-GenIB tokens, 256 channel uses (rayleigh 10 dB); the tiny tokenizer "
              "knows 32x32 scenes only, so a photo shows the domain gap", "unitocom_photo",
              dict(image=photo, scheme="unitocom", **rayleigh)),
             (f"VQA, unitocom (rayleigh 10 dB): {question!r} (truth: {answer})", "vqa_unitocom",
              dict(image=scene, question=question, answer=answer, task="vqa", scheme="unitocom", **rayleigh)),
             (f"VQA, traditional (rayleigh 10 dB): {question!r} (truth: {answer})", "vqa_traditional",
              dict(image=scene, question=question, answer=answer, task="vqa", scheme="traditional", **rayleigh)),
             (f"T2I, unitocom (rayleigh 10 dB): {CAPTION!r}", "t2i", dict(text=CAPTION, task="t2i",
                                                                          scheme="unitocom", **rayleigh))]
    if clip is not None:
        jobs.append((f"ASR, unitocom (rayleigh 10 dB), spoken: {SPEECH!r}", "asr",
                     dict(audio=clip, task="asr", transcript=SPEECH, scheme="unitocom", **rayleigh)))
    failures = 0
    results = {}
    try:
        with client.Client(cfg.address("transmitter").grpc) as c:
            for title, name, kw in jobs:
                print(f"\n== {title}")
                try:
                    result = c.send(client.build_request(**kw))
                except Exception as e:  # report and go on: the demo shows every case
                    failures += 1
                    print(f"   request failed: {e}")
                    continue
                results[name] = result
                d_ = client.result_to_dict(result)
                d_["files"] = [str(p) for p in client.save_outputs(result, out / name)]
                print(format_result(d_))
                if name == "t2i":
                    from unitocom.schemes.learned import checkpoint_dir
                    context = t2i_context(pathlib.Path(__file__).resolve().parents[1] / "results" / "fig2.json",
                                          checkpoint_dir())
                    if context:
                        print(f"   ({context})")
        sheet = summary_sheet(scene, results, out / "summary.png")
        if sheet:
            print(f"\n== what came back, side by side: {sheet}")
        print("\n== metrics (Prometheus text format) while the services ran:")
        for a in cfg.services:
            print(f"  {a.name}: {a.metrics_url}")
        print("  the transmitter's request and channel-use counters:")
        print("\n".join(metrics_summary(cfg.address("transmitter").metrics_url)))
    finally:
        print("\n== stopping the services")
        launcher.down(d)
    print(f"outputs written under {out}/; `unitocom up` keeps the services running for your own requests")
    return 1 if failures else 0


def add_subparser(sub) -> None:
    p = sub.add_parser("demo", help="start the services, send text / photo / speech / a VQA question / a caption, "
                                    "print, stop")
    p.add_argument("--preset", default="tiny", choices=sorted(config.PRESETS))
    p.add_argument("--out", default="out/demo", help="where reconstructed and generated payloads are written")
    p.add_argument("--base-port", type=int, default=50051)
    p.add_argument("--metrics-base-port", type=int, default=9101)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a) -> int:
    try:
        return run(a.preset, a.out, a.base_port, a.metrics_base_port)
    except RuntimeError as e:  # the services did not start (a port in use, a checkpoint missing): said in one line
        print(f"error: {e}", file=sys.stderr)
        return 1
