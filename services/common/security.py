"""Transport security, caller identity and recovery for the gRPC hops (issue 13).

- `next_hop_channel`: the channel a service opens to its next hop (transmitter -> channel -> base station):
  message caps, wait-for-ready and a retry policy for UNAVAILABLE, fast reconnect, and mutual TLS when given.
- `server_credentials` / `Guard`: a service's TLS listener and the interceptor that admits only the expected
  caller: the channel takes only the transmitter's certificate, the base station only the channel's, and the
  transmitter (the public entry) only bearer tokens from its token file.

Plaintext without authentication stays the default for local experiments; `serve` logs a WARNING saying so.
Health and reflection are never refused by identity or token (probes and grpcurl must see a service), but on a
mutual-TLS port the TLS handshake itself still wants a certificate from the CA.
"""
from __future__ import annotations

import hmac
import json
import logging
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from prometheus_client import Counter

from services.common.interceptors import EXEMPT_PREFIXES, wrap_handler
from unitocom import certs
from unitocom import config as config_mod

log = logging.getLogger("unitocom.service")


# Reconnect backoff (milliseconds). gRPC's defaults (1 s initial, x1.6, up to 120 s, with jitter) left callers
# failing for ~4.5 s after a restarted peer was SERVING; with 100 ms .. 1 s a peer is tried again within ~1 s.
RECONNECT_BACKOFF_MS = {"grpc.initial_reconnect_backoff_ms": 100, "grpc.min_reconnect_backoff_ms": 100,
                        "grpc.max_reconnect_backoff_ms": 1000}
RETRY_MAX_ATTEMPTS = 5


# Of a call's remaining time, what a service keeps back from its next hop (seconds; at most a tenth of it).
REPORT_MARGIN_S = 0.25


def next_hop_timeout(context: grpc.ServicerContext, default_s: float) -> float:
    """Seconds the next hop may take: the caller's remaining deadline less a margin. With wait-for-ready a call to
    a hop that is down waits the whole deadline; the margin lets this service answer DEADLINE_EXCEEDED naming the
    hop ("deadline exceeded waiting for channel at ...") before the caller's own timer fires with a bare
    "Deadline Exceeded". `default_s` when the caller set no deadline."""
    t = context.time_remaining()
    if t is None:
        return default_s
    return max(0.001, t - min(REPORT_MARGIN_S, 0.1 * t))


def service_config(services: Sequence[str]) -> str:
    """The gRPC service config (JSON) for calls to `services` (full names, e.g. "unitocom.v1.Channel"; none: every
    method of the channel).

    waitForReady: a call made while the peer is down or restarting waits (within its deadline) for the
    connection instead of failing at once with UNAVAILABLE, so a restarted peer is used as soon as it is SERVING.

    retryPolicy, UNAVAILABLE only: that status means the connection failed or could not be made (a peer killed or
    restarting, a refused connection), so the request was not processed; and where a peer died mid-call, every
    handler here is a pure function of its request (no state but metrics), so running it again is safe. The one
    state, the base station's session table, takes a part sent again under the same request id in its own place. No other
    status is retried: INVALID_ARGUMENT & co. would fail again, and DEADLINE_EXCEEDED leaves no time."""
    policy = {"maxAttempts": RETRY_MAX_ATTEMPTS, "initialBackoff": "0.05s", "maxBackoff": "0.5s",
              "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
    names = [{"service": s} for s in services] or [{}]
    return json.dumps({"methodConfig": [{"name": names, "waitForReady": True,
                                         "retryPolicy": policy}]})


@dataclass(frozen=True)
class TlsIdentity:
    """One party's TLS material: the CA every party trusts, and its own certificate chain and private key (PEM)."""
    name: str
    ca: bytes = field(repr=False)
    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)  # never in a log line or a traceback's locals

    @classmethod
    def from_dir(cls, tls_dir: str | pathlib.Path, name: str) -> TlsIdentity:
        """ca.pem, <name>.pem and <name>-key.pem of `tls_dir` (made by `unitocom certs`)."""
        ca, cert, key = certs.load(tls_dir, name)
        return cls(name, ca, cert, key)


def next_hop_channel(target: str, cfg: config_mod.Config, tls: TlsIdentity | None = None,
                     peer_name: str | None = None, services: Sequence[str] = ()) -> grpc.Channel:
    """The channel to a next hop. `tls`: this service's identity, presented as the client certificate (mutual
    TLS); `peer_name`: the identity the peer's certificate must carry (checked by the TLS handshake whatever
    address `target` is: 127.0.0.1, a compose name or a dns:/// Kubernetes name); `services`: the full gRPC
    service names the retry and wait-for-ready config applies to.

    A client-streaming call (Forward, Receive) can be retried only while what it has sent still fits gRPC's
    per-call retry buffer (256 KiB by default, beyond which the call is committed and no longer retried): the
    buffer is sized for one full-size message plus headroom, and it is held only until the call is committed."""
    from services.common.server import channel_options  # the caps and round_robin every service channel uses

    options: list[tuple[str, int | str]] = list(channel_options(cfg))
    options += list(RECONNECT_BACKOFF_MS.items())
    options += [("grpc.enable_retries", 1),
                ("grpc.per_rpc_retry_buffer_size", 2 * cfg.limits.max_message_bytes),
                ("grpc.service_config", service_config(services))]
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    if peer_name:
        # The name checked against the peer certificate's SANs: its identity, not the address dialled.
        options.append(("grpc.ssl_target_name_override", peer_name))
    creds = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)
    return grpc.secure_channel(target, creds, options=options)


def server_credentials(tls: TlsIdentity, require_client_auth: bool) -> grpc.ServerCredentials:
    """The listener's TLS: its certificate, and with `require_client_auth` (mutual TLS, between services) a
    client certificate signed by the CA is required at the handshake (another CA's, or none, never connects)."""
    return grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca,
                                       require_client_auth=require_client_auth)


def read_tokens(path: str | pathlib.Path) -> list[bytes]:
    """The bearer tokens of a token file: one per line; blank lines and # comments are skipped. An empty file is
    an error (it would lock every client out while looking configured)."""
    p = pathlib.Path(path)
    tokens = [line.split("#", 1)[0].strip() for line in p.read_text().splitlines()]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise ValueError(f"{p}: no tokens (one per line; # starts a comment)")
    return [t.encode() for t in tokens]


# ---- interceptor -----------------------------------------------------------------------------------------------

# Calls refused before their handler (a missing or wrong identity or token): they never reach `rpc()`, so they are
# counted here. `method` is the full gRPC method name, of which a service has a handful.
REFUSED = Counter("unitocom_refused_total", "Calls refused before their handler: a missing or wrong caller "
                  "identity (mutual TLS) or bearer token", ["service", "method", "code"])

Refusal = tuple[grpc.StatusCode, str]
Check = Callable[[grpc.ServicerContext, str], "Refusal | None"]  # (context, method) -> None to admit


def identity_check(expected: str) -> Check:
    """Admit only a caller whose client certificate names `expected` (common name or a SAN): the channel wants
    "transmitter", the base station "channel". Anything else is PERMISSION_DENIED naming who is wanted."""
    want = expected.encode()

    def check(context: grpc.ServicerContext, method: str) -> Refusal | None:
        auth = context.auth_context()
        if want in auth.get("x509_common_name", []) + auth.get("x509_subject_alternative_name", []):
            return None
        got = b", ".join(auth.get("x509_common_name", [])).decode(errors="replace") or "no client certificate"
        return (grpc.StatusCode.PERMISSION_DENIED,
                f"{method} accepts only the {expected!r} identity (client certificate CN/SAN); "
                f"the caller presented {got}")

    return check


def token_check(tokens: Sequence[bytes]) -> Check:
    """Admit only calls with metadata `authorization: Bearer <token>` for a token of the file. Missing (or not a
    bearer token): UNAUTHENTICATED; an unknown token: PERMISSION_DENIED. Tokens are compared in constant time
    (hmac.compare_digest), each one, so the time taken says nothing about which token came close."""
    known = list(tokens)

    def check(context: grpc.ServicerContext, method: str) -> Refusal | None:
        values = [v for k, v in context.invocation_metadata() if k == "authorization"]
        if not values:
            return (grpc.StatusCode.UNAUTHENTICATED,
                    f"{method} needs a bearer token: send metadata 'authorization: Bearer <token>'")
        value = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return grpc.StatusCode.UNAUTHENTICATED, "the authorization metadata must be 'Bearer <token>'"
        given = token.strip().encode()
        ok = False
        for t in known:
            ok |= hmac.compare_digest(given, t)
        return None if ok else (grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not accepted by this service")

    return check


class Guard(grpc.ServerInterceptor):
    """Runs `checks` before every handler of `service` except health and reflection; the first refusal aborts the
    call with its status and is counted in unitocom_refused_total. The checks need the call's context (its peer
    certificate, its metadata), which only the handler gets: so the handler is wrapped, not replaced."""

    def __init__(self, checks: Sequence[Check], service: str = ""):
        self.checks, self.service = list(checks), service

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.checks or method.startswith(EXEMPT_PREFIXES):
            return handler
        checks, service = self.checks, self.service

        def guarded(behavior):
            def run(request_or_iterator, context):
                for check in checks:
                    refusal = check(context, method)
                    if refusal is not None:
                        REFUSED.labels(service, method, refusal[0].name).inc()
                        log.debug("refused %s from %s: %s", method, context.peer(), refusal[1])
                        context.abort(*refusal)  # raises: the handler never runs
                return behavior(request_or_iterator, context)
            return run

        return wrap_handler(handler, lambda behavior, _streaming: guarded(behavior))


# Who may call each service: the previous hop's identity. The transmitter is the public entry: clients prove
# who they are with bearer tokens, and present a client certificate only if they like.
CALLER = {"channel": "transmitter", "basestation": "channel"}


def plan(name: str, tls_dir: str | None, auth_tokens: str | None) -> tuple[grpc.ServerCredentials | None, Guard]:
    """The listener credentials (None: plaintext) and the interceptor for service `name` from its flags; a
    missing certificate or an empty token file exits with a message naming it."""
    checks: list[Check] = []
    creds = None
    try:
        if tls_dir:
            identity = TlsIdentity.from_dir(tls_dir, name)
            caller = CALLER.get(name)
            creds = server_credentials(identity, require_client_auth=caller is not None)
            if caller:
                checks.append(identity_check(caller))
        if auth_tokens:
            checks.append(token_check(read_tokens(auth_tokens)))
    except (OSError, ValueError) as e:  # a missing certificate or an empty token file: say which, exit non-zero
        raise SystemExit(f"{name}: {e}") from None
    if not tls_dir and not auth_tokens:
        log.warning("serving PLAINTEXT without authentication: any process that reaches this port can call it "
                    "(for local experiments; give --tls-dir and, at the transmitter, --auth-tokens)")
    elif not tls_dir:
        log.warning("serving PLAINTEXT: bearer tokens travel unencrypted (give --tls-dir)")
    elif name == "transmitter" and not auth_tokens:
        log.warning("TLS without client authentication: any client trusting the CA may call (give --auth-tokens)")
    return creds, Guard(checks, name)


def next_hop_tls(name: str, tls_dir: str | None) -> TlsIdentity | None:
    """This service's identity for its next-hop channel, or None (plaintext) without --tls-dir."""
    if not tls_dir:
        return None
    try:
        return TlsIdentity.from_dir(tls_dir, name)
    except OSError as e:
        raise SystemExit(f"{name}: {e}") from None
