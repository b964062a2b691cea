"""Arrays <-> protobuf `Tensor` (raw little-endian bytes + dtype + shape), frame slicing of symbol streams, and the
library's dataclasses (`unitocom.messages`) <-> their protobuf messages (`to_pb` / `from_pb`).

Protobuf only: nothing here knows about gRPC.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from enum import StrEnum

import numpy as np

from unitocom import messages as msg
from unitocom.options import Channel, Csi, Fading, Scheme, Task
from unitocom.v1 import unitocom_pb2 as pb

_TO_NUMPY = {
    pb.FLOAT32: np.dtype("<f4"),
    pb.INT32: np.dtype("<i4"),
    pb.COMPLEX64: np.dtype("<c8"),
    pb.UINT8: np.dtype("u1"),
    pb.FLOAT16: np.dtype("<f2"),
    pb.INT64: np.dtype("<i8"),
}
_FROM_NUMPY = {v.newbyteorder("<") if v.itemsize > 1 else v: k for k, v in _TO_NUMPY.items()}


class WireError(ValueError):
    """A Tensor that cannot be an array: unknown dtype, negative shape, or a byte count that does not match."""


def to_tensor(array: np.ndarray) -> pb.Tensor:
    return fill_tensor(pb.Tensor(), array)


def fill_tensor(t: pb.Tensor, array: np.ndarray) -> pb.Tensor:
    """Write an array into a Tensor field in place (`msg.frame.symbols`): assigning a built Tensor to a field of
    another message copies its bytes again, a few ms per 1e6-symbol frame."""
    a = np.asarray(array)
    key = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
    if key not in _FROM_NUMPY:
        raise WireError(f"dtype {a.dtype} has no wire type; use one of {[str(d) for d in _TO_NUMPY.values()]}")
    a = np.ascontiguousarray(a, dtype=key)
    t.dtype = _FROM_NUMPY[key]
    del t.shape[:]
    t.shape.extend(a.shape)
    t.raw = a.tobytes()
    return t


def uplink_frame(stream_id: int, seq: int, last: bool, symbols: np.ndarray) -> pb.Uplink:
    """One symbol frame as an Uplink message, its tensor written in place (see fill_tensor)."""
    up = pb.Uplink()
    up.frame.stream_id, up.frame.seq, up.frame.last = stream_id, seq, last
    fill_tensor(up.frame.symbols, symbols)
    return up


def from_tensor(t: pb.Tensor, field: str = "tensor", expect_dtype: int | None = None,
                expect_ndim: int | None = None) -> np.ndarray:
    """Decode a Tensor (read-only), checking it is what the caller expects; WireError names `field` and the reason."""
    if t.dtype not in _TO_NUMPY:
        raise WireError(f"{field}.dtype: unknown dtype {t.dtype}")
    if expect_dtype is not None and t.dtype != expect_dtype:
        raise WireError(f"{field}.dtype: expected {pb.DType.Name(expect_dtype)}, got {pb.DType.Name(t.dtype)}")
    shape = tuple(int(s) for s in t.shape)
    if any(s < 0 for s in shape):
        raise WireError(f"{field}.shape: negative dimension in {shape}")
    if expect_ndim is not None and len(shape) != expect_ndim:
        raise WireError(f"{field}.shape: expected {expect_ndim} dimensions, got shape {shape}")
    dtype = _TO_NUMPY[t.dtype]
    count = int(np.prod(shape)) if shape else 1
    raw = t.raw  # each read of a bytes field makes a new bytes object: read it once
    if len(raw) != count * dtype.itemsize:
        raise WireError(f"{field}.raw: {len(raw)} bytes, but shape {shape} of {dtype} needs {count * dtype.itemsize}")
    # A read-only view of those bytes: no further copy of a 1e6-symbol frame. Callers that write copy first.
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def frames(symbols: np.ndarray, frame_symbols: int) -> Iterator[tuple[int, bool, np.ndarray]]:
    """Split a complex64 [N] stream into (seq, last, chunk) frames of at most `frame_symbols` symbols."""
    n = len(symbols)
    count = max(1, -(-n // frame_symbols))
    for seq in range(count):
        yield seq, seq == count - 1, symbols[seq * frame_symbols:(seq + 1) * frame_symbols]


def runs_encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length code a per-symbol array [N] -> (values [B], runs int32 [B]); exact, B = number of changes + 1."""
    v = np.asarray(values)
    if v.size == 0:
        return v[:0], np.zeros(0, np.int32)
    starts = np.concatenate([[0], np.flatnonzero(v[1:] != v[:-1]) + 1])
    runs = np.diff(np.concatenate([starts, [v.size]])).astype(np.int32)
    return v[starts], runs


def runs_decode(values: np.ndarray, runs: np.ndarray, n: int, field: str = "runs") -> np.ndarray:
    """Inverse of runs_encode; empty `runs` means one value per symbol. Checks the total is `n`."""
    if runs.size == 0:
        if values.size != n:
            raise WireError(f"{field}: {values.size} values for {n} symbols and no runs")
        return values
    if runs.shape != values.shape or np.any(runs < 0) or int(runs.sum()) != n:
        raise WireError(f"{field}: runs must be non-negative, one per value, summing to {n} symbols")
    return np.repeat(values, runs)


# Enum <-> the lower-case names used by the CLI, the config and the library.
def enum_name(enum, value: int) -> str:
    return enum.Name(value).lower()


def enum_value(enum, name: str) -> int:
    try:
        return enum.Value(name.upper())
    except ValueError:
        names = [n.lower() for n in enum.keys() if not n.endswith("UNSPECIFIED")]
        raise ValueError(f"unknown value {name!r}; expected one of {names}") from None


# --- the library's dataclasses <-> protobuf ----------------------------------------------------------------------

_PB_ENUM = {Scheme: pb.Scheme, Channel: pb.ChannelModel, Fading: pb.Fading, Csi: pb.CsiMode, msg.Modality: pb.Modality,
            Task: pb.Task}
_PB_MESSAGE = {msg.Request: pb.Request, msg.Payload: pb.Payload, msg.LinkSettings: pb.LinkSettings,
               msg.Label: pb.Label, msg.StreamHeader: pb.StreamHeader, msg.ModalityOutput: pb.ModalityOutput,
               msg.RequestHeader: pb.RequestHeader, msg.StageTiming: pb.StageTiming, msg.Result: pb.Result,
               msg.Session: pb.Session, msg.SessionPart: pb.SessionPart, msg.SessionReport: pb.SessionReport,
               msg.UserResult: pb.UserResult, msg.CaptureReport: pb.CaptureReport}
_FROM_PB_MESSAGE = {v: k for k, v in _PB_MESSAGE.items()}
# The dataclasses' enum fields, by name (each name has one enum type in every message).
_ENUM_FIELDS = {"task": Task, "scheme": Scheme, "channel": Channel, "fading": Fading, "csi": Csi,
                "modality": msg.Modality}
# Repeated enum fields, by name (Session.parts, SessionReport.missing).
_ENUM_LISTS = {"parts": msg.Modality, "missing": msg.Modality}


def enum_to_pb(member: StrEnum | None) -> int:
    """A `unitocom.options` / `unitocom.messages` enum member -> the proto enum's number (None: UNSPECIFIED, 0)."""
    return 0 if member is None else _PB_ENUM[type(member)].Value(member.value.upper())


def enum_from_pb(cls: type[StrEnum], value: int, field: str = "enum") -> StrEnum | None:
    """A proto enum number -> the member of `cls` with its lower-case name (0, UNSPECIFIED: None); WireError naming
    `field` for a number the proto does not define."""
    enum = _PB_ENUM[cls]
    if value not in enum.values():
        raise WireError(f"{field}: unknown value {value}; expected one of {list(enum.keys())[1:]}")
    return None if value == 0 else cls(enum.Name(value).lower())


def to_pb(message):
    """A `unitocom.messages` dataclass -> its protobuf message, field for field (nested ones too; a oneof member
    that is None is left unset)."""
    values = {}
    for f in dataclasses.fields(message):
        v = getattr(message, f.name)
        if f.name in _ENUM_FIELDS:
            v = enum_to_pb(v)
        elif f.name in _ENUM_LISTS:
            v = [enum_to_pb(m) for m in v]
        elif v is None:
            continue
        elif dataclasses.is_dataclass(v):
            v = to_pb(v)
        elif isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
            v = [to_pb(x) for x in v]
        values[f.name] = v
    return _PB_MESSAGE[type(message)](**values)


def from_pb(message, field: str = ""):
    """A protobuf message of `unitocom.messages` (Request, Payload, LinkSettings, Label, RequestHeader,
    StreamHeader, ModalityOutput, StageTiming, Result) -> its dataclass, nested ones too (a map field as a dict).
    An enum number the proto does not define raises WireError naming the field from `field` down
    (`payloads[0].modality`, `header.streams[3].scheme`)."""
    cls = _FROM_PB_MESSAGE[type(message)]
    descriptors = message.DESCRIPTOR.fields_by_name
    values = {}
    for f in dataclasses.fields(cls):
        name, fd, v = f"{field}.{f.name}" if field else f.name, descriptors[f.name], getattr(message, f.name)
        if f.name in _ENUM_FIELDS:
            v = enum_from_pb(_ENUM_FIELDS[f.name], v, name)
        elif f.name in _ENUM_LISTS and fd.enum_type is not None:
            v = [enum_from_pb(_ENUM_LISTS[f.name], x, f"{name}[{i}]") for i, x in enumerate(v)]
        elif fd.containing_oneof is not None:
            v = v if message.HasField(f.name) else None
        elif fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            v = dict(v)  # Result.quality: scalar values only
        elif fd.message_type is not None and not fd.is_repeated and f.default is None and not message.HasField(f.name):
            v = None  # an optional message (Request.session): unset stays None
        elif fd.message_type is not None:
            v = [from_pb(x, f"{name}[{i}]") for i, x in enumerate(v)] if fd.is_repeated else from_pb(v, name)
        elif fd.is_repeated:
            v = list(v)
        values[f.name] = v
    return cls(**values)


def to_json(message) -> dict:
    """A `unitocom.messages` dataclass -> its proto3 JSON mapping (field names as in the .proto): for files that
    people and other tools read, e.g. the request header in an IQ capture."""
    from google.protobuf import json_format
    return json_format.MessageToDict(to_pb(message), preserving_proto_field_name=True)


def from_json(cls: type, value: dict):
    """Inverse of to_json: proto3 JSON -> the `unitocom.messages` dataclass `cls` (WireError when it does not parse)."""
    from google.protobuf import json_format
    try:
        return from_pb(json_format.ParseDict(value, _PB_MESSAGE[cls]()))
    except json_format.ParseError as e:
        raise WireError(f"{cls.__name__}: {e}") from None


def frame_from_pb(frame: pb.SymbolFrame, field: str = "frame", csi: bool = False) -> msg.SymbolFrame:
    """A SymbolFrame's arrays as read-only views of the message's bytes, no copy: its symbols (complex64 [n]) and,
    with `csi` (the base station, which receives what the channel set), the receiver's side of its Csi: h_est,
    h_est_runs and the scalars, read whether or not the message sets it. The true gains (h, h_runs) stay empty
    arrays: a receiver does not know them, and reading them would copy their bytes. Without `csi` (the channel,
    which sets it itself) csi is None. WireError names the field from `field` down (`frame.symbols.dtype`,
    `frame.csi.h_est.raw`); run lengths are checked against the symbols where they are decoded (`runs_decode`)."""
    symbols = from_tensor(frame.symbols, f"{field}.symbols", expect_dtype=pb.COMPLEX64, expect_ndim=1)
    out = msg.SymbolFrame(stream_id=frame.stream_id, seq=frame.seq, last=frame.last, symbols=symbols)
    if csi:
        c = frame.csi
        out.csi = msg.Csi(h_est=from_tensor(c.h_est, f"{field}.csi.h_est", pb.COMPLEX64, 1),
                          h_est_runs=from_tensor(c.h_est_runs, f"{field}.csi.h_est_runs", pb.INT32, 1),
                          noise_var=c.noise_var, snr_db=c.snr_db, erased=c.erased, h_est_error_var=c.h_est_error_var)
    return out


def uplink(header: msg.RequestHeader, frames: Iterator[msg.SymbolFrame]) -> Iterator[pb.Uplink]:
    """An uplink stream: the RequestHeader, then each frame (its tensor written in place, see fill_tensor)."""
    yield pb.Uplink(header=to_pb(header))
    for f in frames:
        yield uplink_frame(f.stream_id, f.seq, f.last, f.symbols)


def fill_frame(out: pb.SymbolFrame, frame: msg.SymbolFrame) -> pb.SymbolFrame:
    """Write a SymbolFrame (its csi too, when set) into a SymbolFrame field in place (see fill_tensor)."""
    out.stream_id, out.seq, out.last = frame.stream_id, frame.seq, frame.last
    fill_tensor(out.symbols, frame.symbols)
    if frame.csi is not None:
        c, csi = frame.csi, out.csi
        for name in ("h", "h_runs", "h_est", "h_est_runs"):
            fill_tensor(getattr(csi, name), getattr(c, name))
        csi.noise_var, csi.snr_db, csi.erased, csi.h_est_error_var = c.noise_var, c.snr_db, c.erased, c.h_est_error_var
    return out


def error_field(err: WireError) -> tuple[str, str]:
    """(field, reason) of a WireError, whose text is "field: reason"."""
    field, _, reason = str(err).partition(": ")
    return field, reason
