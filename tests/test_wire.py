import dataclasses

import numpy as np
import pytest

from unitocom import wire
from unitocom.v1 import unitocom_pb2 as pb


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.complex64, np.uint8, np.float16, np.int64])
def test_roundtrip_every_dtype(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 5)) * 10).astype(dtype) if dtype != np.complex64 else (
        rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))).astype(dtype)
    t = wire.to_tensor(a)
    assert len(t.raw) == a.nbytes and list(t.shape) == [3, 5]
    b = wire.from_tensor(t)
    assert b.dtype == a.dtype and np.array_equal(a, b)


def test_big_endian_input_is_sent_little_endian():
    a = np.arange(4, dtype=">f4")
    t = wire.to_tensor(a)
    assert t.raw == np.arange(4, dtype="<f4").tobytes()


def test_wrong_byte_count_names_the_field():
    t = pb.Tensor(dtype=pb.FLOAT32, shape=[4], raw=b"\x00" * 12)
    with pytest.raises(wire.WireError, match=r"^frame.symbols.raw: 12 bytes"):
        wire.from_tensor(t, "frame.symbols")


def test_expected_dtype_and_ndim_are_checked():
    t = wire.to_tensor(np.zeros((2, 2), np.float32))
    with pytest.raises(wire.WireError, match="expected COMPLEX64"):
        wire.from_tensor(t, "x", expect_dtype=pb.COMPLEX64)
    with pytest.raises(wire.WireError, match="expected 1 dimensions"):
        wire.from_tensor(t, "x", expect_ndim=1)
    with pytest.raises(wire.WireError, match="no wire type"):
        wire.to_tensor(np.zeros(2, np.float64))


def test_frames_cover_the_stream_once():
    z = np.arange(10).astype(np.complex64)
    fr = list(wire.frames(z, 4))
    assert [s for s, _, _ in fr] == [0, 1, 2] and [l for _, l, _ in fr] == [False, False, True]
    assert np.array_equal(np.concatenate([c for _, _, c in fr]), z)
    assert [l for _, l, _ in wire.frames(z[:0], 4)] == [True]  # an empty stream is one empty, last frame


@pytest.mark.parametrize("values", [np.zeros(0, np.complex64), np.ones(7, np.complex64),
                                    np.repeat(np.arange(5), [3, 1, 4, 1, 5]).astype(np.complex64),
                                    np.arange(9).astype(np.complex64)])
def test_runs_roundtrip(values):
    v, r = wire.runs_encode(values)
    assert r.dtype == np.int32 and r.sum() == values.size
    assert np.array_equal(wire.runs_decode(v, r, values.size), values)


def test_runs_that_do_not_cover_the_frame_are_refused():
    with pytest.raises(wire.WireError, match="summing to 10"):
        wire.runs_decode(np.ones(2, np.complex64), np.array([3, 3], np.int32), 10, "frame.csi.h_est_runs")
    with pytest.raises(wire.WireError, match="no runs"):
        wire.runs_decode(np.ones(2, np.complex64), np.zeros(0, np.int32), 10)


def test_the_library_messages_round_trip_through_their_protobuf_field_for_field():
    """unitocom.messages mirrors the .proto: every field of each dataclass is a field of its message, enums map by
    their lower-case names, UNSPECIFIED is None, and to_pb / from_pb are inverse."""
    from unitocom import messages as msg
    from unitocom.options import Channel, Csi, Fading, Scheme, Task
    link = msg.LinkSettings(scheme=Scheme.VAE, snr_db=-3.5, channel=Channel.RICIAN, fading=Fading.FAST, seed=7,
                            block_length=64, rician_k_db=2.0, csi=Csi.ESTIMATED, pilots=4, erasure_prob=0.1,
                            jpeg_quality=50, code_rate=0.5, modulation="qpsk")
    p = wire.to_pb(link)
    assert (p.scheme, p.channel, p.fading, p.csi) == (pb.VAE, pb.RICIAN, pb.FAST, pb.ESTIMATED)
    assert wire.from_pb(p) == link
    header = msg.StreamHeader(stream_id=2, modality=msg.Modality.AUDIO, scheme=Scheme.UNITOCOM, num_symbols=256,
                              token_shape=[2, 32, 16], tokenizer="audio-sigma-genib-s32", num_samples=16000)
    assert wire.from_pb(wire.to_pb(header)) == header and list(wire.to_pb(header).token_shape) == [2, 32, 16]
    out = msg.ModalityOutput(modality=msg.Modality.IMAGE, decoded=True, image_png=b"\x89PNG", blocks=3)
    assert wire.from_pb(wire.to_pb(out)) == out
    assert wire.from_pb(pb.Label(answer="2")) == msg.Label(answer="2")
    assert wire.from_pb(pb.LinkSettings()) == msg.LinkSettings()  # UNSPECIFIED enums are None
    req = msg.Request(request_id="r1", task=Task.VQA, link=link, label=msg.Label(answer="2"),
                      payloads=[msg.Payload(image=b"\x89PNG"), msg.Payload(modality=msg.Modality.TEXT, text="")])
    p = wire.to_pb(req)
    assert [x.WhichOneof("content") for x in p.payloads] == ["image", "text"]  # an empty text is still set
    assert wire.from_pb(p) == req
    assert wire.from_pb(pb.Payload()).content is None
    for cls, message in ((msg.LinkSettings, pb.LinkSettings), (msg.StreamHeader, pb.StreamHeader),
                         (msg.ModalityOutput, pb.ModalityOutput), (msg.Label, pb.Label), (msg.Request, pb.Request),
                         (msg.Payload, pb.Payload), (msg.RequestHeader, pb.RequestHeader),
                         (msg.StageTiming, pb.StageTiming), (msg.Result, pb.Result)):
        assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in message.DESCRIPTOR.fields], cls


def test_an_enum_number_the_proto_does_not_define_names_its_field():
    with pytest.raises(wire.WireError, match=r"^link\.scheme: unknown value 77"):
        wire.from_pb(pb.LinkSettings(scheme=77), "link")
    with pytest.raises(wire.WireError, match=r"^payloads\[1\]\.modality: unknown value 9"):
        wire.from_pb(pb.Request(payloads=[pb.Payload(text="a"), pb.Payload(modality=9, text="b")]))


def test_a_result_round_trips_with_its_outputs_timings_and_quality_map():
    from unitocom import messages as msg
    from unitocom.options import Channel, Scheme, Task
    from unitocom.timing import Clock
    res = msg.Result(request_id="r", task=Task.VQA, scheme=Scheme.UNITOCOM, output_text="2", channel_uses=512,
                     outputs=[msg.ModalityOutput(modality=msg.Modality.IMAGE, decoded=True, channel_uses=512)],
                     quality={"exact_match": 1.0}, snr_db=4.5, channel=Channel.RAYLEIGH)
    clock = Clock("basestation")
    clock.add("decode", 0.25)
    clock.report(res.timings)  # a list gets StageTimings ...
    assert res.timings == [msg.StageTiming(service="basestation", stage="decode", seconds=0.25)]
    p = wire.to_pb(res)
    assert (p.task, p.scheme, p.channel, dict(p.quality)) == (pb.VQA, pb.UNITOCOM, pb.RAYLEIGH, {"exact_match": 1.0})
    assert wire.from_pb(p) == res
    clock.report(p.timings)  # ... and a protobuf repeated field what its .add makes
    assert [(t.service, t.stage, t.seconds) for t in p.timings] == [("basestation", "decode", 0.25)] * 2
    assert wire.from_pb(pb.Result()) == msg.Result()


def test_a_received_frame_reads_the_estimate_side_of_its_csi():
    from unitocom import messages as msg
    h = np.array([1 + 1j, 0.5], np.complex64)
    runs = np.array([3, 1], np.int32)
    sent = msg.SymbolFrame(stream_id=2, seq=1, last=True, symbols=np.arange(4, dtype=np.complex64),
                           csi=msg.Csi(h=h, h_runs=runs, h_est=h * 0.9, h_est_runs=runs, noise_var=0.1, snr_db=10.0,
                                       erased=True, h_est_error_var=0.01))
    frame = wire.fill_frame(pb.SymbolFrame(), sent)
    assert wire.frame_from_pb(frame).csi is None  # the channel: it sets the csi itself
    got = wire.frame_from_pb(frame, csi=True)
    assert (got.stream_id, got.seq, got.last) == (2, 1, True) and np.array_equal(got.symbols, sent.symbols)
    c = got.csi
    assert np.array_equal(c.h_est, h * 0.9) and np.array_equal(c.h_est_runs, runs)
    assert (c.noise_var, c.snr_db, c.erased, c.h_est_error_var) == (pytest.approx(0.1), 10.0, True, pytest.approx(0.01))
    assert c.h.size == 0 and c.h_runs.size == 0  # the receiver does not know the true gains
    with pytest.raises(wire.WireError, match=r"^frame\.csi\.h_est\.dtype: "):
        wire.frame_from_pb(pb.SymbolFrame(symbols=wire.to_tensor(sent.symbols)), csi=True)  # no csi at all
