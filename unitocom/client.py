"""Client SDK: the one place that builds Requests and reads Results. The CLI, the benchmarks and the tests use it."""
from __future__ import annotations

import base64
import inspect
import io
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from unitocom import options as opts
from unitocom import wire
from unitocom.config import ServiceLimits
from unitocom.v1 import unitocom_pb2 as pb
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc


def build_request(*, request_id: str = "", **options) -> pb.Request:
    """A Request from plain values: the options of `unitocom.options.REQUEST_OPTIONS` (those of `unitocom send`
    less the call's timeout), enums by their lower-case names (the CLI's) or as `unitocom.options` members.
    ValueError for an unknown enum name or a value of the wrong type, TypeError for a name that is no option.
    Ranges are the services' to check: they answer INVALID_ARGUMENT naming the field."""
    if options.get("modulation") == "":  # the wire's "service default", as older callers spell it
        options["modulation"] = None
    v = opts.resolve(options, opts.REQUEST_OPTIONS, check_bounds=False)
    payloads = _payloads(v)
    if v["users"] > 1:  # users sharing the channel: every device sends the payloads given
        payloads = [_for_user(p, k) for k in range(v["users"]) for p in payloads]
    link = pb.LinkSettings(
        scheme=wire.enum_value(pb.Scheme, v["scheme"]), snr_db=v["snr_db"],
        channel=wire.enum_value(pb.ChannelModel, v["channel"]), fading=wire.enum_value(pb.Fading, v["fading"]),
        seed=v["seed"], block_length=v["block_length"], csi=wire.enum_value(pb.CsiMode, v["csi"]),
        pilots=v["pilots"], erasure_prob=v["erasure_prob"], rician_k_db=v["rician_k_db"],
        jpeg_quality=v["jpeg_quality"], code_rate=v["code_rate"], modulation=v["modulation"] or "",
        packet_loss=v["packet_loss"], packet_burst=v["packet_burst"], tokens_per_packet=v["tokens_per_packet"],
        variant=v["variant"] or "", token_budget=v["token_budget"], packing=v["packing"] or "",
        lossy_modalities=v["lossy_modalities"],
        users=v["users"], access=v["access"] or "", user_powers=parse_powers(v["user_powers"]),
        capture=v["capture"], text_copies=v["text_copies"],
    )
    label = pb.Label(answer=v["answer"], transcript=v["transcript"])
    req = pb.Request(request_id=request_id, task=wire.enum_value(pb.Task, v["task"]), payloads=payloads, link=link)
    if v["users"] > 1:  # every device sends the same payloads: each user's answer is scored against the label given
        if label.answer or label.transcript:
            req.user_labels.extend([label] * v["users"])
    else:
        req.label.CopyFrom(label)
    if v["session_id"] is not None:  # given, even empty: the services then say what is wrong with it
        req.session.CopyFrom(session(v["session_id"], v["session_parts"], v["session_partial"], v["session_wait_s"]))
    elif v["session_parts"] or v["session_partial"] or v["session_wait_s"]:
        # the services would never see these without an id: say so here rather than drop them
        raise ValueError("session_parts, session_partial and session_wait_s belong to a session: give session_id too")
    return req


def session(session_id: str, parts: str = "", partial: bool = False, wait_s: float = 0.0) -> pb.Session:
    """A Session: `parts` a comma list of modality names ("image,text"; empty: the task's inputs). ValueError for a
    name that is no modality; the rest (the id's form, the parts against the task) is the services' to check."""
    names = [p.strip() for p in parts.split(",") if p.strip()]
    return pb.Session(id=session_id, parts=[wire.enum_value(pb.Modality, n) for n in names], partial=partial,
                      wait_s=wait_s)


def _payloads(v: dict) -> list[pb.Payload]:
    payloads = []
    if v["image"] is not None:
        payloads.append(pb.Payload(modality=pb.IMAGE, image=v["image"]))
    if v["audio"] is not None:
        payloads.append(pb.Payload(modality=pb.AUDIO, audio=v["audio"]))
    for t in (v["text"], v["question"]):
        if t is not None:
            payloads.append(pb.Payload(modality=pb.TEXT, text=t))
    return payloads


def _for_user(payload: pb.Payload, user: int) -> pb.Payload:
    p = pb.Payload()
    p.CopyFrom(payload)
    p.user = user
    return p


def parse_powers(text: str | list | tuple) -> list[float]:
    """`user_powers` as the wire's list: "0.8,0.2" (the command line's and the gateway's) or a list of numbers.
    ValueError for an entry that is no number; NaN, signs and sums are the services' to judge (they name the
    entry)."""
    if isinstance(text, (list, tuple)):
        return [float(x) for x in text]
    text = str(text).strip()
    if not text:
        return []
    out = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        try:
            out.append(float(part))
        except ValueError:
            raise ValueError(f"user_powers[{i}]: {part!r} is not a number; give a comma list such as 0.8,0.2") from None
    return out


def build_users_request(users: list[dict], *, request_id: str = "", **options) -> pb.Request:
    """A request of K users sharing the channel, each with its own payloads: `users[k]` holds user k's payload
    options (text, question, image, audio) and, to have its answer scored, its label (answer, transcript: the
    request's `user_labels`). The other options are build_request's (`users` is len(users); `access`,
    `user_powers`, the link). A user given no payload is sent so; the services refuse it, naming it."""
    if "users" in options:
        raise TypeError("build_users_request: the number of users is len(users)")
    shared = sorted(n for n in opts.LABELS if options.get(n))
    if shared:
        raise TypeError(f"build_users_request: {shared} label each user: give them in users[k]")
    req = build_request(request_id=request_id, users=len(users), **options)
    del req.payloads[:]
    names = set(opts.PAYLOADS) | set(opts.LABELS)
    labels = []
    for k, given in enumerate(users):
        unknown = sorted(set(given) - names)
        if unknown:
            raise TypeError(f"users[{k}]: {unknown} are not payload or label options {sorted(names)}")
        values = {n: given.get(n) for n in opts.PAYLOADS}
        for p in _payloads({n: opts.BY_NAME[n].check(x) for n, x in values.items()}):
            p.user = k
            req.payloads.append(p)
        labels.append(pb.Label(**{n: opts.BY_NAME[n].check(given[n]) for n in opts.LABELS if given.get(n)}))
    if any(lb.answer or lb.transcript for lb in labels):
        req.user_labels.extend(labels)
    return req


def _signature() -> inspect.Signature:
    """build_request's keywords as `inspect.signature` and help() show them: made from unitocom.options."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter(o.name, kw, default=o.default, annotation=o.type if o.default is not None
                                else o.type | None) for o in opts.REQUEST_OPTIONS]
    params.append(inspect.Parameter("request_id", kw, default="", annotation=str))
    return inspect.Signature(params, return_annotation=pb.Request)


build_request.__signature__ = _signature()


def choices() -> dict[str, list[str]]:
    """The names `build_request` takes for each enum option (what a form or --help offers)."""
    out = {o.name: o.choices for o in opts.OPTIONS if o.enum}
    out["modality"] = [n.lower() for n in pb.Modality.keys() if not n.endswith("UNSPECIFIED")]
    return out


def output_texts(result) -> list[str]:
    """The non-empty text of each text output of a Result: a service's (pb.Result, enums as numbers) or the
    in-process pipeline's (`unitocom.messages.Result`)."""
    from unitocom.messages import Modality
    return [o.text for o in result.outputs if o.modality in (pb.TEXT, Modality.TEXT) and o.text]


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
            "image_png_bytes": len(o.image_png), "audio_wav_bytes": len(o.audio_wav), "user": o.user,
        })
    d = {
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
        "users": [{"user": u.user, "output": u.output_text, "quality": dict(u.quality),
                   "channel_uses": u.channel_uses, "power": u.power, "sinr_db": u.sinr_db,
                   "sic_order": u.sic_order, "residual_db": u.residual_db} for u in result.users],
    }
    if result.HasField("session"):
        d["session"] = session_to_dict(result.session)
    if result.HasField("capture"):  # the channel recorded the request's IQ: where, for `unitocom replay`
        d["capture"] = {"path": result.capture.path, "bytes": result.capture.bytes, "note": result.capture.note}
    return d


def session_to_dict(report: pb.SessionReport) -> dict:
    """The JSON view of a Result's session: which parts arrived (each device's link and what became of its stream),
    which are missing, and which call ran the task."""
    return {
        "id": report.id, "complete": report.complete, "answered_by": report.answered_by,
        "waited_s": report.waited_s, "note": report.note,
        "missing": [wire.enum_name(pb.Modality, m) for m in report.missing],
        "arrived": [{"request_id": p.request_id, "modality": wire.enum_name(pb.Modality, p.modality),
                     "scheme": wire.enum_name(pb.Scheme, p.scheme), "snr_db": p.snr_db,
                     "channel": wire.enum_name(pb.ChannelModel, p.channel), "channel_uses": p.channel_uses,
                     "decoded": p.decoded, "note": p.note} for p in report.arrived],
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


@dataclass(frozen=True)
class Tls:
    """What a client needs for TLS: the CA that signed the services' certificates and, for mutual TLS (needed to
    reach the channel or base station, e.g. for their health), its own certificate and key. PEM bytes.
    `server_name`: the identity the server's certificate must carry when it differs from the host dialled."""
    ca: bytes = field(repr=False)
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)  # never in a log line or a traceback's locals
    server_name: str | None = None

    @classmethod
    def from_dir(cls, tls_dir: str | pathlib.Path, name: str | None = "client",
                 server_name: str | None = None) -> Tls:
        """ca.pem and, unless `name` is None, <name>.pem / <name>-key.pem of a `unitocom certs` directory."""
        from unitocom import certs
        if name is None:
            return cls(certs.load_ca(tls_dir), server_name=server_name)
        ca, cert, key = certs.load(tls_dir, name)
        return cls(ca, cert, key, server_name)

    def channel(self, target: str, options: list[tuple[str, int | str]] | None = None) -> grpc.Channel:
        opts = list(options or [])
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                             certificate_chain=self.cert)
        return grpc.secure_channel(target, creds, options=opts)


def read_token(path: str | pathlib.Path) -> str:
    """The first token of a token file (one per line, # comments): what a client sends as its bearer token."""
    for line in pathlib.Path(path).read_text().splitlines():
        token = line.split("#", 1)[0].strip()
        if token:
            return token
    raise ValueError(f"{path}: no token (one per line; # starts a comment)")


def open_channel(target: str, tls: Tls | None = None,
                 options: list[tuple[str, int | str]] | None = None) -> grpc.Channel:
    """A channel to `target`: TLS with `tls`, plaintext without."""
    return tls.channel(target, options) if tls is not None else grpc.insecure_channel(target, options=options)


@dataclass
class Client:
    """The transmitter's Send. `tls`: call over TLS (see `Tls`); `token`: a bearer token the transmitter's
    --auth-tokens file holds, sent as metadata `authorization: Bearer <token>` on every call."""
    target: str = "127.0.0.1:50051"
    max_message_bytes: int = ServiceLimits().max_message_bytes
    tls: Tls | None = None
    token: str | None = field(default=None, repr=False)  # never in a log line

    def __post_init__(self):
        # round_robin: `dns:///transmitter.unitocom.svc.cluster.local:50051` (a headless Kubernetes Service)
        # spreads RPCs over every replica; a plain host:port behaves as before.
        opts = [("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.lb_policy_name", "round_robin")]
        self._channel = open_channel(self.target, self.tls, opts)
        self._stub = pb_grpc.TransmitterStub(self._channel)
        self._metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None

    def send(self, request: pb.Request, timeout_s: float = 120.0, token: str | None = None) -> pb.Result:
        """Send one request; `token` (for this call only) replaces the client's bearer token."""
        metadata = (("authorization", f"Bearer {token}"),) if token else self._metadata
        return self._stub.Send(request, timeout=timeout_s, metadata=metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def health(target: str, service: str = "", timeout_s: float = 1.0, tls: Tls | None = None) -> str:
    """SERVING | NOT_SERVING | UNKNOWN | SERVICE_UNKNOWN, or UNREACHABLE when nothing answers (or the TLS
    handshake fails). Health needs no token; a mutual-TLS service (channel, base station) wants `tls` with a
    certificate of the CA, whichever identity."""
    with open_channel(target, tls) as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)


def png_bytes(image) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def replay_uplink(recording) -> Iterator[pb.Uplink]:
    """The uplink a base station receives, rebuilt from an IQ capture (`unitocom.capture.read`): the request
    header, then every frame as the channel delivered it, with its CSI."""
    yield pb.Uplink(header=wire.to_pb(recording.header))
    for f in recording.received:
        up = pb.Uplink()
        wire.fill_frame(up.frame, f)
        yield up


def replay(target: str, meta_path: str | pathlib.Path, timeout_s: float = 120.0,
           max_message_bytes: int = ServiceLimits().max_message_bytes, tls: Tls | None = None) -> pb.Result:
    """Send a captured request (a .sigmf-meta written by the channel's --capture) to the base station at
    `target` again: the same received symbols and CSI, so the same answer from the same checkpoints. A base
    station with mutual TLS admits only the channel's identity: `Tls.from_dir(dir, "channel")`."""
    from unitocom import capture
    rec = capture.read(meta_path)
    n = max_message_bytes
    with open_channel(target, tls, [("grpc.max_send_message_length", n),
                                    ("grpc.max_receive_message_length", n)]) as ch:
        return pb_grpc.BaseStationStub(ch).Receive(replay_uplink(rec), timeout=timeout_s)
