"""The supervisor behind `unitocom up`: restarts with backoff, gives up, and keeps `status` and `down` true.

The process tests run the channel alone (it starts in about a second) on free ports in a temporary run dir."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import free_consecutive
from unitocom import client, config, launcher
from unitocom.procs import alive
from unitocom.supervisor import Policy, after_exit, backoff_s, exit_text, read_state

FAST = Policy(backoff_initial_s=0.2, backoff_max_s=1.0, max_failures=3, stop_timeout_s=10.0)


def _cfg() -> config.Config:
    base = free_consecutive(6)
    return config.load("tiny").replace(transmitter_port=base, channel_port=base + 1, basestation_port=base + 2,
                                       metrics_base_port=base + 3)


def _channel(d) -> launcher.Proc:
    return next(p for p in launcher.load_state(d) if p.name == "channel")


def _wait(pred, timeout_s: float = 30.0, what: str = "condition"):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


# -- the policy, without processes ------------------------------------------------------------------------------

def test_backoff_doubles_from_half_a_second_to_ten():
    p = Policy()
    assert [backoff_s(n, p) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_quick_failures_back_off_then_fail_and_a_long_run_forgives():
    p = Policy(max_failures=3, stable_after_s=30.0)
    assert after_exit(0, -9, uptime_s=2.0, policy=p) == ("backoff", 1, 0.5)
    assert after_exit(1, 1, uptime_s=2.0, policy=p) == ("backoff", 2, 1.0)
    assert after_exit(2, 1, uptime_s=2.0, policy=p) == ("failed", 3, 0.0)
    assert after_exit(2, 1, uptime_s=31.0, policy=p) == ("backoff", 1, 0.5)  # stayed up: count starts again


def test_clean_exit_is_restarted_under_always_but_not_on_failure():
    assert after_exit(0, 0, 5.0, Policy())[0] == "backoff"
    assert after_exit(0, 0, 5.0, Policy(restart="on-failure"))[0] == "exited"
    assert after_exit(0, 2, 5.0, Policy(restart="on-failure"))[0] == "backoff"


def test_policy_and_exit_text():
    with pytest.raises(ValueError):
        Policy(restart="sometimes")
    assert (exit_text(-9), exit_text(-15), exit_text(2), exit_text(None)) == ("SIGKILL", "SIGTERM", "2", "-")


def test_extra_args_from_the_command_line():
    from unitocom.cli import _extra_args
    assert _extra_args(["channel=--log-level DEBUG", "all=--x 'a b'", "channel=--y"]) == {
        "channel": ["--log-level", "DEBUG", "--y"], "all": ["--x", "a b"]}
    with pytest.raises(ValueError, match="SERVICE=FLAGS"):
        _extra_args(["gateway=--x"])
    cfg = config.load("tiny")
    assert launcher.command("channel", cfg, "tiny", ["--tls-cert", "c.pem"])[-2:] == ["--tls-cert", "c.pem"]


# -- the supervisor and its services ----------------------------------------------------------------------------

def test_killed_service_is_restarted_and_status_shows_it(tmp_path):
    cfg = _cfg()
    launcher.up(cfg, "tiny", tmp_path, timeout_s=60, services=("channel",), policy=FAST, echo=lambda *_: None)
    try:
        first = _channel(tmp_path)
        assert first.state == "serving" and alive(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        again = _wait(lambda: (p := _channel(tmp_path)).state == "serving" and p.pid != first.pid and p,
                      what="the channel SERVING again")
        (row,) = launcher.status(tmp_path)
        assert row["pid"] == again.pid != first.pid and row["status"] == "SERVING"
        assert row["restarts"] == 1 and row["last_exit"] == -signal.SIGKILL and row["state"] == "serving"
        assert client.health(cfg.address("channel").grpc, launcher.GRPC_NAMES["channel"]) == "SERVING"
        out = subprocess.run([sys.executable, "-m", "unitocom.cli", "status", "--run-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60).stdout
        assert "SIGKILL" in out and str(again.pid) in out and "supervisor   running" in out
    finally:
        stopped = launcher.down(tmp_path)
    assert stopped == ["supervisor", "channel"]
    assert not alive(again.pid) and not (tmp_path / "state.json").exists()
    assert launcher.status(tmp_path) == [] and launcher.supervisor_status(tmp_path) is None


def test_restart_command_starts_a_new_process_without_backoff(tmp_path):
    launcher.up(_cfg(), "tiny", tmp_path, timeout_s=60, services=("channel",), policy=FAST, echo=lambda *_: None)
    try:
        first = _channel(tmp_path)
        p = launcher.restart(tmp_path, "channel", timeout_s=60)
        assert p.pid != first.pid and p.restarts == 1 and p.state == "serving" and p.failures == 0
        assert not alive(first.pid)
    finally:
        launcher.down(tmp_path)


def test_sigterm_to_the_supervisor_stops_its_services(tmp_path):
    launcher.up(_cfg(), "tiny", tmp_path, timeout_s=60, services=("channel",), policy=FAST, echo=lambda *_: None)
    sup, ch = read_state(tmp_path)["supervisor"]["pid"], _channel(tmp_path).pid
    os.kill(sup, signal.SIGTERM)
    _wait(lambda: not alive(sup), 20, "the supervisor to exit")
    assert not alive(ch)
    st = read_state(tmp_path)
    assert st["supervisor"]["state"] == "stopped" and st["supervisor"]["stopped"] == ["channel"]
    assert [r["status"] for r in launcher.status(tmp_path)] == ["STOPPED"]
    assert launcher.down(tmp_path) == []  # nothing left to stop, and it does not claim otherwise


def test_down_after_the_supervisor_was_killed_still_stops_the_service(tmp_path):
    launcher.up(_cfg(), "tiny", tmp_path, timeout_s=60, services=("channel",), policy=FAST, echo=lambda *_: None)
    sup, ch = read_state(tmp_path)["supervisor"]["pid"], _channel(tmp_path).pid
    os.kill(sup, signal.SIGKILL)
    _wait(lambda: not alive(sup), 10, "the supervisor to die")
    (row,) = launcher.status(tmp_path)
    assert row["state"] == "unsupervised" and row["status"] == "SERVING"
    assert launcher.supervisor_status(tmp_path)["running"] is False
    assert launcher.down(tmp_path) == ["channel"]
    assert not alive(ch)


@pytest.mark.parametrize("flags, code, says", [
    (["--no-such-flag"], 2, "unrecognized arguments: --no-such-flag"),
    (["--preset", "nosuch"], 1, "unknown preset 'nosuch'"),  # appended flags override the launcher's
])
def test_a_service_that_cannot_start_is_retried_with_backoff_then_failed(tmp_path, flags, code, says):
    with pytest.raises(RuntimeError) as e:
        launcher.up(_cfg(), "tiny", tmp_path, timeout_s=60, services=("channel",), policy=FAST,
                    extra_args={"channel": flags}, echo=lambda *_: None)
    msg = str(e.value)
    assert f"channel cannot start: it exited 3 times in a row (last exit {code})" in msg
    assert says in msg  # the tail of its log
    log = (tmp_path / "logs/supervisor.log").read_text()
    assert "restarting in 0.2 s" in log and "restarting in 0.4 s" in log
    assert "failed after 3 quick failures in a row; not restarted" in log
    assert not (tmp_path / "state.json").exists()  # up cleaned up after itself


def test_cli_up_fails_clearly_and_down_reports_nothing(tmp_path):
    cfg = _cfg()
    base = str(cfg.transmitter_port)
    run = ["--run-dir", str(tmp_path)]
    r = subprocess.run([sys.executable, "-m", "unitocom.cli", "up", "--base-port", base, "--metrics-base-port",
                        str(cfg.metrics_base_port), "--extra-args", "all=--no-such-flag", "--max-failures", "1",
                        *run], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "cannot start" in r.stderr and "--no-such-flag" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "unitocom.cli", "down", *run], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "stopped: nothing was running" in r.stdout
    assert json.loads(subprocess.run([sys.executable, "-m", "unitocom.cli", "status", "--json", *run],
                                     capture_output=True, text=True, timeout=60).stdout) == {"services": []}


def test_up_says_which_port_is_taken_before_starting_anything(tmp_path):
    """A port held by another process (here a listening socket) is named at once, not found by the service
    exiting five times during start-up (what a CI run once saw when a fixed port was some connection's end)."""
    import socket

    from unitocom import ports
    cfg = _cfg()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", cfg.metrics_base_port + 1))  # the channel's /metrics port
        holder.listen()
        assert ports.taken([cfg.channel_port, cfg.metrics_base_port + 1]) == [cfg.metrics_base_port + 1]
        with pytest.raises(RuntimeError, match=rf"port in use on 127.0.0.1: {cfg.metrics_base_port + 1} "
                                               r"\(channel /metrics\)"):
            launcher.up(cfg, "tiny", tmp_path, timeout_s=30, echo=lambda *_: None, services=["channel"])
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "logs").exists()  # nothing was started
    base = ports.free_block(4)
    assert ports.taken(range(base, base + 4)) == []
    # under the range the kernel hands to outgoing connections, which could take a port before a server binds it
    first, last = ports.ephemeral_range()
    assert 1024 < first <= last and ports.LOWEST <= base and base + 4 <= first
