"""Sessions across devices (issue 17) through the running services: a request assembled from parts that two
transmitters (a camera, a phone) send under one session id, each with its own SNR, channel and scheme; answered
once; a missing part's deadline (DEADLINE_EXCEEDED, or an answer with a note when the request asks for one); the
bounded session table; invalid and conflicting parts; the CLI from two shells; the sessions' metrics.

Its own stack (a base station with --max-sessions 2, so that filling the table takes two parts) and a second
transmitter process beside the stack's, both in front of the same channel."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_consecutive, free_ports
from unitocom import client, procs
from unitocom.v1 import unitocom_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
MAX_SESSIONS = 2
QUESTION = "What color is the large thing?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(cfg, second transmitter's address): the three services, the base station's table bounded at MAX_SESSIONS,
    and a second transmitter (another device) in front of the same channel."""
    from unitocom import config, launcher
    base = free_consecutive(6)
    cfg = config.load("tiny").replace(transmitter_port=base, channel_port=base + 1, basestation_port=base + 2,
                                      metrics_base_port=base + 3)
    d = tmp_path_factory.mktemp("sessions-run")
    launcher.up(cfg, "tiny", d, timeout_s=300, extra_args={"basestation": ["--max-sessions", str(MAX_SESSIONS)]})
    port, metrics_port = free_ports(2)
    second = dataclasses.replace(cfg, transmitter_port=port, metrics_base_port=metrics_port)
    log = open(d / "transmitter2.log", "wb")
    proc = subprocess.Popen(launcher.command("transmitter", second, "tiny"), stdout=log, stderr=subprocess.STDOUT)
    try:
        target = second.address("transmitter").grpc
        deadline = time.monotonic() + 180
        while client.health(target) != "SERVING":
            assert proc.poll() is None and time.monotonic() < deadline, (d / "transmitter2.log").read_text()[-2000:]
            time.sleep(0.2)
        yield cfg, target
    finally:
        procs.stop(proc, 10)
        log.close()
        launcher.down(d)


@pytest.fixture(scope="module")
def camera(stack):
    with client.Client(stack[0].address("transmitter").grpc) as c:
        yield c


@pytest.fixture(scope="module")
def phone(stack):
    with client.Client(stack[1]) as c:
        yield c


@pytest.fixture(scope="module")
def picture() -> bytes:
    from unitocom.demo import photograph
    return photograph(32)


def _scrape(cfg, service: str = "basestation") -> dict[tuple, float]:
    text = urllib.request.urlopen(cfg.address(service).metrics_url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _metric(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def _sessions(samples: dict) -> dict[str, float]:
    return {e: _metric(samples, "unitocom_sessions_total", event=e)
            for e in ("opened", "completed", "partial", "expired", "failed", "rejected")}


def _delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def _error(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("the call succeeded; an error was expected")


def _wait_open(cfg, n: int, *calls, timeout_s: float = 60.0) -> None:
    """Until the base station has n sessions open (its parts decoded and waiting); a call that ended meanwhile
    (futures, or processes) says why."""
    deadline = time.monotonic() + timeout_s
    while _metric(_scrape(cfg), "unitocom_sessions_open") != n:
        for c in calls:
            if isinstance(c, subprocess.Popen):
                assert c.poll() is None, c.communicate()
            elif c.done():
                c.result()
                raise AssertionError("the call ended without waiting for the session's other parts")
        assert time.monotonic() < deadline, f"never {n} sessions open"
        time.sleep(0.1)


def _mllm_runs(result: pb.Result) -> int:
    return sum(1 for t in result.timings if t.service == "basestation" and t.stage == "mllm_generate")


def test_a_session_from_two_transmitters_is_answered_once(stack, camera, phone, picture):
    """The camera sends the picture (unitocom tokens, AWGN 20 dB), the phone the question (traditional UTF-8 + Turbo +
    16-QAM, Rayleigh 12 dB) through another transmitter: one MLLM run answers both calls alike, each call gets its own
    stream's output, and the report lists both parts with their own links."""
    cfg, _ = stack
    before = _scrape(cfg)
    image = client.build_request(image=picture, task="vqa", scheme="unitocom", snr_db=20.0, channel="awgn",
                                 session_id="kitchen-1", request_id="camera-1", answer="gray")
    question = client.build_request(text=QUESTION, task="vqa", scheme="traditional", snr_db=12.0, channel="rayleigh",
                                    seed=3, session_id="kitchen-1", request_id="phone-1")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(camera.send, image, 60)
        _wait_open(cfg, 1, first)  # the picture arrived and waits for the question
        assert not first.done()
        second = pool.submit(phone.send, question, 60)
        r1, r2 = first.result(), second.result()
    after = _scrape(cfg)
    assert r1.output_text and r1.output_text == r2.output_text
    assert dict(r1.quality) == dict(r2.quality) and "exact_match" in r1.quality  # the camera's label scores both
    assert (r1.request_id, r2.request_id) == ("camera-1", "phone-1")
    # computed once, by the call whose part completed the session (the phone's); the camera's call only waited
    assert r1.session.answered_by == r2.session.answered_by == "phone-1"
    assert (_mllm_runs(r1), _mllm_runs(r2)) == (0, 1)
    assert _metric(after, "unitocom_stage_seconds_count", service="basestation", stage="mllm_generate") - \
        _metric(before, "unitocom_stage_seconds_count", service="basestation", stage="mllm_generate") == 1
    assert r1.session.waited_s > 0 and r2.session.waited_s == 0
    # each call: its own stream and link; the report: every part, the same for both (but the wait)
    assert [o.modality for o in r1.outputs] == [pb.IMAGE] and [o.modality for o in r2.outputs] == [pb.TEXT]
    assert (r1.scheme, r1.snr_db, r1.channel) == (pb.UNITOCOM, 20.0, pb.AWGN)
    assert (r2.scheme, r2.snr_db, r2.channel) == (pb.TRADITIONAL, 12.0, pb.RAYLEIGH)
    assert r1.channel_uses == r1.outputs[0].channel_uses > 0 and r2.channel_uses == r2.outputs[0].channel_uses > 0
    parts = [(p.request_id, p.modality, p.scheme, p.snr_db, p.channel) for p in r1.session.arrived]
    assert parts == [("camera-1", pb.IMAGE, pb.UNITOCOM, 20.0, pb.AWGN),
                     ("phone-1", pb.TEXT, pb.TRADITIONAL, 12.0, pb.RAYLEIGH)]
    assert [p.channel_uses for p in r1.session.arrived] == [r1.channel_uses, r2.channel_uses]
    for r in (r1, r2):
        assert r.session.id == "kitchen-1" and r.session.complete and not r.session.missing and not r.session.note
    assert list(r1.session.arrived) == list(r2.session.arrived)
    assert _delta(_sessions(before), _sessions(after)) == {"opened": 1, "completed": 1}


def test_a_session_answers_what_one_request_with_both_payloads_answers(camera, phone, picture):
    """Assembled from two calls, the MLLM reads what it reads when one device sends both: over a noiseless channel
    the answer is the same."""
    link = dict(task="vqa", scheme="unitocom", channel="noiseless")
    whole = camera.send(client.build_request(image=picture, text=QUESTION, **link), 60)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(camera.send, client.build_request(image=picture, session_id="same-1", **link), 60)
        b = pool.submit(phone.send, client.build_request(text=QUESTION, session_id="same-1", **link), 60)
        a, b = a.result(), b.result()
    assert whole.output_text and a.output_text == b.output_text == whole.output_text


def test_a_missing_part_ends_in_deadline_exceeded_naming_it(stack, camera, picture):
    cfg, _ = stack
    before = _sessions(_scrape(cfg))
    req = client.build_request(image=picture, task="vqa", scheme="unitocom", session_id="lonely-1",
                               session_wait_s=1.5)
    t0 = time.monotonic()
    code, details = _error(lambda: camera.send(req, 60))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
    assert "session 'lonely-1': no text part arrived within 1.5 s (arrived: image)" in details
    assert 1.4 < time.monotonic() - t0 < 30  # the session's deadline, not the call's 60 s
    assert _delta(before, _sessions(_scrape(cfg))) == {"opened": 1, "expired": 1}
    # the id is closed: a late question is refused naming what happened, not left to wait in a new session
    late = client.build_request(text=QUESTION, task="vqa", scheme="unitocom", session_id="lonely-1")
    code, details = _error(lambda: camera.send(late, 60))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already ended" in details and "expired" in details


def test_a_missing_part_is_answered_with_a_note_when_the_request_asks(stack, phone):
    cfg, _ = stack
    before = _sessions(_scrape(cfg))
    req = client.build_request(text=QUESTION, task="vqa", scheme="traditional", session_id="partial-1",
                               session_partial=True, session_wait_s=1.5, request_id="phone-2")
    r = phone.send(req, 60)
    assert r.output_text  # an answer, read from the question and a blank picture
    s = r.session
    assert (s.complete, list(s.missing), s.answered_by) == (False, [pb.IMAGE], "phone-2")
    assert s.note == "no image part arrived within 1.5 s: the task read a blank (mid-grey) picture"
    assert [p.modality for p in s.arrived] == [pb.TEXT] and s.waited_s >= 1.4
    assert _delta(before, _sessions(_scrape(cfg))) == {"opened": 1, "partial": 1}


def test_the_session_table_is_bounded_and_the_service_keeps_serving(stack, camera, phone, picture):
    cfg, _ = stack
    before = _sessions(_scrape(cfg))
    waiting = [client.build_request(image=picture, task="vqa", scheme="unitocom", session_id=f"full-{i}",
                                    session_wait_s=4.0) for i in range(MAX_SESSIONS)]
    with ThreadPoolExecutor(MAX_SESSIONS) as pool:
        futures = [pool.submit(camera.send, r, 60) for r in waiting]
        _wait_open(cfg, MAX_SESSIONS, *futures)
        one_more = client.build_request(image=picture, task="vqa", scheme="unitocom", session_id="full-x")
        code, details = _error(lambda: phone.send(one_more, 60))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert f"session table is full ({MAX_SESSIONS} sessions open, the limit)" in details
        # requests without a session are served meanwhile
        assert camera.send(client.build_request(text="still here", snr_db=30.0), 60).output_text == "still here"
        for f in futures:
            code, details = _error(f.result)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "no text part arrived within 4 s" in details
    after = _scrape(cfg)
    assert _metric(after, "unitocom_sessions_open") == 0
    assert _delta(before, _sessions(after)) == {"opened": MAX_SESSIONS, "expired": MAX_SESSIONS, "rejected": 1}
    # room again: a session opens and completes
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(camera.send, client.build_request(image=picture, task="vqa", scheme="unitocom",
                                                          session_id="full-again"), 60)
        b = pool.submit(phone.send, client.build_request(text=QUESTION, task="vqa", scheme="unitocom",
                                                         session_id="full-again"), 60)
        assert a.result().output_text == b.result().output_text != ""


@pytest.mark.parametrize("options, field, reason", [
    (dict(session_id=""), "session.id", "is empty"),
    (dict(session_id="x" * 129), "session.id", "129 characters exceeds the limit of 128"),
    (dict(session_id="my session"), "session.id", "an id may hold only letters, digits and . _ : -"),
    (dict(session_id="s", session_parts="image,image"), "session.parts", "names image twice"),
    (dict(session_id="s", session_parts="text,image,audio"), "session.parts",
     "task vqa needs text, image (a typed question) or image, audio (a spoken question), not text, image, audio"),
    (dict(session_id="s", session_parts="image"), "session.parts",
     "task vqa needs text, image (a typed question) or image, audio (a spoken question), not image"),
    (dict(session_id="s", task="reconstruct"), "session.parts", "reconstruct takes any modality"),
    (dict(session_id="s", session_parts="text,image", text="q", question="q2"), "payloads[1]",
     "a second text: a session part carries each modality once"),
    (dict(session_id="s", session_wait_s=601.0), "session.wait_s", "must be in [0, 600] s"),
])
def test_invalid_session_input_is_invalid_argument_naming_the_field(camera, options, field, reason):
    values = dict(image=None, task="vqa", scheme="unitocom") | options
    if values["image"] is None and "text" not in values:
        values["text"] = QUESTION
    code, details = _error(lambda: camera.send(client.build_request(**values), 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith(f"{field}: ") and reason in details, details
    assert camera.send(client.build_request(text="after a bad session", snr_db=30.0), 30).output_text


def test_the_base_station_checks_a_session_header_itself(stack):
    """A header that no transmitter made (a replay, another client) is checked again where the session is kept."""
    cfg, _ = stack
    header = pb.RequestHeader(request_id="forged", task=pb.VQA, link=pb.LinkSettings(scheme=pb.TRADITIONAL),
                              streams=[pb.StreamHeader(stream_id=0, modality=pb.AUDIO, scheme=pb.TRADITIONAL)],
                              session=pb.Session(id="forged-1"))
    with grpc.insecure_channel(cfg.address("basestation").grpc) as ch:
        code, details = _error(lambda: pb_grpc().BaseStationStub(ch).Receive(iter([pb.Uplink(header=header)]),
                                                                              timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "header.streams[0]: is audio, but session 'forged-1' waits for text, image"


def pb_grpc():
    from unitocom.v1 import unitocom_pb2_grpc
    return unitocom_pb2_grpc


def test_conflicting_parts_are_failed_precondition_and_the_session_goes_on(stack, camera, phone, picture):
    cfg, _ = stack
    vqa = dict(task="vqa", scheme="unitocom", session_id="busy-1")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(camera.send, client.build_request(image=picture, request_id="cam-3", **vqa), 60)
        _wait_open(cfg, 1, first)
        code, details = _error(lambda: phone.send(client.build_request(
            text="a red cube", **(vqa | dict(task="t2i"))), 30))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert details == "task: session 'busy-1' is a vqa session (opened by request cam-3); this part asks for t2i"
        code, details = _error(lambda: phone.send(client.build_request(image=picture, **vqa), 30))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "already has its image part (from request cam-3)" in details
        answer = phone.send(client.build_request(text=QUESTION, **vqa), 60)
        assert first.result().output_text == answer.output_text != ""


def test_two_shells_send_the_parts_with_the_cli(stack, tmp_path, picture):
    """`unitocom send --image I --session S` in one shell and `unitocom send --text Q --session S` in another."""
    cfg, second = stack
    image = tmp_path / "scene.png"
    image.write_bytes(picture)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def send(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "unitocom.cli", "send", "--task", "vqa", "--session", "shell-1",
                                 "--json", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    cam = send("--image", str(image), "--scheme", "unitocom", "--snr-db", "18", "--target",
               cfg.address("transmitter").grpc)
    _wait_open(cfg, 1, cam)
    ph = send("--text", QUESTION, "--scheme", "traditional", "--channel", "rayleigh", "--target", second)
    (out1, err1), (out2, err2) = cam.communicate(timeout=120), ph.communicate(timeout=120)
    assert cam.returncode == 0 and ph.returncode == 0, (err1, err2)
    d1, d2 = json.loads(out1), json.loads(out2)
    assert d1["output"] == d2["output"] != ""
    s1, s2 = d1["session"], d2["session"]
    assert s1["id"] == "shell-1" and s1["complete"] and s1["answered_by"] == s2["answered_by"] == d2["request_id"]
    assert [(p["modality"], p["scheme"], p["channel"]) for p in s2["arrived"]] == \
        [("image", "unitocom", "awgn"), ("text", "traditional", "rayleigh")]
    # and without --json: the summary says which parts arrived
    text = subprocess.run([sys.executable, "-m", "unitocom.cli", "send", "--task", "vqa", "--text", QUESTION,
                           "--session", "shell-2", "--session-partial", "--session-wait-s", "0.5", "--target",
                           second], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "session shell-2: PARTIAL, missing image" in text.stdout
    assert "note: no image part arrived within 0.5 s" in text.stdout
