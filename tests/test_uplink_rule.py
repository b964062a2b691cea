"""The uplink rule both receiving services apply (services/common/uplink.py): header first, frames after."""
from __future__ import annotations

import numpy as np
import pytest

from services.common import uplink
from unitocom import wire
from unitocom.stages.request import RequestError
from unitocom.v1 import unitocom_pb2 as pb


def _header() -> pb.Uplink:
    return pb.Uplink(header=pb.RequestHeader(link=pb.LinkSettings(snr_db=10.0)))


def _frame(seq: int) -> pb.Uplink:
    return wire.uplink_frame(0, seq, seq == 1, np.ones(4, np.complex64))


def test_header_then_frames_reads_the_frames():
    stream = iter([_header(), _frame(0), _frame(1)])
    first = uplink.header(stream)
    assert first.header.link.snr_db == 10.0
    assert [uplink.frame_of(m).seq for m in stream] == [0, 1]


@pytest.mark.parametrize("messages", [[], [_frame(0)]], ids=["empty", "frame-first"])
def test_a_stream_without_a_header_first_is_refused(messages):
    with pytest.raises(RequestError, match="^uplink: the first message of a stream must be a RequestHeader"):
        uplink.header(iter(messages))


def test_a_second_header_is_refused():
    with pytest.raises(RequestError, match="^uplink: only the first message may be a RequestHeader"):
        uplink.frame_of(_header())
