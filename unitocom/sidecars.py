"""Processes that `unitocom up` may start beside the three services: a Prometheus server and the HTTP gateway.

They live in the same run directory (`sidecars.json` beside the services' `state.json`) so that `unitocom down`
stops them too, from any shell.
"""
from __future__ import annotations

import json
import os
import pathlib
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from unitocom.procs import alive, terminate

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclass
class Sidecar:
    name: str
    pid: int
    url: str  # where it answers HTTP
    log: str


def _state_file(d: pathlib.Path) -> pathlib.Path:
    return d / "sidecars.json"


def load(d: pathlib.Path) -> list[Sidecar]:
    f = _state_file(d)
    if not f.exists():
        return []
    return [Sidecar(**s) for s in json.loads(f.read_text())["sidecars"]]


def _save(d: pathlib.Path, items: list[Sidecar]) -> None:
    _state_file(d).write_text(json.dumps({"sidecars": [asdict(s) for s in items]}, indent=2))


def http_ok(url: str, timeout_s: float = 1.0, cafile: str | None = None) -> bool:
    """GET `url` answers 2xx; `cafile`: the CA an https:// URL's certificate must chain to."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def spawn(d: pathlib.Path, name: str, cmd: list[str], url: str, ready_path: str, timeout_s: float = 60.0,
          env: dict | None = None, cafile: str | None = None) -> Sidecar:
    """Start `cmd`, record it, wait until GET url+ready_path answers 2xx. RuntimeError (with the log's tail) when it
    exits or does not get ready in time; it is then stopped and forgotten."""
    if any(s.name == name and alive(s.pid) for s in load(d)):
        raise RuntimeError(f"{name} already running from {d}: run `unitocom down` first")
    logs = d / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with open(log, "wb") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                             env=env, start_new_session=True)
    sc = Sidecar(name, p.pid, url, str(log))
    _save(d, [s for s in load(d) if s.name != name] + [sc])
    deadline = time.monotonic() + timeout_s
    while not http_ok(url + ready_path, cafile=cafile):
        if p.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {p.returncode}" if p.poll() is not None else f"not ready after {timeout_s:.0f} s"
            stop(d, name)
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} {why}; last log lines:\n{tail}")
        time.sleep(0.2)
    return sc


def stop(d: pathlib.Path, name: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """SIGTERM the named sidecar (all when None), SIGKILL after `timeout_s`; return the names stopped."""
    items = load(d)
    chosen = [s for s in items if name is None or s.name == name]
    terminate([s.pid for s in chosen], timeout_s)
    rest = [s for s in items if s not in chosen]
    if rest:
        _save(d, rest)
    else:
        _state_file(d).unlink(missing_ok=True)
    return [s.name for s in chosen]


def status(d: pathlib.Path) -> list[dict]:
    return [{"name": s.name, "url": s.url, "pid": s.pid, "log": s.log,
             "status": "RUNNING" if alive(s.pid) else "STOPPED"} for s in load(d)]


def start_gateway(d: pathlib.Path, transmitter: str, host: str = "127.0.0.1", port: int = 8080,
                  prometheus_url: str = "", timeout_s: float = 60.0, tls_dir: str | None = None,
                  token_file: str | None = None) -> Sidecar:
    """The HTTP gateway (services/gateway) in front of the transmitter at `transmitter`. With `tls_dir` (from
    `unitocom certs`) it serves HTTPS and calls the transmitter over TLS; `token_file`: the bearer token it sends."""
    cmd = [sys.executable, "-m", "services.gateway.server", "--host", host, "--port", str(port),
           "--transmitter", transmitter]
    if prometheus_url:
        cmd += ["--prometheus-url", prometheus_url]
    if tls_dir:
        cmd += ["--tls-dir", str(tls_dir)]
    if token_file:
        cmd += ["--auth-token-file", str(token_file)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    scheme = "https" if tls_dir else "http"
    cafile = str(pathlib.Path(tls_dir) / "ca.pem") if tls_dir else None
    return spawn(d, "gateway", cmd, f"{scheme}://{host}:{port}", "/healthz", timeout_s, env, cafile=cafile)
