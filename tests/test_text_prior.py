"""The base station's language prior for text streams (issue 12): the n-gram's probabilities against counts worked
by hand, the decoder's trade between the channel and the prior, and the prior in the serving path."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import need
from unitocom.models.text_prior import NgramPrior, load

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"

# ids 0..3; BOS = 4, EOS = 5
CORPUS = [[1, 2, 3], [1, 2, 3], [1, 3, 2], [2, 2]]


def test_witten_bell_bigram_matches_the_counts_worked_by_hand():
    p = NgramPrior.fit(CORPUS, vocab=4, order=2)
    # unigram: counts over the 4 texts' ids and EOS: 1:3, 2:5, 3:3, EOS:4 -> 15 tokens of 4 types; uniform 1/6 below
    uni = {w: (c + 4 / 6) / (15 + 4) for w, c in {0: 0, 1: 3, 2: 5, 3: 3, 4: 0, 5: 4}.items()}
    # after 2: next 3 twice, EOS twice, 2 once -> 5 tokens of 3 types
    after2 = {w: ({3: 2, 5: 2, 2: 1}.get(w, 0) + 3 * uni[w]) / (5 + 3) for w in range(6)}
    got = p.log_next([2]).exp()
    for w in range(6):
        assert got[w].item() == pytest.approx(after2[w], rel=1e-6), w
    assert got.sum().item() == pytest.approx(1.0, abs=1e-6)
    # an unseen context (EOS never starts one) falls back to the unigram whole
    assert p.log_next([5]).exp()[2].item() == pytest.approx(uni[2], rel=1e-6)
    # BOS: three texts start with 1, one with 2
    assert p.log_next([]).exp()[1].item() == pytest.approx((3 + 2 * uni[1]) / (4 + 2), rel=1e-6)


def test_every_order_gives_a_distribution_over_ids_and_eos():
    p = NgramPrior.fit(CORPUS, vocab=4, order=4)
    for ctx in ([], [1], [1, 2], [1, 2, 3], [3, 3, 3], [0, 0]):
        assert p.log_next(ctx).exp().sum().item() == pytest.approx(1.0, abs=1e-5), ctx
    assert p.log_prob([1, 2, 3]) > p.log_prob([3, 2, 1])  # a seen text beats its reverse


def test_decode_takes_the_prior_where_the_channel_doubts_and_the_channel_where_it_is_sure():
    p = NgramPrior.fit(CORPUS, vocab=4, order=3, weight=1.0, beam=8)
    flat = torch.full((3, 4), math.log(0.25))  # nothing received: the prior's most likely text of three ids
    assert p.decode(flat) == [1, 2, 3]
    # the channel leans to [1, 2, 2] at the last id, a little: the corpus's [1, 2, 3] wins
    lean = torch.log(torch.tensor([[0.01, 0.97, 0.01, 0.01], [0.01, 0.01, 0.97, 0.01], [0.1, 0.1, 0.45, 0.35]]))
    assert lean.argmax(-1).tolist() == [1, 2, 2] and p.decode(lean) == [1, 2, 3]
    # sure of a text the corpus never held: it is kept
    sure = torch.log(torch.full((3, 4), 1e-6).index_put_((torch.arange(3), torch.tensor([0, 0, 1])),
                                                          torch.tensor(1.0)))
    assert p.decode(sure) == [0, 0, 1]
    with pytest.raises(ValueError, match="reads 5 ids and the prior 4"):
        p.decode(torch.zeros(3, 5))


def test_save_and_load_keep_the_model(tmp_path):
    p = NgramPrior.fit(CORPUS * 3, vocab=4, order=3, weight=0.7, beam=5)
    p.save(tmp_path / "p.safetensors", {"bpe_sha256": "ab"})
    q = load(tmp_path / "p.safetensors")
    assert (q.order, q.weight, q.beam, q.vocab, q.meta["bpe_sha256"]) == (3, 0.7, 5, 4, "ab")
    assert q.texts == p.texts and q.counts == [6, 3, 3]
    for ctx in ([], [1], [1, 2], [2, 2]):
        assert torch.equal(p.log_next(ctx), q.log_next(ctx))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        NgramPrior.fit([[1, 7]], vocab=4, order=2)
    (tmp_path / "x.safetensors").write_bytes((tmp_path / "p.safetensors").read_bytes().replace(
        b"unitocom-text-prior/1", b"unitocom-text-prior/9"))
    with pytest.raises(ValueError, match="not a unitocom-text-prior/1 file"):
        load(tmp_path / "x.safetensors")


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory, heldout_data):
    """The installed checkpoints beside a prior made by the command on the held-out set (a few val texts)."""
    need((CHECKPOINTS / "text-sigma-genib.safetensors").exists(), "text-sigma-genib not committed")
    from unitocom.fig2 import checkpoint_files
    d = tmp_path_factory.mktemp("prior")
    for f in checkpoint_files(CHECKPOINTS):
        (d / f.name).symlink_to(f)
    run = subprocess.run([sys.executable, "-m", "unitocom.cli", "train", "text-prior", "--data", str(heldout_data),
                          "--out", str(d / "text-prior.safetensors"), "--count", "40", "--weights", "0,0.5,1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr
    return d


def test_the_command_chooses_a_weight_on_val_and_records_how(prior_dir):
    entry = json.loads((prior_dir / "manifest-tasks.json").read_text())["text-prior"]
    v = entry["validation"]
    assert entry["command"].startswith("unitocom train text-prior --data ") and "--out" not in entry["command"]
    assert set(v["exact_read_by_weight"]["questions"]) == {"0", "0.5", "1"} and v["chosen_weight"] in (0.5, 1.0)
    q = v["exact_read_by_weight"]["questions"]
    assert q[f"{v['chosen_weight']:g}"] >= q["0"]  # read at 0 dB: the prior is chosen where it helps
    assert len(entry["data_checksum"]) == 64 and len(entry["bpe_sha256"]) == 64
    assert load(prior_dir / "text-prior.safetensors").weight == v["chosen_weight"]


def test_the_serving_path_reads_whole_texts_with_the_installed_prior(prior_dir, monkeypatch):
    from unitocom import client, config, pipeline
    from unitocom.stages.request import from_wire
    monkeypatch.setenv("UNITOCOM_CHECKPOINTS", str(prior_dir))
    cfg = config.load("tiny")
    for text in ("Tokens are the units that large models compute with.",  # outside the corpus, at 20 dB: kept
                 "Are there more red squares than blue circles?"):
        res = pipeline.run(from_wire(client.build_request(text=text, scheme="unitocom", snr_db=20.0, seed=1)), cfg)
        assert res.output_text == text
        assert "read with the text prior (text-prior.safetensors: 5-gram" in res.outputs[0].note
    # a text of two segments (over the link's 64 ids): each row is a piece, which the prior does not model
    long = " ".join(["There is a small red square left of a large blue circle."] * 8)
    res = pipeline.run(from_wire(client.build_request(text=long, scheme="unitocom", snr_db=20.0, seed=1)), cfg)
    assert res.output_text.startswith("There is a small red square")  # the argmax's (its ids are not all right)
    assert "read id by id, without the text prior" in res.outputs[0].note


def test_a_prior_of_another_bpe_is_refused_by_name(prior_dir, tmp_path, monkeypatch):
    from unitocom import client, config, pipeline
    from unitocom.models.text_prior import load as load_prior
    from unitocom.stages.request import RequestError, from_wire
    for f in prior_dir.iterdir():
        if f.name != "text-prior.safetensors":
            (tmp_path / f.name).symlink_to(f.resolve())
    p = load_prior(prior_dir / "text-prior.safetensors")
    p.save(tmp_path / "text-prior.safetensors", {"bpe_sha256": "0" * 64})
    monkeypatch.setenv("UNITOCOM_CHECKPOINTS", str(tmp_path))
    req = from_wire(client.build_request(text="Is there a cube?", scheme="unitocom", snr_db=20.0, seed=1))
    with pytest.raises(RequestError, match="made for the BPE with sha256 0000"):
        pipeline.run(req, config.load("tiny"))
    shutil.rmtree(tmp_path)


def test_question_diversity_reads_more_with_more_copies(heldout_data):
    """scripts/question_diversity.py: MRC of independent fades; three copies at 0 dB read most questions that one
    copy misreads (0.53 -> 0.94 by argmax on val), and the prior reads at least what the argmax reads."""
    from tests.conftest import load_script
    from unitocom.models.text_tokenizer import encode_text, load_bpe
    from unitocom.models.token_link import load as load_link
    from unitocom.task_eval import vqa_items
    need((CHECKPOINTS / "next" / "text-prior.safetensors").exists(), "no staged text prior")
    qd = load_script("scripts/question_diversity.py")
    link = load_link(CHECKPOINTS / "next" / "text-sigma-genib.safetensors")
    prior = load(CHECKPOINTS / "next" / "text-prior.safetensors")
    bpe = load_bpe(CHECKPOINTS / "text-bpe.json")
    items, _ = vqa_items(heldout_data, "val", 40)
    ids = [encode_text(bpe, q["question"]) for q in items]
    one, three = qd.reads(link, prior, ids, 0.0, 1, seed=1), qd.reads(link, prior, ids, 0.0, 3, seed=3)
    assert sum(three[0]) >= sum(one[0]) + 8, (sum(one[0]), sum(three[0]))  # argmax: about 21 -> 38 of 40
    assert sum(three[1]) >= sum(three[0]) - 1 and sum(one[1]) >= sum(one[0]) - 1
