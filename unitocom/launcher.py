"""`unitocom up / down / status / restart`: the three services as local processes on loopback, supervised.

`up` writes the plan (each service's command line from `command`, its log, the restart policy) to the run
directory, `$UNITOCOM_RUN_DIR` or `~/.cache/unitocom/run`, and starts `python -m unitocom.supervisor`, which
starts the services, restarts one that exits (with backoff) and keeps `state.json` true. `down` and `status`
read that file from any shell; `down` stops the supervisor first, so that it does not restart what is being
stopped.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

from unitocom import client, ports
from unitocom.config import Config
from unitocom.procs import alive, stop as stop_process, terminate
from unitocom.supervisor import RESTART_DIR, Policy, exit_text, health_tls, read_state, write_state

ORDER = ("basestation", "channel", "transmitter")  # next hops first, so each finds its peer
GRPC_NAMES = {"transmitter": "unitocom.v1.Transmitter", "channel": "unitocom.v1.Channel",
              "basestation": "unitocom.v1.BaseStation"}
ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_dir(path: str | None = None) -> pathlib.Path:
    p = pathlib.Path(path or os.environ.get("UNITOCOM_RUN_DIR") or pathlib.Path.home() / ".cache/unitocom/run")
    p.mkdir(parents=True, exist_ok=True)
    return p


@dataclass
class Proc:
    """A service as `state.json` records it (the supervisor's fields: see unitocom.supervisor.Service)."""
    name: str
    pid: int | None
    grpc: str
    metrics: str
    log: str
    state: str = "pending"
    restarts: int = 0
    failures: int = 0  # quick failures in a row
    last_exit: int | None = None
    extra_args: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, rec: dict) -> "Proc":
        known = {f.name for f in fields(cls)}
        p = cls(**{"pid": None, **{k: v for k, v in rec.items() if k in known}})  # the plan has no pid yet
        p.extra_args = tuple(p.extra_args)
        return p


def load_state(d: pathlib.Path) -> list[Proc]:
    st = read_state(d)
    return [Proc.from_record(p) for p in st["services"]] if st else []


def supervisor_pid(d: pathlib.Path) -> int | None:
    """The supervisor's pid when it is running, else None."""
    st = read_state(d)
    pid = (st or {}).get("supervisor", {}).get("pid")
    return pid if pid and alive(pid) and _is_supervisor(pid) else None


def _is_supervisor(pid: int) -> bool:
    """False when the recorded pid now belongs to another program (pids are reused): never signal that one."""
    try:
        return b"unitocom.supervisor" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # exited meanwhile
        return False
    except OSError:  # no /proc (not Linux): trust the pid
        return True


def command(name: str, cfg: Config, preset: str, extra_args: Sequence[str] = ()) -> list[str]:
    """The one place that builds a service's command line; `extra_args` (e.g. TLS flags, --log-level DEBUG) are
    appended last, so they override the flags before them."""
    a = cfg.address(name)
    cmd = [sys.executable, "-m", f"services.{name}.server", "--preset", preset, "--host", a.host,
           "--port", str(a.port), "--metrics-port", str(a.metrics_port),
           "--max-message-bytes", str(cfg.limits.max_message_bytes)]
    if name == "transmitter":
        cmd += ["--channel", cfg.address("channel").grpc]
    if name == "channel":
        cmd += ["--basestation", cfg.address("basestation").grpc]
    return cmd + list(extra_args)


def _tail(path: str | pathlib.Path, n_chars: int = 2000) -> str:
    try:
        return pathlib.Path(path).read_text(errors="replace")[-n_chars:]
    except OSError as e:
        return f"(cannot read {path}: {e})"


def tls_flags(name: str, tls_dir: str | None, auth_tokens: str | None) -> list[str]:
    """A service's security flags: every hop mutual TLS with `tls_dir` (from `unitocom certs`), and the
    transmitter (the public entry) bearer tokens from `auth_tokens` (default: the certs directory's `tokens`)."""
    if not tls_dir:
        return []
    flags = ["--tls-dir", str(tls_dir)]
    if name == "transmitter":
        tokens = auth_tokens or str(pathlib.Path(tls_dir) / "tokens")
        flags += ["--auth-tokens", tokens]
    return flags


def up(cfg: Config, preset: str, d: pathlib.Path, timeout_s: float = 120.0, echo=print,
       extra_args: Mapping[str, Sequence[str]] | None = None, policy: Policy | None = None,
       services: Sequence[str] = ORDER, tls_dir: str | None = None, auth_tokens: str | None = None) -> list[Proc]:
    """Start the supervisor, which starts the services; wait until every one reports SERVING, return them.

    `services`: a subset of ORDER to run alone (tests start the channel, which starts in about a second).

    `extra_args`: flags appended to a service's command line, by service name ("all": to every service).
    `tls_dir`: run every hop with mutual TLS and the transmitter with bearer tokens (`tls_flags`).
    Raises RuntimeError (with the tail of the failing service's log) when a service is marked failed (it kept
    exiting during start-up), the supervisor dies, or `timeout_s` passes; what was started is then stopped."""
    if supervisor_pid(d) or any(p.pid and alive(p.pid) for p in load_state(d)):
        running = [p.pid for p in load_state(d) if p.pid and alive(p.pid)]
        raise RuntimeError(f"services already running from {d} (supervisor {supervisor_pid(d)}, pids {running}): "
                           "run `unitocom down` first")
    extra_args = dict(extra_args or {})
    unknown = set(extra_args) - set(ORDER) - {"all"}
    unknown |= set(services) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; expected {list(ORDER)} (extra_args also: 'all')")
    addrs = [cfg.address(n) for n in ORDER if n in services]
    wanted = {**{a.port: f"{a.name} gRPC" for a in addrs}, **{a.metrics_port: f"{a.name} /metrics" for a in addrs}}
    busy = [f"{port} ({wanted[port]})" for port in ports.taken(wanted, cfg.host)]
    if busy:  # said now, not as a service that exits five times during start-up
        raise RuntimeError(f"port{'s' if len(busy) > 1 else ''} in use on {cfg.host}: {', '.join(busy)}; stop what "
                           "holds them or start on others (`unitocom up --base-port B --metrics-base-port M`; "
                           "`python -m unitocom.ports 3` prints a free block)")
    policy = policy or Policy()
    logs = d / "logs"
    logs.mkdir(exist_ok=True)
    plan = []
    for name in (n for n in ORDER if n in services):
        a = cfg.address(name)
        extra = [*tls_flags(name, tls_dir, auth_tokens), *extra_args.get("all", ()), *extra_args.get(name, ())]
        log = logs / f"{name}.log"
        log.write_bytes(b"")  # a fresh log per `up`; the supervisor appends one per restart
        plan.append({"name": name, "argv": command(name, cfg, preset, extra), "grpc": a.grpc,
                     "metrics": a.metrics_url, "log": str(log), "health_name": GRPC_NAMES[name],
                     "extra_args": extra})
    write_state(d, {"supervisor": {"pid": None, "state": "starting"}, "policy": asdict(policy),
                    "preset": preset, "services": plan,
                    "tls_dir": str(pathlib.Path(tls_dir).resolve()) if tls_dir else None})
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(logs / "supervisor.log", "wb") as fh:
        sup = subprocess.Popen([sys.executable, "-m", "unitocom.supervisor", "--run-dir", str(d)], stdout=fh,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
                               start_new_session=True)  # outlives this shell; services are its children
    try:
        return _wait_serving(d, sup, timeout_s, echo)
    except BaseException:  # failed, timed out or interrupted: leave nothing running
        stop_process(sup, policy.stop_timeout_s + 5.0)  # by its Popen: it may not have recorded its pid yet
        down(d)  # whatever the supervisor left (it recorded the services' pids)
        raise


def _wait_serving(d: pathlib.Path, sup: subprocess.Popen, timeout_s: float, echo) -> list[Proc]:
    deadline = time.monotonic() + timeout_s
    tls = health_tls(d)
    shown: set[str] = set()
    seen_exits: dict[str, int] = {}
    while True:
        if sup.poll() is not None:
            raise RuntimeError(f"the supervisor exited with {exit_text(sup.returncode)}; last lines of "
                               f"{d / 'logs/supervisor.log'}:\n{_tail(d / 'logs/supervisor.log')}")
        procs = load_state(d)
        for p in procs:
            if p.state == "failed":
                raise RuntimeError(f"{p.name} cannot start: it exited {p.failures} times in a row (last exit "
                                   f"{exit_text(p.last_exit)}); last lines of {p.log}:\n{_tail(p.log)}")
            if p.state == "backoff" and seen_exits.get(p.name) != p.restarts:
                seen_exits[p.name] = p.restarts
                echo(f"  {p.name:12s} exited {exit_text(p.last_exit)} during start-up; the supervisor retries it")
            if p.name not in shown and p.state == "serving" and \
                    client.health(p.grpc, GRPC_NAMES[p.name], tls=tls) == "SERVING":
                shown.add(p.name)
                echo(f"  {p.name:12s} SERVING  pid {p.pid}  grpc {p.grpc}  metrics {p.metrics}")
        if procs and len(shown) == len(procs):
            return procs
        if time.monotonic() > deadline:
            late = [p for p in procs if p.name not in shown]
            raise RuntimeError("not SERVING after {:.0f} s: {}; see the logs in {}".format(
                timeout_s, ", ".join(f"{p.name} ({p.state})" for p in late), d / "logs"))
        time.sleep(0.1)


def down(d: pathlib.Path, timeout_s: float = 15.0) -> list[str]:
    """Stop the supervisor (it SIGTERMs the services, which drain, and SIGKILLs what is left after its stop
    timeout), then any service still running (a supervisor that was killed leaves its services behind), then
    the sidecars. Returns the names of what was running and is now stopped, nothing else."""
    from unitocom import sidecars
    stopped_sidecars = sidecars.stop(d)  # Prometheus / gateway from `up --with-prometheus / --with-gateway`
    stopped: list[str] = []
    sup = supervisor_pid(d)
    if sup:
        os.kill(sup, signal.SIGTERM)
        policy_timeout = Policy(**(read_state(d) or {}).get("policy", {})).stop_timeout_s
        end = time.monotonic() + policy_timeout + 5.0
        while alive(sup) and time.monotonic() < end:
            time.sleep(0.05)
        if alive(sup):
            os.kill(sup, signal.SIGKILL)
        stopped.append("supervisor")
        stopped += (read_state(d) or {}).get("supervisor", {}).get("stopped", [])
    left = [p for p in load_state(d) if p.pid and alive(p.pid)]
    terminate([p.pid for p in left], timeout_s)
    stopped += [p.name for p in left if p.name not in stopped]
    (d / "state.json").unlink(missing_ok=True)
    return stopped + stopped_sidecars


def restart(d: pathlib.Path, name: str, timeout_s: float = 120.0) -> Proc:
    """Ask the supervisor to restart one service now (SIGTERM, it drains, started again without backoff);
    wait until the new process reports SERVING and return it."""
    sup = supervisor_pid(d)
    if not sup:
        raise RuntimeError(f"no supervisor running from {d}: run `unitocom up`")
    old = {p.name: p for p in load_state(d)}
    if name not in old:
        raise ValueError(f"unknown service {name!r}; expected one of {sorted(old)}")
    (d / RESTART_DIR).mkdir(exist_ok=True)
    (d / RESTART_DIR / name).touch()
    os.kill(sup, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        p = next(p for p in load_state(d) if p.name == name)
        if p.restarts > old[name].restarts and p.state == "serving":
            return p
        if p.state == "failed":
            raise RuntimeError(f"{name} failed to start again; last lines of {p.log}:\n{_tail(p.log)}")
        time.sleep(0.1)
    raise RuntimeError(f"{name} not SERVING again after {timeout_s:.0f} s")


def status(d: pathlib.Path) -> list[dict]:
    """One row per service: health now (STOPPED when its process is gone) and what the supervisor recorded.
    Without a running supervisor the recorded state is stale: it reads `unsupervised` or `stopped`."""
    supervised = supervisor_pid(d) is not None
    tls = health_tls(d)
    preset = (read_state(d) or {}).get("preset")
    out = []
    for p in load_state(d):
        running = bool(p.pid) and alive(p.pid)
        health = client.health(p.grpc, GRPC_NAMES[p.name], tls=tls) if running else "STOPPED"
        state = p.state if supervised else ("unsupervised" if running else "stopped")
        out.append({"name": p.name, "preset": preset, "grpc": p.grpc, "metrics": p.metrics, "status": health,
                    "pid": p.pid if running else None, "state": state, "restarts": p.restarts,
                    "last_exit": p.last_exit, "extra_args": list(p.extra_args), "log": p.log})
    return out


def supervisor_status(d: pathlib.Path) -> dict | None:
    """{"pid", "running", "state", "log"} of the supervisor, or None when nothing was started."""
    st = read_state(d)
    if st is None:
        return None
    sup = st.get("supervisor", {})
    pid = sup.get("pid")
    running = bool(pid) and alive(pid)
    return {"pid": pid, "running": running, "state": sup.get("state") if running else "not running",
            "log": sup.get("log")}
