"""A local certificate authority and the certificates of the services and clients, for TLS on every gRPC hop.

`make_certs(out_dir)` writes, into one directory (the services' `--tls-dir`):

    ca.pem                      the CA certificate every party trusts (its key, ca-key.pem, stays here too)
    <name>.pem, <name>-key.pem  one certificate and EC P-256 private key per identity in `names`
    tokens                      one random bearer token per line (the transmitter's --auth-tokens file; clients
                                send one of them), unless it exists already

Each certificate's common name and first DNS name is the identity (`transmitter`, `channel`, ...): the services
authorise their callers by it (the channel accepts only `transmitter`, the base station only `channel`). The other
subject alternative names are the addresses it may be reached at: localhost and 127.0.0.1 (`unitocom up`), the
compose service name and the Kubernetes Service names (`<name>.unitocom.svc.cluster.local`). Private keys are
written 0600. The certificates are valid for `days` (one year by default): a testbed's, not a production PKI's.

Made with the `cryptography` library (X.509 and PEM as every TLS stack reads them); nothing here knows gRPC.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import pathlib
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Every identity the testbed uses: the three services, the HTTP gateway (a client of the transmitter and a TLS
# server itself) and `client`, the identity of the CLI and SDK users.
NAMES = ("transmitter", "channel", "basestation", "gateway", "client")
NAMESPACE = "unitocom"  # deploy/k8s puts every Service in this namespace
DEFAULT_DAYS = 365


def dns_names(name: str, namespace: str = NAMESPACE) -> list[str]:
    """The DNS names `name` answers to: itself (its identity and compose service name), localhost, and the
    Kubernetes Service names in `namespace`."""
    return [name, "localhost", f"{name}.{namespace}", f"{name}.{namespace}.svc",
            f"{name}.{namespace}.svc.cluster.local"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: pathlib.Path, data: bytes, private: bool = False) -> None:
    """Write atomically; a private key is created 0600 (never readable by others, not even for an instant)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
             ) -> x509.CertificateBuilder:
    """A certificate for `key`'s public half with a random serial, valid from 5 minutes ago (a little clock skew
    between hosts is tolerated) for `days` days; the caller adds the extensions and signs."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))


def make_ca(common_name: str = "UniToCom local CA", days: int = DEFAULT_DAYS
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate (path length 0: it signs leaf certificates only) and its key."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (_builder(subject, subject, key, days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(name: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
              hosts: Sequence[str] = (), days: int = DEFAULT_DAYS, namespace: str = NAMESPACE
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for identity `name`, signed by the CA, usable both as a TLS server and as a TLS client
    (a service is both: it serves its caller and calls its next hop). `hosts`: more DNS names or IP addresses."""
    key = _key()
    dns = dns_names(name, namespace)
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    for h in hosts:
        try:
            ips.append(ipaddress.ip_address(h))
        except ValueError:
            dns.append(h)
    sans = [x509.DNSName(d) for d in dict.fromkeys(dns)] + [x509.IPAddress(i) for i in dict.fromkeys(ips)]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "UniToCom testbed")])
    cert = (_builder(subject, ca_cert.subject, key, days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def make_certs(out_dir: str | os.PathLike, names: Sequence[str] = NAMES, hosts: Sequence[str] = (),
               days: int = DEFAULT_DAYS, namespace: str = NAMESPACE, overwrite: bool = False,
               tokens: int = 1) -> list[pathlib.Path]:
    """Write a new CA and one certificate per name into `out_dir` (made 0700), and a `tokens` file of `tokens`
    random bearer tokens (256 bits each) when there is none; return the paths written.

    An existing ca.pem is an error unless `overwrite`: replacing the CA silently would invalidate every
    certificate already handed out from it. An existing tokens file is kept (clients may hold its tokens)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (out / "ca.pem").exists() and not overwrite:
        raise FileExistsError(f"{out / 'ca.pem'} exists: pass overwrite=True (--force) to make a new CA")
    ca_cert, ca_key = make_ca(days=days)
    written = [out / "ca.pem", out / "ca-key.pem"]
    _write(written[0], _pem_cert(ca_cert))
    _write(written[1], _pem_key(ca_key), private=True)
    for name in names:
        cert, key = make_leaf(name, ca_cert, ca_key, hosts, days, namespace)
        _write(out / f"{name}.pem", _pem_cert(cert))
        _write(out / f"{name}-key.pem", _pem_key(key), private=True)
        written += [out / f"{name}.pem", out / f"{name}-key.pem"]
    if tokens > 0 and not (out / "tokens").exists():
        lines = ["# bearer tokens the transmitter accepts (--auth-tokens): one per line; clients send one as",
                 "# metadata 'authorization: Bearer <token>'. Add or remove lines and restart the transmitter."]
        _write(out / "tokens", ("\n".join(lines + [secrets.token_urlsafe(32) for _ in range(tokens)]) + "\n").encode(),
               private=True)
        written.append(out / "tokens")
    return written


def load(tls_dir: str | os.PathLike, name: str) -> tuple[bytes, bytes, bytes]:
    """(ca.pem, <name>.pem, <name>-key.pem) of `tls_dir` as bytes, what gRPC's credentials take. A missing file is
    a FileNotFoundError that names it and says how to make it."""
    d = pathlib.Path(tls_dir)
    paths = (d / "ca.pem", d / f"{name}.pem", d / f"{name}-key.pem")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: make the certificates with `unitocom certs --out {d}`")
    return tuple(p.read_bytes() for p in paths)  # type: ignore[return-value]


def load_ca(tls_dir: str | os.PathLike) -> bytes:
    p = pathlib.Path(tls_dir) / "ca.pem"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: make the certificates with `unitocom certs --out {tls_dir}`")
    return p.read_bytes()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="unitocom certs",
        description="Make a local certificate authority and the certificates for TLS between the UniToCom "
                    "services (mutual TLS: each hop accepts only the previous hop's identity), the HTTP gateway "
                    "and clients. Writes ca.pem and <name>.pem / <name>-key.pem per identity, and a tokens "
                    "file of random bearer tokens (the transmitter's --auth-tokens), into --out; give that "
                    "directory to the services, the gateway and `unitocom send` as --tls-dir. Private keys are "
                    "written 0600. For a testbed: keep ca-key.pem out of the containers.",
        epilog="Example: unitocom certs --out ~/.cache/unitocom/tls && unitocom up --tls-dir ~/.cache/unitocom/tls")
    ap.add_argument("--out", required=True, metavar="DIR", help="directory to write (created 0700)")
    ap.add_argument("--names", nargs="+", default=list(NAMES), metavar="NAME",
                    help=f"identities to make certificates for (default: {' '.join(NAMES)})")
    ap.add_argument("--host", dest="hosts", action="append", default=[], metavar="HOST",
                    help="another DNS name or IP address every certificate should cover (repeatable), e.g. the "
                         "machine's name when clients reach the transmitter from elsewhere")
    ap.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (default {DEFAULT_DAYS})")
    ap.add_argument("--namespace", default=NAMESPACE,
                    help=f"Kubernetes namespace for the <name>.<ns>.svc.cluster.local names (default {NAMESPACE})")
    ap.add_argument("--tokens", type=int, default=1, metavar="N",
                    help="random bearer tokens to write into DIR/tokens when it does not exist (default 1; 0: none)")
    ap.add_argument("--force", action="store_true", help="replace an existing CA and certificates in --out")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """`unitocom certs ...`: returns the exit status (0, or 1 with a message when --out already holds a CA)."""
    args = parser().parse_args(argv)
    try:
        written = make_certs(args.out, args.names, args.hosts, args.days, args.namespace, overwrite=args.force,
                             tokens=args.tokens)
    except FileExistsError as e:
        print(f"unitocom certs: {e}")
        return 1
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
