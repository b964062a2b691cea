"""HTTP gateway service (FastAPI on uvicorn): `python -m services.gateway.server --transmitter HOST:PORT`.

JSON and multipart endpoints mirroring `unitocom send`, OpenAPI docs at /docs (schema at /openapi.json), the web
page at /, Prometheus metrics at /metrics. With --prometheus-url the page charts accuracy versus SNR live.
"""
from __future__ import annotations

import argparse
import logging
import pathlib

import uvicorn

from services.gateway.app import create_app
from unitocom import client


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="UniToCom HTTP gateway: JSON / multipart API, OpenAPI docs and a web "
                                             "page in front of the transmitter's gRPC Send")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    ap.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    ap.add_argument("--transmitter", default="127.0.0.1:50051",
                    help="transmitter gRPC target: host:port, or dns:///name:port to spread over replicas")
    ap.add_argument("--prometheus-url", default="",
                    help="Prometheus base URL (e.g. http://127.0.0.1:9090) for the accuracy-vs-SNR chart; "
                         "empty: the chart says it has no Prometheus")
    ap.add_argument("--log-level", default="info", help="uvicorn log level")
    ap.add_argument("--tls-dir", default=None, metavar="DIR",
                    help="certificates from `unitocom certs --out DIR`: serve HTTPS with gateway.pem / "
                         "gateway-key.pem, and call the transmitter over TLS presenting the same identity. "
                         "Default: plain HTTP and plaintext gRPC, for local experiments only")
    ap.add_argument("--auth-token-file", default=None, metavar="FILE",
                    help="the bearer token (first line of FILE, # comments) the gateway sends to a transmitter "
                         "started with --auth-tokens, for HTTP callers that bring no `Authorization: Bearer` "
                         "header of their own (one they bring is passed on instead)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s gateway %(levelname)s %(message)s")
    try:
        tls = client.Tls.from_dir(args.tls_dir, "gateway") if args.tls_dir else None
        token = client.read_token(args.auth_token_file) if args.auth_token_file else None
    except (OSError, ValueError) as e:  # a missing certificate or an empty token file: say which
        raise SystemExit(f"gateway: {e}") from None
    if tls is None:
        logging.getLogger("unitocom.gateway").warning(
            "serving plain HTTP and calling the transmitter in plaintext (for local experiments; give --tls-dir)")
    app = create_app(args.transmitter, args.prometheus_url, tls=tls, token=token)
    ssl = {"ssl_certfile": str(pathlib.Path(args.tls_dir) / "gateway.pem"),
           "ssl_keyfile": str(pathlib.Path(args.tls_dir) / "gateway-key.pem")} if tls else {}
    # uvicorn handles SIGTERM itself: it stops accepting and lets running requests finish.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False, **ssl)


if __name__ == "__main__":
    main()
