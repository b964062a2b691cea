"""IQ capture: what crossed the channel, as SigMF recordings that GNU Radio and other SDR tools read.

One recording per request: `<request_id>.sigmf-data` (complex float32 little-endian, `cf32_le`) and
`<request_id>.sigmf-meta` (JSON). The data holds four channels interleaved per sample (SigMF `core:num_channels`):

    0  z      the symbols the transmitter sent
    1  h      the true gain the channel applied
    2  h_est  the receiver's estimate of h (equal to h with perfect CSI)
    3  z_hat  what the base station received, h z + n (zeros where a frame was erased)

One sample is one channel use: the simulator has no physical rate, so `core:sample_rate` is nominal (1 MHz by
default, say another with `sample_rate_hz`). Each frame is an annotation carrying its stream, sequence number,
noise variance N0 and the rest of its CSI; the global object carries the request header (proto3 JSON) so that a
recording can be sent to a base station again (`read` gives back header and frames; `unitocom replay`).

Disk use is bounded: after each recording the oldest ones are deleted until the directory holds at most
`max_bytes`; a single request larger than that is not recorded (and `Recording.close` says so).
"""
from __future__ import annotations

import datetime
import json
import pathlib
import re
from dataclasses import dataclass, field

import numpy as np

from unitocom import wire
from unitocom.messages import Csi, RequestHeader, SymbolFrame

CHANNELS = ("z", "h", "h_est", "z_hat")
NS = "unitocom"  # the SigMF extension namespace of our keys
EXTENSION = {"name": NS, "version": "1.0.0", "optional": True}
DEFAULT_SAMPLE_RATE_HZ = 1e6
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Recording:
    """The frames of one request, gathered as they pass and written by `close`."""

    recorder: Recorder
    header: RequestHeader
    frames: list[tuple[np.ndarray, SymbolFrame]] = field(default_factory=list)  # (z [n], received frame)
    nbytes: int = 0

    def add(self, sent: np.ndarray, received: SymbolFrame) -> None:
        """`sent`: complex64 [n] the frame's symbols as sent; `received`: the channel's output frame with its Csi
        (gains run-length coded, as the wire carries them)."""
        if received.csi is None:
            raise ValueError("a captured frame needs the CSI the channel applied")
        self.frames.append((np.array(sent, np.complex64), received))
        self.nbytes += 4 * 8 * len(sent)

    def close(self) -> pathlib.Path | None:
        """Write the recording; returns its .sigmf-meta path, or None when it is larger than the cap (not kept)."""
        return self.recorder.write(self)


@dataclass
class Recorder:
    """Writes recordings into `directory`, keeping the directory under `max_bytes` (oldest deleted first)."""

    directory: pathlib.Path
    max_bytes: int = 1 << 30
    sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ

    def __post_init__(self):
        self.directory = pathlib.Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.max_bytes <= 0 or not self.sample_rate_hz > 0:
            raise ValueError(f"capture: max_bytes and sample_rate_hz must be positive, got {self.max_bytes}, "
                             f"{self.sample_rate_hz}")

    def start(self, header: RequestHeader) -> Recording:
        return Recording(self, header)

    def write(self, rec: Recording) -> pathlib.Path | None:
        import sigmf  # imported where used: only a capturing channel needs it
        from sigmf import SigMFFile

        if rec.nbytes > self.max_bytes:
            return None
        samples, annotations, start = [], [], 0
        for z, f in rec.frames:
            n = len(z)
            c: Csi = f.csi
            h = wire.runs_decode(c.h, c.h_runs, n, "csi.h")
            h_est = wire.runs_decode(c.h_est, c.h_est_runs, n, "csi.h_est")
            samples.append(np.stack([z, h, h_est, f.symbols]).T.astype(np.complex64))  # [n, 4]: interleaved
            annotations.append((start, n, {
                sigmf.LABEL_KEY: f"stream {f.stream_id} frame {f.seq}",
                f"{NS}:stream_id": int(f.stream_id), f"{NS}:seq": int(f.seq), f"{NS}:last": bool(f.last),
                f"{NS}:noise_var": float(c.noise_var), f"{NS}:snr_db": float(c.snr_db),
                f"{NS}:erased": bool(c.erased), f"{NS}:h_est_error_var": float(c.h_est_error_var)}))
            start += n
        data = np.concatenate(samples) if samples else np.zeros((0, len(CHANNELS)), np.complex64)
        stem = _SAFE.sub("_", rec.header.request_id or "request") or "request"
        base = self.directory / stem
        data_path, meta_path = base.with_suffix(".sigmf-data"), base.with_suffix(".sigmf-meta")
        data.tofile(data_path)
        meta = SigMFFile(data_file=str(data_path), global_info={
            sigmf.DATATYPE_KEY: "cf32_le",
            sigmf.NUM_CHANNELS_KEY: len(CHANNELS),
            sigmf.SAMPLE_RATE_KEY: float(self.sample_rate_hz),
            sigmf.RECORDER_KEY: "UniToCom channel service",
            sigmf.DESCRIPTION_KEY: "UniToCom link capture; channels (interleaved): " + ", ".join(CHANNELS)
                                       + "; one sample per channel use (the rate is nominal)",
            sigmf.EXTENSIONS_KEY: [EXTENSION],
            f"{NS}:channels": list(CHANNELS),
            f"{NS}:request_id": rec.header.request_id,
            f"{NS}:request_header": wire.to_json(rec.header)})
        meta.add_capture(0, metadata={sigmf.DATETIME_KEY: datetime.datetime.now(datetime.timezone.utc)
                                      .strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        for s, n, md in annotations:
            meta.add_annotation(s, n, metadata=md)
        meta.validate()
        meta.tofile(str(meta_path))
        self._enforce_cap(keep=base)
        return meta_path

    def recordings(self) -> list[pathlib.Path]:
        """The .sigmf-meta files of the directory, oldest first."""
        return sorted(self.directory.glob("*.sigmf-meta"), key=lambda p: (p.stat().st_mtime, p.name))

    def _enforce_cap(self, keep: pathlib.Path) -> None:
        def size(meta: pathlib.Path) -> int:
            return sum(p.stat().st_size for p in (meta, meta.with_suffix(".sigmf-data")) if p.exists())

        metas = self.recordings()
        total = sum(size(m) for m in metas)
        for m in metas:
            if total <= self.max_bytes:
                break
            if m.with_suffix("") == keep:
                continue
            total -= size(m)
            for p in (m, m.with_suffix(".sigmf-data")):
                p.unlink(missing_ok=True)


@dataclass
class Capture:
    """A recording read back: the request header, the sample rate, and per frame what was sent and received."""

    header: RequestHeader
    sample_rate_hz: float
    sent: list[np.ndarray]  # complex64 [n] per frame
    received: list[SymbolFrame]  # per frame, with its Csi (true and estimated gains per symbol, unrun)


def read(meta_path: str | pathlib.Path) -> Capture:
    """A recording written by `Recorder` (its .sigmf-meta path, or the stem), checked by the sigmf package."""
    import sigmf
    from sigmf import sigmffile

    p = pathlib.Path(meta_path)
    if p.suffix != ".sigmf-meta":
        p = p.with_suffix(".sigmf-meta")
    f = sigmffile.fromfile(str(p))  # validates the metadata and the data file's checksum
    g = f.get_global_info()
    if g.get(f"{NS}:channels") != list(CHANNELS):
        raise ValueError(f"{p}: not a UniToCom capture (global {NS}:channels is {g.get(f'{NS}:channels')!r})")
    total = f.sample_count
    data = f.read_samples(0, total).reshape(total, len(CHANNELS)) if total else np.zeros((0, 4), np.complex64)
    header = wire.from_json(RequestHeader, g[f"{NS}:request_header"])
    sent, received = [], []
    for a in f.get_annotations():
        s, n = a[sigmf.SAMPLE_START_KEY], a[sigmf.SAMPLE_COUNT_KEY]
        z, h, h_est, z_hat = (np.ascontiguousarray(data[s:s + n, i]).astype(np.complex64) for i in range(4))
        csi = Csi(h=h, h_runs=np.zeros(0, np.int32), h_est=h_est, h_est_runs=np.zeros(0, np.int32),
                  noise_var=a[f"{NS}:noise_var"], snr_db=a[f"{NS}:snr_db"], erased=a[f"{NS}:erased"],
                  h_est_error_var=a[f"{NS}:h_est_error_var"])
        sent.append(z)
        received.append(SymbolFrame(stream_id=a[f"{NS}:stream_id"], seq=a[f"{NS}:seq"], last=a[f"{NS}:last"],
                                    symbols=z_hat, csi=csi))
    return Capture(header, float(g[sigmf.SAMPLE_RATE_KEY]), sent, received)


def describe(meta_path: str | pathlib.Path) -> dict:
    """A short summary of a recording's metadata (no samples read): for listings."""
    g = json.loads(pathlib.Path(meta_path).read_text())["global"]
    return {"request_id": g.get(f"{NS}:request_id"), "sample_rate_hz": g.get("core:sample_rate"),
            "channels": g.get(f"{NS}:channels")}
