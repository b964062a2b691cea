"""The uplink stream's one rule, for every service that reads it (channel, base station): a RequestHeader
first, symbol frames after it and nothing else. A stream that breaks it is refused with INVALID_ARGUMENT naming
`uplink` (RequestError), whichever hop reads it."""
from __future__ import annotations

from unitocom.stages.request import RequestError
from unitocom.v1 import unitocom_pb2 as pb


def header(messages) -> pb.Uplink:
    """The stream's first message, which must carry the RequestHeader (the iterator is left at the frames)."""
    first = next(messages, None)
    if first is None or first.WhichOneof("kind") != "header":
        raise RequestError("uplink", "the first message of a stream must be a RequestHeader")
    return first


def frame_of(message: pb.Uplink) -> pb.SymbolFrame:
    """A message after the header: its symbol frame; a second header is refused."""
    if message.WhichOneof("kind") != "frame":
        raise RequestError("uplink", "only the first message may be a RequestHeader")
    return message.frame
