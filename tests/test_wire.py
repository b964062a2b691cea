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
