"""IQ capture as SigMF: recordings the sigmf package validates, read back bit-exactly, on a bounded disk."""
from __future__ import annotations

import json
import pathlib

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

    from tests.conftest import free_ports, stop_service
    from unitocom.v1 import unitocom_pb2 as pb
    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc
    import grpc

    cfg, _ = services
    port, = free_ports(1)
    log_path = tmp_path.parent / f"{tmp_path.name}-channel.log"  # beside the recordings, not among them
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.channel.server", "--port", str(port),
                                 "--metrics-port", "0", "--basestation", cfg.address("basestation").grpc, "--capture",
                                 str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
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
        stop_service(proc, log_path)
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


# ---- capture as a request option (link.capture) -------------------------------------------------------------------

@pytest.fixture
def channel_in_process(services):
    """start(recorder, mode) -> (address, servicer): a channel servicer in this process, in front of the session's
    base station (quicker than a process; the same class the service runs). Every server started is stopped."""
    from concurrent import futures

    import grpc

    from services.channel.server import Channel
    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

    cfg, _ = services
    servers = []

    def start(recorder, mode="requested"):
        server = grpc.server(futures.ThreadPoolExecutor(4))
        servicer = Channel(cfg, cfg.address("basestation").grpc, None, recorder, mode)
        pb_grpc.add_ChannelServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", servicer

    yield start
    for s in servers:
        s.stop(None)


def _forward(address: str, request_id: str, **opts):
    """A real request (an image the base station reconstructs: its PNG changes with any received symbol) prepared
    by the transmitter's library and sent through the channel at `address`; its Result."""
    import grpc

    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc
    opts = {"image": scene_png(32), "task": "reconstruct", "scheme": "unitocom", "snr_db": 4.0,
            "channel": "rayleigh", **opts}
    prep = transmitter.prepare(from_wire(client.build_request(request_id=request_id, **opts)), config.load("tiny"))
    with grpc.insecure_channel(address) as ch:
        return pb_grpc.ChannelStub(ch).Forward(wire.uplink(prep.header, prep.frames(64)), timeout=60)


def test_a_request_that_asks_is_recorded_where_its_result_says_and_replays(services, channel_in_process, tmp_path):
    """--capture-mode requested: the request sent with capture is recorded (the sigmf package validates it) at the
    path its result names, and that recording replays to the same PNG; the request sent without is not recorded."""
    from sigmf import sigmffile
    cfg, _ = services
    address, _ = channel_in_process(capture.Recorder(tmp_path), "requested")
    asked = _forward(address, "asks", capture=True)
    quiet = _forward(address, "quiet")
    assert not quiet.HasField("capture") and quiet.outputs[0].image_png  # served, not recorded
    assert [p.stem for p in capture.Recorder(tmp_path).recordings()] == ["asks"]
    c = asked.capture
    assert c.path == str((tmp_path / "asks.sigmf-meta").resolve()) and c.note == ""
    assert c.bytes == sum(p.stat().st_size for p in (tmp_path / "asks.sigmf-meta", tmp_path / "asks.sigmf-data"))
    f = sigmffile.fromfile(c.path)  # schema and checksum
    assert f.sample_count == asked.channel_uses > 0
    assert capture.read(c.path).header.link.capture is True  # the header says the caller asked
    again = client.replay(cfg.address("basestation").grpc, c.path)
    assert again.outputs[0].image_png == asked.outputs[0].image_png != b""
    # what `unitocom send` shows and --json prints
    d = client.result_to_dict(asked)
    assert d["capture"] == {"path": c.path, "bytes": c.bytes, "note": ""}
    from unitocom.report import format_result
    assert f"unitocom replay {c.path}" in format_result(d)
    assert "capture" not in client.result_to_dict(quiet)


def test_mode_all_records_every_request_and_says_it_was_unasked(channel_in_process, tmp_path):
    """--capture DIR alone (mode all) records as it always did, and the result says why it was recorded."""
    address, _ = channel_in_process(capture.Recorder(tmp_path), "all")
    r = _forward(address, "unasked", text="x" * 20, task="reconstruct", scheme="traditional", snr_db=20.0)
    assert r.capture.path.endswith("unasked.sigmf-meta") and "records every request" in r.capture.note
    assert [p.stem for p in capture.Recorder(tmp_path).recordings()] == ["unasked"]


def test_the_disk_cap_holds_for_requested_captures(channel_in_process, tmp_path):
    """The cap still bounds the directory (oldest first), and a request whose recording is larger than the cap is
    answered, with a note instead of a path."""
    probe_addr, _ = channel_in_process(capture.Recorder(tmp_path / "probe"), "requested")
    one = _forward(probe_addr, "probe", capture=True).capture.bytes
    address, servicer = channel_in_process(capture.Recorder(tmp_path / "cap", max_bytes=int(2.5 * one)))
    for i in range(4):
        assert _forward(address, f"r{i}", capture=True).capture.path
    assert [p.stem for p in servicer.recorder.recordings()] == ["r2", "r3"]
    servicer.recorder = capture.Recorder(tmp_path / "small", max_bytes=64)
    r = _forward(address, "big", capture=True)
    assert r.outputs[0].image_png and r.capture.path == "" and "--capture-max-mb" in r.capture.note
    assert not servicer.recorder.recordings()


def test_capture_without_a_capture_directory_is_failed_precondition(tx):
    """The session's channel has no --capture: a request asking for capture gets FAILED_PRECONDITION naming the
    field and the flag that enables it (through the transmitter, as a client sees it); the next request is served."""
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        tx.send(client.build_request(text="record me", snr_db=20.0, capture=True), timeout_s=60)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "link.capture" in e.value.details() and "--capture DIR" in e.value.details()
    ok = tx.send(client.build_request(text="record me", snr_db=20.0), timeout_s=60)
    assert ok.output_text == "record me" and not ok.HasField("capture")


def test_up_passes_capture_to_the_channel(tmp_path):
    """`unitocom up --capture DIR --capture-mode requested` reaches the channel's command line (absolute DIR), and
    the channel's parser takes those flags."""
    from unitocom import cli
    args = cli.parser().parse_args(["up", "--capture", "iq", "--capture-mode", "requested"])
    extra = {"channel": ["--log-level", "DEBUG"]}
    cli._capture_args(args, extra)
    assert extra["channel"] == ["--log-level", "DEBUG", "--capture", str((pathlib.Path("iq")).resolve()),
                                "--capture-mode", "requested"]
    none = {}
    cli._capture_args(cli.parser().parse_args(["up"]), none)
    assert none == {}
    with pytest.raises(ValueError, match="--capture-mode needs --capture"):
        cli._capture_args(cli.parser().parse_args(["up", "--capture-mode", "requested"]), {})
    from services.channel import server as channel_server
    with pytest.raises(SystemExit):  # a mode the channel does not know is refused by its parser, before serving
        channel_server.main(["--capture", str(tmp_path), "--capture-mode", "some"])
