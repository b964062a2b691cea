"""`unitocom up / down / status`: the three services as local processes on loopback.

State (pids, addresses, log files) lives in a run directory, `$UNITOCOM_RUN_DIR` or `~/.cache/unitocom/run`,
so that `down` and `status` find what `up` started from any shell.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from unitocom import client
from unitocom.config import Config
from unitocom.procs import alive, terminate

ORDER = ("basestation", "channel", "transmitter")  # next hops first, so each finds its peer
GRPC_NAMES = {"transmitter": "unitocom.v1.Transmitter", "channel": "unitocom.v1.Channel",
              "basestation": "unitocom.v1.BaseStation"}


def run_dir(path: str | None = None) -> pathlib.Path:
    p = pathlib.Path(path or os.environ.get("UNITOCOM_RUN_DIR") or pathlib.Path.home() / ".cache/unitocom/run")
    p.mkdir(parents=True, exist_ok=True)
    return p


@dataclass
class Proc:
    name: str
    pid: int
    grpc: str
    metrics: str
    log: str


def _state_file(d: pathlib.Path) -> pathlib.Path:
    return d / "state.json"


def load_state(d: pathlib.Path) -> list[Proc]:
    f = _state_file(d)
    if not f.exists():
        return []
    return [Proc(**p) for p in json.loads(f.read_text())["services"]]


def command(name: str, cfg: Config, preset: str) -> list[str]:
    a = cfg.address(name)
    cmd = [sys.executable, "-m", f"services.{name}.server", "--preset", preset, "--host", a.host,
           "--port", str(a.port), "--metrics-port", str(a.metrics_port),
           "--max-message-bytes", str(cfg.limits.max_message_bytes)]
    if name == "transmitter":
        cmd += ["--channel", cfg.address("channel").grpc]
    if name == "channel":
        cmd += ["--basestation", cfg.address("basestation").grpc]
    return cmd


def up(cfg: Config, preset: str, d: pathlib.Path, timeout_s: float = 120.0, echo=print) -> list[Proc]:
    """Start the services, wait until every one reports SERVING, return them. Raises RuntimeError on failure."""
    running = [p for p in load_state(d) if alive(p.pid)]
    if running:
        raise RuntimeError(f"services already running from {d} (pids {[p.pid for p in running]}): "
                           "run `unitocom down` first")
    logs = d / "logs"
    logs.mkdir(exist_ok=True)
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    procs = []
    for name in ORDER:
        a = cfg.address(name)
        log = logs / f"{name}.log"
        with open(log, "wb") as fh:
            p = subprocess.Popen(command(name, cfg, preset), stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=root, env=env, start_new_session=True)
        procs.append(Proc(name, p.pid, a.grpc, a.metrics_url, str(log)))
    _state_file(d).write_text(json.dumps({"services": [asdict(p) for p in procs]}, indent=2))
    deadline = time.monotonic() + timeout_s
    for p in procs:
        while True:
            status = client.health(p.grpc, GRPC_NAMES[p.name])
            if status == "SERVING":
                echo(f"  {p.name:12s} SERVING  grpc {p.grpc}  metrics {p.metrics}")
                break
            if not alive(p.pid):
                down(d)
                tail = pathlib.Path(p.log).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{p.name} exited during start-up; last log lines:\n{tail}")
            if time.monotonic() > deadline:
                down(d)
                raise RuntimeError(f"{p.name} not SERVING after {timeout_s:.0f} s (last: {status}); see {p.log}")
            time.sleep(0.2)
    return procs


def down(d: pathlib.Path, timeout_s: float = 15.0) -> list[str]:
    """SIGTERM every service (they drain), SIGKILL what is left after `timeout_s`; return the names stopped."""
    from unitocom import sidecars
    stopped_sidecars = sidecars.stop(d)  # Prometheus / gateway from `up --with-prometheus / --with-gateway`
    procs = load_state(d)
    terminate([p.pid for p in procs], timeout_s)
    _state_file(d).unlink(missing_ok=True)
    return [p.name for p in procs] + stopped_sidecars


def status(d: pathlib.Path) -> list[dict]:
    out = []
    for p in load_state(d):
        health = client.health(p.grpc, GRPC_NAMES[p.name]) if alive(p.pid) else "STOPPED"
        out.append({"name": p.name, "grpc": p.grpc, "metrics": p.metrics, "status": health, "pid": p.pid,
                    "log": p.log})
    return out
