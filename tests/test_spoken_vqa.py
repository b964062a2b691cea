"""VQA with a spoken question (issue 17): the spoken questions' data, the sequence format, and a spoken question
answered through the services by the committed mllm-sigma-genib-spoken; a request with a typed and a spoken
question, or a spoken one where no model reads it, is refused naming the field."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import torch

from tests.conftest import CharBpe, need
from unitocom import client
from unitocom.data.speech import tools_missing
from unitocom.data.vocab import ANSWERS
from unitocom.mllm import sequences as seq

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
NUMBERS = {str(i) for i in range(11)}


def test_spoken_vqa_sequence_puts_the_question_audio_between_boa_and_eoa():
    from unitocom.mllm.model import MLLM, MLLMConfig
    v = seq.Vocab(CharBpe())
    torch.manual_seed(0)
    m = MLLM(MLLMConfig(vocab=len(v), hidden=32, layers=1, heads=2, intermediate=64, max_positions=256,
                        token_dim=4, head_width=32, head_depth=1))
    img, audio = torch.randn(5, 4), torch.randn(6, 4)
    segs = seq.spoken_vqa(v, img, audio, "ab")
    # <bos><vqa><boi> img*5 <eoi><boa> audio*6 <eoa><sep> | a b <eos>
    ids = [s.value for s in segs if s.kind == "text"]
    assert ids[0] == [v["<bos>"], v["<vqa>"], v["<boi>"]] and ids[1] == [v["<eoi>"], v["<boa>"]]
    assert ids[2] == [v["<eoa>"], v["<sep>"]] and ids[3] == [ord("a"), ord("b"), v["<eos>"]]
    p = seq.pack(m, [segs, seq.vqa(v, img, "q", "ab")])
    sep = 3 + 5 + 2 + 6 + 1
    assert p.lm_targets[0, sep].item() == ord("a") and p.lm_targets[0, sep + 2].item() == v["<eos>"]
    assert (p.lm_targets[0, :sep] == seq.IGNORE).all()
    assert len(p.diff_targets) == 0  # nothing continuous is predicted: the question's tokens are input
    assert torch.allclose(p.embeds[0, 10:16], m.embed_tokens(audio[None], "audio")[0])
    assert p.mask[0].sum() == sep + 1 + 3
    assert seq.spoken_vqa(v, img, audio, None)[-1].value == [v["<eoa>"], v["<sep>"]]  # the inference prompt


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """A small held-out set (another seed than training) with its test questions spoken."""
    need(not tools_missing(), "espeak-ng/sox missing: spoken questions are synthesised")
    from unitocom.data.make import make_dataset
    from unitocom.data.spoken import make_spoken_questions
    d = tmp_path_factory.mktemp("spoken")
    make_dataset(d, "tiny", seed=321, scenes=60, speech=False, progress=False, workers=1, log=lambda *_: None)
    make_spoken_questions(d, counts={"train": 4, "val": 0, "test": 10}, workers=2, progress=False)
    return d


def test_spoken_questions_layout_manifest_and_checksums(spoken):
    from unitocom.data.make import dataset_checksum
    from unitocom.data.spoken import folder_checksum, load, make_spoken_questions
    sq = spoken / "spoken_questions"
    m = json.loads((sq / "manifest.json").read_text())
    assert m["complete"] and m["counts"]["test"]["questions"] == 10 and m["counts"]["train"]["questions"] == 4
    typed = json.loads((spoken / "CLEVR_v1.0/questions/CLEVR_test_questions.json").read_text())["questions"]
    for r in load(sq, "test"):
        q = typed[r["question_index"]]  # each record points at its typed question
        assert (r["question"], r["answer"], r["image_index"]) == (q["question"], q["answer"], q["image_index"])
        assert (sq / r["file"]).stat().st_size > 1000 and 0.5 < r["seconds"] < 8
    assert m["checksum"] == folder_checksum(sq)
    # the base set's checksum skips the spoken questions (the committed checkpoints record it)
    assert dataset_checksum(spoken) == json.loads((spoken / "manifest.json").read_text())["checksum"]
    # adding a split keeps the others byte for byte
    before = folder_checksum(sq, ("train",))
    again = make_spoken_questions(spoken, counts={"train": 0, "val": 3, "test": 0}, progress=False)
    assert folder_checksum(sq, ("train",)) == before == again["sha256"]["train"]
    assert again["counts"]["val"]["questions"] == 3 and again["counts"]["test"]["questions"] == 10


def _answer_kind(family: int) -> set[str]:
    from unitocom.data.questions import FAMILIES
    from unitocom.data.vocab import COLORS, SHAPES, SIZES
    name = FAMILIES[family]
    if name.endswith("count"):
        return NUMBERS
    return {"query_color": set(COLORS), "query_shape": set(SHAPES), "query_size": set(SIZES)}.get(
        name, {"yes", "no"} if name in ("exist", "compare_more", "compare_equal", "compare_attribute",
                                        "relate_yesno") else {a.lower() for a in ANSWERS})


def _request(d: Path, r: dict, **kw):
    png = (d / "CLEVR_v1.0/images/test" / f"CLEVR_test_{r['image_index']:06d}.png").read_bytes()
    wav = (d / "spoken_questions" / r["file"]).read_bytes()
    return client.build_request(**({"image": png, "audio": wav, "task": "vqa", "scheme": "unitocom", "snr_db": 20.0,
                                    "channel": "rayleigh", "answer": r["answer"]} | kw))


@pytest.mark.parametrize("scheme", ["unitocom", "traditional"])
def test_a_spoken_question_is_answered_through_the_services(tx, spoken, scheme):
    """The answer is a word of the closed vocabulary of the kind the spoken question asks for (a number for a
    count, a colour for a colour...): the MLLM understood what was said, not only that something was said."""
    from unitocom.data.spoken import load
    need((CHECKPOINTS / "mllm-sigma-genib-spoken.safetensors").exists(), "mllm-sigma-genib-spoken not installed")
    recs = load(spoken / "spoken_questions", "test")
    kinds = []
    for i, r in enumerate(recs):
        res = tx.send(_request(spoken, r, scheme=scheme, seed=i))
        assert res.output_text in {a.lower() for a in ANSWERS}, res.output_text
        assert res.quality["exact_match"] in (0.0, 1.0)
        assert {"mllm_prefill", "mllm_generate"} <= {t.stage for t in res.timings if t.service == "basestation"}
        kinds.append(res.output_text in _answer_kind(r["question_family_index"]))
    assert sum(kinds) >= len(recs) - 1, kinds


def _error(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


@pytest.mark.parametrize("options, code, field, reason", [
    (dict(question="What color is the cube?"), grpc.StatusCode.INVALID_ARGUMENT, "payloads[2]",
     "vqa takes one question, typed (text) or spoken (audio), not both: payloads[1] is already the audio question"),
    (dict(scheme="semcom"), grpc.StatusCode.UNIMPLEMENTED, "payloads[1]", "no receiver for speech"),
    (dict(variant="resilient"), grpc.StatusCode.UNIMPLEMENTED, "link.variant", "no resilient one exists"),
])
def test_a_typed_and_a_spoken_question_or_an_unserved_spoken_one_is_refused(tx, spoken, options, code, field,
                                                                              reason):
    from unitocom.data.spoken import load
    r = load(spoken / "spoken_questions", "test")[0]
    got, details = _error(lambda: tx.send(_request(spoken, r, **options), 30))
    assert got == code, details
    assert details.startswith(f"{field}: ") and reason in details, details


def test_the_base_station_refuses_a_header_with_both_questions():
    from unitocom import config
    from unitocom.messages import LinkSettings, Modality, RequestHeader, StreamHeader
    from unitocom.options import Scheme, Task
    from unitocom.stages.basestation import BaseStationCore
    from unitocom.stages.request import RequestError
    streams = [StreamHeader(stream_id=i, modality=m, scheme=Scheme.TRADITIONAL)
               for i, m in enumerate((Modality.IMAGE, Modality.AUDIO, Modality.TEXT))]
    header = RequestHeader(request_id="r", task=Task.VQA, link=LinkSettings(scheme=Scheme.TRADITIONAL), streams=streams)
    with pytest.raises(RequestError) as e:
        BaseStationCore(header, config.load("tiny"))
    assert e.value.field == "header.streams[2]" and "not both" in e.value.reason


def test_send_and_eval_take_a_spoken_question(services, spoken):
    from unitocom.data.spoken import load
    need((CHECKPOINTS / "mllm-sigma-genib-spoken.safetensors").exists(), "mllm-sigma-genib-spoken not installed")
    cfg, _ = services
    target = cfg.address("transmitter").grpc
    r = load(spoken / "spoken_questions", "test")[0]
    png = spoken / "CLEVR_v1.0/images/test" / f"CLEVR_test_{r['image_index']:06d}.png"
    out = subprocess.run([sys.executable, "-m", "unitocom.cli", "send", "--target", target, "--task", "vqa",
                          "--scheme", "unitocom", "--image", str(png), "--audio", str(spoken / "spoken_questions" /
                                                                                     r["file"]), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["output"] in {a.lower() for a in ANSWERS}
    ev = subprocess.run([sys.executable, "-m", "unitocom.cli", "eval", "--task", "vqa", "--spoken", "--n", "6",
                         "--data", str(spoken), "--target", target, "--json"], capture_output=True, text=True,
                        timeout=300)
    assert ev.returncode == 0, ev.stderr
    row = json.loads(ev.stdout)
    assert row["question"] == "spoken" and row["n"] == 6 and 0 <= row["value"] <= 1
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert sum(f["n"] for f in row["by_family"].values()) == 6


def test_a_camera_and_a_phone_send_the_picture_and_the_spoken_question_in_one_session(tx, spoken):
    """Issue 17's example: the picture from one device (unitocom), the spoken question from another (traditional,
    AMR-WB), one session waiting for image and audio: answered once, alike for both calls, both parts reported."""
    from concurrent.futures import ThreadPoolExecutor

    from unitocom.data.spoken import load
    from unitocom.v1 import unitocom_pb2 as pb
    need((CHECKPOINTS / "mllm-sigma-genib-spoken.safetensors").exists(), "mllm-sigma-genib-spoken not installed")
    r = load(spoken / "spoken_questions", "test")[1]
    png = (spoken / "CLEVR_v1.0/images/test" / f"CLEVR_test_{r['image_index']:06d}.png").read_bytes()
    wav = (spoken / "spoken_questions" / r["file"]).read_bytes()
    common = dict(task="vqa", session_id="spoken-1", session_parts="image,audio")
    with ThreadPoolExecutor(2) as pool:
        cam = pool.submit(tx.send, client.build_request(image=png, scheme="unitocom", snr_db=20.0, request_id="cam",
                                                        **common), 60)
        phone = pool.submit(tx.send, client.build_request(audio=wav, scheme="traditional", snr_db=15.0,
                                                          channel="rayleigh", answer=r["answer"], request_id="phone",
                                                          **common), 60)
        r1, r2 = cam.result(), phone.result()
    assert r1.output_text == r2.output_text and r1.output_text in {a.lower() for a in ANSWERS}
    assert "exact_match" in r1.quality and dict(r1.quality) == dict(r2.quality)
    assert r1.session.complete and sorted(p.modality for p in r1.session.arrived) == sorted([pb.IMAGE, pb.AUDIO])
    assert r1.session.answered_by == r2.session.answered_by


def test_data_make_makes_the_spoken_questions_with_the_set(tmp_path):
    """`data make` (the CLI makes them unless --no-spoken-questions): a fresh clone gets them with the data set;
    they record the set's final checksum, which they leave unchanged."""
    need(not tools_missing(), "espeak-ng/sox missing: spoken questions are synthesised")
    from unitocom.data.make import GENERATED, dataset_checksum, make_dataset
    m = make_dataset(tmp_path, "tiny", seed=7, scenes=24, clips=3, progress=False, workers=2, log=lambda *_: None,
                     spoken_questions=True)
    sq = json.loads((tmp_path / "spoken_questions" / "manifest.json").read_text())
    assert sq["complete"] and sq["base"]["checksum"] == m["checksum"] == dataset_checksum(tmp_path)
    assert m["spoken_questions"] == sq["counts"] and m["spoken_questions"]["test"]["questions"] > 0
    assert "spoken_questions" in GENERATED and "spoken_questions" in m["sha256"]
