"""A caller that gives up stops the work behind it: the cancel travels hop to hop and is counted as such."""
from __future__ import annotations

import time
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from unitocom import client
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc


def _count(url: str, **labels) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "unitocom_requests_total" and all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_cancelled_call_is_cancelled_at_the_base_station(services):
    cfg, _ = services
    bs_url = cfg.address("basestation").metrics_url
    cancelled = dict(service="basestation", method="Receive", code="CANCELLED")
    before = _count(bs_url, **cancelled)
    ok_before = _count(bs_url, service="basestation", method="Receive", code="OK")
    # text-to-image: seconds of diffusion at the base station, long enough to cancel in the middle
    req = client.build_request(text="a large red metal cube", task="t2i", scheme="unitocom", snr_db=20.0)
    with grpc.insecure_channel(cfg.address("transmitter").grpc) as ch:
        call = pb_grpc.TransmitterStub(ch).Send.future(req, timeout=60)
        time.sleep(0.5)
        assert call.cancel(), "the call ended before it could be cancelled"
    t0 = time.monotonic()
    while _count(bs_url, **cancelled) == before:
        assert time.monotonic() - t0 < 30, "the base station never saw the cancel"
        time.sleep(0.1)
    assert _count(bs_url, service="basestation", method="Receive", code="OK") == ok_before
