"""Property-based fuzzing of every RPC on the running services: no input may end as UNKNOWN or INTERNAL.

Each RPC gets generated messages of two kinds: whole messages with arbitrary field values (unknown enum numbers,
NaN and huge numbers, random bytes), and real uplinks made by the transmitter's library with one part mutated
(a header field, a frame's tensor, frames dropped, repeated or reordered), which reach the deeper checks. Every
call must end OK or with a precise status; a hang shows as DEADLINE_EXCEEDED and fails too. After each RPC's
run the service must still be SERVING.
"""
from __future__ import annotations

import math
import os

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import scene_png
from unitocom import client, config, wire
from unitocom.stages import multiuser, transmitter
from unitocom.stages.channel import ChannelCore
from unitocom.stages.request import from_wire
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
DEADLINE_S = 60.0
# 40 examples per RPC in the default run (fixed seed: CI is repeatable); UNITOCOM_FUZZ_EXAMPLES=2000 explores,
# with a random seed, when hunting
EXAMPLES = int(os.environ.get("UNITOCOM_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="UNITOCOM_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# -- field values: mostly valid (so that calls get past the first check and reach the deep ones), sometimes wild
def mostly(valid, wild):
    return st.one_of(valid, valid, valid, wild)


doubles = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 10.0, 30.0, -1e308, 1e308, 1e-320]))
u32 = st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 70))
u64 = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 5000))
i64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-2, 300))
enum = st.integers(0, 9)  # every value of each enum and some unknown numbers (proto3 enums are open)


def enum_of(lo: int, hi: int):
    return mostly(st.integers(lo, hi), enum)


names = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "utf8", "jpeg", "amrwb", "ldpc", "turbo", "none", "bpsk", "qpsk", "qam16", "qam64"]))


def _png() -> bytes:
    return scene_png(32)


blobs = st.one_of(st.binary(max_size=256), st.just(b""), st.builds(_png))


ACCESS = ["", "", "orthogonal", "superposed"]  # users sharing the channel: mostly one user


@st.composite
def links(draw) -> pb.LinkSettings:
    return pb.LinkSettings(
        scheme=draw(enum_of(1, 4)), snr_db=draw(mostly(st.floats(-10, 40), doubles)), channel=draw(enum_of(0, 4)),
        fading=draw(enum_of(0, 2)), seed=draw(u64), block_length=draw(mostly(st.integers(0, 64), u32)),
        rician_k_db=draw(mostly(st.floats(-10, 20), doubles)), csi=draw(enum_of(0, 2)),
        pilots=draw(mostly(st.integers(0, 8), u32)), erasure_prob=draw(mostly(st.floats(0, 0.5), doubles)),
        jpeg_quality=draw(mostly(st.integers(0, 95), u32)), code_rate=draw(mostly(st.just(0.0), doubles)),
        modulation=draw(mostly(st.sampled_from(["", "bpsk", "qpsk", "qam16", "qam64"]), names)),
        packet_loss=draw(mostly(st.sampled_from([0.0, 0.0, 0.3, 1.0]), doubles)),
        packet_burst=draw(mostly(st.sampled_from([0.0, 4.0]), doubles)),
        tokens_per_packet=draw(mostly(st.integers(0, 16), u32)),
        users=draw(mostly(st.integers(0, 4), u32)), access=draw(mostly(st.sampled_from(ACCESS), names)),
        user_powers=draw(mostly(st.sampled_from([[], [0.8, 0.2], [0.5, 0.3, 0.2]]), st.lists(doubles, max_size=5))))


@st.composite
def payloads(draw) -> pb.Payload:
    kind = draw(st.sampled_from(["text", "image", "audio", "none"]))
    valid = {"text": pb.TEXT, "image": pb.IMAGE, "audio": pb.AUDIO, "none": pb.MODALITY_UNSPECIFIED}[kind]
    p = pb.Payload(modality=draw(mostly(st.just(valid), enum)), user=draw(mostly(st.just(0), u32)))
    if kind == "text":
        p.text = draw(st.text(max_size=64))
    elif kind != "none":
        setattr(p, kind, draw(blobs))
    return p


@st.composite
def arbitrary_requests(draw) -> pb.Request:
    return pb.Request(request_id=draw(st.text(max_size=8)), task=draw(enum_of(1, 4)),
                      payloads=draw(st.lists(payloads(), max_size=3)), link=draw(links()),
                      label=pb.Label(answer=draw(st.text(max_size=8)), caption=draw(st.text(max_size=16))),
                      user_labels=draw(st.lists(st.builds(pb.Label, answer=st.text(max_size=8)), max_size=3)))


REQUEST_KINDS = {
    "text": dict(text="fuzz me", snr_db=10.0),
    "image": dict(image=scene_png(32), task="reconstruct", scheme="unitocom", snr_db=10.0, channel="rayleigh"),
    "vqa": dict(image=scene_png(32), text="what color is the cube?", task="vqa", scheme="unitocom", snr_db=10.0),
    "vqa_traditional": dict(image=scene_png(32), text="how many things?", task="vqa", scheme="traditional",
                            snr_db=5.0, channel="rayleigh", csi="estimated", pilots=2),
    "semcom": dict(image=scene_png(32), text="how many things?", task="vqa", scheme="semcom", snr_db=5.0),
    # users sharing the channel (issue 17)
    "users_superposed": dict(image=scene_png(32), task="reconstruct", scheme="unitocom", snr_db=20.0, users=2,
                             access="superposed", channel="rayleigh"),
    "users_superposed_traditional": dict(text="fuzz us", scheme="traditional", snr_db=30.0, users=2,
                                         access="superposed", user_powers="0.9,0.1"),
    "users_orthogonal": dict(image=scene_png(32), text="what color is the cube?", task="vqa", scheme="unitocom",
                             snr_db=10.0, users=2, access="orthogonal")}
WILD_LINK = {"scheme": enum, "snr_db": doubles, "channel": enum, "fading": enum, "seed": u64, "block_length": u32,
             "rician_k_db": doubles, "csi": enum, "pilots": u32, "erasure_prob": doubles, "jpeg_quality": u32,
             "code_rate": doubles, "modulation": names, "packet_loss": doubles, "packet_burst": doubles,
             "tokens_per_packet": u32, "users": u32, "access": names,
             "user_powers": st.lists(doubles, max_size=5),
             "capture": st.booleans()}  # the fuzzed channel has no capture directory: FAILED_PRECONDITION


@st.composite
def mutated_requests(draw) -> pb.Request:
    """A real request with one thing wrong (or nothing: the baseline must be OK)."""
    r = client.build_request(**REQUEST_KINDS[draw(st.sampled_from(sorted(REQUEST_KINDS)))])
    how = draw(st.sampled_from(["none", "link", "link", "link", "task", "modality", "content", "add", "drop",
                                "user"]))
    if how == "link":
        f = draw(st.sampled_from(sorted(WILD_LINK)))
        if f == "user_powers":  # a repeated field is not assigned
            del r.link.user_powers[:]
            r.link.user_powers.extend(draw(WILD_LINK[f]))
        else:
            setattr(r.link, f, draw(WILD_LINK[f]))
    elif how == "user":
        r.payloads[draw(st.integers(0, len(r.payloads) - 1))].user = draw(u32)
    elif how == "task":
        r.task = draw(enum)
    elif how == "modality":
        r.payloads[draw(st.integers(0, len(r.payloads) - 1))].modality = draw(enum)
    elif how == "content":
        p = r.payloads[draw(st.integers(0, len(r.payloads) - 1))]
        if p.WhichOneof("content") == "text":
            p.text = draw(st.text(max_size=64))
        else:
            setattr(p, draw(st.sampled_from(["image", "audio"])), draw(blobs))
    elif how == "add":
        r.payloads.append(draw(payloads()))
    elif how == "drop":
        del r.payloads[draw(st.integers(0, len(r.payloads) - 1))]
    return r


requests = st.one_of(arbitrary_requests(), mutated_requests(), mutated_requests(), mutated_requests())


@st.composite
def tensors(draw) -> pb.Tensor:
    return pb.Tensor(dtype=draw(enum), shape=draw(st.lists(i64, max_size=3)), raw=draw(st.binary(max_size=128)))


@st.composite
def stream_headers(draw) -> pb.StreamHeader:
    return pb.StreamHeader(
        stream_id=draw(u32), modality=draw(enum), scheme=draw(enum), num_symbols=draw(u64),
        source_codec=draw(names), channel_code=draw(names), code_rate=draw(doubles), modulation=draw(names),
        info_block_bits=draw(u32), payload_bytes=draw(u64), token_shape=draw(st.lists(i64, max_size=3)),
        tokenizer=draw(st.text(max_size=12)), preprocessing=draw(st.text(max_size=8)),
        audio_rate_hz=draw(u32), num_samples=draw(u64), user=draw(mostly(st.integers(0, 2), u32)),
        power=draw(mostly(st.sampled_from([0.0, 1.0, 0.5]), doubles)))


@st.composite
def arbitrary_uplinks(draw) -> list[pb.Uplink]:
    msgs = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            msgs.append(pb.Uplink(header=pb.RequestHeader(
                request_id=draw(st.text(max_size=8)), task=draw(enum), link=draw(links()),
                streams=draw(st.lists(stream_headers(), max_size=2)))))
        else:
            msgs.append(pb.Uplink(frame=pb.SymbolFrame(stream_id=draw(u32), seq=draw(u32), last=draw(st.booleans()),
                                                       symbols=draw(tensors()))))
    return msgs


# -- real uplinks, mutated ------------------------------------------------------------------------------------
_BASES: dict[tuple[str, bool], list[pb.Uplink]] = {}


def _base(name: str, through_channel: bool) -> list[pb.Uplink]:
    """A real uplink made by the transmitter's library (cached): header first, then its frames; with
    `through_channel`, as the channel's library passes it on (frames with CSI: what the base station takes)."""
    key = (name, through_channel)
    if key not in _BASES:
        cfg = config.load("tiny")
        request = from_wire(client.build_request(**REQUEST_KINDS[name]))
        prep = transmitter.prepare(request, cfg)
        msgs = [pb.Uplink.FromString(m.SerializeToString()) for m in wire.uplink(prep.header, prep.frames(256))]
        if through_channel and multiuser.superposed(request.link):  # the users added once all have arrived
            core = multiuser.SuperposedChannel(request.link, [s.header for s in prep.streams], cfg)
            for m in msgs[1:]:
                core.collect(wire.frame_from_pb(m.frame))
            msgs = msgs[:1]
            for _, received in core.received(256):
                up = pb.Uplink()
                wire.fill_frame(up.frame, received)
                msgs.append(up)
        elif through_channel:
            core = ChannelCore(request.link, [s.header.stream_id for s in prep.streams], cfg)
            for m in msgs[1:]:
                wire.fill_frame(m.frame, core.apply(wire.frame_from_pb(m.frame)))
        _BASES[key] = msgs
    return [pb.Uplink.FromString(m.SerializeToString()) for m in _BASES[key]]


HEADER_FIELDS = {"packet_symbols": u32, "num_symbols": u64, "payload_bytes": u64, "code_rate": doubles, "info_block_bits": u32,
                 "audio_rate_hz": u32, "num_samples": u64, "stream_id": u32, "modality": enum, "scheme": enum,
                 "source_codec": names, "channel_code": names, "modulation": names,
                 "tokenizer": st.text(max_size=12), "preprocessing": st.text(max_size=8), "user": u32,
                 "power": doubles}


@st.composite
def mutated_uplinks(draw, through_channel: bool) -> list[pb.Uplink]:
    """A real uplink with one thing wrong (or nothing: the baseline must be OK)."""
    msgs = _base(draw(st.sampled_from(sorted(REQUEST_KINDS))), through_channel)
    how = draw(st.sampled_from(["none", "stream_field", "token_shape", "link", "task", "tensor", "csi_scalar", "nan", "drop", "repeat",
                                "swap", "truncate", "no_header"]))
    frames = msgs[1:]
    if how == "stream_field":
        f = draw(st.sampled_from(sorted(HEADER_FIELDS)))
        setattr(msgs[0].header.streams[0], f, draw(HEADER_FIELDS[f]))
    elif how == "token_shape":
        del msgs[0].header.streams[0].token_shape[:]
        msgs[0].header.streams[0].token_shape.extend(draw(st.lists(i64, max_size=4)))
    elif how == "link":
        msgs[0].header.link.CopyFrom(draw(links()))
    elif how == "task":
        msgs[0].header.task = draw(enum)
    elif how == "tensor" and frames:
        frame = draw(st.sampled_from(frames)).frame
        name = draw(st.sampled_from(["symbols", "csi.h_est", "csi.h_est_runs"]))
        (frame.symbols if name == "symbols" else getattr(frame.csi, name[4:])).CopyFrom(draw(tensors()))
    elif how == "csi_scalar" and frames:
        frame = draw(st.sampled_from(frames)).frame
        setattr(frame.csi, draw(st.sampled_from(["noise_var", "snr_db", "h_est_error_var"])), draw(doubles))
    elif how == "nan" and frames:
        target = draw(st.sampled_from(frames)).frame.symbols
        x = np.frombuffer(target.raw, np.complex64).copy()
        x[draw(st.integers(0, max(0, x.size - 1)))] = draw(st.sampled_from([complex(math.nan, 0), complex(0, math.inf)]))
        target.raw = x.tobytes()
    elif how == "drop" and frames:
        msgs.pop(1 + draw(st.integers(0, len(frames) - 1)))
    elif how == "repeat" and frames:
        msgs.append(pb.Uplink.FromString(draw(st.sampled_from(frames)).SerializeToString()))
    elif how == "swap" and len(frames) > 1:
        i = 1 + draw(st.integers(0, len(frames) - 2))
        msgs[i], msgs[i + 1] = msgs[i + 1], msgs[i]
    elif how == "truncate" and frames:
        target = draw(st.sampled_from(frames)).frame.symbols
        target.raw = target.raw[: draw(st.integers(0, max(0, len(target.raw) - 1)))]
    elif how == "no_header":
        msgs = msgs[1:]
    return msgs


# what the channel takes (from the transmitter) and what the base station takes (from the channel)
uplinks = st.one_of(arbitrary_uplinks(), *[mutated_uplinks(False)] * 3)
received_uplinks = st.one_of(arbitrary_uplinks(), *[mutated_uplinks(True)] * 3)


# -- the calls ------------------------------------------------------------------------------------------------
def _status(call) -> tuple[grpc.StatusCode, str]:
    try:
        call()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def _assert_precise(code: grpc.StatusCode, details: str, what) -> None:
    assert code not in FORBIDDEN, f"{code.name}: {details}\nfor {what}"
    if code != grpc.StatusCode.OK:
        assert details and "Traceback" not in details and " object at 0x" not in details, details


def _serving(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def channels(services):
    cfg, _ = services
    opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    chans = {n: grpc.insecure_channel(cfg.address(n).grpc, options=opts)
             for n in ("transmitter", "channel", "basestation")}
    yield chans
    for c in chans.values():
        c.close()


# (service, strategy, the call of one example with a stub of that service): every RPC of every service
RPCS = {
    "Transmitter.Send": ("transmitter", requests, lambda stub, request: stub.Send(request, timeout=DEADLINE_S)),
    "Channel.Forward": ("channel", uplinks, lambda stub, msgs: stub.Forward(iter(msgs), timeout=DEADLINE_S)),
    "Channel.Apply": ("channel", uplinks, lambda stub, msgs: list(stub.Apply(iter(msgs), timeout=DEADLINE_S))),
    "BaseStation.Receive": ("basestation", received_uplinks,
                            lambda stub, msgs: stub.Receive(iter(msgs), timeout=DEADLINE_S)),
}
STUBS = {"transmitter": pb_grpc.TransmitterStub, "channel": pb_grpc.ChannelStub,
         "basestation": pb_grpc.BaseStationStub}


@pytest.mark.parametrize("rpc", sorted(RPCS))
def test_fuzz(channels, rpc):
    service, strategy, call = RPCS[rpc]
    stub = STUBS[service](channels[service])

    @FUZZ
    @given(strategy)
    def run(message):
        what = message[:1] if isinstance(message, list) else message  # an uplink: its header says enough
        _assert_precise(*_status(lambda: call(stub, message)), what)

    run()
    _serving(channels[service])
