"""Client SDK: the one place that builds Requests and reads Results. The CLI, the benchmarks and the tests use it."""
from __future__ import annotations

import base64
import io
import pathlib
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from unitocom import wire
from unitocom.config import ServiceLimits
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc


def build_request(*, text: str | None = None, image: bytes | None = None, audio: bytes | None = None,
                  question: str | None = None, task: str = "reconstruct", scheme: str = "traditional",
                  snr_db: float = 20.0, channel: str = "awgn", fading: str = "block", seed: int = 0,
                  block_length: int = 0, csi: str = "perfect", pilots: int = 0, erasure_prob: float = 0.0,
                  rician_k_db: float = 0.0, jpeg_quality: int = 0, code_rate: float = 0.0,
                  modulation: str = "", answer: str = "", transcript: str = "", request_id: str = "") -> pb.Request:
    """A Request from plain values; enum names are the lower-case ones the CLI shows (ValueError otherwise)."""
    payloads = []
    if image is not None:
        payloads.append(pb.Payload(modality=pb.IMAGE, image=image))
    if audio is not None:
        payloads.append(pb.Payload(modality=pb.AUDIO, audio=audio))
    for t in (text, question):
        if t is not None:
            payloads.append(pb.Payload(modality=pb.TEXT, text=t))
    link = pb.LinkSettings(
        scheme=wire.enum_value(pb.Scheme, scheme), snr_db=snr_db, channel=wire.enum_value(pb.ChannelModel, channel),
        fading=wire.enum_value(pb.Fading, fading), seed=seed, block_length=block_length,
        csi=wire.enum_value(pb.CsiMode, csi), pilots=pilots, erasure_prob=erasure_prob, rician_k_db=rician_k_db,
        jpeg_quality=jpeg_quality, code_rate=code_rate, modulation=modulation,
    )
    return pb.Request(request_id=request_id, task=wire.enum_value(pb.Task, task), payloads=payloads, link=link,
                      label=pb.Label(answer=answer, transcript=transcript))


def choices() -> dict[str, list[str]]:
    """The names `build_request` takes for each enum option (what a form or --help offers)."""
    def names(enum) -> list[str]:
        return [n.lower() for n in enum.keys() if not n.endswith("UNSPECIFIED")]
    return {"task": names(pb.Task), "scheme": names(pb.Scheme), "channel": names(pb.ChannelModel),
            "fading": names(pb.Fading), "csi": names(pb.CsiMode), "modality": names(pb.Modality)}


def result_to_dict(result: pb.Result) -> dict:
    """The JSON view of a Result (`unitocom send --json`): stage timings summed per service.stage."""
    timings: dict[str, float] = {}
    for t in result.timings:
        key = f"{t.service}.{t.stage}"
        timings[key] = timings.get(key, 0.0) + t.seconds
    outputs = []
    for o in result.outputs:
        outputs.append({
            "modality": wire.enum_name(pb.Modality, o.modality), "decoded": o.decoded, "note": o.note,
            "text": o.text if o.modality == pb.TEXT else None, "channel_uses": o.channel_uses,
            "blocks": o.blocks, "block_errors": o.block_errors, "erased": o.erased,
            "image_png_bytes": len(o.image_png), "audio_wav_bytes": len(o.audio_wav),
        })
    return {
        "request_id": result.request_id,
        "task": wire.enum_name(pb.Task, result.task),
        "scheme": wire.enum_name(pb.Scheme, result.scheme),
        "snr_db": result.snr_db,
        "channel": wire.enum_name(pb.ChannelModel, result.channel),
        "output": result.output_text,
        "outputs": outputs,
        "channel_uses": result.channel_uses,
        "timings_s": timings,
        "quality": dict(result.quality),
    }


def result_to_json(result: pb.Result) -> dict:
    """`result_to_dict` plus the media themselves, base64-coded per output (`image_png_b64`, `audio_wav_b64`):
    what the HTTP gateway answers, so that a browser can show the reconstructed image and play the audio."""
    d = result_to_dict(result)
    for o, od in zip(result.outputs, d["outputs"]):
        od["image_png_b64"] = base64.b64encode(o.image_png).decode() if o.image_png else None
        od["audio_wav_b64"] = base64.b64encode(o.audio_wav).decode() if o.audio_wav else None
    return d


# Callers that catch failed calls without importing grpc themselves (the HTTP gateway).
RpcError = grpc.RpcError


def error_status(err: grpc.RpcError) -> tuple[str, str]:
    """(status name, details) of a failed call, e.g. ("INVALID_ARGUMENT", "payloads[0].image: ...")."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return (code.name if code is not None else "UNKNOWN"), (details or "")


def save_outputs(result: pb.Result, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Write reconstructed images (PNG), audio (WAV) and text next to each other; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, o in enumerate(result.outputs):
        stem = out_dir / f"{result.request_id}_{i}_{wire.enum_name(pb.Modality, o.modality)}"
        for data, ext in ((o.image_png, ".png"), (o.audio_wav, ".wav"), (o.text.encode(), ".txt")):
            if data:
                p = stem.with_suffix(ext)
                p.write_bytes(data)
                paths.append(p)
    return paths


@dataclass
class Client:
    target: str = "127.0.0.1:50051"
    max_message_bytes: int = ServiceLimits().max_message_bytes

    def __post_init__(self):
        # round_robin: `dns:///transmitter.unitocom.svc.cluster.local:50051` (a headless Kubernetes Service)
        # spreads RPCs over every replica; a plain host:port behaves as before.
        opts = [("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.lb_policy_name", "round_robin")]
        self._channel = grpc.insecure_channel(self.target, options=opts)
        self._stub = pb_grpc.TransmitterStub(self._channel)

    def send(self, request: pb.Request, timeout_s: float = 120.0) -> pb.Result:
        return self._stub.Send(request, timeout=timeout_s)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def health(target: str, service: str = "", timeout_s: float = 1.0) -> str:
    """SERVING | NOT_SERVING | UNKNOWN | SERVICE_UNKNOWN, or UNREACHABLE when nothing answers."""
    with grpc.insecure_channel(target) as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)


def read_image_bytes(path: str | pathlib.Path) -> bytes:
    return pathlib.Path(path).read_bytes()


def png_bytes(image) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
