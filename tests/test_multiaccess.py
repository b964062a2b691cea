"""Users sharing the channel (issue 17): the maths of `link.multiaccess` against closed forms, and K users in one
request through the three services (superposed with SIC, orthogonal in disjoint blocks), and the refusals."""
from __future__ import annotations

import io
import math

import grpc
import numpy as np
import pytest
from PIL import Image

from tests.conftest import scene_png
from unitocom import client
from unitocom.link import multiaccess as ma
from unitocom.link.modulation import Modulator
from unitocom.link.theory import ber_awgn, ber_rayleigh


# --- the maths, in process ---------------------------------------------------------------------------------------

def test_default_powers_are_6_db_apart_and_fill_the_budget():
    for k in (1, 2, 4, 8):
        p = ma.default_powers(k)
        assert p.sum() == pytest.approx(1.0) and np.allclose(p[:-1] / p[1:], 4.0)
        assert all(p[j] > p[j + 1:].sum() for j in range(k))  # each above all the weaker ones together


@pytest.mark.parametrize("powers, k, says", [
    ([0.5, 0.6], 2, "sum to 1.1, over the power budget"),
    ([0.5, float("nan")], 2, "[1] is nan"),
    ([0.5, 0.0], 2, "[1] is 0: a power share must be > 0"),
    ([-0.1, 0.5], 2, "[0] is -0.1"),
    ([0.5], 2, "1 powers given for 2 users"),
    ([0.5, float("inf")], 2, "[1] is inf"),
])
def test_bad_power_shares_are_named(powers, k, says):
    with pytest.raises(ValueError) as e:
        ma.check_powers(powers, k)
    assert says in str(e.value)


def test_shares_that_sum_to_one_up_to_rounding_are_within_the_budget():
    assert ma.check_powers([0.1, 0.2, 0.7], 3).sum() == pytest.approx(1.0)


def test_resource_blocks_and_frame_uses():
    assert ma.resource_blocks([3, 5, 2]).tolist() == [0, 3, 8]
    assert ma.frame_uses([3, 5, 2], "orthogonal") == 10 and ma.frame_uses([3, 5, 2], "superposed") == 5


def test_superpose_adds_every_user_and_one_noise():
    x = [np.ones(4), 1j * np.ones(2)]
    g = [np.full(4, 2.0), np.full(2, 3.0)]
    noise = np.array([0.1, 0.2, 0.3, 0.4])
    assert np.allclose(ma.superpose(x, g, noise), [2.1 + 3j, 2.2 + 3j, 2.3, 2.4])


@pytest.mark.parametrize("modulation", ["qpsk", "qam16"])
def test_sic_with_exact_cancellation_gives_each_user_the_closed_form_ber_at_its_sinr(modulation):
    """Uncoded K = 3 over AWGN: a genie cancels each user exactly (as a passed CRC does), so the weakest user sees
    only noise and its BER is the AWGN closed form at p_K/N0 exactly. The others see the weaker users' discrete
    constellations, which is not Gaussian: their BER is the closed form's at the SINR only when the interference
    is Gaussian, here measured against the exact average over the interferers' points instead."""
    rng = np.random.default_rng(1)
    mod = Modulator(modulation)
    m, n = mod.bits_per_symbol, 200_000
    p = np.array([0.75, 0.2, 0.05])
    n0 = 0.005
    bits = [rng.integers(0, 2, n * m, dtype=np.uint8) for _ in p]
    z = [mod.map(b) for b in bits]
    noise = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * math.sqrt(n0 / 2)
    gains = [np.full(n, math.sqrt(pk), np.complex64) for pk in p]
    y = ma.superpose([math.sqrt(pk) * zk for pk, zk in zip(p, z)], [np.ones(n)] * 3, noise)
    errors = {}

    def decode(k, yw, gw, nv):
        errors[k] = float(np.mean(mod.hard(yw / gw) != bits[k]))
        return z[k]  # exact cancellation
    steps = ma.sic(y, gains, n0, decode)
    assert [s.order for s in steps] == [0, 1, 2]
    sinr = [10 * math.log10(p[k] / (p[k + 1:].sum() + n0)) for k in range(3)]
    assert [s.sinr_db for s in steps] == pytest.approx(sinr, abs=1e-6)
    assert all(s.residual_db < -25 for s in steps)  # nothing is left after an exact cancellation
    sd = math.sqrt(ber_awgn(modulation, sinr[2]) / (n * m) * m)  # bits of a symbol share its noise: n symbols
    assert abs(errors[2] - ber_awgn(modulation, sinr[2])) < 4 * sd


def test_sic_whitening_gives_the_decoder_each_channel_use_its_own_sinr():
    """With per-use gains, the whitened y/g is the equalised symbol and |g_w|^2/N0 the SINR of that use."""
    rng = np.random.default_rng(2)
    n, n0 = 1000, 0.01
    g = [(rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64) * s for s in (1.0, 0.3)]
    y = ma.superpose([np.ones(n), np.ones(n)], g, np.zeros(n))
    seen = {}

    def decode(k, yw, gw, nv):
        seen[k] = (yw, gw, nv)
        return np.ones(n)
    ma.sic(y, g, n0, decode)
    first = ma.cancellation_order(g)[0]
    other = 1 - first
    yw, gw, nv = seen[first]
    assert np.allclose(yw / gw, y / g[first], rtol=1e-4)
    assert np.allclose(np.abs(gw) ** 2 / nv, np.abs(g[first]) ** 2 / (np.abs(g[other]) ** 2 + n0), rtol=1e-4)
    assert np.allclose(np.abs(seen[other][1]) ** 2, np.abs(g[other]) ** 2, rtol=1e-4)  # alone: no whitening


# --- through the services ------------------------------------------------------------------------------------------

SNR_DB, N0 = 20.0, 1e-2


@pytest.mark.parametrize("powers", [[0.8, 0.2], [0.7, 0.2, 0.07, 0.03]], ids=["K=2", "K=4"])
def test_digital_users_in_one_block_decoded_with_sic_have_the_closed_form_ber_of_their_sinr(tx, powers):
    """K users' JPEGs (LDPC rate 1/4, QPSK) superposed in the same channel uses over fast Rayleigh fading. Each
    user's channel-level BER (hard decisions before decoding, after cancelling the stronger users, counted against
    the re-encoded decoded codewords when every CRC passed) is the Rayleigh closed form at its mean SINR
    p_k / (sum of the weaker users' p_j + N0): with unit-modulus QPSK the interference h_j sqrt(p_j) z_j of a
    CN(0, 1) gain is exactly CN(0, p_j), so the closed form is exact, not an approximation."""
    k = len(powers)
    req = client.build_users_request([{"image": scene_png(128, seed=u)} for u in range(k)], scheme="traditional",
                                     modulation="qpsk", code_rate=0.25, snr_db=SNR_DB, channel="rayleigh",
                                     fading="fast", access="superposed", user_powers=",".join(map(str, powers)),
                                     seed=3)
    r = tx.send(req)
    assert [u.user for u in r.users] == list(range(k))
    assert r.channel_uses == max(u.channel_uses for u in r.users)  # one block: the longest user's uses
    for u in r.users:
        sinr = 10 * math.log10(powers[u.user] / (sum(powers[u.user + 1:]) + N0))
        assert u.sic_order == u.user and u.sinr_db == pytest.approx(sinr, abs=0.3)  # sample mean of |h|^2
        q = dict(u.quality)
        assert q["decoded"] == 1.0 and q["psnr_db"] > 30, (u.user, q)
        theory = ber_rayleigh("qpsk", sinr)
        symbols = q["raw_bits"] / 2  # the two bits of a symbol share its fade: count symbols, not bits
        sd = math.sqrt(theory * (1 - theory) / symbols)
        print(f"K={k} user {u.user}: SINR {sinr:.2f} dB, BER {q['raw_ber']:.4f} (closed form {theory:.4f}, "
              f"+-{1.96 * sd:.4f}, {int(q['raw_bits'])} bits)")
        assert 1.96 * sd < 0.15 * theory  # the interval is tight
        assert abs(q["raw_ber"] - theory) < 4 * sd, (u.user, q["raw_ber"], theory)



@pytest.mark.parametrize("snr_db", [30.0, 5.0])
def test_a_learned_text_stream_is_cancelled_exactly_where_its_ids_are_read_right(snr_db):
    """SIC re-encodes a text stream's decisions (F then T on the ids read), as the device encoded its ids: where
    every id was read right, what it subtracts is the sent signal, bit for bit in float32 (T on R's text tokens
    themselves left more power than the signal's own, +2.5 dB). Where some ids are misread, only their tokens'
    symbols differ."""
    from unitocom import config
    from unitocom.messages import LinkSettings, Modality
    from unitocom.options import Scheme
    from unitocom.schemes import learned
    from unitocom.stages.request import SourcePayload
    question = "What color is the large metal cube left of the sphere?"
    enc = learned.encode(0, SourcePayload(Modality.TEXT, question), LinkSettings(scheme=Scheme.UNITOCOM,
                         snr_db=20.0), config.load("tiny"))
    z, nv = enc.symbols, 10 ** (-snr_db / 10)
    rng = np.random.default_rng(1)
    y = (z + np.sqrt(nv / 2) * (rng.standard_normal(len(z)) + 1j * rng.standard_normal(len(z)))).astype(np.complex64)
    (r,) = learned.decode_batch([learned.StreamJob(enc.header, y, np.ones(len(z), np.complex64), nv, False, 0.0)])
    out, tokens = r
    x_hat = learned.remodulate(enc.header, tokens, 20.0)
    assert x_hat.shape == z.shape
    if out.text == question:
        assert np.allclose(x_hat, z, atol=1e-5)
    else:  # a misread id changes its segment's tokens, not the stream's length; most of the power still goes
        assert 1e-6 < np.mean(np.abs(x_hat - z) ** 2) < 0.1 * np.mean(np.abs(z) ** 2)
    if snr_db == 30.0:
        assert out.text == question

def _png(o) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(o.image_png)).convert("RGB"))


def test_learned_users_in_one_block_are_each_answered(tx):
    """Two unitocom users' VQA requests superposed; SIC on learned tokens (R, T again, subtract): each user gets
    its own answer and outputs, and the result says the cancellation order and what it left."""
    req = client.build_users_request(
        [{"image": scene_png(32, seed=0), "question": "What color is the cube?"},
         {"image": scene_png(32, seed=1), "question": "How many things are there?"}],
        task="vqa", scheme="unitocom", snr_db=25.0, channel="rayleigh", access="superposed", seed=4)
    r = tx.send(req)
    assert len(r.users) == 2 and all(u.output_text for u in r.users)
    assert sorted(u.sic_order for u in r.users) == [0, 1]
    assert {o.user for o in r.outputs} == {0, 1}
    assert r.channel_uses == max(u.channel_uses for u in r.users)
    first = next(u for u in r.users if u.sic_order == 0)
    assert first.residual_db < 0  # the cancellation removed most of the first user's power


def test_learned_reconstruction_superposed_and_orthogonal(tx):
    """The same two pictures: orthogonal users in disjoint blocks (no interference, 2N uses) against superposed
    (N uses). Orthogonal user 0 is decoded exactly as the same payload alone (same seed, same stream draws)."""
    users = [{"image": scene_png(32, seed=u)} for u in range(2)]
    common = dict(scheme="unitocom", snr_db=20.0, channel="rayleigh", seed=7)
    orth = tx.send(client.build_users_request(users, access="orthogonal", **common))
    sup = tx.send(client.build_users_request(users, access="superposed", **common))
    alone = tx.send(client.build_request(image=users[0]["image"], **common))
    assert orth.channel_uses == 2 * alone.channel_uses and sup.channel_uses == alone.channel_uses
    o0 = next(o for o in orth.outputs if o.user == 0)
    assert np.array_equal(_png(o0), _png(alone.outputs[0]))
    assert orth.users[0].quality["psnr_db"] == pytest.approx(alone.quality["psnr_db"])
    for r in (orth, sup):
        assert all("psnr_db" in u.quality for u in r.users)
    assert all(u.power == 1.0 for u in orth.users)
    assert [u.power for u in sup.users] == pytest.approx(list(ma.default_powers(2)))


def test_the_same_payload_from_k_devices(tx):
    """build_request with users=K (the command line's --users): every device sends the payload given."""
    r = tx.send(client.build_request(text="three red cubes", scheme="traditional", users=3, access="orthogonal",
                                     snr_db=20.0))
    assert [u.output_text for u in r.users] == ["three red cubes"] * 3



def test_each_user_is_scored_against_its_own_label(tx):
    """user_labels: user k's answer is scored against label k (not another user's, not dropped), and the request's
    quality is the users' mean. The same request and seed give the same answers, so user 0 is labelled with the
    answer it gives and user 1 with one it cannot give."""
    users = [{"image": scene_png(32, seed=0), "question": "What color is the cube?"},
             {"image": scene_png(32, seed=1), "question": "How many things are there?"}]
    common = dict(task="vqa", scheme="unitocom", snr_db=25.0, channel="rayleigh", access="superposed", seed=4)
    unlabelled = tx.send(client.build_users_request(users, **common))
    assert all("exact_match" not in u.quality for u in unlabelled.users)  # no label: unscored, as before
    answers = [u.output_text for u in sorted(unlabelled.users, key=lambda u: u.user)]
    labelled = [{**users[0], "answer": answers[0]}, {**users[1], "answer": "no such answer"}]
    r = tx.send(client.build_users_request(labelled, **common))
    by_user = sorted(r.users, key=lambda u: u.user)
    assert [u.output_text for u in by_user] == answers
    assert [u.quality["exact_match"] for u in by_user] == [1.0, 0.0]
    assert r.quality["exact_match"] == 0.5
    # a user left without a label (an empty Label) stays unscored while the others are scored
    r = tx.send(client.build_users_request([labelled[0], users[1]], **common))
    assert [("exact_match" in u.quality) for u in sorted(r.users, key=lambda u: u.user)] == [True, False]


def test_each_users_picture_is_scored_against_its_own_caption(tx):
    """Text-to-image by two devices: each device knows the caption it asked for, so each user's picture is scored
    against its own caption (t2i_pair_recall per user), as one device's is."""
    captions = ["There is a large red square.", "There is a small blue circle and a large green triangle."]
    r = tx.send(client.build_users_request([{"text": c} for c in captions], task="t2i", scheme="unitocom",
                                           snr_db=20.0, channel="rayleigh", access="orthogonal", seed=7))
    by_user = sorted(r.users, key=lambda u: u.user)
    assert [u.output_text for u in by_user] == captions  # the orthogonal users' captions arrive intact at 20 dB
    import torch

    from unitocom.metrics.scene_checker import pair_recall
    from unitocom.stages.mllm import scene_checker
    checker = scene_checker()
    swapped = []
    for k, u in enumerate(by_user):
        (out,) = [o for o in r.outputs if o.user == k and o.image_png]
        seen = checker.recognise(torch.from_numpy(_png(out).copy()).permute(2, 0, 1)[None].float() / 255.0)[0]
        assert u.quality["t2i_pair_recall"] == pytest.approx(pair_recall(captions[k], seen))
        swapped.append(pair_recall(captions[1 - k], seen))
    # seed 7 draws pictures that the checker tells apart: scored against the other user's caption, they would read
    # otherwise (the captions name different pairs)
    assert swapped != [u.quality["t2i_pair_recall"] for u in by_user]
    # the request's score is the users' mean
    assert r.quality["t2i_pair_recall"] == pytest.approx(np.mean([u.quality["t2i_pair_recall"] for u in by_user]))


@pytest.mark.parametrize("make, field", [
    # K users, one label: whose answer would it score? Refused, not applied to one user and dropped for the rest
    (lambda: _with(client.build_users_request([{"text": "a"}, {"text": "b"}], access="orthogonal", task="t2i"),
                   label=("answer", "yes")), "label"),
    (lambda: _with(client.build_users_request([{"text": "a"}, {"text": "b"}], access="orthogonal", task="t2i"),
                   user_labels=["yes"]), "user_labels"),
    (lambda: _with(client.build_request(text="a", task="t2i"), user_labels=["yes"]), "user_labels"),
])
def test_labels_that_cannot_go_to_one_user_each_are_refused(tx, make, field):
    with pytest.raises(grpc.RpcError) as e:
        tx.send(make())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(field + ":"), e.value.details()


def test_the_base_station_checks_the_users_labels_of_a_header():
    """A header sent to the base station directly gets the same checks, named under header."""
    from unitocom.messages import Label, LinkSettings
    from unitocom.stages import access
    link = LinkSettings(users=3, access="orthogonal")
    access.check_labels(link, Label(), [Label(answer="yes"), Label(), Label(answer="2")], "header.")
    with pytest.raises(access.AccessError, match=r"^header\.user_labels: 2 labels for 3 users"):
        access.check_labels(link, Label(), [Label(), Label()], "header.")
    with pytest.raises(access.AccessError, match=r"^header\.label: a request of 3 users"):
        access.check_labels(link, Label(answer="yes"), [], "header.")


def _with(req, label=None, user_labels=()):
    if label:
        setattr(req.label, *label)
    for answer in user_labels:
        req.user_labels.add(answer=answer)
    return req

@pytest.mark.parametrize("kw, users, field, code", [
    (dict(users=9, access="superposed"), None, "link.users", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="superposed", user_powers="0.7,0.6"), 2, "link.user_powers", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="superposed", user_powers="0.5,nan"), 2, "link.user_powers[1]", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="superposed", user_powers="0.5,-0.2"), 2, "link.user_powers[1]", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="superposed", user_powers="0.5"), 2, "link.user_powers", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="orthogonal", user_powers="0.5,0.5"), 2, "link.user_powers", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="superposed", packet_loss=0.1), 2, "link.packet_loss", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="superposed", channel="noiseless"), 2, "link.channel", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(access="superposed", csi="estimated"), 2, "link.csi", grpc.StatusCode.INVALID_ARGUMENT),
    # a session is assembled from single devices' parts (issue 17's other half): the two do not compose
    (dict(access="orthogonal", session_id="s1", session_parts="text"), 2, "session", grpc.StatusCode.INVALID_ARGUMENT),
])
def test_bad_multiple_access_settings_are_refused_naming_the_field(tx, kw, users, field, code):
    if users is None:
        req = client.build_request(text="hello", **kw)
    else:
        req = client.build_users_request([{"text": "hello"}] * users, **kw)
    with pytest.raises(grpc.RpcError) as e:
        tx.send(req)
    assert e.value.code() == code
    assert e.value.details().startswith(field + ":"), e.value.details()


def test_a_user_with_no_payload_and_a_payload_of_no_user_are_refused(tx):
    req = client.build_users_request([{"text": "hello"}, {}, {"text": "there"}], access="orthogonal")
    with pytest.raises(grpc.RpcError) as e:
        tx.send(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("payloads: user 1 has no payload"), e.value.details()
    req = client.build_users_request([{"text": "hello"}, {"text": "there"}], access="orthogonal")
    req.payloads[1].user = 5
    with pytest.raises(grpc.RpcError) as e:
        tx.send(req)
    assert e.value.details().startswith("payloads[1].user: 5 is not a user"), e.value.details()
    req = client.build_request(text="hello")
    req.payloads[0].user = 1  # one device, but the payload says another
    with pytest.raises(grpc.RpcError) as e:
        tx.send(req)
    assert e.value.details().startswith("payloads[0].user"), e.value.details()


def test_learned_speech_users_superposed_are_each_transcribed_against_their_own_transcript(tx, heldout_data):
    """Two devices' speech in the same channel uses: SIC cancels the first decoded user's audio by running T again
    on R's audio tokens (one token space: little is left), and each user's transcript is scored against its own."""
    from unitocom.metrics.scores import wer
    from unitocom.task_eval import speech_items
    clips = speech_items(heldout_data, "test", 2)
    users = [{"audio": path.read_bytes(), "transcript": text} for path, text in clips]
    r = tx.send(client.build_users_request(users, task="asr", scheme="unitocom", snr_db=25.0, channel="rayleigh",
                                           access="superposed", seed=5))
    by_user = sorted(r.users, key=lambda u: u.user)
    for u, (_, text) in zip(by_user, clips):
        assert u.quality["wer"] == pytest.approx(wer([text], [u.output_text]))
    first = next(u for u in by_user if u.sic_order == 0)
    assert first.residual_db < -10.0  # R's audio tokens are the sent ones up to cos 0.99
    assert r.channel_uses == max(u.channel_uses for u in by_user)


def test_a_genie_cancellation_leaves_the_second_speech_user_as_if_alone(heldout_data):
    """scripts/sic_residual.py's invariant: subtracting the first user's sent signal leaves the second user's
    received signal exactly as if it were alone (same gains and noise), so its tokens are the same; learned SIC,
    which subtracts T(R(y)) instead, reads no better than that."""
    from tests.conftest import load_script
    from unitocom import config
    from unitocom.task_eval import speech_items
    sic_residual = load_script("scripts/sic_residual.py")
    clips = [path for path, _ in speech_items(heldout_data, "test", 2)]
    r = sic_residual.measure_pair(clips, 0, 20.0, config.load("tiny"))
    assert r["cos_genie"] == pytest.approx(r["cos_alone"], abs=1e-4)
    assert r["cos_sic"] <= r["cos_genie"] + 1e-3
    assert {r["first"], r["second"]} == {0, 1}


# --- the sweep's arithmetic --------------------------------------------------------------------------------------

def test_the_sweep_summary_counts_delivered_tokens_per_channel_use_and_renders_its_table():
    from unitocom import access_sweep
    groups = [{"psnr_db": [30.0, 20.0], "power": [0.8, 0.2], "sinr_db": [6.0, 13.0], "residual_db": [-40.0, -20.0],
               "channel_uses": 256, "latency_s": 0.03},
              {"psnr_db": [28.0, 26.0], "power": [0.8, 0.2], "sinr_db": [5.0, 12.0], "residual_db": [-40.0, -20.0],
               "channel_uses": 256, "latency_s": 0.05}]
    row = access_sweep.summarise(2, "superposed", groups, psnr_target=25.0, seed=0)
    assert row["offered_tokens_per_use"] == 64 / 256
    assert row["delivered_tokens_per_use"]["value"] == pytest.approx((32 / 256 + 64 / 256) / 2)
    assert row["psnr_db"]["value"] == pytest.approx(26.0)
    assert row["per_user"][1]["psnr_db"] == pytest.approx(23.0) and row["per_user"][0]["power"] == 0.8
    for key in ("psnr_db", "delivered_tokens_per_use", "latency_s"):
        assert row[key]["ci_low"] <= row[key]["value"] <= row[key]["ci_high"]
    text = access_sweep.table({"header": {"snr_db": 20.0, "psnr_target_db": 25.0}, "points": [row]}, "x.json")
    assert "| 2 | superposed | 256 | 29.0 (p=0.80) / 23.0 (p=0.20) | 26.0 [" in text



def test_the_vqa_sweep_summary_scores_each_user_and_renders_its_table():
    from unitocom import access_sweep
    groups = [{"exact_match": [1.0, 0.0], "power": [0.8, 0.2], "sinr_db": [6.0, 13.0],
               "residual_db": [-40.0, -20.0], "channel_uses": 400, "latency_s": 0.05},
              {"exact_match": [1.0, 1.0], "power": [0.8, 0.2], "sinr_db": [5.0, 12.0],
               "residual_db": [-40.0, -20.0], "channel_uses": 400, "latency_s": 0.07}]
    row = access_sweep.summarise_vqa(2, "superposed", groups, seed=0)
    assert row["accuracy"]["value"] == pytest.approx(0.75)
    assert row["correct_per_1000_uses"]["value"] == pytest.approx((1 + 2) / 2 * 1000 / 400)
    assert [u["accuracy"] for u in row["per_user"]] == [1.0, 0.5]
    from unitocom.results import wilson
    assert (row["per_user"][1]["ci_low"], row["per_user"][1]["ci_high"]) == pytest.approx(wilson(1, 2))
    text = access_sweep.table({"header": {"task": "vqa", "snr_db": 20.0, "chance": 0.35}, "points": [row]}, "x.json")
    assert "majority-class chance 0.35" in text
    assert "| 2 | superposed | 400 | 1.00 [" in text and "(p=0.80) / 0.50 [" in text


def _sweep(services, data, out, task: str, groups: int) -> dict:
    """`unitocom access-sweep --task TASK --users 1,2` at 20 dB through the test services -> its results file."""
    import json

    from unitocom import cli
    cfg, _ = services
    rc = cli.main(["access-sweep", "--task", task, "--users", "1,2", "--groups", str(groups), "--snr-db", "20",
                   "--data", str(data), "--target", cfg.address("transmitter").grpc, "--out", str(out), "--quiet"])
    assert rc == 0
    return json.loads((out / f"multiaccess-{task}.json").read_text())


def test_the_vqa_sweep_runs_through_the_services(services, heldout_data, tmp_path):
    """`unitocom access-sweep --task vqa`: every user of every group comes back scored against its own answer."""
    fig = _sweep(services, heldout_data, tmp_path, "vqa", 3)
    assert fig["header"]["task"] == "vqa" and 0 < fig["header"]["chance"] < 1
    assert [(p["users"], p["mode"]) for p in fig["points"]] == [(k, m) for k in (1, 2) for m in access_sweep_modes()]
    for p in fig["points"]:
        assert len(p["per_group"]["exact_match"]) == 3
        assert all(len(g) == p["users"] and set(g) <= {0, 1} for g in p["per_group"]["exact_match"])
        assert len(p["per_user"]) == p["users"]
    # the image's 256 uses and the question's tokens; the orthogonal pair twice that, the superposed one once
    one, orth, sup = (next(p for p in fig["points"] if (p["users"], p["mode"]) == key)
                      for key in ((1, "orthogonal"), (2, "orthogonal"), (2, "superposed")))
    assert one["channel_uses"] > 256 and sup["channel_uses"] < orth["channel_uses"]
    assert (tmp_path / "multiaccess-vqa.png").stat().st_size > 0
    rows = (tmp_path / "multiaccess-vqa.csv").read_text().splitlines()
    assert sum(r.startswith("2,superposed,1,3,") and ",accuracy," in r for r in rows) == 1  # the weaker user



def test_the_asr_sweep_summary_is_a_corpus_wer_per_user():
    from unitocom import access_sweep
    groups = [{"wer": [0.0, 0.5], "edits": [0, 2], "words": [6, 4], "power": [0.8, 0.2], "sinr_db": [6.0, 12.0],
               "residual_db": [-30.0, -10.0], "channel_uses": 800, "latency_s": 0.2},
              {"wer": [0.25, 1.0], "edits": [1, 8], "words": [4, 8], "power": [0.8, 0.2], "sinr_db": [5.0, 11.0],
               "residual_db": [-30.0, -10.0], "channel_uses": 800, "latency_s": 0.3}]
    row = access_sweep.summarise_asr(2, "superposed", groups, seed=0)
    assert [u["wer"] for u in row["per_user"]] == pytest.approx([1 / 10, 10 / 12])  # sums' ratio, not mean of WERs
    assert row["wer"]["value"] == pytest.approx(11 / 22)
    assert row["correct_words_per_1000_uses"]["value"] == pytest.approx(((6 + 2) + (3 + 0)) / 2 * 1000 / 800)
    text = access_sweep.table({"header": {"task": "asr", "snr_db": 20.0}, "points": [row]}, "x.json")
    assert "| 2 | superposed | 800 | 0.10 [" in text and "one utterance per user" in text


def test_the_asr_sweep_runs_through_the_services(services, heldout_data, tmp_path):
    """`unitocom access-sweep --task asr`: superposed speech users, each transcript scored against its own."""
    fig = _sweep(services, heldout_data, tmp_path, "asr", 2)
    for p in fig["points"]:
        assert all(len(g) == p["users"] and min(g) > 0 for g in p["per_group"]["words"])
        assert 0 <= p["wer"]["value"] <= p["wer"]["ci_high"] + 1e-9
    sup = next(p for p in fig["points"] if (p["users"], p["mode"]) == (2, "superposed"))
    orth = next(p for p in fig["points"] if (p["users"], p["mode"]) == (2, "orthogonal"))
    assert sup["channel_uses"] < orth["channel_uses"]

def access_sweep_modes():
    from unitocom.access_sweep import MODES
    return MODES

def test_the_channel_bounds_what_it_holds_for_superposition(services):
    """The channel keeps a superposed request's streams until all have arrived: a header announcing more symbols
    than its limit is refused before any is held."""
    from unitocom import config, wire
    from unitocom.stages import transmitter
    from unitocom.stages.request import from_wire
    from unitocom.v1 import unitocom_pb2 as pb
    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc
    cfg, _ = services
    req = client.build_users_request([{"text": "a"}, {"text": "b"}], access="superposed", snr_db=20.0)
    prep = transmitter.prepare(from_wire(req), config.load("tiny"))
    header = wire.to_pb(prep.header)
    header.streams[1].num_symbols = 2**40
    with grpc.insecure_channel(cfg.address("channel").grpc) as ch:
        with pytest.raises(grpc.RpcError) as e:
            pb_grpc.ChannelStub(ch).Forward(iter([pb.Uplink(header=header)]), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert e.value.details().startswith("header.streams:") and "limit" in e.value.details()


def test_every_user_asks_its_own_question_and_only_one():
    """VQA's one-question rule (typed or spoken) holds per user: K users' questions are K questions, not K - 1
    second ones; a user with two is refused naming its second."""
    from unitocom.messages import Modality
    from unitocom.options import Scheme
    from unitocom.stages.request import RequestError, check_vqa_question
    im, tx = Modality.IMAGE, Modality.TEXT
    check_vqa_question([im, tx, im, tx], Scheme.UNITOCOM, users=[0, 0, 1, 1])
    with pytest.raises(RequestError) as e:
        check_vqa_question([im, tx, tx, im, tx], Scheme.UNITOCOM, users=[0, 0, 0, 1, 1])
    assert e.value.field == "payloads[2]"
