"""Issue 13, security and recovery: certificates (unitocom.certs), mutual TLS between the services with caller
identities, bearer tokens at the transmitter, health without credentials, and the next-hop channel's
wait-for-ready and retry (services/common/security.py).

The services run as real processes with TLS on free loopback ports; the channel and base station are started
after the transmitter and a call is already waiting when the base station comes up (wait-for-ready end to end)."""
from __future__ import annotations

import dataclasses
import os
import ssl
import pathlib
import stat
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from cryptography import x509

from services.common import security
from tests.conftest import free_ports
from unitocom import certs, client, config
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token-for-tests"


# ---- certificates ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("tls")
    certs.make_certs(d)
    return d


def test_certs_cover_each_identity_and_keys_are_private(tls_dir):
    ca = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in certs.NAMES:
        cert = x509.load_pem_x509_certificate((tls_dir / f"{name}.pem").read_bytes())
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == name
        assert cert.issuer == ca.subject
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        assert {name, "localhost", f"{name}.unitocom.svc.cluster.local"} <= set(dns)
        assert "127.0.0.1" in {str(i) for i in san.get_values_for_type(x509.IPAddress)}
        days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        assert 364 <= days <= 366
        assert stat.S_IMODE(os.stat(tls_dir / f"{name}-key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tls_dir / "ca-key.pem").st_mode) == 0o600
    (token,) = security.read_tokens(tls_dir / "tokens")  # a random token, private too
    assert len(token) >= 40 and stat.S_IMODE(os.stat(tls_dir / "tokens").st_mode) == 0o600


def test_certs_refuse_to_replace_a_ca_unless_forced(tls_dir, capsys):
    assert certs.main(["--out", str(tls_dir)]) == 1
    assert "exists" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        certs.main(["--help"])
    assert e.value.code == 0 and "--tls-dir" in capsys.readouterr().out


def test_token_file_skips_comments_and_an_empty_one_is_refused(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# clients\nalpha  # Alice\n\n  beta\n")
    assert security.read_tokens(f) == [b"alpha", b"beta"]
    assert client.read_token(f) == "alpha"
    f.write_text("# nobody\n")
    with pytest.raises(ValueError, match="no tokens"):
        security.read_tokens(f)


# ---- the next-hop channel: wait-for-ready and retry, in process ----------------------------------------------

class _FakeBaseStation(pb_grpc.BaseStationServicer):
    """Receive answers with the number of frames it read; the first `fail` calls end UNAVAILABLE after reading."""

    def __init__(self, fail: int = 0):
        self.calls, self.fail = 0, fail

    def Receive(self, request_iterator, context):
        n = sum(1 for _ in request_iterator)
        self.calls += 1
        if self.calls <= self.fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
        return pb.Result(request_id=str(n))


def _start_fake(port: int, servicer) -> grpc.Server:
    s = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_BaseStationServicer_to_server(servicer, s)
    s.add_insecure_port(f"127.0.0.1:{port}")
    s.start()
    return s


def _stream(frames: int = 3, symbols: int = 0):
    """A header and `frames` frames of `symbols` complex64 symbols each (8 bytes a symbol)."""
    from unitocom import wire
    yield pb.Uplink(header=pb.RequestHeader(request_id="x"))
    for i in range(frames):
        yield wire.uplink_frame(0, i, i == frames - 1, np.zeros(symbols, np.complex64))


def _hop_stub(port: int) -> pb_grpc.BaseStationStub:
    ch = security.next_hop_channel(f"127.0.0.1:{port}", config.load("tiny"), services=["unitocom.v1.BaseStation"])
    return pb_grpc.BaseStationStub(ch)


def test_a_call_waits_for_a_peer_that_starts_later_and_uses_it_within_a_second():
    (port,) = free_ports(1)
    stub = _hop_stub(port)
    # Without wait-for-ready the same call fails at once: the peer is not there.
    with pytest.raises(grpc.RpcError) as e:
        stub.Receive(_stream(), timeout=5, wait_for_ready=False)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    started = {}

    def start_later():
        time.sleep(2.0)
        started["server"] = _start_fake(port, _FakeBaseStation())
        started["t"] = time.monotonic()

    threading.Thread(target=start_later, daemon=True).start()
    try:
        result = stub.Receive(_stream(), timeout=30)  # the service config's waitForReady
        done = time.monotonic()
        assert result.request_id == "4"  # header + 3 frames arrived
        assert done - started["t"] < 1.5, f"used {done - started['t']:.2f} s after the peer was up"
    finally:
        if "server" in started:
            started["server"].stop(0)


def test_a_client_stream_is_retried_on_unavailable_with_every_message():
    """2 MB streamed, well over gRPC's default 256 KiB retry buffer (beyond which a call is no longer retried):
    the next-hop channel's buffer holds it, and the retries send all of it again."""
    (port,) = free_ports(1)
    fake = _FakeBaseStation(fail=2)
    server = _start_fake(port, fake)
    try:
        result = _hop_stub(port).Receive(_stream(frames=16, symbols=16384), timeout=30)
        assert fake.calls == 3 and result.request_id == "17"  # the third attempt got the whole buffered stream
    finally:
        server.stop(0)


def test_other_statuses_are_not_retried():
    class Invalid(pb_grpc.BaseStationServicer):
        calls = 0

        def Receive(self, request_iterator, context):
            Invalid.calls += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")

    (port,) = free_ports(1)
    server = _start_fake(port, Invalid())
    try:
        with pytest.raises(grpc.RpcError) as e:
            _hop_stub(port).Receive(_stream(), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and Invalid.calls == 1
    finally:
        server.stop(0)


# ---- the three services with TLS and tokens ---------------------------------------------------------------------

@dataclasses.dataclass
class Stack:
    tls_dir: pathlib.Path
    tx: str
    channel: str
    basestation: str
    early: dict  # the call made before the base station was up: {"result"} or {"error"}
    channel_health: str  # the channel's plaintext health-only port (--health-port)
    tx_metrics: str  # the transmitter's /metrics URL
    procs: list  # [(name, Popen)]: the fixture stops what is here at the end (a test may replace one)
    logs: pathlib.Path


def _spawn(name: str, port: int, log: pathlib.Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", f"services.{name}.server", "--preset", "tiny", "--host", "127.0.0.1",
           "--port", str(port), "--metrics-port", "0", *extra]
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env=env, start_new_session=True)


def _wait_serving(p: subprocess.Popen, target: str, service: str, tls: client.Tls, log: pathlib.Path,
                  timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while client.health(target, service, tls=tls) != "SERVING":
        assert p.poll() is None, f"{service} exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{service} not SERVING:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tls_dir, tmp_path_factory) -> Stack:
    logs = tmp_path_factory.mktemp("tls-logs")
    tokens = logs / "tokens"
    tokens.write_text(f"# test clients\n{TOKEN}\nanother-one\n")
    tx_port, ch_port, bs_port, health_port, tx_metrics = free_ports(5)
    tx, ch, bs = (f"127.0.0.1:{p}" for p in (tx_port, ch_port, bs_port))
    mtls = client.Tls.from_dir(tls_dir, "client")
    procs = [
        ("transmitter", _spawn("transmitter", tx_port, logs / "tx.log", "--tls-dir", str(tls_dir),
                               "--auth-tokens", str(tokens), "--channel", ch, "--metrics-port", str(tx_metrics))),
        ("channel", _spawn("channel", ch_port, logs / "ch.log", "--tls-dir", str(tls_dir), "--basestation", bs,
                           "--health-port", str(health_port))),
    ]
    try:
        _wait_serving(procs[0][1], tx, "unitocom.v1.Transmitter", mtls, logs / "tx.log")
        _wait_serving(procs[1][1], ch, "unitocom.v1.Channel", mtls, logs / "ch.log")
        # A call sent while the base station is not even started: wait-for-ready holds it at the channel.
        early: dict = {}

        def call_early():
            try:
                with client.Client(tx, tls=mtls, token=TOKEN) as c:
                    early["result"] = c.send(client.build_request(text="early bird", snr_db=30.0), timeout_s=170)
            except grpc.RpcError as e:
                early["error"] = client.error_status(e)

        caller = threading.Thread(target=call_early)
        caller.start()
        time.sleep(1.0)
        procs.append(("basestation", _spawn("basestation", bs_port, logs / "bs.log", "--tls-dir", str(tls_dir))))
        _wait_serving(procs[2][1], bs, "unitocom.v1.BaseStation", mtls, logs / "bs.log")
        caller.join(timeout=180)
        yield Stack(tls_dir, tx, ch, bs, early, f"127.0.0.1:{health_port}", f"http://127.0.0.1:{tx_metrics}/metrics",
                    procs, logs)
    finally:
        for _, p in procs:
            p.terminate()
        for _, p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def _code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_a_call_made_before_the_base_station_started_succeeds(stack):
    assert "error" not in stack.early, stack.early
    assert stack.early["result"].output_text == "early bird"


def test_the_right_token_goes_through_all_three_hops(stack):
    with client.Client(stack.tx, tls=client.Tls.from_dir(stack.tls_dir, None), token=TOKEN) as c:
        r = c.send(client.build_request(text="hello over TLS", snr_db=30.0), timeout_s=60)
    assert r.output_text == "hello over TLS"
    assert {t.service for t in r.timings} >= {"transmitter", "channel", "basestation"}


def test_no_token_is_unauthenticated_and_a_wrong_one_permission_denied(stack):
    tls = client.Tls.from_dir(stack.tls_dir, None)
    req = client.build_request(text="hi")
    with client.Client(stack.tx, tls=tls) as c:
        code, details = _code(lambda: c.send(req, timeout_s=20))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
    with client.Client(stack.tx, tls=tls, token="guessed") as c:
        code, details = _code(lambda: c.send(req, timeout_s=20))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "token" in details
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(stack.tx_metrics, timeout=5).read().decode()
    refused = {s.labels["code"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "unitocom_refused_total" and s.labels["method"] == "/unitocom.v1.Transmitter/Send"}
    assert refused["UNAUTHENTICATED"] >= 1 and refused["PERMISSION_DENIED"] >= 1, refused


def test_health_needs_no_token_and_reflection_is_exempt(stack):
    tls = client.Tls.from_dir(stack.tls_dir, None)  # no client certificate, no token
    assert client.health(stack.tx, "unitocom.v1.Transmitter", tls=tls) == "SERVING"
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with tls.channel(stack.tx) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        (answer,) = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                   timeout=10))
    assert "unitocom.v1.Transmitter" in {s.name for s in answer.list_services_response.service}


def test_a_plaintext_health_port_answers_health_and_nothing_else(stack):
    """--health-port: for Kubernetes gRPC probes, which cannot speak TLS."""
    assert client.health(stack.channel_health, "unitocom.v1.Channel") == "SERVING"
    with grpc.insecure_channel(stack.channel_health) as ch:
        code, _ = _code(lambda: pb_grpc.ChannelStub(ch).Forward(iter([pb.Uplink(header=pb.RequestHeader())]),
                                                                timeout=5))
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_the_channel_refuses_any_caller_but_the_transmitter(stack):
    for name in ("client", "channel", "gateway"):
        with client.Tls.from_dir(stack.tls_dir, name).channel(stack.channel) as ch:
            code, details = _code(lambda: pb_grpc.ChannelStub(ch).Forward(
                iter([pb.Uplink(header=pb.RequestHeader())]), timeout=10))
        assert code == grpc.StatusCode.PERMISSION_DENIED, (name, code, details)
        assert "'transmitter'" in details and name in details
    with client.Tls.from_dir(stack.tls_dir, "client").channel(stack.channel) as ch:  # the bidirectional Apply too
        code, details = _code(lambda: list(pb_grpc.ChannelStub(ch).Apply(
            iter([pb.Uplink(header=pb.RequestHeader())]), timeout=10)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "Apply" in details
    # ... but its health answers any certificate of the CA
    assert client.health(stack.channel, "unitocom.v1.Channel", tls=client.Tls.from_dir(stack.tls_dir)) == "SERVING"


def test_the_base_station_refuses_the_transmitter(stack):
    with client.Tls.from_dir(stack.tls_dir, "transmitter").channel(stack.basestation) as ch:
        code, details = _code(lambda: pb_grpc.BaseStationStub(ch).Receive(
            iter([pb.Uplink(header=pb.RequestHeader())]), timeout=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'channel'" in details


def test_another_ca_and_plaintext_never_get_past_the_handshake(stack, tmp_path):
    certs.make_certs(tmp_path, names=["transmitter"])
    rogue = client.Tls.from_dir(tmp_path, "transmitter")  # the right name, signed by the wrong CA
    with rogue.channel(stack.channel) as ch:
        code, _ = _code(lambda: pb_grpc.ChannelStub(ch).Forward(iter([pb.Uplink(header=pb.RequestHeader())]),
                                                                timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert client.health(stack.channel, "unitocom.v1.Channel", tls=rogue) == "UNREACHABLE"
    # no client certificate at all, to a mutual-TLS service; and plaintext to a TLS port
    assert client.health(stack.channel, "unitocom.v1.Channel", tls=client.Tls.from_dir(stack.tls_dir, None)) \
        == "UNREACHABLE"
    with client.Client(stack.tx, token=TOKEN) as c:
        code, _ = _code(lambda: c.send(client.build_request(text="hi"), timeout_s=5))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_plaintext_says_so_in_one_warning(caplog):
    with caplog.at_level("WARNING", logger="unitocom.service"):
        creds, guard = security.plan("channel", None, None)
    assert creds is None and guard.checks == []
    (rec,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "PLAINTEXT without authentication" in rec.getMessage()


def test_missing_certificates_exit_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="ca.pem is missing.*unitocom certs --out"):
        security.plan("channel", str(tmp_path), None)


@pytest.mark.slow
def test_a_killed_base_station_is_used_within_a_second_of_serving_again(stack):
    """Recovery (issue 13): kill -9 the base station under load, start it again; the calls made meanwhile wait
    (wait-for-ready) and none fails, and the first OK comes within about a second of it reporting SERVING
    (the reconnect backoff is at most 1 s, plus the request's own processing)."""
    mtls = client.Tls.from_dir(stack.tls_dir, "client")
    i = [n for n, _ in stack.procs].index("basestation")
    stack.procs[i][1].kill()
    stack.procs[i][1].wait()
    results: list[tuple[float, str]] = []
    stop = threading.Event()

    def load():
        with client.Client(stack.tx, tls=mtls, token=TOKEN) as c:
            while not stop.is_set():
                try:
                    c.send(client.build_request(text="still there?", snr_db=30.0), timeout_s=150)
                    results.append((time.monotonic(), "OK"))
                except grpc.RpcError as e:
                    results.append((time.monotonic(), e.code().name))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        port = int(stack.basestation.rsplit(":", 1)[1])
        p = _spawn("basestation", port, stack.logs / "bs-restarted.log", "--tls-dir", str(stack.tls_dir))
        stack.procs[i] = ("basestation", p)
        deadline = time.monotonic() + 180
        while client.health(stack.basestation, "unitocom.v1.BaseStation", timeout_s=0.5, tls=mtls) != "SERVING":
            assert p.poll() is None and time.monotonic() < deadline, (stack.logs / "bs-restarted.log").read_text()
            time.sleep(0.02)
        serving = time.monotonic()
        while not any(t >= serving and s == "OK" for t, s in results) and time.monotonic() < serving + 30:
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=180)
    first_ok = min(t for t, s in results if s == "OK" and t >= serving) - serving
    print(f"first OK {first_ok:.2f} s after SERVING; outcomes {sorted(set(s for _, s in results))}")
    assert [s for _, s in results if s != "OK"] == [], results
    assert first_ok < 1.5, f"first OK {first_ok:.2f} s after the base station reported SERVING"


# ---- the HTTP gateway: TLS, tokens, body limit ------------------------------------------------------------------

def test_the_gateway_passes_its_token_or_the_callers(stack, tmp_path):
    from fastapi.testclient import TestClient

    from services.gateway.app import create_app
    tls = client.Tls.from_dir(stack.tls_dir, "gateway")
    with TestClient(create_app(stack.tx, tls=tls)) as c:  # no token of its own
        r = c.post("/v1/send", json={"text": "x", "timeout_s": 20})
        assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED", r.text
        r = c.post("/v1/send", json={"text": "x", "timeout_s": 20}, headers={"authorization": "Bearer nope"})
        assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED", r.text
        r = c.post("/v1/send", json={"text": "caller's", "snr_db": 30}, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["output"] == "caller's", r.text
        assert c.get("/readyz").json()["status"] == "SERVING"
    with TestClient(create_app(stack.tx, tls=tls, token=TOKEN)) as c:
        r = c.post("/v1/send", json={"text": "gateway's", "snr_db": 30})
        assert r.status_code == 200 and r.json()["output"] == "gateway's", r.text


def test_the_gateway_serves_https_with_its_certificate(stack, tmp_path):
    """As `unitocom up --with-gateway` starts it (unitocom.sidecars), with the stack's certificates and a token."""
    import httpx

    from unitocom import sidecars
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    (port,) = free_ports(1)
    gw = sidecars.start_gateway(tmp_path, stack.tx, port=port, tls_dir=str(stack.tls_dir), token_file=str(token_file))
    try:
        assert gw.url == f"https://127.0.0.1:{port}"
        trust = ssl.create_default_context(cafile=str(stack.tls_dir / "ca.pem"))
        r = httpx.get(f"{gw.url}/readyz", verify=trust, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "SERVING", r.text
        r = httpx.post(f"{gw.url}/v1/send", json={"text": "https", "snr_db": 30}, verify=trust, timeout=60)
        assert r.status_code == 200 and r.json()["output"] == "https", r.text
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the testbed's CA
            httpx.get(f"{gw.url}/healthz", timeout=5)
        assert not sidecars.http_ok(f"{gw.url}/healthz")
    finally:
        sidecars.stop(tmp_path, "gateway")


def test_prometheus_scrapes_an_https_gateway_with_the_ca():
    from unitocom import prometheus
    conf = prometheus.local_config(config.load("tiny"), gateway="127.0.0.1:8080", gateway_ca="/x/ca.pem")
    (job,) = [j for j in conf["scrape_configs"] if j["job_name"] == "unitocom-gateway"]
    assert job["scheme"] == "https" and job["tls_config"] == {"ca_file": "/x/ca.pem", "server_name": "gateway"}


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read():
    """No Content-Length: the gateway counts the body as it arrives and stops at the limit (413), rather than
    reading a body of any size whole."""
    import asyncio
    import json as json_mod

    from services.gateway.app import create_app
    app = create_app(f"127.0.0.1:{free_ports(1)[0]}", max_body_bytes=1000)
    chunk, chunks_total, read = b" " * 400, 100, [0]

    async def receive():
        read[0] += 1
        return {"type": "http.request", "body": chunk, "more_body": read[0] < chunks_total}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/send", "raw_path": b"/v1/send", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = json_mod.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert start["status"] == 413 and body["error"]["status"] == "RESOURCE_EXHAUSTED", body
    assert "1000" in body["error"]["message"]
    assert read[0] == 3, f"read {read[0]} chunks of {chunks_total}: the limit (1000 bytes) is passed at the third"


def test_keys_and_tokens_stay_out_of_reprs(tls_dir):
    """Objects end up in log lines and tracebacks: their repr must not carry a private key or a token."""
    c = client.Client("127.0.0.1:1", tls=client.Tls.from_dir(tls_dir), token=TOKEN)
    ident = security.TlsIdentity.from_dir(tls_dir, "channel")
    for text in (repr(c), repr(c.tls), repr(ident)):
        assert TOKEN not in text and "PRIVATE KEY" not in text and "BEGIN" not in text, text
    c.close()
