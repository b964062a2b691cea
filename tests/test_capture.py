"""IQ capture as SigMF: recordings the sigmf package validates, read back bit-exactly, on a bounded disk."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import scene_png
from unitocom import capture, client, config, wire
from unitocom.stages import transmitter
from unitocom.stages.channel import ChannelCore
from unitocom.stages.request import from_wire


def _record(recorder: capture.Recorder, request_id: str, frame_symbols: int = 100, **opts):
    """A real request through the channel's library, captured; returns (recording path, sent, received)."""
    cfg = config.load("tiny")
    request = from_wire(client.build_request(request_id=request_id, **opts))
    prep = transmitter.prepare(request, cfg)
    core = ChannelCore(request.link, [s.header.stream_id for s in prep.streams], cfg)
    rec = recorder.start(prep.header)
    sent, received = [], []
    for f in prep.frames(frame_symbols):
        out = core.apply(f)
        rec.add(f.symbols, out)
        sent.append(np.array(f.symbols))
        received.append(out)
    return rec.close(), prep.header, sent, received


def test_a_recording_validates_and_reads_back_exactly(tmp_path):
    rec = capture.Recorder(tmp_path, sample_rate_hz=2e6)
    path, header, sent, received = _record(rec, "req-1", image=scene_png(32), text="what color?", task="vqa",
                                           scheme="unitocom", snr_db=7.0, channel="rayleigh", fading="fast",
                                           csi="estimated", pilots=2)
    from sigmf import sigmffile
    f = sigmffile.fromfile(str(path))  # schema and checksum validation by the reference package
    assert f.get_global_info()["core:datatype"] == "cf32_le" and f.get_global_info()["core:num_channels"] == 4
    assert f.sample_count == sum(len(z) for z in sent)
    back = capture.read(path)
    assert back.header == header and back.sample_rate_hz == 2e6
    assert len(back.received) == len(received) > 2  # several frames per stream, two streams
    for z, z_back, r, r_back in zip(sent, back.sent, received, back.received):
        assert np.array_equal(z, z_back) and np.array_equal(r.symbols, r_back.symbols)
        n = len(z)
        assert np.array_equal(wire.runs_decode(r.csi.h, r.csi.h_runs, n), r_back.csi.h)
        assert np.array_equal(wire.runs_decode(r.csi.h_est, r.csi.h_est_runs, n), r_back.csi.h_est)
        assert (r_back.stream_id, r_back.seq, r_back.last) == (r.stream_id, r.seq, r.last)
        assert r_back.csi.noise_var == r.csi.noise_var and r_back.csi.h_est_error_var == r.csi.h_est_error_var
    # the physics a reader would check: z_hat = h z + n with noise of variance N0 (estimated CSI differs from h)
    z, h, zh = (np.concatenate(x) for x in (back.sent, [c.csi.h for c in back.received],
                                             [c.symbols for c in back.received]))
    n0 = np.concatenate([np.full(len(c.symbols), c.csi.noise_var) for c in back.received])
    power = np.mean(np.abs(zh - h * z) ** 2 / n0)  # E|n|^2 / N0 = 1; its estimate has std 1/sqrt(N)
    assert abs(power - 1) < 5 / np.sqrt(len(z)), power
    assert not np.array_equal(np.concatenate([c.csi.h_est for c in back.received]), h)


def test_the_directory_stays_under_its_cap_oldest_first(tmp_path):
    one = _record(capture.Recorder(tmp_path / "probe"), "probe", text="x" * 40, snr_db=10.0)[0]
    size = one.stat().st_size + one.with_suffix(".sigmf-data").stat().st_size
    rec = capture.Recorder(tmp_path / "cap", max_bytes=int(2.5 * size))
    for i in range(4):
        _record(rec, f"r{i}", text="x" * 40, snr_db=10.0)
    assert [p.stem for p in rec.recordings()] == ["r2", "r3"]
    small = capture.Recorder(tmp_path / "small", max_bytes=64)
    assert _record(small, "big", text="x" * 40, snr_db=10.0)[0] is None and not small.recordings()


def test_other_files_are_refused_with_the_reason(tmp_path):
    from sigmf import SigMFFile
    data = tmp_path / "other.sigmf-data"
    np.zeros(8, np.complex64).tofile(data)
    meta = SigMFFile(data_file=str(data), global_info={"core:datatype": "cf32_le", "core:sample_rate": 1.0})
    meta.tofile(str(tmp_path / "other.sigmf-meta"))
    with pytest.raises(ValueError, match="not a UniToCom capture"):
        capture.read(tmp_path / "other.sigmf-meta")
    assert json.loads((tmp_path / "other.sigmf-meta").read_text())["global"]["core:datatype"] == "cf32_le"


def test_the_channel_service_captures_and_a_capture_replays_to_the_same_answer(services, tmp_path, capsys):
    """A second channel service with --capture in front of the session's base station: the answer through it and
    the answer to its recording sent again are the same (same received symbols and CSI, same checkpoints)."""
    import subprocess
    import sys
    import time

    from tests.conftest import free_ports
    from unitocom.v1 import unitocom_pb2 as pb
    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc
    import grpc

    cfg, _ = services
    port, = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-m", "services.channel.server", "--port", str(port), "--metrics-port",
                             "0", "--basestation", cfg.address("basestation").grpc, "--capture", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while client.health(f"127.0.0.1:{port}") != "SERVING":
            assert proc.poll() is None and time.monotonic() - t0 < 60, "the capturing channel did not start"
            time.sleep(0.2)
        # an image the base station reconstructs: its PNG bytes change with any received symbol
        req = from_wire(client.build_request(request_id="cap-img", image=scene_png(32), task="reconstruct",
                                             scheme="unitocom", snr_db=4.0, channel="rayleigh"))
        prep = transmitter.prepare(req, config.load("tiny"))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            live = pb_grpc.ChannelStub(ch).Forward(wire.uplink(prep.header, prep.frames(64)), timeout=60)
    finally:
        proc.terminate()
        proc.wait(10)
    [meta] = capture.Recorder(tmp_path).recordings()
    assert meta.stem == "cap-img"
    again = client.replay(cfg.address("basestation").grpc, meta)
    assert isinstance(again, pb.Result) and again.channel_uses == live.channel_uses > 0
    assert again.outputs[0].image_png == live.outputs[0].image_png != b""
    # the same through the CLI, a directory of recordings at a time
    from unitocom import cli
    assert cli.main(["replay", str(tmp_path), "--target", cfg.address("basestation").grpc, "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["recording"].endswith("cap-img.sigmf-meta") and line["channel_uses"] == live.channel_uses
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["replay", str(empty)]) == 2
    assert "no .sigmf-meta recordings" in capsys.readouterr().err
