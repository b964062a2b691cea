"""Text-to-image through a written layout (`unitocom.mllm.layout`): the layout's text, its reading, the renderer, the
"lay" task's examples."""
from __future__ import annotations

import torch

from unitocom.mllm import layout, slots
from unitocom.mllm import sequences as seq
from unitocom.mllm.objects import placed_scenes


def test_a_written_layout_reads_back_as_its_scene_with_each_centre_in_its_cell(heldout_data):
    placed = placed_scenes(heldout_data, "val", 40)
    t = slots.targets(heldout_data, "val", 40)
    exact = layout.layout_inputs(t)
    for i, objs in placed:
        got = layout.read(layout.written(objs))
        assert got is not None and got.shape == (slots.SLOTS, slots.INPUT_WIDTH)
        assert torch.equal(got[:, :-2], exact[i, :, :-2])  # attributes and presence exactly, empty slots empty
        n = len(objs)
        # each centre within half a cell of the true one (centres in [-1, 1]: a cell is 2 / CELLS wide)
        assert (got[:n, -2:] - exact[i, :n, -2:]).abs().max() <= 1 / layout.CELLS + 1e-6
    # the text names the cell: column from the left, row from the top
    u, v, o = placed[0][1][0]
    assert layout.written([(0.99, 0.0, o)]).endswith(f"at {layout.CELLS - 1} 0")


def test_a_layout_that_does_not_read_is_none_and_bad_items_are_left_out():
    assert layout.read("") is None and layout.read("it. behind it. zero") is None
    good = "a large red metal square at 1 2"
    assert layout.read(f"{good}, a large red metal hexagon at 1 2, a small blue rubber circle at 9 9") is not None
    one = layout.read(f"{good}, a large red metal hexagon at 1 2")
    assert int(one[:, layout.N_ATTR + 1].sum()) == 1  # one object present: the hexagon is not of the tiny preset
    many = layout.read(", ".join([good] * (slots.SLOTS + 3)))
    assert int(many[:, layout.N_ATTR + 1].sum()) == slots.SLOTS


def test_the_renderer_ignores_empty_slots_and_round_trips_through_its_file(tmp_path):
    from unitocom.mllm.data import Standardizer
    torch.manual_seed(0)
    model = layout.LayoutRenderer(tokens=8, dim=4, hidden=32, layers=1).eval()
    lay = layout.read("a large red metal square at 1 2, a small cyan rubber circle at 6 5")[None]
    out = model(lay)
    assert out.shape == (1, 8, 4)
    other = lay.clone()
    other[0, slots.SLOTS - 1, -2:] = torch.tensor([0.7, -0.3])  # an empty slot's centre: nothing there to draw
    assert torch.allclose(model(other), out)
    moved = lay.clone()
    moved[0, 0, -2:] = torch.tensor([0.7, -0.3])  # an object moved: the picture changes
    assert not torch.allclose(model(moved), out)
    std = Standardizer(torch.randn(4), torch.rand(4) + 0.5)
    layout.save_renderer(model, std, tmp_path / "r.safetensors", {"steps": 1})
    again, std2, meta = layout.load_renderer(tmp_path / "r.safetensors")
    assert torch.equal(again(lay), out) and torch.equal(std2.std, std.std) and meta == {"steps": 1}


def test_the_lay_task_pairs_each_caption_with_its_own_scenes_layout(heldout_data):
    """Every pair a caption names is an object of the layout it is trained to write (a caption matched with another
    scene's layout would miss most of them)."""
    from unitocom import config
    from unitocom.metrics.scene_checker import caption_pairs
    from unitocom.mllm.checkpoint import load_links
    from unitocom.mllm.data import TaskData
    cfg = config.load("tiny")
    image_link, _, _, vocab, _ = load_links(cfg)
    data = TaskData(heldout_data, "val", image_link, None, None, vocab, cfg.preset.image_size_px, limit=60)
    assert data.counts()["lay"] == len(data.captions) > 0
    for order in layout.ORDERS:
        data.layout_order = order
        for i, (c, image) in enumerate(data.layouts):
            caption, text = data.captions[c][1], data.layout_text(i)
            items = [layout._ITEM.match(s.strip()).groups() for s in text.split(",")]
            named = [(color, shape) for _, color, _, shape, _, _ in items]
            assert caption_pairs(caption) <= set(named), (caption, text)
            assert sorted(named) == sorted((o["color"], o["shape"]) for _, _, o in data.layout_scenes[image])
            if order == "caption":  # the caption's mentions first, in its order
                said = [(c_, s_) for _, c_, s_ in layout._MENTION.findall(caption.lower())]
                assert named[:len(said)] == said, (caption, text)
    rows = data.examples("lay", [0, 1], torch.zeros(2), None, torch.Generator())
    prompt, target = rows[0]
    assert prompt.value[:2] == [vocab["<bos>"], vocab["<t2i>"]] and prompt.value[-1] == vocab["<sep>"]
    assert target.target and target.value[-1] == vocab["<eos>"]
    assert vocab.decode(target.value[:-1]) == data.layout_text(0)


def test_write_layouts_gives_a_text_per_caption_batched_or_not():
    from tests.conftest import CharBpe
    from tests.test_mllm_train import _model
    from unitocom.mllm import tasks
    v = seq.Vocab(CharBpe())
    m = _model(len(v)).eval()
    caps = ["a red square.", "two objects: a large blue circle and a small cyan triangle."]
    one = tasks.write_layouts(m, v, caps)
    assert len(one) == 2 and all(isinstance(t, str) for t in one)
    assert tasks.write_layouts(m, v, caps, batched=True) == one


def test_the_layout_probe_scores_a_renderer_it_trains_and_one_it_reuses(tmp_path, heldout_data):
    """scripts/t2i_layout_probe.py at smoke scale: the ceiling row reads the pictures' own tokens (the installed
    link and checker find most captioned pairs), a reused renderer scores as it did when trained, and the header
    names the renderer by sha256 and the probe by its script; MLLMs that write layouts are compared paired (one
    that was not taught the lay task draws little)."""
    import json

    from tests.conftest import load_script
    probe = load_script("scripts/t2i_layout_probe.py")
    common = ["--data", str(heldout_data), "--n-test", "30", "--grids", "8", "--run-dir", str(tmp_path / "r")]
    assert probe.main(common + ["--steps", "6", "--out", str(tmp_path / "a.json")]) == 0
    from unitocom.train.provenance import ROOT
    mllm = str(ROOT / "checkpoints" / "mllm-sigma-genib.safetensors")  # no lay task: its layouts do not read
    assert probe.main(common + ["--reuse", "--mllm", f"one={mllm}", "--mllm", f"two={mllm}",
                                "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert set(a["pair_recall"]) == {"tokens", "layout", "grid8", "shuffled"} and not a["paired"]
    assert b["writers"]["written-one"]["mllm_sha256"] == b["writers"]["written-two"]["mllm_sha256"]
    assert b["pair_recall"]["written-one"]["value"] < 0.3 and b["paired"]["written-two - written-one"]["value"] == 0
    assert a["header"]["scene_cells"]["objects"] >= 30 and a["header"]["scene_cells"]["entropy_bits"] > 3
    assert set(b["writers"]["written-one"]["cells"]) == {"written", "mended"}
    del b["pair_recall"]["written-one"], b["pair_recall"]["written-two"]
    assert a["pair_recall"]["tokens"]["value"] > 0.6 and a["pair_recall"]["tokens"]["n"] >= 20
    assert a["pair_recall"] == b["pair_recall"] and a["log"] == b["log"] and a["log"][-1]["step"] == 6
    assert a["header"]["renderer_sha256"] == b["header"]["renderer_sha256"]
    assert b["header"]["renderer_trained"]["train_cells"] == 0
    assert a["header"]["command"].startswith("scripts/t2i_layout_probe.py --data ")


def _taught(caption: str, text: str, steps: int = 300):
    """A tiny MLLM with a layout renderer, taught to write `text` for `caption` (the lay task, nothing else)."""
    import dataclasses
    import json

    from tests.conftest import CharBpe
    from tests.test_mllm_train import _model
    from unitocom.mllm.model import MLLM
    from unitocom.mllm.train import loss_of
    v = seq.Vocab(CharBpe())
    torch.manual_seed(0)
    renderer = {"tokens": 5, "dim": 4, "hidden": 16, "layers": 1, "heads": 2}
    m = MLLM(dataclasses.replace(_model(len(v)).cfg, layout_renderer=json.dumps(renderer)))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = loss_of(m, seq.pack(m, [seq.layout(v, caption, text)]), 1, torch.Generator())["lm"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval(), v


def test_an_mllm_with_a_renderer_draws_the_layout_it_writes_and_says_so():
    """T2I through a written layout, end to end at toy scale: the MLLM writes the caption's layout, the renderer
    draws exactly that layout; a caption whose layout does not read is left to the diffusion head (None)."""
    from unitocom.mllm import tasks
    text = "a large red metal square at 1 2"
    m, v = _taught("a red square.", text)
    assert tasks.write_layouts(m, v, ["a red square."]) == [text]
    (tokens,), (written,) = tasks.draw_layouts(m, v, ["a red square."])
    assert written == text
    with torch.no_grad():
        assert torch.equal(tokens, m.layout_renderer(layout.read(text)[None])[0])
    assert tokens.shape == (5, 4)
    junk, v = _taught("a red square.", "a red square somewhere")
    assert tasks.draw_layouts(junk, v, ["a red square."]) == ([None], ["a red square somewhere"])


def test_the_base_station_draws_from_the_written_layout_batched_or_not_and_says_how():
    """The base station's T2I (`stages.mllm`): an MLLM with a renderer whose layout reads is drawn from it, one
    caption at a time or in a dynamic batch alike, with the layout in the output's note; the batch's clocks are
    charged for the generation."""
    from unitocom.stages import mllm as stage
    from unitocom.timing import Clock
    text = "a large red metal square at 1 2"
    m, v = _taught("a red square.", text)
    a = stage.Assistant(model=m, std=None, vocab=v, image_link=None, audio_link=None, frontend=None)
    one, how = stage._imagine_one(a, stage._T2iJob("a red square.", 0, 3.0, Clock("basestation")))
    clocks = [Clock("basestation") for _ in range(2)]
    batch = stage._imagine_batch(a, [stage._T2iJob("a red square.", s, 3.0, c) for s, c in enumerate(clocks)])
    assert how == f"from the layout the MLLM wrote for it, {text!r}" and all(h == how for _, h in batch)
    assert all(torch.allclose(t, one, atol=1e-5) for t, _ in batch)
    assert all(c.seconds.get("mllm_generate", 0) > 0 for c in clocks)


def test_train_layout_renderer_adds_a_renderer_and_changes_nothing_else(tmp_path, heldout_data, capsys):
    """`unitocom train layout-renderer` on the installed MLLM: every tensor of the source kept, the renderer added
    (cfg.layout_renderer), its training recorded with the source's sha256; an MLLM that has one is refused."""
    import json

    from safetensors.torch import load_file

    from unitocom.cli import main
    from unitocom.config import checkpoint_dir
    from unitocom.mllm.checkpoint import load_mllm
    from unitocom.train.provenance import file_sha256
    src = checkpoint_dir() / "mllm-sigma-genib.safetensors"
    run = tmp_path / "run"
    assert main(["train", "layout-renderer", "--init", str(src), "--data", str(heldout_data), "--steps", "3",
                 "--batch-size", "8", "--hidden", "16", "--layers", "1", "--run-dir", str(run)]) == 0
    model, _, meta = load_mllm(str(run / "mllm.safetensors"))
    assert json.loads(model.cfg.layout_renderer) == {"tokens": 32, "dim": model.cfg.token_dim, "hidden": 16,
                                                     "layers": 1, "heads": 4}
    before, after = load_file(str(src)), load_file(str(run / "mllm.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {k for k in after if k not in before} and all(k.startswith("layout_renderer.") for k in after
                                                         if k not in before)
    rec = meta["layout_renderer_training"]
    assert rec["source_sha256"] == file_sha256(src) and [r["step"] for r in rec["log"]] == [3]
    capsys.readouterr()
    assert main(["train", "layout-renderer", "--init", str(run / "mllm.safetensors"), "--data", str(heldout_data),
                 "--steps", "1", "--run-dir", str(tmp_path / "again")]) == 2
    assert "has a layout renderer already" in capsys.readouterr().err


def test_objects_written_on_one_cell_are_moved_apart_and_others_are_left_where_written():
    """`layout.apart`: a layout whose objects stand on distinct cells is drawn as written; a later object on a taken
    cell moves to the nearest cell that keeps the scene generator's spacing from the earlier ones (no scene of the
    data set has two centres in one cell); `read(mend=False)` leaves it stacked."""
    from unitocom.data.presets import DATA_PRESETS
    from unitocom.data.scenes import fits
    assert layout.apart([("large", 2, 2), ("small", 5, 5), ("small", 6, 1)]) == [(2, 2), (5, 5), (6, 1)]
    moved = layout.apart([("large", 2, 2), ("large", 5, 5), ("small", 5, 5)])
    assert moved[:2] == [(2, 2), (5, 5)] and moved[2] != (5, 5)
    p = DATA_PRESETS["tiny"]
    placed = [((c + 0.5) / 8, (r + 0.5) / 8, p.radius_frac(s)) for (c, r), s in zip(moved[:2], ("large", "large"))]
    assert fits((moved[2][0] + 0.5) / 8, (moved[2][1] + 0.5) / 8, p.radius_frac("small"), placed, p)
    # nearest: no cell closer to (5, 5) keeps the spacing
    d = (moved[2][0] - 5) ** 2 + (moved[2][1] - 5) ** 2
    assert not any(fits((c + 0.5) / 8, (r + 0.5) / 8, p.radius_frac("small"), placed, p)
                   for c in range(8) for r in range(8) if (c - 5) ** 2 + (r - 5) ** 2 < d)
    text = "a large cyan rubber circle at 5 5, a small red metal square at 5 5"
    centres = layout.read(text)[:2, -2:], layout.read(text, mend=False)[:2, -2:]
    assert not torch.equal(centres[0][0], centres[0][1]) and torch.equal(centres[1][0], centres[1][1])
