"""The services' Prometheus metrics: names, bounded labels, and what a real request leaves in /metrics."""
from __future__ import annotations

import math
import urllib.request

import grpc
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.common import metrics
from tests.conftest import scene_png
from unitocom import client
from unitocom.v1 import unitocom_pb2 as pb


@pytest.mark.parametrize("snr, bucket", [(0.0, "0"), (4.99, "0"), (5.0, "5"), (7.5, "5"), (-0.1, "-5"), (-3, "-5"),
                                         (-30, "-10"), (39.9, "35"), (55, "40"), (math.nan, "nan")])
def test_snr_bucket_floors_to_5_db_and_clamps(snr, bucket):
    assert metrics.snr_bucket(snr) == bucket


def test_modality_label_is_a_sorted_set():
    assert metrics.modality_label([pb.TEXT, pb.IMAGE, pb.TEXT]) == "image+text"
    assert metrics.modality_label([]) == "none"
    call = metrics.Call("transmitter", "Send").describe(client.build_request(text="a", image=scene_png(16)))
    assert (call.modality, call.scheme, call.task, call.channel) == ("image+text", "traditional", "reconstruct", "awgn")


def test_unknown_enum_values_stay_bounded():
    assert metrics.scheme_label(999) == "unknown" and metrics.scheme_label(0) == "unspecified"
    assert metrics.task_label(pb.VQA) == "vqa" and metrics.channel_label(0) == "awgn"


def test_free_form_names_are_capped():
    cap = metrics._NameCap("other")
    names = [cap(f"name_{i}") for i in range(metrics.MAX_NAMES + 5)]
    assert names[:metrics.MAX_NAMES] == [f"name_{i}" for i in range(metrics.MAX_NAMES)]
    assert set(names[metrics.MAX_NAMES:]) == {"other"}
    assert metrics._NameCap(None)("Bad Name!") is None


def test_stage_labels_are_the_pipeline_stages():
    """The stage label takes exactly unitocom.timing.STAGES (the help string lists them); anything else is "other"."""
    from unitocom.timing import STAGES
    assert [metrics.stage_label(s) for s in STAGES] == list(STAGES)
    assert metrics.stage_label("mllm") == "other" and metrics.stage_label("encode") == "other"
    assert metrics.STAGE_SECONDS._documentation.endswith(", ".join(STAGES))
    metrics.observe_timings("basestation", [pb.StageTiming(service="basestation", stage="mllm_prefill", seconds=0.5),
                                            pb.StageTiming(service="channel", stage="channel", seconds=9.0)], "vae")
    got = {"service": "basestation", "stage": "mllm_prefill", "scheme": "vae"}
    assert REGISTRY.get_sample_value("unitocom_stage_seconds_sum", got) == 0.5
    assert REGISTRY.get_sample_value("unitocom_stage_seconds_sum", {**got, "service": "channel", "stage": "channel"}) \
        is None  # each hop observes only its own stages


def test_quality_goes_to_the_family_of_its_unit():
    """`*_db` keys are decibels, the rest ratios; labels carry scheme, task, channel, metric and SNR bucket."""
    req = client.build_request(text="x", scheme="semcom", task="asr", snr_db=12.0, channel="rician")
    call = metrics.Call("transmitter", "Send").describe(req)
    res = pb.Result(quality={"wer": 0.25, "audio_snr_db": 7.0, "nan_metric": math.nan}, channel_uses=100)
    call.observe(res, quality=True)
    labels = {"scheme": "semcom", "task": "asr", "channel": "rician", "snr_bucket": "10", "loss_bucket": "0"}
    assert REGISTRY.get_sample_value("unitocom_quality_ratio_sum", {**labels, "metric": "wer"}) == 0.25
    assert REGISTRY.get_sample_value("unitocom_quality_decibels_count", {**labels, "metric": "audio_snr_db"}) == 1
    assert REGISTRY.get_sample_value("unitocom_quality_ratio_count", {**labels, "metric": "nan_metric"}) is None


@pytest.mark.parametrize("loss, bucket", [(0.0, "0"), (0.05, "0"), (0.1, "10"), (0.25, "20"), (0.3, "30"),
                                          (0.999, "90"), (1.0, "100"), (1.5, "nan"), (math.nan, "nan")])
def test_loss_bucket_floors_to_10_percent(loss, bucket):
    assert metrics.loss_bucket(loss) == bucket


def test_quality_is_labelled_with_the_packet_loss_bucket():
    req = client.build_request(text="x", scheme="unitocom", task="vqa", snr_db=20.0, packet_loss=0.25)
    call = metrics.Call("transmitter", "Send").describe(req)
    call.observe(pb.Result(quality={"exact_match": 1.0}), quality=True)
    assert REGISTRY.get_sample_value("unitocom_quality_ratio_count", {
        "scheme": "unitocom", "task": "vqa", "channel": "awgn", "metric": "exact_match", "snr_bucket": "20",
        "loss_bucket": "20"}) >= 1


def test_tokens_per_stream_come_from_the_header():
    header = pb.RequestHeader(task=pb.VQA, link=pb.LinkSettings(scheme=pb.UNITOCOM, snr_db=3),
                              streams=[pb.StreamHeader(modality=pb.IMAGE, token_shape=[32, 16]),
                                       pb.StreamHeader(modality=pb.TEXT, token_shape=[7])])
    call = metrics.Call("basestation", "Receive").describe(header)
    assert call.modality == "image+text"
    call.observe(pb.Result(channel_uses=10, outputs=[pb.ModalityOutput(modality=pb.IMAGE, channel_uses=6),
                                                     pb.ModalityOutput(modality=pb.TEXT, channel_uses=4)]))
    s = {"service": "basestation", "scheme": "unitocom"}
    assert REGISTRY.get_sample_value("unitocom_stream_tokens_sum", {**s, "modality": "image"}) == 512
    assert REGISTRY.get_sample_value("unitocom_stream_tokens_sum", {**s, "modality": "text"}) == 7
    assert REGISTRY.get_sample_value("unitocom_channel_uses_total", {**s, "modality": "image"}) == 6


# Histograms of a plain count, which has no unit to name (each with why).
COUNT_HISTOGRAMS = {"unitocom_batch_size": "items per batched forward of the base station's dynamic batching"}


def test_metric_names_follow_prometheus_conventions():
    fams = [f for f in REGISTRY.collect() if f.name.startswith("unitocom_")]
    assert len(fams) >= 12
    for f in fams:
        assert f.documentation, f.name
        assert "milli" not in f.name and "percent" not in f.name, f"{f.name}: use base units and ratios 0..1"
        if f.type == "counter":
            assert any(s.name == f.name + "_total" for s in f.samples) or not f.samples, f.name
        if f.type == "histogram" and "seconds" not in f.name and f.name not in COUNT_HISTOGRAMS:
            assert f.name.endswith(("_uses", "_tokens", "_bytes")), f"{f.name}: a histogram says its unit"
        if f.type == "summary":
            assert f.name.endswith(("_ratio", "_decibels")), f.name


def _scrape(url: str) -> dict[str, list]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def _value(samples: dict, name: str, **labels) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_request_leaves_labelled_series_in_every_service(services, tx):
    cfg, _ = services
    tx.send(client.build_request(text="three red cubes", snr_db=21.0))
    tx.send(client.build_request(image=scene_png(32), snr_db=31.0, channel="rayleigh"))
    with pytest.raises(grpc.RpcError):
        tx.send(client.build_request(text="", snr_db=5.0))
    t = _scrape(cfg.address("transmitter").metrics_url)
    ok = dict(service="transmitter", method="Send", scheme="traditional", task="reconstruct")
    assert _value(t, "unitocom_requests_total", **ok, modality="text", code="OK") >= 1
    assert _value(t, "unitocom_requests_total", **ok, modality="image", code="OK") >= 1
    assert _value(t, "unitocom_requests_total", **ok, code="INVALID_ARGUMENT") >= 1
    for stage in ("validate", "source_encode", "channel_encode", "score"):
        assert _value(t, "unitocom_stage_seconds_count", service="transmitter", stage=stage,
                      scheme="traditional") >= 2, stage
    assert _value(t, "unitocom_quality_ratio_count", metric="exact_match", snr_bucket="20", channel="awgn") >= 1
    assert _value(t, "unitocom_quality_decibels_count", metric="psnr_db", snr_bucket="30", channel="rayleigh") >= 1
    assert _value(t, "unitocom_request_channel_uses_count", service="transmitter", scheme="traditional") >= 2
    assert _value(t, "unitocom_worker_threads", service="transmitter") == cfg.limits.max_workers
    assert "unitocom_queue_depth" in t and "unitocom_requests_in_flight" in t
    assert _value(t, "unitocom_service_info", service="transmitter", preset="tiny") == 1

    c = _scrape(cfg.address("channel").metrics_url)
    assert _value(c, "unitocom_stage_seconds_count", service="channel", stage="channel") >= 2
    assert _value(c, "unitocom_channel_uses_total", service="channel", scheme="traditional", modality="image") > 0
    b = _scrape(cfg.address("basestation").metrics_url)
    for stage in ("equalise", "decode"):
        assert _value(b, "unitocom_stage_seconds_count", service="basestation", stage=stage) >= 2, stage
    assert _value(b, "unitocom_stream_payload_bytes_count", service="basestation", modality="image") >= 1
    assert _value(b, "unitocom_requests_total", service="basestation", method="Receive", modality="text",
                  code="OK") >= 1


def test_the_base_station_counts_lost_packets_and_those_a_resilient_reader_concealed(services, tx):
    from unitocom.schemes import learned
    from tests.conftest import need
    need((learned.checkpoint_dir() / "image-sigma-genib-s32-resilient.safetensors").exists(),
         "the resilient image link is not installed")
    cfg, _ = services
    url = cfg.address("basestation").metrics_url
    before = _scrape(url)
    for variant in ("resilient", "standard"):
        tx.send(client.build_request(image=scene_png(32), scheme="unitocom", variant=variant, snr_db=20.0,
                                     packet_loss=1.0, tokens_per_packet=4))
    after = _scrape(url)
    delta = {o: _value(after, "unitocom_packets_total", service="basestation", outcome=o)
             - _value(before, "unitocom_packets_total", service="basestation", outcome=o) for o in ("lost", "concealed")}
    assert delta == {"lost": 16, "concealed": 8}  # 8 packets of 4 tokens each request; only the resilient one masked
