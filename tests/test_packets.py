"""Token packets on the link (issue 16): the channel loses whole packets at the rate and burst length asked,
the receiver knows which, and a request whose packets are all lost still gets an answer that says so."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import scene_png
from unitocom import client, config
from unitocom.link.erasure import burst_lengths
from unitocom.messages import LinkSettings, SymbolFrame
from unitocom.options import Channel
from unitocom.stages.channel import ChannelCore
from unitocom.v1 import unitocom_pb2 as pb

PACKET = 8  # symbols per packet


def _lost_packets(link: LinkSettings, n_packets: int, frame_symbols: int) -> np.ndarray:
    """bool [n_packets]: which packets of one stream the channel lost, read as a receiver reads them (h_est 0)."""
    core = ChannelCore(link, [0], config.load("tiny"), {0: PACKET})
    z = np.ones(n_packets * PACKET, np.complex64)
    h_est = []
    for start in range(0, len(z), frame_symbols):
        chunk = z[start:start + frame_symbols]
        out = core.apply(SymbolFrame(stream_id=0, seq=start // frame_symbols, last=start + frame_symbols >= len(z),
                                     symbols=chunk))
        h_est.append(np.repeat(out.csi.h_est, out.csi.h_est_runs) if len(out.csi.h_est_runs) else out.csi.h_est)
    lost = (np.concatenate(h_est) == 0).reshape(n_packets, PACKET)
    assert (lost.all(1) == lost.any(1)).all(), "a packet is lost whole or not at all"
    sent, n_lost = core.packet_counts()
    assert (sent, n_lost) == (n_packets, int(lost.all(1).sum()))
    return lost.all(1)


@pytest.mark.parametrize("loss, burst", [(0.1, 0.0), (0.3, 0.0), (0.1, 5.0), (0.4, 3.0)])
def test_loss_rate_and_mean_burst_through_the_channel(loss, burst):
    n = 40_000
    link = LinkSettings(snr_db=20.0, channel=Channel.AWGN, packet_loss=loss, packet_burst=burst, seed=5)
    lost = _lost_packets(link, n, frame_symbols=1000)  # frames that cut packets in the middle
    b = burst or 1 / (1 - loss)
    rho = 1 - (1 / b) / (1 - loss) if burst else 0.0  # lag-1 correlation of the Gilbert chain
    assert abs(lost.mean() - loss) < 5 * math.sqrt(loss * (1 - loss) / n * (1 + rho) / (1 - rho))
    runs = burst_lengths(lost)
    assert abs(runs.mean() - b) < 5 * math.sqrt((1 - 1 / b) * b * b / len(runs))


def test_the_losses_do_not_depend_on_how_the_stream_is_framed():
    link = LinkSettings(snr_db=20.0, packet_loss=0.3, packet_burst=4.0, seed=11)
    assert np.array_equal(_lost_packets(link, 500, 1000), _lost_packets(link, 500, 37))


@pytest.mark.parametrize("scheme", ["unitocom", "traditional"])
def test_every_packet_lost_still_answers_and_says_so(tx, scheme):
    req = client.build_request(image=scene_png(32), text="what color is the cube?", task="vqa", scheme=scheme,
                               snr_db=20.0, packet_loss=1.0)
    r = tx.send(req)
    assert r.output_text  # the MLLM answers from what it got (nothing), as it does for an erased frame
    notes = [o.note for o in r.outputs]
    assert any("packets lost by the channel" in n for n in notes), notes
    assert all(("of" in n and "packets lost" in n) for n in notes[:2]), notes


def test_impossible_packet_settings_are_refused(tx):
    import grpc
    for kw, field in [(dict(packet_loss=0.5, packet_burst=1.2), "link.packet_burst"),
                      (dict(packet_loss=1.5), "packet_loss")]:
        with pytest.raises((grpc.RpcError, ValueError)) as e:
            tx.send(client.build_request(text="x", **kw))
        text = e.value.details() if isinstance(e.value, grpc.RpcError) else str(e.value)
        assert field in text, text


@pytest.mark.parametrize("scheme", ["unitocom", "traditional"])
def test_every_image_packet_lost_and_the_question_arrives(tx, scheme):
    """100 % loss of one modality (lossy_modalities): the picture's packets are all lost, the question's all
    arrive; the answer comes, and the notes say which stream lost what."""
    req = client.build_request(image=scene_png(32), text="what color is the cube?", task="vqa", scheme=scheme,
                               snr_db=30.0, packet_loss=1.0, lossy_modalities="image")
    r = tx.send(req)
    assert r.output_text
    image, text = (next(o for o in r.outputs if o.modality == m) for m in (pb.IMAGE, pb.TEXT))
    assert "packets lost by the channel" in image.note and "packets lost" not in text.note
    assert text.text == "what color is the cube?"


def test_an_unknown_lossy_modality_is_refused(tx):
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        tx.send(client.build_request(text="x", packet_loss=0.5, lossy_modalities="image,video"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "link.lossy_modalities" in e.value.details()
