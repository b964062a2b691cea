"""`python -m services.common.healthcheck HOST:PORT [SERVICE] [--tls-dir DIR [--tls-name NAME]]`: exit 0 when the
service reports SERVING (used by the compose healthchecks and usable by any probe). With --tls-dir the check
speaks TLS and presents <NAME>.pem (default `client`): a mutual-TLS service wants a certificate of its CA even
for health, which no identity or token check refuses."""
import argparse
import sys

from unitocom.client import Tls, health

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="exit 0 when the gRPC service reports SERVING")
    ap.add_argument("target", nargs="?", default="127.0.0.1:50051", help="HOST:PORT")
    ap.add_argument("service", nargs="?", default="", help="gRPC service name, e.g. unitocom.v1.Channel")
    ap.add_argument("--tls-dir", default=None, help="certificates directory (`unitocom certs`): check over TLS")
    ap.add_argument("--tls-name", default="client", help="the identity to present (default client)")
    args = ap.parse_args()
    tls = Tls.from_dir(args.tls_dir, args.tls_name) if args.tls_dir else None
    status = health(args.target, args.service, timeout_s=2.0, tls=tls)
    print(status)
    sys.exit(0 if status == "SERVING" else 1)
