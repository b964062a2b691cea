"""Local processes that `unitocom up` starts (the services, Prometheus, the gateway): is one alive, stop some."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process still answers kill(0): reap it if it is ours
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop(proc, timeout_s: float) -> None:
    """Stop a subprocess.Popen this process started: SIGTERM (it drains), SIGKILL after `timeout_s`, reaped."""
    import subprocess
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def terminate(pids: Iterable[int], timeout_s: float) -> None:
    """SIGTERM all (they drain), then SIGKILL whatever is still running after `timeout_s`."""
    pids = list(pids)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
