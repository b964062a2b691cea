"""A service whose warm-up fails or hangs exits non-zero, and never opens its port meanwhile."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import free_ports
from unitocom import client

# The real serve() of the channel service, with its warm-up replaced by one that fails or hangs.
SCRIPT = textwrap.dedent("""
    import sys, time
    from services.channel import server as channel
    from services.common import server as common
    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc

    def warmup():
        if sys.argv[1] == "hang":
            time.sleep(3600)
        raise RuntimeError("no GPU after all")

    args = common.base_parser("channel").parse_args(sys.argv[2:])
    cfg = common.config_from_args(args)
    common.serve("channel", args, cfg,
                 lambda s: pb_grpc.add_ChannelServicer_to_server(channel.Channel(cfg, "127.0.0.1:1"), s),
                 "unitocom.v1.Channel", warmup)
""")


@pytest.mark.parametrize("mode, code, message", [("fail", 1, "warm-up failed (RuntimeError: no GPU after all)"),
                                                 ("hang", 3, "warm-up still running after 2 s")])
def test_a_failed_or_stuck_warm_up_exits_non_zero_without_serving(mode, code, message):
    port, = free_ports(1)
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, mode, "--port", str(port), "--metrics-port", "0",
                          "--warmup-timeout", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.monotonic()
        while p.poll() is None:
            assert client.health(f"127.0.0.1:{port}", timeout_s=0.3) != "SERVING", "served before its warm-up"
            assert time.monotonic() - t0 < 60, "the process did not exit"
            time.sleep(0.1)
        out = p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, out
    assert message in out
