"""HTTP gateway service (FastAPI on uvicorn): `python -m services.gateway.server --transmitter HOST:PORT`.

JSON and multipart endpoints mirroring `unitocom send`, OpenAPI docs at /docs (schema at /openapi.json), the web
page at /, Prometheus metrics at /metrics. With --prometheus-url the page charts accuracy versus SNR live.
"""
from __future__ import annotations

import argparse
import logging

import uvicorn

from services.gateway.app import create_app


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
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s gateway %(levelname)s %(message)s")
    app = create_app(args.transmitter, args.prometheus_url)
    # uvicorn handles SIGTERM itself: it stops accepting and lets running requests finish.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
