"""The supervisor that `unitocom up` leaves running: it starts the services, restarts one that exits with
exponential backoff, gives up on one that keeps failing, and keeps `state.json` in the run directory true to
the processes that run (pid, state, restarts, last exit), so that `unitocom status` and `down` can trust it.

    python -m unitocom.supervisor --run-dir D

`D/state.json` is the plan written by `unitocom.launcher.up` (each service's command line, log file, health
name, and the restart policy); from then on only this process writes it (atomically: readers never see half a
file). SIGTERM or SIGINT stops the services (SIGTERM, they drain; SIGKILL after the policy's stop timeout) and
then the supervisor; the final state names what it stopped. SIGUSR1 asks it to restart the services named in
`D/restart/` (`unitocom restart SERVICE`) right away, not counted as a failure.

A service's states: starting (process running, health not yet SERVING), serving, backoff (exited, waiting to
be started again), failed (exited `max_failures` times in a row, each within `stable_after_s` of its start:
not started again), exited (exited 0 under the `on-failure` policy), stopped (stopped by the supervisor).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

STATE_FILE = "state.json"
RESTART_DIR = "restart"  # `unitocom restart NAME` leaves an empty file NAME here, then sends SIGUSR1
TICK_S = 0.05  # main loop period; health is polled at this rate while a service starts


@dataclass(frozen=True)
class Policy:
    """When and how often a service that exits is started again. Times in seconds."""
    backoff_initial_s: float = 0.5  # wait before the first restart after a quick failure
    backoff_max_s: float = 10.0  # the doubling stops here
    stable_after_s: float = 30.0  # a run this long resets the count of quick failures (and the backoff)
    max_failures: int = 5  # this many quick failures in a row: marked failed, not started again
    stop_timeout_s: float = 15.0  # SIGTERM, then SIGKILL after this long (services drain for their grace_s)
    restart: str = "always"  # "always": any exit the supervisor did not ask for; "on-failure": non-zero only

    def __post_init__(self):
        if self.restart not in ("always", "on-failure"):
            raise ValueError(f"restart policy must be 'always' or 'on-failure', got {self.restart!r}")
        if self.max_failures < 1 or self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"bad restart policy {self}")


def backoff_s(failures: int, policy: Policy) -> float:
    """Seconds to wait before restarting after the `failures`-th quick failure in a row (1, 2, ...)."""
    return min(policy.backoff_initial_s * 2 ** max(failures - 1, 0), policy.backoff_max_s)


def after_exit(failures: int, code: int, uptime_s: float, policy: Policy) -> tuple[str, int, float]:
    """What to do when a service exits by itself with `code` after `uptime_s` seconds, given its count of quick
    failures so far: (next state, new failure count, seconds to wait before the restart)."""
    if code == 0 and policy.restart == "on-failure":
        return "exited", failures, 0.0
    failures = 1 if uptime_s >= policy.stable_after_s else failures + 1  # a long run forgives the past
    if failures >= policy.max_failures:
        return "failed", failures, 0.0
    return "backoff", failures, backoff_s(failures, policy)


def exit_text(code: int | None) -> str:
    """A return code as people read it: -9 is 'SIGKILL', None is '-'."""
    if code is None:
        return "-"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


def health_tls(d: pathlib.Path):
    """The client TLS a health check of the stack started from run directory `d` needs (its "client"
    certificate: the channel and the base station want one from the CA at the handshake); None for plaintext or
    when nothing was started."""
    tls_dir = (read_state(d) or {}).get("tls_dir")
    if not tls_dir:
        return None
    from unitocom import client
    return client.Tls.from_dir(tls_dir, "client")


def read_state(d: pathlib.Path) -> dict | None:
    f = pathlib.Path(d) / STATE_FILE
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        return None


def write_state(d: pathlib.Path, state: dict) -> None:
    """Atomically: write a temporary file beside it, then rename (readers see the old or the new file)."""
    f = pathlib.Path(d) / STATE_FILE
    tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, f)


@dataclass
class Service:
    """One supervised service: its plan (from the launcher) and what the supervisor knows of it now."""
    name: str
    argv: list[str]
    grpc: str
    metrics: str
    log: str
    health_name: str  # the gRPC service name its health check reports on
    extra_args: list[str] = field(default_factory=list)  # already in argv; kept to show what was added
    pid: int | None = None
    state: str = "pending"
    restarts: int = 0  # times started again after the first start
    failures: int = 0  # quick failures in a row
    last_exit: int | None = None  # return code of the last exit (negative: killed by that signal)
    retry_in_s: float | None = None  # in backoff: the wait before the next start
    started_at: float | None = None  # unix time of the current process's start
    serving_at: float | None = None  # unix time it first reported SERVING

    @classmethod
    def from_record(cls, rec: dict) -> "Service":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in rec.items() if k in known})


class Supervisor:
    def __init__(self, d: pathlib.Path):
        self.d = pathlib.Path(d)
        plan = read_state(self.d)
        if plan is None:
            raise SystemExit(f"supervisor: no {STATE_FILE} in {self.d}: `unitocom up` writes it")
        self.policy = Policy(**plan.get("policy", {}))
        self.services = [Service.from_record(r) for r in plan["services"]]
        self.extra = {k: v for k, v in plan.items() if k not in ("policy", "services", "supervisor")}
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_mono: dict[str, float] = {}
        self.next_start: dict[str, float] = {}  # monotonic time of a start waiting in backoff
        self.stop_event = threading.Event()
        self.restart_event = threading.Event()
        self.state = "running"
        self.stopped: list[str] = []
        self.restart_requested: set[str] = set()  # SIGTERMed by `unitocom restart`: start again at once
        self.root = pathlib.Path(__file__).resolve().parents[1]

    # -- state file ------------------------------------------------------------------------------------------
    def save(self) -> None:
        write_state(self.d, {
            "supervisor": {"pid": os.getpid(), "state": self.state, "log": str(self.d / "logs/supervisor.log"),
                           "stopped": self.stopped},
            "policy": asdict(self.policy), **self.extra,
            "services": [asdict(s) for s in self.services]})

    def say(self, msg: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor {msg}", flush=True)

    # -- processes -------------------------------------------------------------------------------------------
    def start(self, s: Service) -> None:
        with open(s.log, "ab") as fh:
            fh.write(f"--- supervisor: starting {s.name} (start {s.restarts + 1}) at "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            fh.flush()
            p = subprocess.Popen(s.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=self.root, start_new_session=True)
        self.procs[s.name] = p
        self.started_mono[s.name] = time.monotonic()
        s.pid, s.state, s.retry_in_s = p.pid, "starting", None
        s.started_at, s.serving_at = time.time(), None
        self.say(f"started {s.name} pid {p.pid}")

    def tick(self, s: Service, now: float) -> bool:
        """Advance one service's state; True when something changed that the state file must show."""
        p = self.procs.get(s.name)
        if s.state == "backoff" and now >= self.next_start[s.name]:
            s.restarts += 1
            self.start(s)
            return True
        if p is None or s.state not in ("starting", "serving"):
            return False
        code = p.poll()
        if code is not None:
            uptime = now - self.started_mono[s.name]
            s.last_exit, s.pid = code, None
            del self.procs[s.name]
            if s.name in self.restart_requested:  # asked for: start again now, not a failure
                self.restart_requested.discard(s.name)
                s.restarts += 1
                self.say(f"{s.name} exited {exit_text(code)} after {uptime:.1f} s as asked; starting it again")
                self.start(s)
                return True
            s.state, s.failures, wait = after_exit(s.failures, code, uptime, self.policy)
            if s.state == "backoff":
                s.retry_in_s = wait
                self.next_start[s.name] = now + wait
                self.say(f"{s.name} exited {exit_text(code)} after {uptime:.1f} s (quick failure {s.failures} of "
                         f"{self.policy.max_failures}); restarting in {wait:.1f} s")
            else:
                self.say(f"{s.name} exited {exit_text(code)} after {uptime:.1f} s: {s.state}"
                         + (f" after {s.failures} quick failures in a row; not restarted" if s.state == "failed"
                            else " (restart policy on-failure)"))
            return True
        if s.failures and now - self.started_mono[s.name] >= self.policy.stable_after_s:
            s.failures = 0  # it stayed up: the next failure starts the backoff from the beginning again
            return True
        if s.state == "starting" and self._health(s) == "SERVING":
            s.state, s.serving_at = "serving", time.time()
            self.say(f"{s.name} SERVING (pid {s.pid}, {now - self.started_mono[s.name]:.1f} s after start)")
            return True
        return False

    def _health(self, s: Service) -> str:
        from unitocom import client  # grpc: imported once the plan is read, so a bad plan fails fast
        if not hasattr(self, "_tls"):
            self._tls = health_tls(self.d)
        return client.health(s.grpc, s.health_name, timeout_s=0.5, tls=self._tls)

    def take_restart_requests(self) -> None:
        """`unitocom restart NAME`: SIGTERM that service now; `tick` starts it again without a backoff."""
        rdir = self.d / RESTART_DIR
        for f in sorted(rdir.glob("*")) if rdir.is_dir() else []:
            f.unlink(missing_ok=True)
            s = next((s for s in self.services if s.name == f.name), None)
            if s is None:
                continue
            p = self.procs.get(s.name)
            if p is not None and p.poll() is None:
                self.restart_requested.add(s.name)
                p.send_signal(signal.SIGTERM)
                self.say(f"restart of {s.name} asked: SIGTERM to pid {p.pid}")
            else:  # in backoff, failed or exited: start it now with a clean slate
                s.failures, s.restarts = 0, s.restarts + 1
                self.start(s)

    def stop_all(self) -> None:
        """SIGTERM every running service (they drain), SIGKILL what is left after the stop timeout."""
        self.state = "stopping"
        running = {n: p for n, p in self.procs.items() if p.poll() is None}
        self.save()
        for n, p in running.items():
            self.say(f"stopping {n} pid {p.pid} (SIGTERM)")
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_timeout_s
        for n, p in running.items():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{n} pid {p.pid} still running after {self.policy.stop_timeout_s:.0f} s: SIGKILL")
                p.kill()
                p.wait()
        for s in self.services:
            p = self.procs.pop(s.name, None)
            if p is not None:
                s.last_exit = p.returncode
            if s.name in running:
                self.stopped.append(s.name)
            if s.state not in ("failed", "exited") or s.name in running:
                s.state = "stopped"
            s.pid, s.retry_in_s = None, None
        self.state = "stopped"
        self.save()
        self.say(f"stopped: {', '.join(self.stopped) or 'nothing was running'}")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGUSR1, lambda *_: self.restart_event.set())
        self.say(f"pid {os.getpid()}, run dir {self.d}, policy {self.policy}")
        try:
            for s in self.services:
                self.start(s)
            self.save()
            while not self.stop_event.is_set():
                if self.restart_event.is_set():
                    self.restart_event.clear()
                    self.take_restart_requests()
                    self.save()
                now = time.monotonic()
                if any([self.tick(s, now) for s in self.services]):  # a list: tick every service
                    self.save()
                self.stop_event.wait(TICK_S)
        finally:  # stop requested, or the supervisor itself broke: never leave services behind unsupervised
            self.stop_all()
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="the run directory holding state.json (the plan)")
    args = ap.parse_args(argv)
    return Supervisor(pathlib.Path(args.run_dir)).run()


if __name__ == "__main__":
    sys.exit(main())
