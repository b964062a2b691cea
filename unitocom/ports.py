"""Local TCP ports: which of a service set's ports are taken, and a free block to run one on.

Ports in the kernel's ephemeral range (Linux: 32768..60999) can be taken at any moment by the client end of an
outgoing connection, so scripts that start services beside other work (tests, `scripts/gpu_check.sh`) ask for a
free block below that range instead of naming one. Nothing here holds the ports: another server can still take one
between the check and the bind, which is why `launcher.up` checks again and says which port is taken."""
from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from pathlib import Path

LOWEST = 10000  # free blocks start at or above this: under it are the well-known and registered services' ports


def ephemeral_range() -> tuple[int, int]:
    """(first, last) of the ports the kernel hands out itself (bind to port 0, a client's end of a connection)."""
    try:
        first, last = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return first, last
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def taken(ports: Iterable[int], host: str = "127.0.0.1") -> list[int]:
    """The ports of `ports` that cannot be bound on `host` now (a listening server or a connection's end).

    SO_REUSEADDR as servers set it (gRPC, http.server), so a port left in TIME_WAIT counts as free."""
    out = []
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                out.append(port)
    return out


def free_block(n: int, host: str = "127.0.0.1", tries: int = 50) -> int:
    """A base port b such that b .. b+n-1 are all free on `host` now, drawn at random under the kernel's ephemeral
    range (so that no outgoing connection takes one before the services bind it; random, so that parallel test
    workers rarely draw the same block). Where that range leaves no room under it, the kernel picks b.

    Raises RuntimeError after `tries` draws none of which had n free ports."""
    first, _ = ephemeral_range()
    pick = random.SystemRandom()
    for _ in range(tries):
        if first - n > LOWEST:
            base = pick.randrange(LOWEST, first - n + 1)
        else:
            with socket.socket() as s:
                s.bind((host, 0))
                base = s.getsockname()[1]
        if base + n <= 65536 and not taken(range(base, base + n), host):
            return base
    raise RuntimeError(f"no block of {n} free ports on {host} after {tries} tries")


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(description="Print a base port b with b .. b+N-1 free on the host now "
                                            "(for scripts that start the services beside other work).")
    p.add_argument("n", type=int, help="how many consecutive ports")
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args(argv)
    print(free_block(a.n, a.host))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
