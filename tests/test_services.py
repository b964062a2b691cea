"""The three services on loopback, driven through the client SDK: real requests, good and bad."""
from __future__ import annotations

import dataclasses
import io
import math
import re
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TEST_MAX_MESSAGE_BYTES, free_ports, scene_png
from unitocom import client, config, messages, pipeline, wire
from unitocom.stages.request import from_wire
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc


def _code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_all_services_serving(services):
    from unitocom import launcher
    _, d = services
    rows = launcher.status(d)
    assert [r["name"] for r in rows] == ["basestation", "channel", "transmitter"]
    assert all(r["status"] == "SERVING" for r in rows), rows


def test_text_arrives_exactly_at_high_snr(tx):
    text = "Tokens are the units that large models compute with. Ünïcödé too: 信道"
    r = tx.send(client.build_request(text=text, snr_db=25.0, seed=1))
    assert r.output_text == text
    assert r.quality["exact_match"] == 1.0
    (out,) = r.outputs
    assert out.decoded and out.block_errors == 0 and out.blocks > 0
    assert r.channel_uses == out.channel_uses > 0
    stages = {(t.service, t.stage) for t in r.timings}
    assert {("transmitter", "source_encode"), ("transmitter", "channel_encode"), ("channel", "channel"),
            ("basestation", "equalise"), ("basestation", "decode")} <= stages


def test_image_psnr_equals_jpeg_psnr_at_high_snr(tx, photo_png):
    r = tx.send(client.build_request(image=photo_png, snr_db=30.0, channel="rayleigh", seed=3, jpeg_quality=60))
    (out,) = r.outputs
    assert out.decoded and out.block_errors == 0
    # what arrives is exactly the JPEG: its PSNR against the original is the codec's own
    assert r.quality["psnr_db"] == pytest.approx(r.quality["jpeg_psnr_db"], abs=1e-9)
    assert 20.0 < r.quality["psnr_db"] < 50.0
    img = np.asarray(Image.open(io.BytesIO(out.image_png)))
    assert img.shape == (128, 128, 3)


def test_jpeg_breaks_at_low_snr_over_rayleigh_and_says_so(tx, photo_png):
    r = tx.send(client.build_request(image=photo_png, snr_db=4.0, channel="rayleigh", block_length=256, seed=5))
    (out,) = r.outputs
    assert out.block_errors > 0
    assert "CRC" in out.note
    broken = (not out.decoded) or r.quality["psnr_db"] < r.quality["jpeg_psnr_db"] - 3.0
    assert broken, (out.note, dict(r.quality))


def test_service_path_equals_in_process_pipeline(services, tx):
    """Same seed, same request: the services add transport, nothing else."""
    cfg, _ = services
    req = client.build_request(request_id="same", image=scene_png(48), snr_db=7.0, channel="rayleigh",
                               block_length=128, seed=11)
    a, b = wire.from_pb(tx.send(req)), pipeline.run(from_wire(req), cfg)  # both the library's Result
    assert isinstance(b, messages.Result)
    assert b.outputs[0].block_errors > 0  # the comparison covers a frame the channel damaged
    # field by field: outputs (pixels, notes, block counts), quality, echoed request fields; timings by stage only.
    # Notes too, exactly: a decoder's error names no per-process object address (`codecs` strips it).
    assert not any(re.search(r"0x[0-9a-f]{6,}", o.note) for o in a.outputs)
    assert dataclasses.replace(a, timings=[]) == dataclasses.replace(b, timings=[])
    assert [(t.service, t.stage) for t in a.timings] == [(t.service, t.stage) for t in b.timings]


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.payloads[0].CopyFrom(pb.Payload(modality=pb.IMAGE, image=b"\x89PNG\r\n\x1a\nnot really")),
     "payloads[0].image"),
    (lambda r: r.payloads[0].CopyFrom(pb.Payload(modality=pb.AUDIO, audio=b"RIFF\x00\x00junk")), "payloads[0].audio"),
    (lambda r: setattr(r.payloads[0], "modality", pb.IMAGE), "payloads[0].modality"),
    (lambda r: setattr(r.payloads[0], "text", "   "), "payloads[0].text"),
    (lambda r: setattr(r, "task", 99), "task"),
    (lambda r: setattr(r.link, "snr_db", math.nan), "link.snr_db"),
    (lambda r: setattr(r.link, "snr_db", math.inf), "link.snr_db"),
    (lambda r: setattr(r.link, "channel", 42), "link.channel"),
    (lambda r: r.ClearField("payloads"), "payloads"),
    (lambda r: setattr(r.link, "scheme", pb.SCHEME_UNSPECIFIED), "link.scheme"),
    (lambda r: setattr(r.link, "modulation", "qam1024"), "link.modulation"),
    (lambda r: setattr(r, "task", pb.ASR), "payloads[0]"),  # ASR takes audio, not text
])
def test_bad_input_is_invalid_argument_naming_the_field(tx, mutate, field):
    req = client.build_request(text="hello", snr_db=10.0)
    mutate(req)
    code, details = _code(lambda: tx.send(req))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith(field), details
    # and the service keeps serving
    assert tx.send(client.build_request(text="still here", snr_db=30.0)).output_text == "still here"


def test_semcom_reconstruction_is_unimplemented_with_reason(tx):
    req = client.build_request(image=scene_png(32), task="reconstruct", scheme="semcom")
    code, details = _code(lambda: tx.send(req))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert "semcom" in details and "task-specific" in details


def test_oversize_payload_is_resource_exhausted(tx):
    req = client.build_request(image=b"\x00" * (TEST_MAX_MESSAGE_BYTES + 1024))
    code, details = _code(lambda: tx.send(req))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert tx.send(client.build_request(text="after oversize", snr_db=30.0)).output_text == "after oversize"


def test_tiny_deadline_is_deadline_exceeded_and_service_recovers(tx, photo_png):
    code, _ = _code(lambda: tx.send(client.build_request(image=photo_png), timeout_s=0.001))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert tx.send(client.build_request(text="after deadline", snr_db=30.0)).output_text == "after deadline"


def test_missing_next_hop_is_waited_for_until_the_deadline(tmp_path):
    """Next hops wait for ready (issue 13): a call to a hop that is down waits, within its deadline, for it to
    come back (a restarting peer), and one that never comes ends DEADLINE_EXCEEDED naming the hop."""
    port, metrics, dead = free_ports(3)
    log = open(tmp_path / "tx.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.transmitter.server", "--port", str(port),
                             "--metrics-port", str(metrics), "--channel", f"127.0.0.1:{dead}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        target = f"127.0.0.1:{port}"
        for _ in range(300):
            if client.health(target) == "SERVING":
                break
            time.sleep(0.1)
        with client.Client(target) as c:
            t0 = time.monotonic()
            code, details = _code(lambda: c.send(client.build_request(text="anyone there?"), timeout_s=3))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
        assert f"channel at 127.0.0.1:{dead}" in details
        assert 2.5 < time.monotonic() - t0 < 6
        # SIGUSR1: every thread's stack into the log, and the service goes on serving
        proc.send_signal(signal.SIGUSR1)
        for _ in range(100):  # until the dump has reached the server's frames (it is written a thread at a time)
            dump = (tmp_path / "tx.log").read_bytes()
            if b"most recent call first" in dump and b'services/common/server.py", line' in dump:
                break
            time.sleep(0.1)
        text = (tmp_path / "tx.log").read_text(errors="replace")
        assert "(most recent call first)" in text and "services/common/server.py\", line" in text
        assert client.health(target) == "SERVING"
        proc.terminate()  # SIGTERM: graceful
        assert proc.wait(timeout=20) == 0
        assert b"drained in" in (tmp_path / "tx.log").read_bytes()
        assert b"stopped" in (tmp_path / "tx.log").read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_channel_apply_streams_frames_back_with_csi(services):
    cfg, _ = services
    n, frames = 4096, 3
    rng = np.random.default_rng(0)
    z = ((rng.standard_normal(n * frames) + 1j * rng.standard_normal(n * frames)) / np.sqrt(2)).astype(np.complex64)
    header = pb.RequestHeader(link=pb.LinkSettings(snr_db=10.0, channel=pb.RAYLEIGH, seed=4))

    def uplink():
        yield pb.Uplink(header=header)
        for seq, last, chunk in wire.frames(z, n):
            yield pb.Uplink(frame=pb.SymbolFrame(seq=seq, last=last, symbols=wire.to_tensor(chunk)))

    ch = grpc.insecure_channel(cfg.address("channel").grpc)
    back = list(pb_grpc.ChannelStub(ch).Apply(uplink(), timeout=30))
    assert back[0].WhichOneof("kind") == "header" and len(back) == frames + 1
    y = np.concatenate([wire.from_tensor(m.frame.symbols) for m in back[1:]])
    h = np.concatenate([wire.runs_decode(wire.from_tensor(m.frame.csi.h), wire.from_tensor(m.frame.csi.h_runs),
                                         len(wire.from_tensor(m.frame.symbols))) for m in back[1:]])
    assert all(len(m.frame.csi.h_runs.shape) == 1 and m.frame.csi.h_runs.shape[0] == 1 for m in back[1:])
    assert np.allclose(h, h[0])  # one h for the whole stream (block_length 0): eq. (2)'s h_m
    noise = y - h * z
    measured_snr_db = 10 * np.log10(1.0 / np.mean(np.abs(noise) ** 2))
    assert measured_snr_db == pytest.approx(10.0, abs=0.2)
    assert back[1].frame.csi.noise_var == pytest.approx(0.1)


def test_reflection_lists_the_services(services):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
    cfg, _ = services
    for name, svc in (("transmitter", "unitocom.v1.Transmitter"), ("channel", "unitocom.v1.Channel"),
                      ("basestation", "unitocom.v1.BaseStation")):
        with grpc.insecure_channel(cfg.address(name).grpc) as ch:
            names = set(ProtoReflectionDescriptorDatabase(ch).get_services())
        assert {svc, "grpc.health.v1.Health"} <= names


def test_metrics_count_requests_by_code_and_time_stages(services, tx):
    cfg, _ = services
    tx.send(client.build_request(text="metered", snr_db=30.0))
    with pytest.raises(grpc.RpcError):
        tx.send(client.build_request(text="", snr_db=30.0))
    body = urllib.request.urlopen(cfg.address("transmitter").metrics_url, timeout=5).read().decode()
    # Labels as services/common/metrics.py defines them (the exposition lists them sorted).
    labels = 'method="Send",modality="text",scheme="traditional",service="transmitter",task="reconstruct"'
    assert f'unitocom_requests_total{{code="OK",{labels}}}' in body
    assert f'unitocom_requests_total{{code="INVALID_ARGUMENT",{labels}}}' in body
    assert 'unitocom_stage_seconds_bucket{le="0.001",scheme="traditional",service="transmitter",stage="channel_encode"}' \
        in body
    bs = urllib.request.urlopen(cfg.address("basestation").metrics_url, timeout=5).read().decode()
    assert 'unitocom_stage_seconds_count{scheme="traditional",service="basestation",stage="decode"}' in bs


def test_speech_through_amr_wb_and_ldpc(tx):
    """`unitocom send --audio clip.wav --scheme traditional`: decoded speech comes back."""
    from unitocom.demo import speech_clip
    clip = speech_clip("four green spheres")
    assert clip is not None, "espeak-ng is missing: `make system` installs it"
    r = tx.send(client.build_request(audio=clip, snr_db=25.0, seed=2))
    (out,) = r.outputs
    assert out.decoded and out.block_errors == 0 and out.audio_wav
    import soundfile as sf
    wave, rate = sf.read(io.BytesIO(out.audio_wav))
    assert rate == 16000 and 0.5 < len(wave) / rate < 5.0
    assert r.quality["audio_snr_db"] > 60  # bit-exact AMR-WB payload: only the PCM16 rounding differs
    assert 0 < r.quality["mel_distance_db"] < 12  # against the input: the codec's own loss (8.0 dB measured)
    bad = tx.send(client.build_request(audio=clip, snr_db=3.0, channel="rayleigh", block_length=128, seed=2))
    assert bad.outputs[0].block_errors > 0
    assert (not bad.outputs[0].decoded) or bad.quality["audio_snr_db"] < 10


@pytest.mark.parametrize("stream, field", [
    ([pb.Uplink(frame=pb.SymbolFrame(last=True))], "uplink"),  # no header first
    ([pb.Uplink(header=pb.RequestHeader(link=pb.LinkSettings(snr_db=5))),
      pb.Uplink(frame=pb.SymbolFrame(last=True, symbols=wire.to_tensor(np.zeros(4, np.float32))))],
     "frame.symbols"),  # wrong dtype
    ([pb.Uplink(header=pb.RequestHeader(link=pb.LinkSettings(snr_db=5))),
      pb.Uplink(frame=pb.SymbolFrame(last=True, symbols=pb.Tensor(dtype=pb.COMPLEX64, shape=[8], raw=b"\0" * 7)))],
     "frame.symbols"),  # bytes that do not fill the shape
    ([pb.Uplink(header=pb.RequestHeader(link=pb.LinkSettings(snr_db=math.nan)))], "link.snr_db"),
])
def test_the_channel_refuses_malformed_streams_precisely(services, stream, field):
    cfg, _ = services
    with grpc.insecure_channel(cfg.address("channel").grpc) as ch:
        code, details = _code(lambda: list(pb_grpc.ChannelStub(ch).Apply(iter(stream), timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


@pytest.mark.parametrize("header, field", [
    (pb.RequestHeader(), "header.streams"),
    (pb.RequestHeader(streams=[pb.StreamHeader(stream_id=0, scheme=77)]), "header.streams[0].scheme"),
    (pb.RequestHeader(streams=[pb.StreamHeader(stream_id=0, scheme=pb.TRADITIONAL, num_symbols=4)]), "frames"),
    # every enum is checked as the header arrives (before issue 11 the task's and the link's scheme were checked
    # after the frames, so these two said "frames"); a stream is named by its index in header.streams
    (pb.RequestHeader(task=99, streams=[pb.StreamHeader(stream_id=0, scheme=pb.TRADITIONAL, num_symbols=4)]),
     "header.task"),
    (pb.RequestHeader(link=pb.LinkSettings(scheme=42),
                      streams=[pb.StreamHeader(stream_id=0, scheme=pb.TRADITIONAL, num_symbols=4)]),
     "header.link.scheme"),
    (pb.RequestHeader(streams=[pb.StreamHeader(stream_id=5, scheme=pb.TRADITIONAL),
                               pb.StreamHeader(stream_id=3)]), "header.streams[1].scheme"),
])
def test_the_base_station_refuses_malformed_headers_precisely(services, header, field):
    cfg, _ = services
    with grpc.insecure_channel(cfg.address("basestation").grpc) as ch:
        code, details = _code(lambda: pb_grpc.BaseStationStub(ch).Receive(iter([pb.Uplink(header=header)]), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


_HEADER = pb.Uplink(header=pb.RequestHeader(streams=[pb.StreamHeader(stream_id=0, scheme=pb.TRADITIONAL,
                                                                       num_symbols=4)]))
_SYMBOLS = wire.to_tensor(np.zeros(4, np.complex64))


@pytest.mark.parametrize("frame, field", [
    (pb.SymbolFrame(stream_id=7, last=True, symbols=wire.to_tensor(np.zeros(4, np.float32))),
     "frame.stream_id"),  # an unknown stream is named before its (bad) symbols are read
    (pb.SymbolFrame(seq=1, last=True, symbols=_SYMBOLS), "frame.seq"),
    (pb.SymbolFrame(last=True, symbols=wire.to_tensor(np.zeros(4, np.float32))), "frame.symbols.dtype"),
    (pb.SymbolFrame(last=True, symbols=_SYMBOLS), "frame.csi.h_est.dtype"),  # no channel state
    (pb.SymbolFrame(last=True, symbols=_SYMBOLS, csi=pb.Csi(h_est=wire.to_tensor(np.ones(2, np.complex64)),
                                                          h_est_runs=wire.to_tensor(np.array([3, 3], np.int32)))),
     "frame.csi.h_est_runs"),  # runs that do not cover the frame
])
def test_the_base_station_refuses_malformed_frames_precisely(services, frame, field):
    cfg, _ = services
    with grpc.insecure_channel(cfg.address("basestation").grpc) as ch:
        code, details = _code(lambda: pb_grpc.BaseStationStub(ch).Receive(iter([_HEADER, pb.Uplink(frame=frame)]),
                                                                         timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


def test_t2i_is_scored_against_the_caption_sent_not_the_one_received():
    """At -5 dB the Turbo-coded caption breaks; the picture is still scored against what the device asked for."""
    from unitocom.stages import transmitter
    req = from_wire(client.build_request(task="t2i", scheme="traditional", text="A red cube.", snr_db=-5.0))
    prep = transmitter.prepare(req, config.load("tiny"))
    assert prep.header.label.caption == "A red cube."


def test_a_failed_warm_up_exits_non_zero_without_ever_opening_the_port():
    """A service whose warm-up raises must exit (so its supervisor restarts it), not stay up answering nothing."""
    port = free_ports(1)[0]
    code = f"""
import argparse
from services.common import server
from unitocom import config
cfg = config.load("tiny")
args = argparse.Namespace(log_level="INFO", port={port}, metrics_port=0, host="127.0.0.1")
def warmup():
    raise RuntimeError("no model here")
server.serve("basestation", args, cfg, lambda s: None, "unitocom.v1.BaseStation", warmup)
"""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert r.returncode != 0 and "warm-up failed (RuntimeError: no model here)" in r.stderr, r.stderr[-2000:]
    assert client.health(f"127.0.0.1:{port}", "unitocom.v1.BaseStation") == "UNREACHABLE"


@pytest.mark.parametrize("field, value", [("rician_k_db", 1e308), ("pilots", 2**32 - 1)])
def test_out_of_range_link_values_are_invalid_argument_naming_the_bound(tx, field, value):
    """Values the SDK cannot send, straight on the wire: an overflow (10^(K/10)) or a huge pilot count is refused
    with the field and its bound, and the service keeps serving."""
    req = client.build_request(text="x", channel="rician", csi="estimated")
    setattr(req.link, field, value)
    code, details = _code(lambda: tx.send(req))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"link.{field}" in details, details
    assert tx.send(client.build_request(text="still here", snr_db=30.0)).output_text == "still here"


def test_an_unknown_source_codec_is_refused_not_decoded_as_another():
    import numpy as np

    from unitocom.messages import Modality, StreamHeader
    from unitocom.options import Scheme
    from unitocom.schemes import traditional
    from unitocom.stages.request import RequestError
    h = StreamHeader(stream_id=2, modality=Modality.AUDIO, scheme=Scheme.TRADITIONAL, source_codec="mp3",
                     channel_code="ldpc", code_rate=0.5, modulation="qam16", info_block_bits=1024, payload_bytes=10)
    y = np.zeros(8, np.complex64)
    with pytest.raises(RequestError) as e:
        traditional.decode(h, y, np.ones(8, np.complex64), 0.1, False, config.load("tiny"))
    assert e.value.field == "header.streams[2].source_codec" and "'amrwb'" in e.value.reason


def test_nan_symbols_to_the_channel_are_invalid_argument(services):
    import numpy as np
    cfg, _ = services
    header = pb.RequestHeader(link=pb.LinkSettings(scheme=pb.TRADITIONAL, snr_db=10.0),
                              streams=[pb.StreamHeader(stream_id=0, scheme=pb.TRADITIONAL, num_symbols=4)])
    frame = wire.uplink_frame(0, 0, True, np.array([1, np.nan, 1j, 0], np.complex64))
    with grpc.insecure_channel(cfg.address("channel").grpc) as ch:
        stub = pb_grpc.ChannelStub(ch)
        code, details = _code(lambda: list(stub.Apply(iter([pb.Uplink(header=header), frame]), timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "frame.symbols" in details and "finite" in details, details
