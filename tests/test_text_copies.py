"""Text sent several times over independent fades, combined by MRC at the base station (link.text_copies)."""
from __future__ import annotations

import dataclasses

import grpc
import numpy as np
import pytest
from scipy import integrate, special

from unitocom import client, config, pipeline
from unitocom.link import theory
from unitocom.link.diversity import mrc
from unitocom.stages import transmitter
from unitocom.stages.basestation import BaseStationCore
from unitocom.stages.request import RequestError, from_wire

CFG = config.load("tiny")


def _request(**options):
    return from_wire(client.build_request(**options))


# ---- the combiner against the textbook ----------------------------------------------------------------------

@pytest.mark.parametrize("branches", [1, 2, 3])
@pytest.mark.parametrize("snr_db", [0.0, 6.0])
def test_mrc_bpsk_ber_over_rayleigh_matches_the_closed_form(branches, snr_db):
    rng = np.random.default_rng(10 * branches + int(snr_db))
    n = 400_000
    n0 = 10 ** (-snr_db / 10)  # Es = P = 1
    bits = rng.integers(0, 2, n)
    z = 1.0 - 2.0 * bits
    h = (rng.standard_normal((branches, n)) + 1j * rng.standard_normal((branches, n))) / np.sqrt(2)
    noise = np.sqrt(n0 / 2) * (rng.standard_normal((branches, n)) + 1j * rng.standard_normal((branches, n)))
    y, g = mrc(h * z + noise, h)
    errors = int(np.sum((y.real < 0) != (bits == 1)))
    p = theory.ber_bpsk_rayleigh_mrc(snr_db, branches)
    assert abs(errors - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 3, (errors / n, p)
    assert np.all(g.imag == 0) and np.all(g.real >= 0)


def test_the_closed_form_is_one_branch_rayleigh_and_the_chi_square_integral():
    snr = np.array([0.0, 5.0, 10.0, 20.0])
    np.testing.assert_allclose(theory.ber_bpsk_rayleigh_mrc(snr, 1), theory.ber_rayleigh("bpsk", snr), rtol=1e-12)
    for branches in (2, 4):
        for s in (0.0, 10.0):
            gbar = 10 ** (s / 10)  # per branch; the combined SNR is Gamma(L, gbar)
            pdf = lambda x: x ** (branches - 1) * np.exp(-x / gbar) / (special.factorial(branches - 1) * gbar ** branches)  # noqa: E731
            val, _ = integrate.quad(lambda x: theory.qfunc(np.sqrt(2 * x)) * pdf(x), 0, np.inf, limit=200)
            assert theory.ber_bpsk_rayleigh_mrc(s, branches) == pytest.approx(val, rel=1e-6)
    # diversity order L: ten times the SNR, 10^L times fewer errors (high SNR)
    assert theory.ber_bpsk_rayleigh_mrc(30.0, 2) / theory.ber_bpsk_rayleigh_mrc(40.0, 2) == pytest.approx(100, rel=0.05)


def test_mrc_is_one_copy_with_gain_sqrt_g_and_the_same_noise():
    rng = np.random.default_rng(3)
    n, n0 = 200_000, 0.5
    z = np.exp(2j * np.pi * rng.random(n))
    h = np.array([0.3 + 0.4j, -1.2j, 0.8])[:, None] * np.ones(n)
    noise = np.sqrt(n0 / 2) * (rng.standard_normal((3, n)) + 1j * rng.standard_normal((3, n)))
    y, g = mrc(h * z + noise, h)
    np.testing.assert_allclose(g, np.sqrt(0.25 + 1.44 + 0.64), rtol=1e-6)
    assert np.var(y - g * z) == pytest.approx(n0, rel=0.02)
    # one copy: rotated onto the real axis, |h| kept
    y1, g1 = mrc((h * z)[:1], h[:1])
    np.testing.assert_allclose(g1, 0.5, rtol=1e-6)
    np.testing.assert_allclose(y1, 0.5 * z, atol=1e-5)


def test_a_lost_copy_adds_nothing_and_all_lost_stays_lost():
    y = np.array([[1 + 1j, 2.0], [5.0, 7.0]], np.complex64)
    h = np.array([[1j, 0.5], [0, 0]], np.complex64)  # the second copy lost (h_est 0, as a lost packet)
    combined, g = mrc(y, h)
    alone, g_alone = mrc(y[:1], h[:1])
    np.testing.assert_allclose(combined, alone)
    np.testing.assert_allclose(g, g_alone)
    none, g0 = mrc(y, np.zeros_like(h))
    assert np.all(none == 0) and np.all(g0 == 0)
    with pytest.raises(ValueError, match=r"\[K, N\]"):
        mrc(y[0], h[0])


# ---- through the link ----------------------------------------------------------------------------------------

def test_copies_are_streams_of_their_own_each_with_its_own_fade():
    req = _request(task="vqa", scheme="unitocom", snr_db=5.0, channel="rayleigh", image=_scene(),
                   question="Is there a red cube?", seed=4, text_copies=3)
    prep = transmitter.prepare(req, CFG)
    streams = prep.header.streams
    assert [(s.modality.value, s.copy, s.copy_of) for s in streams] == [("image", 0, 0), ("text", 0, 0),
                                                                        ("text", 1, 1), ("text", 2, 1)]
    assert len({s.stream_id for s in streams}) == 4
    np.testing.assert_array_equal(prep.streams[2].symbols, prep.streams[1].symbols)
    r = pipeline.run(req, CFG)
    image, text = r.outputs
    assert text.channel_uses == 3 * streams[1].num_symbols and r.channel_uses == image.channel_uses + text.channel_uses
    assert "sent 3 times over independent fades, maximal-ratio combined" in text.note
    gains = [float(v) for v in text.note.split("|h|^2 of the copies ")[1].split(";")[0].split(", ")]
    assert len(set(gains)) == 3  # one h per copy
    assert r.output_text  # the question was answered


def test_more_copies_read_more_questions_exactly():
    """At 5 dB over Rayleigh a question crosses one fade; three of them, combined, read it far more often."""
    questions = ["Is there a red cube?", "How many spheres are there?", "What color is the large cylinder?",
                 "Are there more cubes than spheres?", "What shape is the small green object?",
                 "Is there a blue sphere?", "How many small objects are there?", "What size is the purple cube?",
                 "Is the red thing a cylinder?", "What color is the sphere left of the cube?"]
    read = {}
    for k in (1, 3):
        read[k] = sum(pipeline.run(_request(task="reconstruct", scheme="unitocom", snr_db=5.0, channel="rayleigh",
                                            text=q, seed=i, text_copies=k), CFG).output_text == q
                      for i, q in enumerate(questions * 6))
    assert read[3] >= read[1] + 15, read  # measured: 19 and 51 of 60


def test_copies_help_the_traditional_link_too():
    text = "Is there a red cube?"
    ok = {k: sum(pipeline.run(_request(scheme="traditional", snr_db=8.0, channel="rayleigh", text=text, seed=s,
                                       text_copies=k), CFG).output_text == text for s in range(20)) for k in (1, 2)}
    assert ok[2] >= ok[1] + 5, ok  # measured: 4 and 13 of 20


@pytest.mark.parametrize("options, field, words", [
    ({"text": "hi", "text_copies": 9}, "link.text_copies", "0..8"),
    ({"image": None, "text_copies": 2}, "link.text_copies", "sends no text"),
    ({"text": "hi", "text_copies": 2, "users": 2}, "link.text_copies", "users sharing the channel"),
])
def test_bad_copies_are_refused_naming_the_field(options, field, words):
    from unitocom.options import BY_NAME
    from unitocom.stages.request import MAX_TEXT_COPIES
    assert BY_NAME["text_copies"].le == MAX_TEXT_COPIES  # the front ends' bound is the services' own
    if options.get("image", 1) is None:
        options = {**options, "image": _scene()}
    with pytest.raises(RequestError) as e:
        transmitter.prepare(_request(scheme="unitocom", **options), CFG)
    assert e.value.field == field and words in e.value.reason, e.value.reason


def _header(**copy_changes):
    prep = transmitter.prepare(_request(scheme="unitocom", text="Is there a red cube?", text_copies=2), CFG)
    h = prep.header
    h.streams[1] = dataclasses.replace(h.streams[1], **copy_changes)
    return h


@pytest.mark.parametrize("changes, field", [
    ({"copy_of": 7}, "header.streams[1].copy_of"),
    ({"copy_of": 1}, "header.streams[1].copy_of"),  # a copy of itself: not an original
    ({"num_symbols": 12}, "header.streams[1].num_symbols"),
    ({"tokenizer": "text-vae"}, "header.streams[1].tokenizer"),
    ({"copy": 2}, "header.streams"),  # copies numbered 1..K-1
])
def test_the_base_station_refuses_copies_that_do_not_match(changes, field):
    with pytest.raises(RequestError) as e:
        BaseStationCore(_header(**changes), CFG)
    assert e.value.field == field, (e.value.field, e.value.reason)


def test_the_base_station_refuses_copies_from_users_sharing_the_channel():
    h = _header()
    h.link.users = 2
    with pytest.raises(RequestError) as e:
        BaseStationCore(h, CFG)
    assert e.value.field == "header.streams" and "users sharing the channel" in e.value.reason


def test_copies_through_the_services(tx):
    """The option on the wire: the transmitter sends the copies, the channel fades each, the base station combines
    them; a bad count is INVALID_ARGUMENT naming the field and the service keeps serving."""
    r = tx.send(client.build_request(scheme="unitocom", text="Is there a red cube?", snr_db=25.0, channel="rayleigh",
                                     seed=2, text_copies=2))
    (out,) = r.outputs
    assert "sent 2 times" in out.note and r.channel_uses == out.channel_uses
    once = tx.send(client.build_request(scheme="unitocom", text="Is there a red cube?", snr_db=25.0,
                                        channel="rayleigh", seed=2))
    assert out.channel_uses == 2 * once.outputs[0].channel_uses
    req = client.build_request(scheme="unitocom", text="x")
    req.link.text_copies = 100
    with pytest.raises(grpc.RpcError) as e:
        tx.send(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith("link.text_copies")
    assert tx.send(client.build_request(text="still here", snr_db=30.0)).output_text == "still here"


def _scene() -> bytes:
    from tests.conftest import scene_png
    return scene_png(32)
